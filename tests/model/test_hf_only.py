"""transformers-specific behaviour: packing, n from one prefill, top-k / top-p, dtypes."""

from __future__ import annotations

from typing import Any

import pytest

from lab.backends import EngineConfig, SamplingConfig
from lab.backends.hf import HFBackend
from lab.errors import ConfigError
from tests.conftest import FEYNMAN, FRANCE

pytestmark = pytest.mark.model


def test_packing_into_small_batches_gives_the_same_tokens(hf_backend: HFBackend) -> None:
    small = HFBackend(EngineConfig(backend="hf", device="cpu", max_num_seqs=2))
    sampling = SamplingConfig(temperature=0.8, max_tokens=12, seed=11, n=3)
    # max_num_seqs=2 < n=3: each request still gets its 3 rows, one request per pass.
    a = small.generate([FRANCE, FEYNMAN], sampling)
    b = hf_backend.generate([FRANCE, FEYNMAN], sampling)
    assert [g.request_id for g in a] == ["france"] * 3 + ["feynman"] * 3
    assert [g.output_token_ids for g in a] == [g.output_token_ids for g in b]
    small.close()


def test_top_k_1_is_greedy(hf_backend: HFBackend) -> None:
    sampled = hf_backend.generate(
        [FEYNMAN], SamplingConfig(temperature=1.0, top_k=1, seed=1, max_tokens=16)
    )[0]
    greedy = hf_backend.generate([FEYNMAN], SamplingConfig(max_tokens=16))[0]
    assert sampled.output_token_ids == greedy.output_token_ids
    assert all(lp == 0.0 for lp in sampled.token_logprobs)  # one token left: probability 1


def test_bf16_runs_on_cpu() -> None:
    backend = HFBackend(EngineConfig(backend="hf", device="cpu", dtype="bf16"))
    [g] = backend.generate([FRANCE], SamplingConfig(max_tokens=12))
    assert "Paris" in g.text
    assert g.engine["dtype"] == "bfloat16"
    backend.close()


def test_tp_above_one_is_refused_before_loading() -> None:
    with pytest.raises(ConfigError, match="vllm"):
        HFBackend(EngineConfig(backend="hf", tensor_parallel_size=3))


def test_requests_with_one_prompt_share_its_prefill(
    hf_backend: HFBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent run's k trajectories of a case start from one prompt: the call prefills it
    once and gathers the cache rows. With the batch-invariant mode on, every request's samples
    are then bitwise what it gets alone (stock kernels: the same prefill count and seeds)."""
    import dataclasses

    requests = [
        dataclasses.replace(FRANCE, id="a", seed=1),
        dataclasses.replace(FEYNMAN, id="b", seed=2),
        dataclasses.replace(FRANCE, id="c", seed=3),
        dataclasses.replace(FRANCE, id="d", seed=4),
    ]
    sampling = SamplingConfig(temperature=0.8, max_tokens=10, n=2, logprobs=2)
    invariant = HFBackend(EngineConfig(backend="hf", device="cpu", batch_invariant=True))
    for backend in (invariant, hf_backend):
        prefilled: list[int] = []

        def counted(
            prompts: list[list[int]], f: Any = backend.prefill, seen: Any = prefilled
        ) -> Any:
            seen.append(len(prompts))
            return f(prompts)

        monkeypatch.setattr(backend, "prefill", counted)
        together = backend.generate(requests, sampling)
        assert prefilled == [2]  # FRANCE once, FEYNMAN once (4 requests x n=2 rows)
        assert [g.request_id for g in together] == ["a", "a", "b", "b", "c", "c", "d", "d"]
        alone = [g for r in requests for g in backend.generate([r], sampling)]
        assert [g.seed for g in together] == [g.seed for g in alone]
        if backend is invariant:
            assert [g.output_token_ids for g in together] == [g.output_token_ids for g in alone]
            assert [g.token_logprobs for g in together] == [g.token_logprobs for g in alone]
        monkeypatch.undo()
    invariant.close()
