"""lab.variance.success, the n-of-k statistics shared by the n-of-k and agent reports, against
values worked out by hand for a 3-case x k=4 pass matrix."""

from __future__ import annotations

import numpy as np
import pytest

from lab.variance.success import success_statistics

# case a: 4 of 4, case b: 2 of 4, case c: 0 of 4
PASSED = np.array(
    [[True, True, True, True], [True, False, True, False], [False, False, False, False]]
)


def test_headline_curves_and_run_rates_by_hand() -> None:
    s = success_statistics(PASSED, np.array([1.0, 1.0, 0.0]), np.random.default_rng(0), 200)
    h = s.headline
    assert h["mean"] == pytest.approx(0.5) and h["pass@1"] == pytest.approx(0.5)
    # pass@4 per case with n = k = 4: 1, 1, 0; pass^4: 1, 0, 0
    assert h["pass@k"] == pytest.approx(2 / 3) and h["pass^k"] == pytest.approx(1 / 3)
    assert h["maj@k"] == pytest.approx(2 / 3)
    # p5 of (0, 0.5, 1), type 7: h = 2 * 0.05 = 0.1 -> 0 + 0.1 * 0.5
    assert h["p5"] == pytest.approx(0.05) and h["high_variance"]
    # run j = sample j of every case: 2/3, 1/3, 2/3, 1/3
    assert s.run_rates == pytest.approx([2 / 3, 1 / 3, 2 / 3, 1 / 3])
    runs = np.array([2 / 3, 1 / 3, 2 / 3, 1 / 3])
    assert h["cv_across_runs"] == pytest.approx(runs.std(ddof=1) / runs.mean())
    assert (h["run_rate_min"], h["run_rate_max"]) == pytest.approx((1 / 3, 2 / 3))
    assert s.curves["k"] == [1, 2, 4]
    # pass@2 of case b: 1 - C(2,2)/C(4,2) = 5/6; pass^2: C(2,2)/C(4,2) = 1/6
    assert s.curves["pass@k"] == pytest.approx([0.5, (1 + 5 / 6) / 3, 2 / 3])
    assert s.curves["pass^k"] == pytest.approx([0.5, (1 + 1 / 6) / 3, 1 / 3])


def test_intervals_cover_every_statistic_on_the_same_resamples() -> None:
    s = success_statistics(PASSED, np.array([1.0, 1.0, 0.0]), np.random.default_rng(0), 500)
    assert list(s.intervals) == ["mean", "p5", "pass@k", "pass^k", "maj@k"]
    for name, key in [("mean", "mean"), ("pass@k", "pass@k"), ("maj@k", "maj@k")]:
        lo, hi = s.intervals[name]
        assert 0.0 <= lo <= s.headline[key] <= hi <= 1.0
    # a matrix where every case passes everything: every interval collapses to 1
    ones = success_statistics(np.ones((3, 4), bool), np.ones(3), np.random.default_rng(0), 50)
    assert all(iv == [1.0, 1.0] for iv in ones.intervals.values())
    # negative control: the same data with another seed moves at least one bound
    other = success_statistics(PASSED, np.array([1.0, 1.0, 0.0]), np.random.default_rng(1), 7)
    again = success_statistics(PASSED, np.array([1.0, 1.0, 0.0]), np.random.default_rng(2), 7)
    assert other.intervals != again.intervals
