"""End to end: the hf backend with lab.kernels' batch-invariant mode on the real SmolLM2-135M
(fp32, CPU). A prompt's greedy per-token logprobs are bitwise the same alone and inside a
left-padded batch of 8 with the mode on; with it off they are not (the negative control:
transformers' stock kernels, same prompts).

    .venv/bin/python -m pytest -q tests/model/test_batch_invariant_hf.py
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.backends import Backend, EngineConfig, Generation, SamplingConfig
from lab.backends.hf import HFBackend
from lab.backends.prompts import chat
from lab.determinism.divergence import compare
from tests.conftest import FEYNMAN, FRANCE

pytestmark = pytest.mark.model

# Prompts of different lengths, so every row but the longest is left-padded.
BATCH = [
    FEYNMAN,
    chat("haiku", "Write a haiku about the sea."),
    FRANCE,
    chat("photo", "Explain photosynthesis in two sentences, for a ten-year-old child."),
    chat("primes", "List three prime numbers."),
    chat("hamlet", "Who wrote Hamlet?"),
    chat("cat", "Describe a cat in one sentence."),
    chat("sum", "What is 2 + 2?"),
]
SAMPLING = SamplingConfig(max_tokens=16, logprobs=3)
# the prompts checked alone against their row in the batch
TARGETS = ("feynman", "sum")


@pytest.fixture(scope="module")
def bi_backend() -> Iterator[HFBackend]:
    backend = HFBackend(EngineConfig(backend="hf", device="cpu", batch_invariant=True))
    yield backend
    backend.close()


def alone_and_batched(backend: Backend) -> dict[str, tuple[Generation, Generation]]:
    batch = {g.request_id: g for g in backend.generate(BATCH, SAMPLING)}
    width = max(len(g.prompt_token_ids) for g in batch.values())
    assert all(len(batch[rid].prompt_token_ids) < width for rid in TARGETS)  # left-padded
    return {
        rid: (backend.generate([r for r in BATCH if r.id == rid], SAMPLING)[0], batch[rid])
        for rid in TARGETS
    }


@pytest.fixture(scope="module")
def mode_on(bi_backend: HFBackend) -> dict[str, tuple[Generation, Generation]]:
    return alone_and_batched(bi_backend)


def test_alone_equals_batched_bitwise_with_the_mode(
    mode_on: dict[str, tuple[Generation, Generation]],
) -> None:
    for rid, (alone, batched) in mode_on.items():
        diff = compare(alone, batched)
        assert diff.tokens_equal, rid
        assert diff.positions_logprob_differs == 0, (rid, diff.max_abs_logprob_delta)
        assert alone.token_logprobs == batched.token_logprobs  # floats, bit for bit
        assert [[a.logprob for a in s] for s in alone.top_logprobs] == [
            [a.logprob for a in s] for s in batched.top_logprobs
        ]
        assert alone.engine["batch_invariant_kernels"] == "lab.kernels/cpu"


def test_without_the_mode_logprobs_move(
    hf_backend: Backend, mode_on: dict[str, tuple[Generation, Generation]]
) -> None:
    """Negative control: the stock kernels give the same prompt different logprobs alone and
    padded in the batch (ENVIRONMENT.md: 56 of 64 positions for Feynman)."""
    off = alone_and_batched(hf_backend)
    moved = {
        rid: compare(alone, batched).positions_logprob_differs
        for rid, (alone, batched) in off.items()
    }
    assert any(n > 0 for n in moved.values()), moved
    assert off["feynman"][0].engine["batch_invariant_kernels"] is False
    # Same model, same math: the mode changes the bits, not the answer (fp32: ~1e-5).
    for rid, (alone_on, _) in mode_on.items():
        diff = compare(off[rid][0], alone_on)
        assert diff.common_prefix >= 8, rid
        assert diff.max_abs_logprob_delta < 1e-3, rid


def test_dropping_finished_rows_changes_no_sample_in_the_mode(bi_backend: HFBackend) -> None:
    """Rows that finish early leave the batch (KV cache rows dropped); with the mode on the
    surviving rows' tokens and logprobs are bitwise those of the full rectangular batch."""
    sampling = SamplingConfig(temperature=0.9, max_tokens=24, seed=11, n=4, logprobs=0)
    requests = [FRANCE, BATCH[-1], FEYNMAN]  # short answers finish long before Feynman's
    try:
        bi_backend.drop_finished_rows = False
        kept = bi_backend.generate(requests, sampling)
        bi_backend.drop_finished_rows = True
        dropped = bi_backend.generate(requests, sampling)
    finally:
        bi_backend.drop_finished_rows = True
    lengths = [len(g.output_token_ids) for g in dropped]
    assert min(lengths) < max(lengths)  # some rows really were dropped before the end
    assert [g.output_token_ids for g in dropped] == [g.output_token_ids for g in kept]
    assert [g.token_logprobs for g in dropped] == [g.token_logprobs for g in kept]
