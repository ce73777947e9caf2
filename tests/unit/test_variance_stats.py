"""n-of-k statistics against hand-computed values."""

from __future__ import annotations

import math
import statistics
from math import comb

import numpy as np
import pytest

from lab.variance import stats


def test_pass_at_k_edges() -> None:
    assert stats.pass_at_k(n=10, c=0, k=1) == 0.0
    assert stats.pass_at_k(n=10, c=0, k=10) == 0.0
    assert stats.pass_at_k(n=10, c=10, k=1) == 1.0
    assert stats.pass_at_k(n=10, c=10, k=10) == 1.0
    assert math.isnan(stats.pass_at_k(n=4, c=2, k=5))  # n < k: undefined, as inspect-ai
    # n = k: one draw of all samples; any success passes.
    assert stats.pass_at_k(n=8, c=1, k=8) == 1.0
    assert stats.pass_at_k(n=8, c=0, k=8) == 0.0


def test_pass_at_k_matches_the_binomial_formula() -> None:
    # 1 - C(7,5)/C(10,5) = 1 - 21/252
    assert stats.pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)
    for n, c, k in [(20, 4, 3), (32, 7, 8), (16, 15, 2), (5, 1, 1)]:
        exact = 1 - comb(n - c, k) / comb(n, k)
        assert stats.pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)
    assert stats.pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 = c/n


def test_pass_at_k_is_stable_for_large_n() -> None:
    # comb(1000, 500) overflows float; the product form does not.
    value = stats.pass_at_k(1000, 1, 500)
    assert value == pytest.approx(0.5)


def test_pass_hat_k() -> None:
    # C(6,3)/C(10,3) = 20/120
    assert stats.pass_hat_k(10, 6, 3) == pytest.approx(20 / 120)
    assert stats.pass_hat_k(10, 10, 10) == 1.0
    assert stats.pass_hat_k(10, 9, 10) == 0.0  # n = k: all must pass
    assert stats.pass_hat_k(10, 2, 3) == 0.0  # c < k
    assert stats.pass_hat_k(10, 0, 1) == 0.0
    assert stats.pass_hat_k(10, 7, 1) == pytest.approx(0.7)
    assert math.isnan(stats.pass_hat_k(3, 3, 4))


def test_wilson_interval_edges() -> None:
    z = statistics.NormalDist().inv_cdf(0.975)  # 1.959963984540054: the exact 95% quantile
    lo, hi = stats.wilson_interval(0, 10)
    assert lo == 0.0
    assert hi == pytest.approx(z * z / (10 + z * z))  # 0.2775
    lo, hi = stats.wilson_interval(10, 10)
    assert hi == 1.0
    assert lo == pytest.approx(10 / (10 + z * z))  # 0.7225
    lo, hi = stats.wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert all(math.isnan(x) for x in stats.wilson_interval(0, 0))
    # statsmodels' proportion_confint(0, 10, method="wilson") upper bound, z from norm.ppf
    assert stats.wilson_interval(0, 10)[1] == pytest.approx(0.27753279986288925, abs=1e-12)
    # alpha moves z: the 90% interval is narrower
    lo90, hi90 = stats.wilson_interval(5, 10, alpha=0.10)
    assert (lo90, hi90) == (pytest.approx(0.2693, abs=1e-4), pytest.approx(0.7307, abs=1e-4))


def test_quantiles_type7_on_ties() -> None:
    # type 7: h = (m-1) q; [0,0,0,1,1]: p50 -> x[2] = 0, p90 -> x[3.6] = 1, p5 -> 0
    values = np.array([0.0, 0.0, 0.0, 1.0, 1.0])
    p5, p10, p50, p90 = stats.quantiles(values)
    assert (p5, p10, p50, p90) == (0.0, 0.0, 0.0, 1.0)
    # all tied
    assert stats.quantiles(np.full(7, 0.25)) == [0.25] * 4
    # interpolation: m=21 values 0..1 step .05 -> p5 is exactly element 1
    grid = np.linspace(0, 1, 21)
    assert stats.quantiles(grid)[0] == pytest.approx(0.05)
    # m=3 [0, .5, 1]: p5 -> h = 0.1 -> 0.05; p90 -> h = 1.8 -> .9
    p5, _, p50, p90 = stats.quantiles(np.array([0.0, 0.5, 1.0]))
    assert (p5, p50, p90) == (pytest.approx(0.05), 0.5, pytest.approx(0.9))


def test_tail_summary_and_flag() -> None:
    rates = np.array([0.0, 0.0] + [1.0] * 18)  # p5: h = 19 x 0.05 = 0.95, between two zeros
    t = stats.tail_summary(rates)
    assert t["mean"] == 0.9 and t["p5"] == 0.0
    assert t["mean_over_p5"] == math.inf
    assert stats.high_variance(t["mean"], t["p5"])
    # [0, 1, 1, 1]: p5 interpolates 15% of the way from 0 to 1 (type 7)
    assert stats.tail_summary(np.array([0.0, 1.0, 1.0, 1.0]))["p5"] == pytest.approx(0.15)
    even = stats.tail_summary(np.array([0.5, 0.5, 0.6]))
    assert not stats.high_variance(even["mean"], even["p5"])


def test_coefficient_of_variation_across_runs() -> None:
    passed = np.array([[1, 0, 1, 1], [1, 1, 0, 1]], dtype=bool)  # [C=2, k=4]
    runs = stats.run_rates(passed)
    assert runs.tolist() == [1.0, 0.5, 0.5, 1.0]
    mean = 0.75
    std = math.sqrt(sum((x - mean) ** 2 for x in runs) / 3)
    assert stats.coefficient_of_variation(runs) == pytest.approx(std / mean)
    assert math.isnan(stats.coefficient_of_variation(np.array([0.5])))


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    rates = np.linspace(0, 1, 40)
    stat = {"mean": lambda d: d["rate"].mean(axis=1)}
    a = stats.bootstrap_intervals({"rate": rates}, stat, np.random.default_rng(7), samples=500)
    b = stats.bootstrap_intervals({"rate": rates}, stat, np.random.default_rng(7), samples=500)
    assert a == b
    lo, hi = a["mean"]
    assert lo < 0.5 < hi
    constant = stats.bootstrap_intervals(
        {"rate": np.full(10, 0.3)}, stat, np.random.default_rng(1), samples=50
    )
    assert constant["mean"] == (pytest.approx(0.3), pytest.approx(0.3))


def test_k_grid() -> None:
    assert stats.k_grid(1) == [1]
    assert stats.k_grid(8) == [1, 2, 4, 8]
    assert stats.k_grid(10) == [1, 2, 4, 8, 10]
