"""The launch gate: thresholds on a run's headline numbers; `lab sample --gate` exits 1 on a miss.

from lab.variance.gate import evaluate_gate, judge
reasons = evaluate_gate(metrics["headline"], GateConfig(min_p5=0.2))   # [] = pass
verdict = judge(metrics["headline"], GateConfig(min_p5=0.2))   # GateVerdict: metrics.json's gate

`GateVerdict` is the verdict both n-of-k reports (lab.variance.report, lab.agents.report) put
in metrics.json and every caller reads (lab sample's exit code, lab library run's floor, the
quickstart): one type, so no caller spells the dict's keys.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from lab.errors import LabError
from lab.variance.config import GateConfig


@dataclasses.dataclass(frozen=True)
class GateVerdict:
    """A run's gate: the thresholds set (unset ones left out), whether it passed, and why not."""

    thresholds: dict[str, float]
    passed: bool
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """metrics.json's "gate" block."""
        return {"thresholds": dict(self.thresholds), "passed": self.passed,
                "reasons": list(self.reasons)}  # fmt: skip

    @classmethod
    def from_json(cls, data: Any, where: str) -> GateVerdict:
        """metrics.json's "gate" block read back; `where` names the file in the error."""
        if not isinstance(data, dict) or not isinstance(data.get("passed"), bool):
            raise LabError(f"{where}: gate: expected an object with passed true/false")
        reasons = data.get("reasons") or []
        thresholds = data.get("thresholds") or {}
        if not isinstance(reasons, list) or not isinstance(thresholds, dict):
            raise LabError(f"{where}: gate: reasons must be a list, thresholds an object")
        return cls(dict(thresholds), data["passed"], tuple(str(r) for r in reasons))


def judge(headline: dict[str, Any], gate: GateConfig) -> GateVerdict:
    """The gate's verdict on a run's headline (evaluate_gate's reasons, and the thresholds)."""
    thresholds = {k: v for k, v in dataclasses.asdict(gate).items() if v is not None}
    reasons = evaluate_gate(headline, gate)
    return GateVerdict(thresholds, not reasons, tuple(reasons))


def _num(value: Any) -> float:
    """metrics.json spells inf as "inf" and NaN as null."""
    if value is None:
        return math.nan
    return float(value)


def evaluate_gate(headline: dict[str, Any], gate: GateConfig) -> list[str]:
    """Reasons the run falls short (empty when it passes). A NaN metric fails its threshold."""
    reasons = []
    mean, p5 = _num(headline.get("mean")), _num(headline.get("p5"))
    ratio, pass_hat = _num(headline.get("mean_over_p5")), _num(headline.get("pass^k"))
    if gate.min_mean is not None and not mean >= gate.min_mean:
        reasons.append(f"mean success {mean:.3f} < min_mean {gate.min_mean:g}")
    if gate.min_p5 is not None and not p5 >= gate.min_p5:
        reasons.append(f"p5 of per-case success {p5:.3f} < min_p5 {gate.min_p5:g}")
    if gate.max_mean_over_p5 is not None and not ratio <= gate.max_mean_over_p5:
        shown = "unbounded (p5 is 0)" if math.isinf(ratio) else f"= {ratio:.3g}"
        if math.isnan(ratio):
            shown = "undefined (no case passes)"
        reasons.append(f"mean / p5 {shown} > max_mean_over_p5 {gate.max_mean_over_p5:g}")
    if gate.min_pass_hat_k is not None and not pass_hat >= gate.min_pass_hat_k:
        reasons.append(f"pass^k {pass_hat:.3f} < min_pass_hat_k {gate.min_pass_hat_k:g}")
    wrong = _num(headline.get("consistent_wrong_share"))
    if gate.max_consistent_wrong is not None and not wrong <= gate.max_consistent_wrong:
        count = headline.get("consistent_wrong")
        shown = "undefined" if math.isnan(wrong) else f"{wrong:.3f} ({count} cases)"
        reasons.append(
            f"consistent-wrong share {shown} > max_consistent_wrong {gate.max_consistent_wrong:g}"
        )
    return reasons
