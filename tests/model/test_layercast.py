"""LayerCast on the real model (hf backend, CPU): SmolLM2's weights really stored in bf16,
every layer really computed in fp32, and logits closer to fp32's than bf16's are."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.backends import Backend, EngineConfig, SamplingConfig
from lab.backends.hf import HFBackend
from lab.backends.layercast import parameter_bytes, parameter_dtypes
from tests.conftest import FEYNMAN, FRANCE

pytestmark = pytest.mark.model

#: a fixed, left-padded batch (prompts of different lengths)
BATCH = [FRANCE, FEYNMAN]


@pytest.fixture(scope="module")
def layercast() -> Iterator[HFBackend]:
    backend = HFBackend(EngineConfig(backend="hf", device="cpu", dtype="layercast"))
    yield backend
    backend.close()


def prefill_logits(backend: HFBackend) -> object:
    import torch

    from lab.backends.prompts import render_token_ids

    with torch.inference_mode():
        logits, _, _, _ = backend.prefill([render_token_ids(backend.tokenizer, r) for r in BATCH])
    return logits


def test_weights_are_stored_in_bf16_and_computed_in_fp32(layercast: HFBackend) -> None:
    import torch

    model = layercast.model
    assert set(parameter_dtypes(model)) == {"bfloat16"}
    assert parameter_bytes(model) == 2 * sum(p.numel() for p in model.parameters())
    assert all(b.dtype == torch.float32 for b in model.buffers() if b.is_floating_point())
    seen: list[tuple[object, object]] = []
    projection = model.model.layers[0].self_attn.q_proj
    handle = projection.register_forward_pre_hook(
        lambda m, args: seen.append((m.weight.dtype, args[0].dtype))
    )
    try:
        logits = prefill_logits(layercast)
    finally:
        handle.remove()
    assert seen == [(torch.float32, torch.float32)]  # fp32 weight and fp32 activations inside
    assert projection.weight.dtype == torch.bfloat16  # bf16 again once the layer returned
    assert logits.dtype == torch.float32  # type: ignore[attr-defined]


def test_logits_are_closer_to_fp32_than_bf16s(hf_backend: Backend, layercast: HFBackend) -> None:
    assert isinstance(hf_backend, HFBackend)
    bf16 = HFBackend(EngineConfig(backend="hf", device="cpu", dtype="bf16"))
    try:
        reference = prefill_logits(hf_backend)
        bf16_logits = prefill_logits(bf16)
    finally:
        bf16.close()
    lc_logits = prefill_logits(layercast)
    lc_error = (lc_logits - reference).abs()  # type: ignore[operator]
    bf16_error = (bf16_logits - reference).abs()  # type: ignore[operator]
    # measured on this model: max 0.12 vs 0.66, mean 0.023 vs 0.15 (about 6x closer)
    assert lc_error.max() < bf16_error.max() / 2
    assert lc_error.mean() < bf16_error.mean() / 2
    assert lc_error.max() > 0  # the weights are rounded: not fp32 itself


def test_layercast_generates_and_records_it(layercast: HFBackend) -> None:
    [g] = layercast.generate([FRANCE], SamplingConfig(max_tokens=8, logprobs=2))
    assert "Paris" in g.text
    assert g.engine["dtype"] == "layercast"
    assert (g.engine["weights_dtype"], g.engine["compute_dtype"]) == ("bfloat16", "float32")


@pytest.mark.parametrize("batch_invariant", [False, True])
def test_layercast_with_the_batch_invariant_mode_is_bitwise_alone_and_in_a_batch(
    batch_invariant: bool,
) -> None:
    """Both are hf settings: LayerCast's fp32 compute runs through the lab's kernels, and a
    prompt's logits are then the same bits alone and left-padded in a batch. Without the mode
    (the negative control) they are not. One prefill each: the mode repacks LayerCast's fresh
    fp32 weight copies for oneDNN at every call, which makes generation slow."""
    import torch

    from lab.backends.prompts import render_token_ids

    backend = HFBackend(
        EngineConfig(backend="hf", device="cpu", dtype="layercast", batch_invariant=batch_invariant)
    )
    try:
        ids = [render_token_ids(backend.tokenizer, r) for r in BATCH]
        with backend._kernel_mode(), torch.inference_mode():
            alone, _, _, _ = backend.prefill(ids[1:])
            together, _, _, _ = backend.prefill(ids)  # FEYNMAN is the shorter: left-padded
    finally:
        backend.close()
    assert len(ids[1]) < len(ids[0])
    assert torch.equal(alone[0], together[1]) == batch_invariant
