"""`lab plan`: how many cases and samples per case a claim about mean success needs.

Cases are clusters: the k samples of one case share its success probability p_i. The run mean
is a mean of case means, and the variance of one case mean with k samples is

    var(case mean) = between-case variance + E[p (1 - p)] / k     (the design effect)

so more samples per case only shrink the second term; beyond a point only more cases help.

Two designs (`design`):
- "paired" (what `lab compare` tests: the same cases in both arms): per-case difference
  d_i = r_Bi - r_Ai, var(d_i) = E[p_A(1-p_A)]/k + E[p_B(1-p_B)]/k + var_i(p_Bi - p_Ai). The
  case difficulty cancels; only the spread of the per-case change stays.
- "independent" (different case samples per arm): var = var_i(p_A) + E[p_A(1-p_A)]/k +
  var_i(p_B) + E[p_B(1-p_B)]/k per pair of cases.

The alternative: B's per-case probabilities are the baseline's shifted so the mean moves by
exactly delta, in proportion to the room each case has (delta > 0: p + delta (1-p)/(1-mean);
delta < 0: p + delta p / mean), so no probability leaves [0, 1].

From the baseline: p_i = its per-case rates r_i; E[p(1-p)] is estimated without bias
(r(1-r) k/(k-1)), the between-case variance as var(r) - E[p(1-p)]/k (clipped at 0).

Power of the two-sided level-alpha t test of the mean difference (the sign-flip test that
`lab compare` runs behaves like it): with se = sqrt(var / n), the statistic is noncentral t
with n - 1 degrees of freedom (independent design: 2n - 2) and noncentrality delta / se; the
cases needed for a given k are the smallest n whose power reaches the target (the normal
formula n = var (z_(1-alpha/2) + z_power)^2 / delta^2 is the starting point).

    plan = plan_from_rates(rates, k_base=32, delta=0.05)
    lab plan --baseline runs/a --delta 0.05
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import nct, norm
from scipy.stats import t as t_dist

from lab.errors import LabError
from lab.variance.decompose import between_variance, within_variance

DESIGNS = ("paired", "independent")
K_GRID = (1, 2, 4, 8, 16, 32, 64, 128)
# Below this many cases the t approximation is rough when many cases sit at 0 or 1 (their
# differences are far from normal); in simulation it then errs towards more power.
FEW_CASES = 30


def shifted_rates(p: np.ndarray, delta: float) -> np.ndarray:
    """Per-case probabilities whose mean is mean(p) + delta, each moved by its room."""
    mean = float(np.mean(p))
    if not -mean <= delta <= 1 - mean:
        raise LabError(
            f"--delta {delta:+g} moves the mean {mean:.3f} outside [0, 1]; choose a smaller delta"
        )
    if delta >= 0:
        return p + delta * (1 - p) / (1 - mean) if mean < 1 else p.copy()
    return p + delta * p / mean


@dataclass
class Baseline:
    """What the planner needs from a baseline run: per-case rates and their k."""

    rates: np.ndarray
    k: int

    @property
    def within(self) -> float:
        """E[p(1-p)], unbiased from k samples per case (lab.variance.decompose)."""
        return within_variance(self.rates, self.k)

    @property
    def between(self) -> float:
        """Variance of the true per-case p (method of moments, clipped at 0)."""
        return between_variance(self.rates, self.k)


def unit_variance(base: Baseline, delta: float, k: int, design: str) -> float:
    """Variance of one case's contribution to the estimated delta, with k samples per arm."""
    if design not in DESIGNS:
        raise LabError(f"design must be one of {DESIGNS}, got {design!r}")
    p_a = base.rates
    p_b = shifted_rates(p_a, delta)
    # E[p(1-p)] of the shifted arm: its plug-in value plus the baseline's small-k correction.
    within_a = base.within
    within_b = float(np.mean(p_b * (1 - p_b))) + (within_a - float(np.mean(p_a * (1 - p_a))))
    if design == "paired":
        return within_a / k + within_b / k + float(np.var(p_b - p_a))
    between_b = base.between + float(np.var(p_b)) - float(np.var(p_a))
    return base.between + within_a / k + max(0.0, between_b) + within_b / k


def degrees_of_freedom(cases: int, design: str) -> int:
    return max(1, cases - 1 if design == "paired" else 2 * cases - 2)


def power(base: Baseline, delta: float, cases: int, k: int, alpha: float, design: str) -> float:
    """Power of the two-sided level-alpha t test of the mean difference (noncentral t)."""
    se = math.sqrt(unit_variance(base, delta, k, design) / cases)
    if se == 0:
        return 1.0
    df = degrees_of_freedom(cases, design)
    critical = float(t_dist.ppf(1 - alpha / 2, df))
    shift = abs(delta) / se
    return float(nct.sf(critical, df, shift) + nct.cdf(-critical, df, shift))


