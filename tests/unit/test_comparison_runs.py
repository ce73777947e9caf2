"""`lab compare` / `lab plan` on synthetic run directories written in the real layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lab.commands.comparison import run_compare
from lab.comparison.analysis import CompareOptions, compare_runs
from lab.comparison.runs import load_sample_run
from lab.errors import LabError
from tests.unit.comparison_runs import case_specs, draw, make_run
from tests.unit.test_cli import run_lab

FAST = CompareOptions(bootstrap=300, permutations=500)


def test_planted_shift_detected_and_artifacts_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rates = rng.uniform(0.1, 0.7, 40)
    base = make_run(tmp_path, "base", draw(rates, 8, rng), seed=0)
    better = make_run(tmp_path, "better", draw(rates + 0.3, 8, rng), seed=50)
    out = tmp_path / "cmp"
    written, markdown = run_compare([str(base), str(better)], out, False, 0.05, 0, 300)
    assert {p.name for p in out.iterdir()} == {
        "comparison.json",
        "comparison.md",
        "comparison.html",
    }
    result = json.loads(written["json"].read_text())
    row = result["comparisons"][0]["metrics"]["mean"]
    assert row["delta"] == pytest.approx(
        np.mean([better_rate - base_rate for base_rate, better_rate in _rates(base, better)])
    )
    assert row["verdict"].startswith("mean success: better is better")
    assert "sign-flip permutation test" in row["verdict"]
    assert row["ci"][0] > 0.15 and row["ci"][1] < 0.45
    assert "mean success: better is better" in markdown
    # The other seed of the same config: a drift check, and it flags this change.
    comparison = result["comparisons"][0]
    assert comparison["same_config"] is True and comparison["drift"]["exceeds"] is True
    assert comparison["moved"]["up"] and all(m["delta"] > 0 for m in comparison["moved"]["up"])
    page = written["html"].read_text()
    assert (
        "<svg" in page
        and "Cohorts" in page
        and "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )


def _rates(a: Path, b: Path) -> list[tuple[float, float]]:
    ra, rb = load_sample_run(a), load_sample_run(b)
    return [(ra.cases[i].rate, rb.cases[i].rate) for i in ra.cases]


def test_same_distribution_other_seed_no_detectable_difference(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    rates = rng.uniform(0, 1, 30)
    a = make_run(tmp_path, "a", draw(rates, 8, rng), seed=0)
    b = make_run(tmp_path, "b", draw(rates, 8, rng), seed=1000)
    result = compare_runs([load_sample_run(a), load_sample_run(b)], FAST)
    comparison = result["comparisons"][0]
    for row in comparison["metrics"].values():
        assert "no detectable difference at this sample size" in row["verdict"], row["verdict"]
    assert comparison["same_config"] is True
    assert comparison["drift"]["exceeds"] is False and "no drift" in comparison["drift"]["note"]


def test_different_case_sets_refused_naming_cases_or_intersected(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    a = make_run(tmp_path, "a", draw(np.full(6, 0.5), 4, rng))
    specs = case_specs(7)
    specs[2]["checks"] = [{"exact": "no"}]  # a changed check definition
    b = make_run(tmp_path, "b", draw(np.full(7, 0.5), 4, rng), seed=9, specs=specs)
    runs = [load_sample_run(a), load_sample_run(b)]
    with pytest.raises(LabError) as info:
        compare_runs(runs, FAST)
    message = str(info.value)
    assert "\n" not in message
    assert "'case-006'" in message and "'case-002'" in message and "--intersection" in message
    result = compare_runs(runs, FAST, intersection=True)
    assert result["cases_compared"] == 5
    assert "5 cases kept, 2 dropped" in result["cases_note"]
    # The CLI: exit 2 with the one-line reason.
    out = run_lab("compare", str(a), str(b), "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "error: cases differ" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_outputs_escaped_and_cohort_against_the_mean_flagged(tmp_path: Path) -> None:
    # 20 "easy" cases improve a lot, 10 "tail" cases all get worse: the mean rises.
    tags = {i: (["tail"] if i >= 20 else ["easy"]) for i in range(30)}
    specs = case_specs(30, tags)
    a_out = np.zeros((30, 4), dtype=bool)
    a_out[20:] = True
    b_out = np.ones((30, 4), dtype=bool)
    b_out[20:] = False
    evil = "<script>alert('x')</script>"
    a = make_run(tmp_path, "a", a_out, specs=specs, texts={(20, 0): "yes"})
    b = make_run(tmp_path, "b", b_out, seed=7, specs=specs, texts={(20, 0): evil})
    written, _ = run_compare([str(a), str(b)], tmp_path / "cmp", False, 0.05, 0, 200)
    result = json.loads(written["json"].read_text())
    cohorts = {r["tag"]: r for r in result["comparisons"][0]["cohorts"]}
    assert cohorts["tail"]["against_mean"] is True and cohorts["tail"]["delta"] == -1.0
    assert "b is worse" in cohorts["tail"]["verdict"]
    assert cohorts["easy"]["against_mean"] is False
    page = written["html"].read_text()
    assert evil not in page and "&lt;script&gt;" in page
    assert "moves against the mean" in page


def test_three_runs_holm_and_mcnemar_at_k1(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    rates = rng.uniform(0.2, 0.8, 40)
    a = make_run(tmp_path, "a", draw(rates, 1, rng), seed=0)
    b = make_run(tmp_path, "b", draw(rates, 1, rng), seed=0, temperature=0.9)
    c = make_run(tmp_path, "c", draw(rates, 1, rng), seed=0, temperature=1.0)
    result = compare_runs([load_sample_run(p) for p in (a, b, c)], FAST)
    assert "Holm-adjusted per metric over the 2 comparisons" in result["multiple_comparisons"]
    rows = [cmp["metrics"]["mean"] for cmp in result["comparisons"]]
    # Holm with m = 2: the smaller p doubles, the larger stays at least that
    small, large = sorted(rows, key=lambda r: r["p"])
    assert small["p_adjusted"] == pytest.approx(min(1.0, 2 * small["p"]))
    assert large["p_adjusted"] == pytest.approx(max(small["p_adjusted"], large["p"]))
    for cmp in result["comparisons"]:
        # same seeds and k = 1: samples pair up, McNemar is the verdict test for the mean
        assert cmp["samples_paired"] is True
        assert cmp["metrics"]["mean"]["test"] == "exact McNemar on paired samples"
        assert cmp["same_config"] is False
        assert any(d.startswith("temperature:") for d in cmp["config_differences"])


def test_plan_cli_prints_the_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    base = make_run(tmp_path, "base", draw(rng.uniform(0, 1, 40), 8, rng))
    out = run_lab("plan", "--baseline", str(base), "--delta", "0.1")
    assert out.returncode == 0, out.stderr
    assert "| samples per case (k) | cases needed | samples per run |" in out.stdout
    assert "this baseline's own size (40 cases x k=8)" in out.stdout
    assert "it detects a rise of" in out.stdout
    bad = run_lab("plan", "--baseline", str(base), "--delta", "0.9")
    assert bad.returncode == 2 and "outside [0, 1]" in bad.stderr


def test_sweep_dir_mixed_with_sample_dir_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    a = make_run(tmp_path, "a", draw(np.full(3, 0.5), 2, rng))
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "cells.jsonl").write_text("")
    with pytest.raises(LabError, match="only with sweeps"):
        run_compare([str(a), str(sweep)], tmp_path / "o", False, 0.05, 0, 10)
    with pytest.raises(LabError, match="no such run directory"):
        run_compare([str(a), str(tmp_path / "missing")], tmp_path / "o", False, 0.05, 0, 10)
