"""`lab compare` of two real agent runs (SmolLM2 through hf, two bundled agent cases, k=2),
through the CLI: the paired success comparison plus where the trajectories part, token by token.

Greedy with seed 1 and with seed 2 is the negative control: temperature 0 ignores the seed, so
every trajectory is token-identical and nothing may part. Greedy against T=1.0 must part, and
where each trajectory parts (step, token) is recomputed here from trajectories.jsonl.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lab.agents.runner import run_agents
from tests.model.sampleruns import make_sample_runs
from tests.unit.test_cli import run_lab

pytestmark = pytest.mark.model

K = 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    agent = {"limit": 2, "k": K, "max_tokens": 32, "max_turns": 2, "logprobs": 2}
    return make_sample_runs(
        tmp_path_factory.mktemp("agents"),
        "bundled:agents",
        {
            "greedy1": agent | {"temperature": 0.0, "seed": 1},
            "greedy2": agent | {"temperature": 0.0, "seed": 2},
            "warm": agent | {"temperature": 1.0, "seed": 1},
        },
        runner=run_agents,
    )


def trajectories(run: Path) -> dict[str, list[list[int]]]:
    """key -> each step's output token ids, from the run's trajectories.jsonl."""
    got = {}
    for line in (run / "trajectories.jsonl").read_text().splitlines():
        entry = json.loads(line)
        got[entry["key"]] = [step["output_token_ids"] for step in entry["steps"]]
    return got


def first_split(a: list[list[int]], b: list[list[int]]) -> tuple[int, int] | None:
    """(1-based step, token index) where two trajectories' tokens first differ; None: equal."""
    for step, (ta, tb) in enumerate(zip(a, b, strict=False), start=1):
        for i in range(min(len(ta), len(tb))):
            if ta[i] != tb[i]:
                return step, i
        if len(ta) != len(tb):
            return step, min(len(ta), len(tb))
    return None if len(a) == len(b) else (min(len(a), len(b)) + 1, 0)


def compare(a: Path, b: Path, out: Path) -> dict[str, Any]:
    result = run_lab("compare", str(a), str(b), "--out", str(out), "--bootstrap", "100")
    assert result.returncode == 0, result.stderr
    [comparison] = json.loads((out / "comparison.json").read_text())["comparisons"]
    assert isinstance(comparison, dict)
    return comparison


def test_greedy_agent_runs_with_two_seeds_do_not_part(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    a, b = trajectories(runs["greedy1"]), trajectories(runs["greedy2"])
    assert len(a) == 2 * K and a == b  # temperature 0: the seed reaches nothing
    comparison = compare(runs["greedy1"], runs["greedy2"], tmp_path / "cmp")
    split = comparison["token_split"]
    assert split["trajectories"] == split["identical"] == 2 * K
    assert split["parted"] == {} and split["actions_differ"] == 0
    assert split["max_logprob_delta_identical"] == 0.0
    assert comparison["metrics"]["mean"]["delta"] == 0.0
    assert comparison["config_differences"] == ["seed: 1 -> 2"]


def test_greedy_against_sampled_agent_runs_part_where_the_tokens_do(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    a, b = trajectories(runs["greedy1"]), trajectories(runs["warm"])
    expected = {key: first_split(a[key], b[key]) for key in a}
    parted = {key: where for key, where in expected.items() if where is not None}
    assert parted  # T=1.0 over 32 tokens a step: some trajectory leaves the greedy path
    comparison = compare(runs["greedy1"], runs["warm"], tmp_path / "cmp")
    split = comparison["token_split"]
    assert split["trajectories"] == 2 * K
    assert split["identical"] == 2 * K - len(parted)
    assert {key: (r["step"], r["token"]) for key, r in split["parted"].items()} == parted
    assert "temperature: 0.0 -> 1.0" in comparison["config_differences"]