def cases_needed(
    base: Baseline, delta: float, k: int, target: float, alpha: float, design: str
) -> int:
    """Smallest number of cases whose power reaches `target` (at least 2)."""
    var = unit_variance(base, delta, k, design)
    z = float(norm.ppf(1 - alpha / 2)) + float(norm.ppf(target))
    # Start from the normal closed form, then walk to the smallest n the t power accepts.
    n = max(2, math.ceil(var * z * z / delta**2))
    while power(base, delta, n, k, alpha, design) < target:
        n += 1
    while n > 2 and power(base, delta, n - 1, k, alpha, design) >= target:
        n -= 1
    return n


def detectable_delta(
    base: Baseline, cases: int, k: int, target: float, alpha: float, design: str
) -> float:
    """Smallest upward change in mean success detectable with this many cases and k."""
    lo, hi = 0.0, 1 - float(np.mean(base.rates))
    if hi <= 0 or power(base, hi, cases, k, alpha, design) < target:
        return math.nan
    for _ in range(60):  # bisection: power grows with delta
        mid = (lo + hi) / 2
        if power(base, mid, cases, k, alpha, design) >= target:
            hi = mid
        else:
            lo = mid
    return hi


@dataclass
class Plan:
    delta: float
    power: float
    alpha: float
    design: str
    baseline_cases: int
    baseline_k: int
    baseline_mean: float
    within: float
    between: float
    #: (k, cases needed, total samples per arm)
    table: list[dict[str, Any]] = field(default_factory=list)
    current_detectable_delta: float = math.nan
    current_power: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def plan_from_rates(
    rates: np.ndarray,
    k_base: int,
    delta: float,
    target: float = 0.8,
    alpha: float = 0.05,
    design: str = "paired",
    ks: tuple[int, ...] = K_GRID,
) -> Plan:
    if delta == 0:
        raise LabError("--delta must be non-zero")
    if not 0 < target < 1 or not 0 < alpha < 1:
        raise LabError("--power and --alpha must lie strictly between 0 and 1")
    base = Baseline(np.asarray(rates, dtype=float), k_base)
    plan = Plan(
        delta=delta,
        power=target,
        alpha=alpha,
        design=design,
        baseline_cases=len(base.rates),
        baseline_k=k_base,
        baseline_mean=float(np.mean(base.rates)),
        within=base.within,
        between=base.between,
    )
    for k in ks:
        n = cases_needed(base, delta, k, target, alpha, design)
        plan.table.append(
            {
                "k": k,
                "cases": n,
                "samples_per_arm": n * k,
                "enough_cases_in_baseline": n <= len(base.rates),
                "approximate": n < FEW_CASES,
            }
        )
    plan.current_power = power(base, delta, len(base.rates), k_base, alpha, design)
    plan.current_detectable_delta = detectable_delta(
        base, len(base.rates), k_base, target, alpha, design
    )
    return plan


def format_plan(plan: Plan) -> str:
    lines = [
        f"baseline: {plan.baseline_cases} cases x k={plan.baseline_k}, mean success "
        f"{plan.baseline_mean:.3f}; within-case p(1-p) {plan.within:.4f}, between-case "
        f"variance {plan.between:.4f}",
        f"to detect a change of {plan.delta:+.3f} in mean success with power {plan.power:.2f} "
        f"at alpha {plan.alpha:g} ({plan.design} design: "
        + ("the same cases in both runs" if plan.design == "paired" else "different cases")
        + "):",
        "",
        "| samples per case (k) | cases needed | samples per run |",
        "|---:|---:|---:|",
    ]
    for row in plan.table:
        mark = "" if row["enough_cases_in_baseline"] else " (more cases than the baseline has)"
        if row["approximate"]:
            mark += f" (fewer than {FEW_CASES} cases: approximate)"
        lines.append(f"| {row['k']} | {row['cases']}{mark} | {row['samples_per_arm']} |")
    detectable = plan.current_detectable_delta
    lines += [
        "",
        f"this baseline's own size ({plan.baseline_cases} cases x k={plan.baseline_k}) has power "
        f"{plan.current_power:.2f} for {plan.delta:+.3f}; "
        + (
            f"it detects a rise of {detectable:.3f} with power {plan.power:.2f}."
            if math.isfinite(detectable)
            else f"no rise up to a mean of 1 reaches power {plan.power:.2f} at this size."
        ),
    ]
    if plan.baseline_cases < FEW_CASES:
        lines.append(
            f"note: the baseline has only {plan.baseline_cases} cases; its between-case "
            "variance, and so this table, is a rough estimate."
        )
    return "\n".join(lines)
