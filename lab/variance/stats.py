"""Statistics of n-of-k sampling: per-case rates and intervals, pass@k, pass^k, tails, bootstrap.

Definitions (what the report's numbers mean):

- success rate of a case: c / n, c of its n samples passed every check.
- Wilson score interval for that rate, z = norm.ppf(1 - alpha / 2) (alpha 0.05: z =
  1.959963984540054, not the rounded 1.96); exact 0 / 1 at the edges.
- pass@k (Chen et al. 2021, unbiased): 1 - C(n-c, k) / C(n, k), computed as the stable product
  1 - prod_{i=n-c+1..n} (1 - k/i); the chance that at least one of k fresh samples passes.
- pass^k (tau-bench, Yao et al. 2024): C(c, k) / C(n, k) = prod_{i=0..k-1} (c-i)/(n-i); the
  chance that all k fresh samples pass (reliability).
- For n < k both are NaN (as inspect-ai does): n samples cannot estimate a k-sample event.
- Quantiles (p5, p10, p50, p90) of per-case success: numpy's "linear" method, Hyndman & Fan
  type 7 (the R / numpy default): the q-quantile of sorted x_1..x_m is
  x_j + (h - j)(x_{j+1} - x_j) with h = (m-1)q + 1, j = floor(h). Ties need no special care.
- Coefficient of variation across runs: run j is the j-th sample of every case; CV =
  sample std (ddof=1) of the k run success rates / their mean.
- Bootstrap intervals resample CASES with replacement (samples of one case are correlated,
  so the case is the independent unit; cf. clustered errors, Miller 2024), percentile method,
  with a numpy Generator the caller passes in.

    from lab.variance.stats import pass_at_k
    pass_at_k(n=10, c=3, k=5)   # 0.9166...
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

import numpy as np
from scipy.stats import norm

QUANTILE_METHOD: Final = "linear"  # Hyndman & Fan type 7


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval (level 1 - alpha) for a binomial proportion; (nan, nan) when
    n == 0."""
    if n == 0:
        return math.nan, math.nan
    z = float(norm.ppf(1 - alpha / 2))
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At c=0 / c=n the bound is exactly 0 / 1; floating point would leave ~1e-17.
    lo = 0.0 if successes == 0 else max(0.0, center - half)
    hi = 1.0 if successes == n else min(1.0, center + half)
    return lo, hi


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k, stable product form; NaN when n < k."""
    if n < k or k < 1:
        return math.nan
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_hat_k(n: int, c: int, k: int) -> float:
    """tau-bench pass^k = C(c,k)/C(n,k) as a product of ratios; NaN when n < k."""
    if n < k or k < 1:
        return math.nan
    if c < k:
        return 0.0
    i = np.arange(k)
    return float(np.prod((c - i) / (n - i)))


def k_grid(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself: the points of the pass@k / pass^k curves."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def quantiles(values: np.ndarray, qs: tuple[float, ...] = (0.05, 0.1, 0.5, 0.9)) -> list[float]:
    if len(values) == 0:
        return [math.nan] * len(qs)
    return [float(x) for x in np.quantile(values, qs, method=QUANTILE_METHOD)]


def tail_summary(rates: np.ndarray) -> dict[str, float]:
    """Mean, p5, p10, p50, p90 of per-case success, and mean / p5 (inf when p5 == 0)."""
    p5, p10, p50, p90 = quantiles(rates)
    mean = float(np.mean(rates)) if len(rates) else math.nan
    if p5 > 0:
        ratio = mean / p5
    else:
        ratio = math.inf if mean > 0 else math.nan
    return {
        "cases": float(len(rates)),
        "mean": mean,
        "p5": p5,
        "p10": p10,
        "p50": p50,
        "p90": p90,
        "mean_over_p5": ratio,
        "min": float(np.min(rates)) if len(rates) else math.nan,
    }


def tail_order(summary: dict[str, Any]) -> tuple[float, float, float]:
    """Sort key of a tail summary, worst tail first: p5, then p10, then the mean (missing
    values last)."""

    def v(key: str) -> float:
        x = summary.get(key)
        return float(x) if isinstance(x, int | float) and not math.isnan(x) else math.inf

    return (v("p5"), v("p10"), v("mean"))


def high_variance(mean: float, p5: float) -> bool:
    """The flag: the average user sees more than twice what the worst 5% of cases deliver."""
    return bool(mean > 2 * p5)


def run_rates(passed: np.ndarray) -> np.ndarray:
    """passed [C, k] bool -> success rate of each run j (the j-th sample of every case) [k]."""
    return passed.mean(axis=0)


def coefficient_of_variation(values: np.ndarray) -> float:
    if len(values) < 2:
        return math.nan
    mean = float(np.mean(values))
    if mean == 0:
        return math.nan
    return float(np.std(values, ddof=1) / mean)


def bootstrap_intervals(
    per_case: dict[str, np.ndarray],
    statistics: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]],
    rng: np.random.Generator,
    samples: int = 1000,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of statistics over case-resampled data.

    per_case: arrays of shape [C] (one value per case). Each statistic maps the resampled
    arrays, each [B, C], to B values. All statistics see the same resamples.
    """
    sizes = {len(v) for v in per_case.values()}
    if len(sizes) != 1:
        raise ValueError("per-case arrays must have the same length")
    (count,) = sizes
    if count == 0 or samples < 1:
        return {name: (math.nan, math.nan) for name in statistics}
    idx = rng.integers(0, count, size=(samples, count))  # [B, C]
    resampled = {name: values[idx] for name, values in per_case.items()}
    alpha = (1 - level) / 2
    out: dict[str, tuple[float, float]] = {}
    for name, stat in statistics.items():
        values = np.asarray(stat(resampled), dtype=float)
        values = values[~np.isnan(values)]
        if len(values) == 0:
            out[name] = (math.nan, math.nan)
            continue
        lo, hi = np.quantile(values, [alpha, 1 - alpha], method=QUANTILE_METHOD)
        out[name] = (float(lo), float(hi))
    return out


def nanmean_rows(x: np.ndarray) -> np.ndarray:
    """Row means ignoring NaN ([B, C] -> [B]); all-NaN rows give NaN without a warning."""
    valid = ~np.isnan(x)
    counts = valid.sum(axis=-1)
    sums = np.where(valid, x, 0.0).sum(axis=-1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def p5_rows(x: np.ndarray) -> np.ndarray:
    return np.quantile(x, 0.05, axis=-1, method=QUANTILE_METHOD)
