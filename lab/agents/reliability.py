"""Agent reliability (consistency) as hal-harness's current code computes it, per case over its
k trajectories and per run, every undefined value None with its reason.

Source: princeton-pli/hal-harness, reliability_eval/metrics/consistency.py and
reliability_eval/constants.py (read at commit 16bb03ebc11577fb5ea6dc8bb6c968387085e6aa; the
file last changed in 4e22f10d4ab09e2959b63895faf6a124ab83cf8c). The paper (arXiv 2602.16666)
prints other forms; the code's are these:

- outcome consistency (compute_outcome_consistency): (2p - 1)^2, p the case's success rate
  over its k trajectories; undefined for k < 2. The unanimity form beside it in the report
  (lab.agents.metrics.outcome_consistency: 1 - s^2 / (p(1-p)), ddof 1, clipped) is the
  paper's Definition 3.1 as printed, which with 0/1 outcomes is 1 when all k agree, else 0.
- trajectory distribution consistency (compute_trajectory_consistency_conditioned, "C_traj^+"):
  over the case's *successful* trajectories with at least one action, each trajectory's
  action-frequency distribution (what actions, not their order); 1 - the mean pairwise
  Jensen-Shannon divergence (base 2, scipy's jensenshannon squared); undefined with fewer than
  2 such trajectories.
- trajectory sequence consistency (compute_sequence_consistency): over the same successful
  non-empty trajectories, the mean pairwise 1 - Levenshtein(a, b) / max(len a, len b) of the
  action-name sequences (the order); undefined with fewer than 2.
- the same two over all k trajectories (`*_all`): hal-harness's per-level breakdown
  (metrics/agent.py) passes all-ones successes to get them; a small model that rarely succeeds
  leaves the success-conditioned forms undefined, these not.
- resource consistency (compute_resource_consistency): exp(-mean CV) over the resource kinds
  whose CV is defined, each CV = std (ddof 1) / mean over the trajectories whose value is
  positive (hal-harness drops zeros: a trajectory without a tool call leaves the calls CV), so
  a kind needs 2 positive values. Kinds here: output tokens, tool calls, turns (model steps);
  hal-harness's cost, time and latency have no stable meaning on a shared CPU.
- R_con (compute_weighted_r_con): the weighted mean of C_out, C_traj and C_res with weights
  1/3 each (constants W_OUTCOME, W_TRAJECTORY, W_RESOURCE), C_traj the mean of the defined
  trajectory forms (distribution, sequence; success-conditioned, as hal-harness), weights
  renormalized over the defined parts; computed from the run-level means as hal-harness does
  from the agent-level ones.

An action name is one per tool call (its name, arguments left out), or the step's kind for a
step without a call (answer, malformed, error). Run-level values are the mean over the cases
where the value is defined, with how many are undefined and why.

    case = case_reliability(trajectories, passed)      # lab.agents.records.Trajectory
    run = run_reliability([case, ...])
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from typing import Any, Final

import numpy as np

from lab.agents.metrics import jensen_shannon, outcome_consistency_graded

#: hal-harness constants.py: each conceptual aspect weighs a third
WEIGHTS: Final = {"outcome": 1 / 3, "trajectory": 1 / 3, "resource": 1 / 3}
#: the values run_reliability aggregates, in report order
METRICS: Final = (
    "outcome",
    "trajectory_distribution",
    "trajectory_sequence",
    "trajectory_distribution_all",
    "trajectory_sequence_all",
    "resource",
)
RESOURCES: Final = ("tokens", "calls", "turns")


def action_names(trajectory: Any) -> list[str]:
    """One name per tool call, or the step's kind for a step without one (module docstring)."""
    out: list[str] = []
    for step in trajectory.steps:
        out += [c.name for c in step.calls] if step.calls else [step.kind]
    return out


