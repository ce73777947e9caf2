"""`lab compare` and `lab plan` on real tiny runs of SmolLM2 (hf, 6 cases, k=2), through the CLI.

The runs go through run_sample (what `lab sample` calls) on one hf engine, so the model loads
once; the comparisons run through the CLI in a subprocess, as a user would. Three runs with
known outcomes: greedy with seed 1 and with seed 2 (temperature 0 ignores the seed, so the two
are the same samples: nothing may differ, the negative control), and temperature 5 (the
distribution is flattened into random tokens: every case fails, a known drop). Each expected
number is recomputed here from the runs' metrics.json, not taken from the comparison.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.model.sampleruns import make_sample_runs
from tests.unit.test_cli import run_lab

pytestmark = pytest.mark.model

K = 2
SENTIMENT = (
    "Is this review positive or negative? Answer with one word.\n"
    "Review: I loved it, <b>wonderful</b> film."
)
# Greedy SmolLM2 answers each of these correctly (measured: "The capital of Italy is Rome.",
# "3 + 5 = 8", "This review is positive, ..."); at T=5 it writes random tokens.
CASES = [
    {"id": "france", "prompt": "What is the capital of France? Answer in one word.",
     "checks": [{"contains": "Paris"}], "tags": ["facts"]},
    {"id": "italy", "prompt": "What is the capital of Italy? Answer in one word.",
     "checks": [{"contains": "Rome"}], "tags": ["facts"]},
    {"id": "japan", "prompt": "What is the capital of Japan? Answer in one word.",
     "checks": [{"contains": "Tokyo"}], "tags": ["facts"]},
    {"id": "add", "prompt": "What is 2 + 2? Answer with just the number.",
     "checks": [{"numeric": 4}], "tags": ["arithmetic"]},
    {"id": "add2", "prompt": "What is 3 + 5? Answer with just the number.",
     "checks": [{"numeric": 8}], "tags": ["arithmetic"]},
    {"id": "sentiment", "prompt": SENTIMENT,
     "checks": [{"one_of": ["positive", "negative"], "answer": "positive"}], "tags": ["cls"]},
]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """greedy1, greedy2 (T=0, seeds 1 and 2) and hot (T=5, seed 1): finished sample runs."""
    return make_sample_runs(
        tmp_path_factory.mktemp("compare"),
        CASES,
        {
            "greedy1": {"k": K, "temperature": 0.0, "seed": 1},
            "greedy2": {"k": K, "temperature": 0.0, "seed": 2},
            "hot": {"k": K, "temperature": 5.0, "seed": 1},
        },
    )


def rates(run: Path) -> dict[str, float]:
    """Per-case success rate from the run's own metrics.json."""
    metrics = json.loads((run / "metrics.json").read_text())
    return {c["id"]: c["successes"] / c["n"] for c in metrics["cases"]}


def compare(a: Path, b: Path, out: Path) -> tuple[dict[str, Any], str]:
    result = run_lab("compare", str(a), str(b), "--out", str(out), "--bootstrap", "300")
    assert result.returncode == 0, result.stderr
    for name in ("comparison.json", "comparison.md", "comparison.html"):
        assert (out / name).is_file(), name
    report = json.loads((out / "comparison.json").read_text())
    [comparison] = report["comparisons"]
    return comparison, result.stdout


def test_the_known_runs_hold_what_they_should(runs: dict[str, Path]) -> None:
    assert rates(runs["greedy1"]) == {c["id"]: 1.0 for c in CASES}  # greedy knows all six
    assert rates(runs["hot"]) == {c["id"]: 0.0 for c in CASES}  # random tokens pass none


def test_greedy_with_another_seed_shows_no_difference(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """Negative control: the seed does not reach a greedy run, so everything is equal."""
    comparison, stdout = compare(runs["greedy1"], runs["greedy2"], tmp_path / "cmp")
    assert comparison["same_config"] is True  # only the seed differs: a drift check
    assert comparison["config_differences"] == ["seed: 1 -> 2"]
    mean = comparison["metrics"]["mean"]
    assert mean["delta"] == 0.0 and mean["ci"] == [0.0, 0.0]
    assert "no detectable difference at this sample size" in mean["verdict"]
    assert "mean success: no detectable difference" in stdout
    for name, row in comparison["diversity"].items():
        assert row["delta"] == pytest.approx(0.0, abs=1e-6), name  # the same texts
    assert "<b>wonderful</b>" not in (tmp_path / "cmp" / "comparison.html").read_text()


def test_temperature_five_is_a_detected_drop(runs: dict[str, Path], tmp_path: Path) -> None:
    comparison, stdout = compare(runs["greedy1"], runs["hot"], tmp_path / "cmp")
    assert comparison["same_config"] is False
    assert "temperature: 0.0 -> 5.0" in comparison["config_differences"]
    a, b = rates(runs["greedy1"]), rates(runs["hot"])
    expected = sum(b.values()) / len(b) - sum(a.values()) / len(a)  # -1.0: all six fail
    mean = comparison["metrics"]["mean"]
    assert mean["delta"] == pytest.approx(expected) == -1.0
    assert mean["ci"][1] < 0
    # 6 cases all moving one way: the exact sign-flip test's smallest p, 2/2^6
    assert mean["test_method"] == "exact" and mean["p"] == pytest.approx(2 / 2**6)
    assert mean["verdict"].startswith("mean success: hot is worse")
    assert "mean success: hot is worse" in stdout


def test_bad_input_is_one_line_and_exit_2(runs: dict[str, Path], tmp_path: Path) -> None:
    greedy = str(runs["greedy1"])
    same = run_lab("compare", greedy, greedy, "--out", str(tmp_path / "x"))
    assert same.returncode == 2
    assert same.stderr.strip().splitlines() == [
        f"error: {greedy}: the same run directory is given twice; give different runs"
    ]
    missing = tmp_path / "nope"
    gone = run_lab("compare", greedy, str(missing), "--out", str(tmp_path / "y"))
    assert gone.returncode == 2
    assert gone.stderr.strip().splitlines() == [f"error: {missing}: no such run directory"]
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()  # nothing written


def test_plan_from_a_real_baseline(runs: dict[str, Path]) -> None:
    """The greedy baseline is at 1.000: a fall can be planned for, a rise cannot."""
    baseline = runs["greedy1"]
    mean = sum(rates(baseline).values()) / len(CASES)
    assert mean == 1.0
    plan = run_lab("plan", "--baseline", str(baseline), "--delta", "-0.2")
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.startswith(f"baseline: {len(CASES)} cases x k={K}, mean success 1.000")
    assert "to detect a change of -0.200 in mean success" in plan.stdout
    rise = run_lab("plan", "--baseline", str(baseline), "--delta", "0.1")
    assert rise.returncode == 2
    assert rise.stderr.strip().splitlines() == [
        "error: --delta +0.1 moves the mean 1.000 outside [0, 1]; choose a smaller delta"
    ]
