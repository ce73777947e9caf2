"""Record types and configuration validation (no model)."""

from __future__ import annotations

import json

import pytest

from lab.backends.base import EngineConfig, Generation, Request, SamplingConfig, TopLogprob
from lab.devices import check_tensor_parallel
from lab.errors import ConfigError, LabError


def make_generation(tokens: list[int], logprobs: list[float]) -> Generation:
    return Generation(
        request_id="r",
        sample_index=0,
        seed=None,
        backend="hf",
        prompt_token_ids=[1, 2],
        output_token_ids=tokens,
        token_logprobs=logprobs,
        top_logprobs=[[TopLogprob(t, lp, "x")] for t, lp in zip(tokens, logprobs, strict=True)],
        text="",
        finish_reason="length",
        timings={},
        engine={},
        sampling={},
    )


def test_generation_round_trips_through_json() -> None:
    g = make_generation([5, 6], [-0.5, -1.0])
    back = Generation.from_dict(json.loads(json.dumps(g.to_dict())))
    assert back == g


@pytest.mark.parametrize(
    "alias,canonical", [("fp32", "float32"), ("BF16", "bfloat16"), ("half", "float16")]
)
def test_dtype_aliases(alias: str, canonical: str) -> None:
    assert EngineConfig(dtype=alias).dtype == canonical


def test_bad_engine_config_names_the_field() -> None:
    with pytest.raises(ConfigError, match="dtype"):
        EngineConfig(dtype="int3")
    with pytest.raises(ConfigError, match="backend"):
        EngineConfig(backend="tgi")


def test_engine_key_ignores_nothing_that_matters() -> None:
    assert EngineConfig().key() == EngineConfig(dtype="fp32").key()
    assert EngineConfig().key() != EngineConfig(dtype="bf16").key()
    one, two = ({"backend": "vllm", "engine_args": {"a": [n]}} for n in (1, 2))
    assert EngineConfig(**one).key() != EngineConfig(**two).key()


def test_sampling_validation_and_seeds() -> None:
    with pytest.raises(LabError, match="top_p"):
        SamplingConfig(top_p=0.0)
    with pytest.raises(LabError, match="n must"):
        SamplingConfig(n=0)
    s = SamplingConfig(seed=10, n=3)
    assert [s.sample_seed(i) for i in range(3)] == [10, 11, 12]
    assert SamplingConfig().sample_seed(0) is None


def test_request_needs_exactly_one_of_prompt_and_messages() -> None:
    with pytest.raises(LabError):
        Request(id="x")
    with pytest.raises(LabError):
        Request(id="x", prompt="a", messages=[{"role": "user", "content": "b"}])


def test_tensor_parallel_must_divide_heads() -> None:
    check_tensor_parallel(3, 9, 3, "m")
    check_tensor_parallel(1, 9, 3, "m")
    with pytest.raises(ConfigError, match="does not divide the 9 attention heads"):
        check_tensor_parallel(2, 9, 3, "m")
    with pytest.raises(ConfigError, match="KV heads"):
        check_tensor_parallel(4, 32, 6, "m")