def levenshtein(a: Sequence[str], b: Sequence[str]) -> int:
    """Edit distance (insertions, deletions, substitutions each cost 1)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        row = [i]
        for j, y in enumerate(b, start=1):
            row.append(min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = row
    return prev[-1]


def _frequencies(names: Sequence[str]) -> dict[str, float]:
    return {name: n / len(names) for name, n in Counter(names).items()}


def distribution_consistency(trajectories: Sequence[Sequence[str]]) -> float | None:
    """1 - mean pairwise JS divergence of action frequencies; None with fewer than 2."""
    kept = [t for t in trajectories if t]
    if len(kept) < 2:
        return None
    js = [jensen_shannon(_frequencies(a), _frequencies(b)) for a, b in combinations(kept, 2)]
    return 1.0 - float(np.mean(js))


def sequence_consistency(trajectories: Sequence[Sequence[str]]) -> float | None:
    """Mean pairwise 1 - edit distance / longer length; None with fewer than 2."""
    kept = [t for t in trajectories if t]
    if len(kept) < 2:
        return None
    sims = [1.0 - levenshtein(a, b) / max(len(a), len(b)) for a, b in combinations(kept, 2)]
    return float(np.mean(sims))


def resource_cv(values: Sequence[float]) -> float | None:
    """CV over the positive values (hal-harness drops zeros); None with fewer than 2."""
    kept = [float(v) for v in values if v > 0]
    if len(kept) < 2:
        return None
    return float(np.std(kept, ddof=1) / np.mean(kept))


def case_reliability(trajectories: Sequence[Any], passed: Sequence[bool]) -> dict[str, Any]:
    """Every HAL consistency value of one case, and why each undefined one is."""
    k = len(trajectories)
    names = [action_names(t) for t in trajectories]
    wins = [n for n, ok in zip(names, passed, strict=True) if ok]
    nonempty_wins = sum(1 for n in wins if n)
    values: dict[str, float | None] = {
        "outcome": outcome_consistency_graded(list(passed)),
        "trajectory_distribution": distribution_consistency(wins),
        "trajectory_sequence": sequence_consistency(wins),
        "trajectory_distribution_all": distribution_consistency(names),
        "trajectory_sequence_all": sequence_consistency(names),
    }
    undefined: dict[str, str] = {}
    if values["outcome"] is None:
        undefined["outcome"] = "k < 2"
    for key in ("trajectory_distribution", "trajectory_sequence"):
        if values[key] is None:
            undefined[key] = (
                f"fewer than 2 successful trajectories with an action ({nonempty_wins})"
            )
    for key in ("trajectory_distribution_all", "trajectory_sequence_all"):
        if values[key] is None:
            undefined[key] = "fewer than 2 trajectories with an action"
    columns = {
        "tokens": [t.tokens_out for t in trajectories],
        "calls": [len(t.calls()) for t in trajectories],
        "turns": [len(t.steps) for t in trajectories],
    }
    cvs = {kind: resource_cv(columns[kind]) for kind in RESOURCES}
    defined = [v for v in cvs.values() if v is not None]
    values["resource"] = math.exp(-float(np.mean(defined))) if defined else None
    for kind, value in cvs.items():
        if value is None:
            positive = sum(1 for v in columns[kind] if v > 0)
            undefined[f"cv_{kind}"] = f"fewer than 2 trajectories with {kind} > 0 ({positive})"
    if values["resource"] is None:
        undefined["resource"] = "no resource CV defined"
    return {**values, "cv": cvs, "k": k, "undefined": undefined}


def _reason_key(reason: str) -> str:
    """A reason without its per-case count, so the run can tally it."""
    return reason.split(" (", 1)[0]


def r_con(outcome: float | None, distribution: float | None, sequence: float | None,
          resource: float | None) -> tuple[float | None, list[str]]:  # fmt: skip
    """hal-harness compute_weighted_r_con: weighted mean over the defined parts; and which
    parts those were."""
    forms = [v for v in (distribution, sequence) if v is not None]
    parts = {
        "outcome": outcome,
        "trajectory": float(np.mean(forms)) if forms else None,
        "resource": resource,
    }
    kept = {name: v for name, v in parts.items() if v is not None}
    if not kept:
        return None, []
    total = sum(WEIGHTS[name] for name in kept)
    return sum(WEIGHTS[name] / total * v for name, v in kept.items()), list(kept)


def run_reliability(cases: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per value: the mean over the cases where it is defined, how many are not and why; and
    R_con from those means."""
    out: dict[str, Any] = {}
    for key in (*METRICS, *(f"cv_{kind}" for kind in RESOURCES)):
        got = [c["cv"][key[3:]] if key.startswith("cv_") else c[key] for c in cases]
        kept = [v for v in got if v is not None]
        reasons = Counter(_reason_key(c["undefined"][key]) for c in cases if key in c["undefined"])
        out[key] = {
            "value": float(np.mean(kept)) if kept else None,
            "cases": len(kept),
            "undefined": len(got) - len(kept),
            "reasons": dict(reasons),
        }
    value, parts = r_con(*(out[k]["value"] for k in (
        "outcome", "trajectory_distribution", "trajectory_sequence", "resource")))  # fmt: skip
    out["r_con"] = {"value": value, "parts": parts, "weights": dict(WEIGHTS)}
    return out
