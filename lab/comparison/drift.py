"""Day-over-day drift: is a re-run's change in mean success larger than the baseline predicts?

For an unchanged configuration re-run with other seeds, the paired mean difference
delta = mean_i (r_Bi - r_Ai) over C cases has (cases cancel; only sampling noise is left)

    var(delta) = sum_i v_i (1/k_A + 1/k_B) / C^2  +  tau^2 (1/k_A + 1/k_B)

- v_i = p_i (1 - p_i), estimated from the baseline without bias as r_i (1 - r_i) k / (k - 1):
  the binomial variance of one sample of case i.
- tau^2, the between-run variance: the baseline's "runs" are its k sample columns (run j =
  sample j of every case; their seeds are shared across cases only with --shared-seeds, and
  with the default per-case seeds tau^2 estimates ~0); the variance of their success rates
  beyond what per-case binomial noise explains, max(0, var_j(R_j) - sum_i v_i / C^2), is a
  run-level effect, and a mean over k columns carries tau^2 / k of it.

Drift is flagged when |delta| > z_(1 - alpha/2) * sd. With the same seed in both runs the
prediction does not apply (a re-run should then reproduce its samples exactly, so any change is
nondeterminism); the result says so.

    from lab.comparison.drift import drift_check
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import norm

from lab.comparison.runs import CaseData


def case_variances(cases: list[CaseData]) -> np.ndarray:
    """Unbiased per-case Bernoulli variance p(1-p) from each case's own samples."""
    out = []
    for c in cases:
        r, k = c.rate, c.k
        out.append(r * (1 - r) * (k / (k - 1) if k > 1 else 1.0))
    return np.array(out)


def between_run_variance(cases: list[CaseData]) -> float:
    """tau^2 from the baseline's sample columns (0 when binomial noise explains them)."""
    k = min(c.k for c in cases)
    if k < 2:
        return 0.0
    columns = np.array([c.passed[:k] for c in cases], dtype=float).mean(axis=0)  # [k]
    binomial = float(case_variances(cases).sum()) / len(cases) ** 2
    return max(0.0, float(np.var(columns, ddof=1)) - binomial)


def drift_check(cases_a: list[CaseData], cases_b: list[CaseData], alpha: float) -> dict[str, Any]:
    """Predicted sd of the mean difference for an unchanged config, and whether delta exceeds it."""
    count = len(cases_a)
    k_a = float(np.mean([c.k for c in cases_a]))
    k_b = float(np.mean([c.k for c in cases_b]))
    delta = float(np.mean([b.rate - a.rate for a, b in zip(cases_a, cases_b, strict=True)]))
    binomial = float(case_variances(cases_a).sum()) * (1 / k_a + 1 / k_b) / count**2
    tau2 = between_run_variance(cases_a)
    sd = math.sqrt(binomial + tau2 * (1 / k_a + 1 / k_b))
    z = float(norm.ppf(1 - alpha / 2))
    same_seeds = all(
        a.seeds == b.seeds and None not in a.seeds for a, b in zip(cases_a, cases_b, strict=True)
    )
    exceeds = abs(delta) > z * sd if sd > 0 else delta != 0
    if same_seeds:
        note = (
            "same seeds in both runs: an unchanged config should reproduce its samples, so "
            "the noise prediction does not apply; any change is nondeterminism or a real change"
        )
    elif exceeds:
        note = (
            f"the mean moved {delta:+.3f}, beyond the +-{z * sd:.3f} that run-to-run variance "
            "predicts: drift (or a real change)"
        )
    else:
        note = (
            f"the mean moved {delta:+.3f}, within the +-{z * sd:.3f} that run-to-run variance "
            "predicts: no drift beyond noise"
        )
    return {
        "delta": delta,
        "predicted_sd": sd,
        "binomial_var": binomial,
        "between_run_var": tau2,
        "interval": [-z * sd, z * sd],
        "exceeds": bool(exceeds),
        "same_seeds": same_seeds,
        "note": note,
    }
