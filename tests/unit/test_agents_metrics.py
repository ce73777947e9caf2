"""Each agent metric against values computed by hand (lab/agents/metrics.py gives sources)."""

from __future__ import annotations

import math

import pytest

from lab.agents.metrics import (
    case_metrics,
    cv,
    divergence_histogram,
    first_divergence,
    jensen_shannon,
    outcome_consistency,
    outcome_consistency_graded,
    pairwise_agreement,
)
from lab.agents.records import Step, ToolCallRecord, Trajectory


def test_first_divergence() -> None:
    assert first_divergence([("a", "b", "c"), ("a", "b", "d")]) == 3
    assert first_divergence([("a",), ("a", "b")]) == 2  # an ended sequence is <end> there
    assert first_divergence([("a", "b")] * 3) is None
    assert first_divergence([("a",)]) is None


def test_pairwise_agreement() -> None:
    tools = [("x", "answer"), ("x", "answer"), ("y", "answer")]
    acts = [("x{1}", "answer"), ("x{2}", "answer"), ("y{}", "answer")]
    # 3 pairs, one with equal tools (0, 1), whose arguments differ
    assert pairwise_agreement(tools, acts) == (pytest.approx(1 / 3), 0.0)
    assert pairwise_agreement([("x",), ("y",)], [("x",), ("y",)]) == (0.0, None)
    assert pairwise_agreement([("x",)], [("x",)]) == (None, None)


def test_outcome_consistency() -> None:
    # HAL Def. 3.1 with ddof 1: p=0.5, s^2 = 4/3 * 0.25 -> 1 - 4/3 < 0 -> clipped to 0
    assert outcome_consistency([True, True, False, False]) == 0.0
    assert outcome_consistency([True] * 4) == 1.0 and outcome_consistency([False] * 4) == 1.0
    assert outcome_consistency([True]) is None
    assert outcome_consistency_graded([True, True, True, False]) == pytest.approx(0.25)
    assert outcome_consistency_graded([True, False]) == 0.0


def test_cv() -> None:
    assert cv([2, 2, 3, 3]) == pytest.approx(math.sqrt(1 / 3) / 2.5)
    assert cv([0, 0]) is None and cv([5]) is None


def test_jensen_shannon() -> None:
    assert jensen_shannon({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)
    assert jensen_shannon({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0
    # M = {a: .75, b: .25}; KL(P||M) = .5 log2(.5/.75) + .5 log2(.5/.25); KL(Q||M) = log2(4/3)
    expected = (0.5 * math.log2(0.5 / 0.75) + 0.5 * 1 + math.log2(4 / 3)) / 2
    assert jensen_shannon({"a": 0.5, "b": 0.5}, {"a": 1.0}) == pytest.approx(expected)
    assert jensen_shannon({"a": 2, "b": 2}, {"a": 1}) == pytest.approx(expected)  # counts


def _step(turn: int, kind: str, calls: list[tuple[str, dict[str, object]]], tokens: int) -> Step:
    return Step(
        trajectory="t", turn=turn, seed=0, prompt_tokens=10, output_token_ids=[1] * tokens,
        token_logprobs=[0.0] * tokens, top_logprobs=[], text="", finish_reason="stop", kind=kind,
        calls=[ToolCallRecord(f"c{j}", n, a) for j, (n, a) in enumerate(calls)],
    )  # fmt: skip


def _trajectory(i: int, steps: list[Step], outcome: str = "answer") -> Trajectory:
    return Trajectory("case", i, "text", outcome, "x" if outcome == "answer" else None, steps)


def test_case_metrics_by_hand() -> None:
    add1 = _step(0, "call", [("add", {"a": 1})], 4)
    add2 = _step(0, "call", [("add", {"a": 2})], 4)
    trajs = [
        _trajectory(0, [add1, _step(1, "answer", [], 2)]),  # 2 steps, 6 tokens
        _trajectory(1, [add1, _step(1, "answer", [], 2)]),  # the same sequence
        _trajectory(2, [add2, _step(1, "answer", [], 4)]),  # other arguments: 8 tokens
        _trajectory(3, [_step(0, "malformed", [], 3), _step(1, "malformed", [], 3)], "max_turns"),
    ]
    m = case_metrics(trajs, [True, True, False, False])
    assert m["distinct_sequences"] == 3
    assert m["first_divergence"] == 1
    assert m["sequences"][0] == {
        "sequence": 'add{"a":1} > answer', "count": 2, "successes": 2, "samples": [0, 1],
    }  # fmt: skip
    # pairs: 6; equal tool sequences: (0,1), (0,2), (1,2) -> 0.5; equal arguments: (0,1) -> 1/3
    assert m["tool_choice_agreement"] == pytest.approx(0.5)
    assert m["argument_agreement"] == pytest.approx(1 / 3)
    assert m["cv_steps"] == 0.0
    assert m["cv_tokens"] == pytest.approx(cv([6, 6, 8, 6]))
    assert m["outcome_consistency"] == 0.0 and m["outcome_consistency_graded"] == 0.0
    assert m["malformed_steps"] == 2 and m["outcomes"] == {"answer": 3, "max_turns": 1}
    assert trajs[3].actions() == ("malformed", "malformed", "max_turns")


def test_divergence_histogram() -> None:
    assert divergence_histogram([2, None, 1, 2, 10]) == {"1": 1, "2": 2, "10": 1, "never": 1}
