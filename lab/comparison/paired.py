"""Paired statistics for comparing two runs over the same cases: intervals, tests, Holm, verdicts.

The case is the independent unit (the k samples of one case are correlated), so intervals
resample cases and the main test permutes within cases:

- paired bootstrap: resample case indices with replacement and apply the SAME indices to both
  runs; the percentile interval of statistic(B*) - statistic(A*) (lab.variance.stats does the
  resampling).
- paired permutation test: under "no difference" the two values of a case are exchangeable, so
  swap A and B within each case with probability 1/2 and recompute statistic(B') -
  statistic(A'). Two-sided p = share of swaps with |T'| >= |T| (the identity counts). Exact
  enumeration of all 2^C swaps when C <= EXACT_MAX_CASES, else `permutations` random swaps
  with p = (1 + hits) / (1 + permutations). For a mean this IS the sign-flip test on per-case
  differences (`sign_flip_test`); for p5 it is the same swap applied to the quantile.
- McNemar (exact): on per-sample outcomes paired by (case, sample index), discordant counts
  b = A pass / B fail, c = A fail / B pass; p = min(1, 2 P(X <= min(b, c))), X ~ Bin(b + c,
  1/2). It treats every sample pair as independent, so it is only the verdict test when k = 1
  (no clustering); with k > 1 it is reported beside the case-level test.
- Holm: sort the m p-values, adjusted p_(i) = max_{j<=i} min(1, (m - j + 1) p_(j)).

    from lab.comparison.paired import sign_flip_test, mcnemar_exact, holm
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lab.variance import stats

EXACT_MAX_CASES = 12
# |T'| >= |T| up to floating-point noise (a swap that reorders a sum must still count as a tie).
_TIE = 1e-12

Statistic = Callable[[np.ndarray], np.ndarray]  # [P, C] -> [P]


@dataclass
class TestResult:
    p_value: float
    test: str
    #: "exact" or the number of random permutations
    method: str


def _swap_masks(count: int, rng: np.random.Generator, permutations: int) -> tuple[np.ndarray, str]:
    """[P, C] booleans: True swaps A and B for that case."""
    if count <= EXACT_MAX_CASES:
        codes = np.arange(2**count)[:, None]  # every subset of cases
        return ((codes >> np.arange(count)[None, :]) & 1).astype(bool), "exact"
    return rng.random((permutations, count)) < 0.5, f"{permutations} random swaps"


def paired_permutation_test(
    a: np.ndarray,
    b: np.ndarray,
    statistic: Statistic,
    rng: np.random.Generator,
    permutations: int = 2000,
    name: str = "paired permutation test (swap A/B within cases)",
) -> TestResult:
    """Two-sided p of statistic(B) - statistic(A) under within-case exchangeability."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if len(a) == 0:
        return TestResult(math.nan, name, "no cases")
    observed = float(statistic(b[None, :])[0] - statistic(a[None, :])[0])
    if np.all(a == b):
        return TestResult(1.0, name, "all cases equal")
    masks, method = _swap_masks(len(a), rng, permutations)
    a_perm = np.where(masks, b, a)
    b_perm = np.where(masks, a, b)
    null = statistic(b_perm) - statistic(a_perm)  # [P]
    hits = int(np.sum(np.abs(null) >= abs(observed) - _TIE))
    if method == "exact":
        p = hits / len(masks)
    else:
        p = (1 + hits) / (1 + len(masks))
    return TestResult(min(1.0, p), name, method)


def _mean_rows(x: np.ndarray) -> np.ndarray:
    return np.asarray(x.mean(axis=-1))


def sign_flip_test(
    differences: np.ndarray, rng: np.random.Generator, permutations: int = 2000
) -> TestResult:
    """Sign-flip permutation test of mean(d) = 0 on per-case differences d = B - A."""
    d = np.asarray(differences, dtype=float)
    return paired_permutation_test(
        np.zeros_like(d), d, _mean_rows, rng, permutations, name="sign-flip permutation test"
    )


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p from the discordant counts b and c."""
    n = b + c
    if n == 0:
        return 1.0
    low = min(b, c)
    if n <= 5000:
        tail = sum(math.comb(n, i) for i in range(low + 1))
        return min(1.0, 2 * tail / 2**n)
    # Large tables: the same binomial tail from scipy's CDF (the integer sum gets slow), so
    # the p-value stays the exact test the report names, not a chi-square approximation.
    from scipy.stats import binom

    return min(1.0, 2 * float(binom.cdf(low, n, 0.5)))


def holm(p_values: list[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order (NaN stays NaN, not counted)."""
    indexed = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    m = len(indexed)
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    statistic: Statistic,
    rng: np.random.Generator,
    samples: int = 2000,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of statistic(B) - statistic(A), the same case resample for both."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    intervals = stats.bootstrap_intervals(
        {"a": a[keep], "b": b[keep]},
        {"delta": lambda d: statistic(d["b"]) - statistic(d["a"])},
        rng,
        samples=samples,
        level=level,
    )
    return intervals["delta"]


def verdict(
    metric: str,
    delta: float,
    interval: tuple[float, float],
    p_value: float,
    alpha: float,
    test: str,
    better: str = "better",
    worse: str = "worse",
    name_b: str = "B",
    level: float = 0.95,
) -> str:
    """One sentence: which way the metric moved, or that no difference is detectable."""
    ci = f"{round(100 * level)}% CI [{interval[0]:+.3f}, {interval[1]:+.3f}]"
    if math.isnan(p_value) or math.isnan(delta):
        return f"{metric}: cannot be compared (no cases with a value in both runs)"
    detail = f"delta {delta:+.3f}, {ci}, p = {p_value:.3g} ({test})"
    excludes_zero = interval[0] > 0 or interval[1] < 0
    if p_value < alpha and delta != 0:
        word = better if delta > 0 else worse
        # The percentile bootstrap and the test can disagree near the edge; the test decides.
        caveat = "" if excludes_zero else "; the interval still includes 0, so a small effect"
        return f"{metric}: {name_b} is {word} ({detail}{caveat})"
    if excludes_zero:
        # Typical when only a few cases moved, all one way: the percentile bootstrap interval
        # is too narrow there, while the permutation test is exact.
        return (
            f"{metric}: no detectable difference at this sample size ({detail}; the interval "
            "excludes 0 but the test does not reject: a hint worth more cases, not a result)"
        )
    return f"{metric}: no detectable difference at this sample size ({detail})"
