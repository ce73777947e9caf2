"""`lab retry` and `lab fragility` on real sample runs of SmolLM2 (hf), through the CLI.

Two runs of four cases: "mixed" (T=1.0, k=4: cases that pass some samples and fail others) and
"greedy" (T=0, k=2, top-2 logprobs kept). Every expected number is recomputed here from the
runs' own files (metrics.json successes, samples.jsonl top logprobs) with the textbook formula,
not read from the lab's code. Negative controls: a greedy run's retries add nothing (its k
samples are one answer), and a run without top-2 logprobs has no gap to score.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.model.sampleruns import make_sample_runs
from tests.unit.test_cli import run_lab

pytestmark = pytest.mark.model

CASES = [
    {"id": "france", "prompt": "What is the capital of France? Answer in one word.",
     "checks": [{"contains": "Paris"}]},
    {"id": "italy", "prompt": "What is the capital of Italy? Answer in one word.",
     "checks": [{"contains": "Rome"}]},
    {"id": "add2", "prompt": "What is 3 + 5? Answer with just the number.",
     "checks": [{"numeric": 8}]},
    {"id": "mul", "prompt": "What is 17 times 23? Answer with just the number.",
     "checks": [{"numeric": 391}]},
]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_sample_runs(
        tmp_path_factory.mktemp("retry"),
        CASES,
        {
            "mixed": {"k": 4, "temperature": 1.0, "seed": 5, "logprobs": 0},
            "greedy": {"k": 2, "temperature": 0.0, "seed": 5, "logprobs": 2},
        },
    )


def successes(run: Path) -> dict[str, tuple[int, int]]:
    """case id -> (passing samples c, samples k), from the run's metrics.json."""
    metrics = json.loads((run / "metrics.json").read_text())
    return {c["id"]: (c["successes"], c["n"]) for c in metrics["cases"]}


def retry(run: Path, out: Path, *extra: str) -> dict[str, Any]:
    result = run_lab("retry", str(run), "--out", str(out / "retry.md"), *extra)
    assert result.returncode == 0, result.stderr
    assert (out / "retry.md").is_file()
    report: dict[str, Any] = json.loads((out / "retry.json").read_text())
    return report


def test_retry_on_a_mixed_run_is_the_without_replacement_estimate(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    counts = successes(runs["mixed"])
    assert any(0 < c < k for c, k in counts.values())  # a retry can help somewhere
    report = retry(
        runs["mixed"], tmp_path, "--max-attempts", "3", "--fallback", str(runs["greedy"])
    )
    greedy = successes(runs["greedy"])
    for case_id, (c, k) in counts.items():
        row = report["per_case"][case_id]
        assert (row["successes"], row["k"]) == (c, k)
        for r in (1, 2, 3):  # r of the case's own k outcomes drawn without replacement
            assert row[f"up_to_{r}"] == pytest.approx(1 - math.comb(k - c, r) / math.comb(k, r))
        p_a, p_b = c / k, greedy[case_id][0] / greedy[case_id][1]
        assert row["fallback"] == pytest.approx(p_a + (1 - p_a) * p_b)
    by_name = {p["policy"]: p for p in report["policies"]}
    up_to_3 = by_name["same config, up to 3 attempts"]
    mean_3 = sum(report["per_case"][i]["up_to_3"] for i in counts) / len(counts)
    assert up_to_3["success"] == pytest.approx(mean_3)
    assert up_to_3["cases_never_solved"] == sum(c == 0 for c, _ in counts.values())
    p_bar = sum(c / k for c, k in counts.values()) / len(counts)
    assert up_to_3["independence_prediction"] == pytest.approx(1 - (1 - p_bar) ** 3)
    assert by_name["one attempt"]["success"] == pytest.approx(p_bar)


def test_retry_negative_control_a_greedy_run_gains_nothing(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    counts = successes(runs["greedy"])
    assert all(c in (0, k) for c, k in counts.values())  # greedy: one answer per case
    report = retry(runs["greedy"], tmp_path, "--max-attempts", "2")
    for case_id in counts:
        row = report["per_case"][case_id]
        assert row["up_to_2"] == row["up_to_1"]  # the same answer again
    # bad input: more attempts than the case has samples, one line, exit 2
    bad = run_lab(
        "retry", str(runs["greedy"]), "--max-attempts", "3", "--out", str(tmp_path / "b.md")
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: --max-attempts 3 needs at least 3 samples per case (the run has k=2); "
        "retries are drawn from a case's own samples"
    ]
    assert not (tmp_path / "b.md").exists()


def recomputed_gaps(run: Path) -> dict[str, list[float]]:
    """case id -> top-1 minus top-2 logprob at each step of sample 0 (samples.jsonl)."""
    gaps = {}
    for line in (run / "samples.jsonl").read_text().splitlines():
        entry = json.loads(line)
        first = next(g for g in entry["generations"] if g["sample_index"] == 0)
        gaps[entry["case_id"]] = [
            top[0]["logprob"] - top[1]["logprob"] for top in first["top_logprobs"]
        ]
    return gaps


def test_fragility_of_a_greedy_sample_run(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "fragility.json"
    result = run_lab(
        "fragility", str(runs["greedy"]), "--thresholds", "0.5,2", "--json-out", str(out)
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["kind"] == "sample" and report["prediction"] is None
    gaps = recomputed_gaps(runs["greedy"])
    by_prompt = {p["prompt"]: p for p in report["prompts"]}
    assert set(by_prompt) == set(gaps)
    for case_id, path in gaps.items():
        p = by_prompt[case_id]
        assert p["steps"] == len(path)
        assert p["min_gap"] == pytest.approx(min(path))
        assert p["min_gap_step"] == path.index(min(path))
        for cut in (0.5, 2.0):
            assert p["positions"][f"{cut:g}"] == [i for i, g in enumerate(path) if g < cut]
    # most fragile first
    assert [p["prompt"] for p in report["prompts"]] == sorted(gaps, key=lambda i: min(gaps[i]))


def test_fragility_negative_control_no_top2_logprobs(runs: dict[str, Path]) -> None:
    result = run_lab("fragility", str(runs["mixed"]))  # sampled with logprobs 0
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {runs['mixed']}: the records keep fewer than 2 top logprobs")
