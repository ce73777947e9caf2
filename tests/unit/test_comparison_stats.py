"""Interval, test and planner functions of lab.comparison against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from lab.comparison import paired, plan
from lab.comparison.drift import drift_check
from lab.comparison.runs import CaseData
from lab.variance import stats


def test_mcnemar_exact_matches_the_binomial_by_hand() -> None:
    # b=1, c=6: n=7, P(X<=1) = (C(7,0)+C(7,1))/2^7 = 8/128, two-sided 16/128
    assert paired.mcnemar_exact(1, 6) == pytest.approx(16 / 128)
    assert paired.mcnemar_exact(6, 1) == pytest.approx(16 / 128)
    assert paired.mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert paired.mcnemar_exact(3, 3) == 1.0  # capped at 1
    assert paired.mcnemar_exact(0, 0) == 1.0
    for b, c in [(2, 9), (10, 25), (40, 61)]:
        assert paired.mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue)


def test_mcnemar_large_table_stays_exact() -> None:
    # n > 5000: still the exact binomial test the report names (no chi-square approximation)
    b, c = 2400, 2700
    assert paired.mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c).pvalue, rel=1e-9)


def test_sign_flip_all_positive_differences_is_two_over_two_to_the_c() -> None:
    rng = np.random.default_rng(0)
    result = paired.sign_flip_test(np.array([0.1, 0.2, 0.3, 0.4, 0.5]), rng)
    # only the identity and the all-flipped pattern reach |mean| >= observed
    assert result.p_value == pytest.approx(2 / 32) and result.method == "exact"
    result = paired.sign_flip_test(np.full(12, 0.25), rng)
    assert result.p_value == pytest.approx(2 / 4096)
    # beyond the exact limit: Monte Carlo, p = (1 + hits) / (1 + P)
    result = paired.sign_flip_test(np.full(30, 0.25), rng, permutations=999)
    assert result.p_value == pytest.approx(1 / 1000) and result.method == "999 random swaps"


def test_sign_flip_hand_enumerated() -> None:
    rng = np.random.default_rng(0)
    # d = [3, 1, 1]: signed sums 5, 3, 3, 1, -1, -3, -3, -5; |sum| >= 5 in 2 of 8
    assert paired.sign_flip_test(np.array([3.0, 1.0, 1.0]), rng).p_value == pytest.approx(0.25)
    # mean 0: every pattern is at least as extreme
    assert paired.sign_flip_test(np.array([1.0, 2.0, -3.0]), rng).p_value == 1.0
    assert paired.sign_flip_test(np.zeros(5), rng).p_value == 1.0


def test_paired_permutation_of_p5_by_hand() -> None:
    rng = np.random.default_rng(0)
    # A = 0s, B = 1s: only the identity and the full swap give |p5(B') - p5(A')| = 1; a mixed
    # swap gives p5 of e.g. [0, 1, 1] = 0.1 (type 7) minus p5 of [1, 0, 0] = 0.
    result = paired.paired_permutation_test(np.zeros(3), np.ones(3), stats.p5_rows, rng)
    assert result.p_value == pytest.approx(2 / 8)


def test_holm_hand_worked() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4x, 3x, 2x, 1x = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    adjusted = paired.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert paired.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = paired.holm([0.01, math.nan])
    assert out[0] == pytest.approx(0.01) and math.isnan(out[1])


def test_paired_bootstrap_uses_the_same_cases_for_both_runs() -> None:
    rng = np.random.default_rng(0)
    a = np.random.default_rng(1).uniform(0, 0.8, 25)
    # a constant shift: every paired resample gives exactly 0.1 (unpaired would spread widely)
    lo, hi = paired.paired_bootstrap(a, a + 0.1, lambda x: x.mean(axis=-1), rng, samples=500)
    assert lo == pytest.approx(0.1) and hi == pytest.approx(0.1)


def test_verdicts_are_sentences_naming_the_test() -> None:
    better = paired.verdict("mean success", 0.1, (0.05, 0.15), 0.001, 0.05, "sign-flip")
    assert better.startswith("mean success: B is better (delta +0.100, 95% CI [+0.050, +0.150]")
    assert "sign-flip" in better
    worse = paired.verdict("p5", -0.1, (-0.2, -0.01), 0.01, 0.05, "t")
    assert "B is worse" in worse
    same = paired.verdict("pass@k", 0.02, (-0.01, 0.05), 0.2, 0.05, "t")
    assert "no detectable difference at this sample size" in same
    assert "interval" not in same.split(")")[-1] and "hint" not in same


def test_verdicts_say_when_the_interval_and_the_test_disagree() -> None:
    # 4 of 50 cases moved, all up: the bootstrap interval excludes 0, the exact test p = 0.125
    # (the audit's run a vs c); the test decides, the sentence says why the two differ.
    hint = paired.verdict("pass@k", 0.08, (0.02, 0.16), 0.125, 0.05, "sign-flip")
    assert hint.startswith("pass@k: no detectable difference at this sample size")
    assert "the interval excludes 0 but the test does not reject" in hint
    edge = paired.verdict("mean", 0.05, (-0.001, 0.1), 0.04, 0.05, "sign-flip")
    assert "B is better" in edge and "the interval still includes 0" in edge


def _case(passed: list[bool], seeds: list[int] | None = None) -> CaseData:
    k = len(passed)
    return CaseData(
        id="c",
        spec={},
        tags=[],
        passed=np.array(passed),
        seeds=list(seeds if seeds is not None else range(k)),
        texts=[""] * k,
        reasons=[""] * k,
    )


def test_drift_prediction_by_hand() -> None:
    # 4 cases at rate 1/2 with k = 2: v_i = 0.25 * 2/1 = 0.5; binomial var of the mean
    # difference = 4 * 0.5 * (1/2 + 1/2) / 16 = 0.125; columns [0.5, 0.5] -> tau^2 = 0.
    a = [_case([True, False]), _case([False, True]), _case([True, False]), _case([False, True])]
    b = [_case([True, True], [9, 10]) for _ in range(4)]
    result = drift_check(a, b, alpha=0.05)
    assert result["binomial_var"] == pytest.approx(0.125)
    assert result["between_run_var"] == 0.0
    assert result["predicted_sd"] == pytest.approx(math.sqrt(0.125))
    # delta 0.5 < 1.96 * 0.354 = 0.693: within what noise predicts
    assert result["delta"] == pytest.approx(0.5) and result["exceeds"] is False
    # Columns that move together across cases: between-run variance appears.
    a = [_case([True, False]) for _ in range(4)]  # columns [1, 0]: var 0.5
    result = drift_check(a, a, alpha=0.05)
    assert result["between_run_var"] == pytest.approx(0.5 - 0.125)
    assert result["same_seeds"] is True and "nondeterminism" in result["note"]


def test_planner_variance_formulas_by_hand() -> None:
    rates = np.array([0.0, 0.5, 1.0, 0.5])
    base = plan.Baseline(rates, k=2)
    # E[p(1-p)] unbiased: mean(0, .25, 0, .25) * 2/1 = 0.25; var(r, ddof=1) = 1/6
    assert base.within == pytest.approx(0.25)
    assert base.between == pytest.approx(1 / 6 - 0.25 / 2)
    shifted = plan.shifted_rates(rates, 0.1)
    assert shifted.mean() == pytest.approx(rates.mean() + 0.1)
    assert shifted.max() <= 1.0 and shifted[2] == 1.0  # no room, no move
    down = plan.shifted_rates(rates, -0.1)
    assert down.mean() == pytest.approx(0.4) and down[0] == 0.0
    # paired, k = 4: within_a/4 + within_b/4 + var(p_b - p_a)
    d = shifted - rates
    within_b = float(np.mean(shifted * (1 - shifted))) + (
        0.25 - float(np.mean(rates * (1 - rates)))
    )
    expected = 0.25 / 4 + within_b / 4 + float(np.var(d))
    assert plan.unit_variance(base, 0.1, 4, "paired") == pytest.approx(expected)
    # cases needed: smallest n with normal-approximation power >= target
    n = plan.cases_needed(base, 0.1, 4, 0.8, 0.05, "paired")
    assert plan.power(base, 0.1, n, 4, 0.05, "paired") >= 0.8
    assert plan.power(base, 0.1, n - 1, 4, 0.05, "paired") < 0.8
