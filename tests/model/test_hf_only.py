"""transformers-specific behaviour: packing, n from one prefill, top-k / top-p, dtypes."""

from __future__ import annotations

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
