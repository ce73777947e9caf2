"""Calibration of the paired comparison and the planner by simulation (seeded, numpy only).

- Two runs drawn from one distribution (same per-case rates, different seeds): the mean shows
  no detectable difference at the 5% level in at least 90 of 100 repetitions (expected ~95).
- A planted shift of known size is detected, and its interval covers the planted value.
- The planner's number of cases, simulated with per-case rates drawn from the baseline's
  empirical rates, k Bernoulli samples each and the planted delta, reaches the stated power.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import t as t_dist

from lab.comparison import paired, plan
from lab.comparison.analysis import CompareOptions, compare_pair
from lab.comparison.runs import CaseData

OPTIONS = CompareOptions(alpha=0.05, bootstrap=200, permutations=400)


def cases_from(outcomes: np.ndarray, seed: int) -> list[CaseData]:
    count, k = outcomes.shape
    return [
        CaseData(
            id=f"c{i}",
            spec={"id": f"c{i}"},
            tags=["odd" if i % 2 else "even"],
            passed=outcomes[i],
            seeds=[seed + j for j in range(k)],
            texts=["yes" if p else "no" for p in outcomes[i]],
            reasons=[""] * k,
            diversity={"vendi": float(outcomes[i].mean())},
        )
        for i in range(count)
    ]


def baseline_rates(rng: np.random.Generator, count: int) -> np.ndarray:
    """A realistic eval: some cases always pass, some never, the rest in between."""
    kind = rng.random(count)
    return np.where(kind < 0.3, 1.0, np.where(kind < 0.45, 0.0, rng.uniform(0.1, 0.9, count)))


def test_same_distribution_shows_no_detectable_difference() -> None:
    rng = np.random.default_rng(2026)
    rates = baseline_rates(rng, 30)
    quiet = 0
    for rep in range(100):
        a = rng.random((30, 8)) < rates[:, None]
        b = rng.random((30, 8)) < rates[:, None]
        result = compare_pair(
            cases_from(a, 0),
            cases_from(b, 1000),
            CompareOptions(**(OPTIONS.__dict__ | {"seed": rep})),
        )
        quiet += "no detectable difference" in result["metrics"]["mean"]["verdict"]
    assert quiet >= 90, quiet


def test_planted_shift_is_detected_and_covered() -> None:
    rng = np.random.default_rng(7)
    rates = baseline_rates(rng, 60)
    delta = 0.15
    shifted = plan.shifted_rates(rates, delta)  # mean moves by exactly delta on these cases
    detected = covered = 0
    reps = 30
    for rep in range(reps):
        a = rng.random((60, 8)) < rates[:, None]
        b = rng.random((60, 8)) < shifted[:, None]
        row = compare_pair(
            cases_from(a, 0),
            cases_from(b, 1000),
            CompareOptions(**(OPTIONS.__dict__ | {"seed": rep})),
        )["metrics"]["mean"]
        detected += row["verdict"].startswith("mean success: B is better")
        covered += row["ci"][0] <= delta <= row["ci"][1]
    assert detected == reps
    assert covered >= 0.8 * reps, covered  # nominal 95%


def simulate_power(
    rates: np.ndarray, cases: int, k: int, delta: float, design: str, reps: int, seed: int
) -> float:
    """Share of simulated two-arm experiments in which the paired / two-sample t test rejects."""
    rng = np.random.default_rng(seed)
    shifted = plan.shifted_rates(rates, delta)
    idx_a = rng.integers(0, len(rates), size=(reps, cases))
    idx_b = idx_a if design == "paired" else rng.integers(0, len(rates), size=(reps, cases))
    r_a = rng.binomial(k, rates[idx_a]) / k  # [reps, cases]
    r_b = rng.binomial(k, shifted[idx_b]) / k
    if design == "paired":
        d = r_b - r_a
        se = d.std(axis=1, ddof=1) / np.sqrt(cases)
        z = d.mean(axis=1) / se
    else:
        se = np.sqrt(r_a.var(axis=1, ddof=1) / cases + r_b.var(axis=1, ddof=1) / cases)
        z = (r_b.mean(axis=1) - r_a.mean(axis=1)) / se
    df = cases - 1 if design == "paired" else 2 * cases - 2
    return float(np.mean(np.abs(z) > t_dist.ppf(0.975, df)))


def test_planner_answer_reaches_its_power_in_simulation() -> None:
    rng = np.random.default_rng(11)
    shape = baseline_rates(rng, 200)
    # The simulation takes the empirical rates as the truth, while the planner corrects them
    # for their own sampling noise (k/(k-1)); with k_base = 64 that correction is ~1.6%.
    k_base = 64
    rates = np.round(shape * k_base) / k_base
    for design, k, delta in (("paired", 4, 0.05), ("paired", 16, 0.05), ("independent", 8, 0.1)):
        answer = plan.plan_from_rates(rates, k_base, delta, 0.8, 0.05, design)
        cases = next(row["cases"] for row in answer.table if row["k"] == k)
        assert cases >= plan.FEW_CASES
        achieved = simulate_power(rates, cases, k, delta, design, reps=3000, seed=k)
        # 3000 repetitions: binomial sd of the estimate ~0.007
        assert abs(achieved - 0.8) < 0.04, (design, k, cases, achieved)
    # Few cases (here ~13): cases stuck at 0 or 1 make the per-case differences far from
    # normal and the t approximation errs, on the side of more power (the table flags it).
    answer = plan.plan_from_rates(rates, k_base, 0.1, 0.8, 0.05, "paired")
    row = next(row for row in answer.table if row["k"] == 64)
    assert row["cases"] < plan.FEW_CASES and row["approximate"]
    assert 0.78 < simulate_power(rates, row["cases"], 64, 0.1, "paired", 3000, seed=1) < 0.95
    # A k = 16 baseline: the correction makes the planner err on the side of more power.
    rates = np.round(shape * 16) / 16
    answer = plan.plan_from_rates(rates, 16, 0.05, 0.8, 0.05, "paired")
    cases = next(row["cases"] for row in answer.table if row["k"] == 4)
    assert 0.78 < simulate_power(rates, cases, 4, 0.05, "paired", reps=3000, seed=3) < 0.86
    # More samples per case never needs more cases; the within-case term is what k buys.
    needed = [row["cases"] for row in plan.plan_from_rates(rates, 16, 0.05).table]
    assert needed == sorted(needed, reverse=True)


def test_planner_power_holds_for_the_sign_flip_test_lab_compare_uses() -> None:
    rng = np.random.default_rng(5)
    rates = np.round(baseline_rates(rng, 100) * 8) / 8
    delta, k = 0.1, 4
    answer = plan.plan_from_rates(rates, 8, delta, 0.8, 0.05, "paired")
    cases = next(row["cases"] for row in answer.table if row["k"] == k)
    shifted = plan.shifted_rates(rates, delta)
    hits, reps = 0, 200
    for _ in range(reps):
        idx = rng.integers(0, len(rates), cases)
        d = rng.binomial(k, shifted[idx]) / k - rng.binomial(k, rates[idx]) / k
        hits += paired.sign_flip_test(d, rng, permutations=400).p_value < 0.05
    # 200 repetitions: sd ~0.03
    assert abs(hits / reps - 0.8) < 0.09, (cases, hits)
