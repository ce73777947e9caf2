"""LayerCast: weights stored in bf16, every layer computed in fp32 (the hf backend's
`dtype: layercast`).

"Give Me FP32 or Give Me Death?" (Yuan et al., arXiv 2506.09501, NeurIPS 2025) proposes it as
the middle way between bf16 (half the memory, outputs that move with batch size and GPU count)
and fp32 (stable, twice the memory): its divergence stays under 3.4% with 34% less memory than
fp32. Their vLLM patch stores the linear projections in bf16 and upcasts each weight just
before its matmul, keeping activations, the KV cache and the tied embedding in fp32.

Here every parameter is stored in bf16 (the embedding too, so the saving on weights is the
full half), and every module computes in fp32:

- the model loads in bf16, so no fp32 copy of the weights is ever held (transformers keeps
  RoPE's inverse frequencies in fp32; measured on SmolLM2: the same logits, bit for bit, as
  loading in fp32 and rounding each parameter, also left-padded); `apply_layercast` rounds
  whatever parameter is not bf16 yet;
- a module that owns parameters gets them back as fp32 copies for the length of its forward
  (a pre-hook swaps them in, a hook that always runs swaps the bf16 ones back), so its matmul,
  norm or attention runs in fp32 and the copy is freed after the call;
- an embedding looks its rows up in bf16 and casts them to fp32 (the same values, without
  upcasting the whole table).

Activations, logits and the KV cache are fp32. The cost is an upcast of every weight at every
forward pass (experiments/layercast measures it).

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    apply_layercast(model)        # parameters bf16, compute fp32
    lab generate --backend hf --dtype layercast --prompt "What is 17 + 25?"
"""

from __future__ import annotations

from typing import Any

#: what the engine record says a layercast model is
WEIGHTS_DTYPE = "bfloat16"
COMPUTE_DTYPE = "float32"
_STASH = "_layercast_stored"


def _swap_in_fp32(module: Any, args: Any) -> None:
    """Forward pre-hook: this module's bf16 parameters replaced by fp32 copies for the call."""
    import torch

    stored = {}
    for name, param in module._parameters.items():
        if param is not None and param.dtype == torch.bfloat16:
            stored[name] = param
    for name, param in stored.items():
        module._parameters[name] = param.float()
    setattr(module, _STASH, stored)


def _swap_back(module: Any, args: Any, output: Any) -> None:
    """Forward hook (always called, also after an exception): the bf16 parameters back."""
    stored = module.__dict__.pop(_STASH, None)
    if stored:
        module._parameters.update(stored)


def _embedding_to_fp32(module: Any, args: Any, output: Any) -> Any:
    return output.float()


def apply_layercast(model: Any) -> Any:
    """Store `model`'s parameters in bf16 and make every module compute in fp32 (in place).

    Tied weights (SmolLM2's embedding and LM head) stay one tensor. Returns the model."""
    import torch

    for param in model.parameters():  # unique parameters: a tied weight is converted once
        param.data = param.data.to(torch.bfloat16)
    for module in model.modules():
        if not any(p is not None for p in module._parameters.values()):
            continue
        if isinstance(module, torch.nn.Embedding):
            module.register_forward_hook(_embedding_to_fp32)
        else:
            module.register_forward_pre_hook(_swap_in_fp32)
            module.register_forward_hook(_swap_back, always_call=True)
    return model


def parameter_dtypes(model: Any) -> dict[str, int]:
    """dtype name -> number of parameter elements stored in it (tied weights counted once)."""
    counts: dict[str, int] = {}
    for param in model.parameters():
        name = str(param.dtype).removeprefix("torch.")
        counts[name] = counts.get(name, 0) + param.numel()
    return counts


def parameter_bytes(model: Any) -> int:
    """Bytes the model's parameters occupy as stored (tied weights counted once)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())
