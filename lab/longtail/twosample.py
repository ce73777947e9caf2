"""Two-sample statistics for the distribution-shift checklist: KS, chi-square, Fisher, MMD.

    ks_test(a, b)                  two-sample Kolmogorov-Smirnov: D = max |F_a - F_b|, p-value
                                   (scipy.stats.ks_2samp, method "auto": exact for small samples)
    chi_square(table)              chi-square test of independence on a 2 x K count table
                                   (scipy.stats.chi2_contingency; all-zero columns dropped;
                                   no Yates correction beyond 2 x 2, where scipy applies it)
    fisher_2x2(a, n_a, b, n_b)     Fisher's exact test (two-sided) of a/n_a against b/n_b
    total_variation(p, q)          0.5 * sum |p_i - q_i| of two share distributions
    mmd_test(x, y, permutations)   unbiased MMD^2 (Gretton et al. 2012, eq. 3) with an RBF kernel
                                   k(u, v) = exp(-|u - v|^2 / (2 sigma^2)), sigma = median
                                   pairwise distance of the pooled sample (median heuristic),
                                   and a permutation p-value (1 + #{perm >= observed}) / (1 + P)

The MMD works on the pooled kernel matrix K [N, N] once: with s the 0/1 indicator of the first
sample (m ones) and t = 1 - s (n ones), and k(u, u) = 1 on the diagonal,

    MMD^2_u = (s'Ks - m) / (m(m-1)) + (t'Kt - n) / (n(n-1)) - 2 s'Kt / (mn)

so P permutations are one [P, N] @ [N, N] product, no loop over pairs or permutations.

    from lab.longtail.twosample import mmd_test
    result = mmd_test(x_emb, y_emb, permutations=1000, seed=0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class TestResult:
    name: str
    statistic: float
    p_value: float | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "note": self.note,
        }


def ks_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> TestResult:
    from scipy.stats import ks_2samp

    result = ks_2samp(np.asarray(a, dtype=float), np.asarray(b, dtype=float), method="auto")
    return TestResult(
        "two-sample Kolmogorov-Smirnov", float(result.statistic), float(result.pvalue)
    )


def chi_square(table: np.ndarray) -> TestResult | None:
    """Chi-square test of independence; None when fewer than 2 non-empty columns remain."""
    from scipy.stats import chi2_contingency

    table = np.asarray(table, dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return None
    stat, p, dof, expected = chi2_contingency(table)
    small = int((expected < 5).sum())
    note = f"dof {dof}"
    if small:
        note += f"; {small} expected counts < 5 (approximation is rough)"
    return TestResult("chi-square test of independence", float(stat), float(p), note)


def fisher_2x2(a: int, n_a: int, b: int, n_b: int) -> TestResult:
    from scipy.stats import fisher_exact

    res = fisher_exact([[a, n_a - a], [b, n_b - b]], alternative="two-sided")
    odds = float(res.statistic) if math.isfinite(float(res.statistic)) else math.inf
    return TestResult("Fisher exact (two-sided)", odds, float(res.pvalue), "statistic: odds ratio")


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    keys = set(p) | set(q)
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys)


def shares(labels: list[str]) -> dict[str, float]:
    n = len(labels)
    out: dict[str, float] = {}
    for label in labels:
        out[label] = out.get(label, 0.0) + 1.0 / n
    return out


def median_bandwidth(sq_dist: Any) -> float:
    """Median heuristic: the median of the off-diagonal pairwise distances (not squared)."""
    import torch

    n = sq_dist.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=sq_dist.device)
    sigma = float(sq_dist[off].clamp(min=0).sqrt().median())
    return sigma if sigma > 0 else 1.0  # all points equal: any bandwidth gives MMD 0


def rbf_kernel_matrix(z: Any, sigma: float | None = None) -> tuple[Any, float]:
    """[N, d] -> (K [N, N] fp64, sigma used)."""
    z = z.double()
    sq = (z * z).sum(-1)
    sq_dist = (sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)).clamp(min=0)  # [N, N]
    sigma = sigma if sigma is not None else median_bandwidth(sq_dist)
    return (-sq_dist / (2.0 * sigma * sigma)).exp(), sigma


def mmd2_from_indicators(kernel: Any, s: Any) -> Any:
    """Unbiased MMD^2 for each row of s [P, N] (1 = first sample); kernel [N, N], unit diag."""
    s = s.double()
    t = 1.0 - s
    m, n = s.sum(-1), t.sum(-1)  # [P]
    ks = s @ kernel  # [P, N]
    kt = t @ kernel
    xx = ((ks * s).sum(-1) - m) / (m * (m - 1))
    yy = ((kt * t).sum(-1) - n) / (n * (n - 1))
    xy = (ks * t).sum(-1) / (m * n)
    return xx + yy - 2.0 * xy


@dataclass
class MMDResult:
    mmd2: float
    p_value: float
    sigma: float
    permutations: int
    null_mean: float
    null_p95: float


def mmd_test(x: Any, y: Any, permutations: int = 1000, seed: int = 0) -> MMDResult:
    """Unbiased MMD^2 of x [m, d] against y [n, d] and its permutation p-value."""
    import torch

    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError("MMD needs at least 2 points in each sample")
    z = torch.cat([x, y]).to(torch.float64)
    kernel, sigma = rbf_kernel_matrix(z)
    observed = torch.zeros((1, m + n), dtype=torch.float64, device=z.device)
    observed[0, :m] = 1.0
    mmd2 = float(mmd2_from_indicators(kernel, observed)[0])
    gen = torch.Generator().manual_seed(seed)
    # argsort of uniform noise: P independent random permutations at once, [P, N]
    order = torch.rand((permutations, m + n), generator=gen).argsort(dim=1)
    perm = (order < m).to(torch.float64).to(z.device)  # first m positions of each permutation
    null = mmd2_from_indicators(kernel, perm)
    exceed = int((null >= mmd2 - 1e-12).sum())  # ties count as exceeding (conservative)
    return MMDResult(
        mmd2=mmd2,
        p_value=(1 + exceed) / (1 + permutations),
        sigma=sigma,
        permutations=permutations,
        null_mean=float(null.mean()),
        null_p95=float(torch.quantile(null, 0.95)),
    )
