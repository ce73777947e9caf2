"""Agent metrics over the k trajectories of a case, each with its source.

- action sequence: one action per step (`tool{canonical JSON arguments}` per call, `answer`,
  `malformed`, `error`), plus `max_turns` / `error` when it ended so. Distinct action
  sequences per case: arXiv 2602.11619 (2.0-4.2 per 10 runs on HotpotQA ReAct agents).
- first divergent step: the first step (1-based) at which the k action sequences are not all
  equal (a sequence that already ended counts as `<end>` there); None when they never part.
  arXiv 2602.11619 finds 69% of divergence at step 2; the report histograms it over cases.
- tool-choice agreement: the share of trajectory pairs whose tool-name sequences (arguments
  left out) are equal; argument agreement: among those pairs, the share whose full action
  sequences (arguments included) are equal too. In the spirit of arXiv 2605.28840's
  "structural consistency, parametric variance" (its TSS / AC definitions are its own).
- outcome consistency (HAL reliability, arXiv 2602.16666, Definition 3.1):
  C_out = 1 - s^2 / (p(1 - p)), s^2 the sample variance (ddof 1) of the k outcomes, p their
  mean, clipped to [0, 1], 1 when p is 0 or 1. With 0/1 outcomes s^2 = k/(k-1) p(1-p), so it
  is 1 when all k agree and 0 otherwise (hal-harness calls that a unanimity indicator); the
  graded form hal-harness adopted later, (2p - 1)^2 = 1 - p(1-p)/0.25, is reported beside it
  (hal-harness's trajectory, resource and R_con consistency: lab.agents.reliability).
- CV of trajectory length (steps) and of output tokens: sample std (ddof 1) / mean over the
  k trajectories (None for a zero mean). The run's CV of success across the k runs (arXiv
  2603.25764: 15% to 47%) is lab.variance.stats.coefficient_of_variation of the run rates.
- Jensen-Shannon divergence of two runs' action-sequence distributions of a case (lab
  compare), base 2, in [0, 1]: JS(P, Q) = (KL(P || M) + KL(Q || M)) / 2, M = (P + Q) / 2.

    from lab.agents.metrics import case_metrics, jensen_shannon
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np

END = "<end>"
SEPARATOR = " > "


def sequence_text(actions: Sequence[str]) -> str:
    """An action sequence as one line (how distributions are keyed in reports and Parquet)."""
    return SEPARATOR.join(actions)


def first_divergence(sequences: Sequence[Sequence[str]]) -> int | None:
    """The first 1-based step at which the sequences are not all equal; None if never."""
    if len(sequences) < 2:
        return None
    longest = max(len(s) for s in sequences)
    for step in range(longest):
        seen = {s[step] if step < len(s) else END for s in sequences}
        if len(seen) > 1:
            return step + 1
    return None


def pairwise_agreement(
    tools: Sequence[Sequence[str]], actions: Sequence[Sequence[str]]
) -> tuple[float | None, float | None]:
    """(tool-choice agreement, argument agreement) over all pairs (module docstring)."""
    pairs = list(combinations(range(len(tools)), 2))
    if not pairs:
        return None, None
    same_tools = [(i, j) for i, j in pairs if tuple(tools[i]) == tuple(tools[j])]
    tool_agreement = len(same_tools) / len(pairs)
    if not same_tools:
        return tool_agreement, None
    same_args = sum(tuple(actions[i]) == tuple(actions[j]) for i, j in same_tools)
    return tool_agreement, same_args / len(same_tools)


def cv(values: Sequence[float]) -> float | None:
    """Sample std (ddof 1) / mean; None with fewer than 2 values or a zero mean."""
    if len(values) < 2:
        return None
    mean = float(np.mean(values))
    if mean == 0:
        return None
    return float(np.std(values, ddof=1) / mean)


def outcome_consistency(outcomes: Sequence[bool]) -> float | None:
    """HAL C_out (Definition 3.1, as printed): 1 - s^2/(p(1-p)), clipped; None for k < 2."""
    if len(outcomes) < 2:
        return None
    y = np.asarray(outcomes, dtype=float)
    p = float(y.mean())
    if p in (0.0, 1.0):
        return 1.0
    return float(np.clip(1.0 - float(np.var(y, ddof=1)) / (p * (1 - p)), 0.0, 1.0))


def outcome_consistency_graded(outcomes: Sequence[bool]) -> float | None:
    """(2p - 1)^2: hal-harness's later graded C_out; None for k < 2."""
    if len(outcomes) < 2:
        return None
    p = float(np.mean(np.asarray(outcomes, dtype=float)))
    return (2 * p - 1) ** 2


def distribution(sequences: Sequence[Sequence[str]]) -> dict[str, float]:
    """Share of each action sequence (as text), most frequent first."""
    counts = Counter(sequence_text(s) for s in sequences)
    total = sum(counts.values())
    return {seq: n / total for seq, n in counts.most_common()}


def jensen_shannon(p: dict[str, float], q: dict[str, float]) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two distributions over keys."""
    keys = sorted(set(p) | set(q))  # a fixed summation order: the same bits in every process
    total_p, total_q = sum(p.values()) or 1.0, sum(q.values()) or 1.0
    out = 0.0
    for key in keys:
        a, b = p.get(key, 0.0) / total_p, q.get(key, 0.0) / total_q
        m = (a + b) / 2
        if a > 0:
            out += 0.5 * a * math.log2(a / m)
        if b > 0:
            out += 0.5 * b * math.log2(b / m)
    return min(1.0, max(0.0, out))


def case_metrics(trajectories: list[Any], passed: Sequence[bool]) -> dict[str, Any]:
    """Every per-case agent metric from its k trajectories (lab.agents.records.Trajectory)
    and their verdicts."""
    actions = [t.actions() for t in trajectories]
    tools = [t.tool_sequence() for t in trajectories]
    tool_agreement, argument_agreement = pairwise_agreement(tools, actions)
    counts = Counter(sequence_text(a) for a in actions)
    sequences = []
    for text, n in counts.most_common():
        members = [i for i, a in enumerate(actions) if sequence_text(a) == text]
        sequences.append(
            {
                "sequence": text,
                "count": n,
                "successes": int(sum(bool(passed[i]) for i in members)),
                "samples": members,
            }
        )
    lengths = [len(t.steps) for t in trajectories]
    return {
        "distinct_sequences": len(counts),
        "distinct_tool_sequences": len({tuple(t) for t in tools}),
        "first_divergence": first_divergence(actions),
        "first_tool_divergence": first_divergence(tools),
        "tool_choice_agreement": tool_agreement,
        "argument_agreement": argument_agreement,
        "outcome_consistency": outcome_consistency(list(passed)),
        "outcome_consistency_graded": outcome_consistency_graded(list(passed)),
        "cv_steps": cv(lengths),
        "cv_tokens": cv([t.tokens_out for t in trajectories]),
        "mean_steps": float(np.mean(lengths)) if lengths else None,
        "mean_calls": float(np.mean([len(t.calls()) for t in trajectories])),
        "malformed_steps": sum(s.kind == "malformed" for t in trajectories for s in t.steps),
        "tool_errors": sum(
            c.error is not None for t in trajectories for s in t.steps for c in s.calls
        ),
        "outcomes": dict(Counter(t.outcome for t in trajectories)),
        "sequences": sequences,
    }


def divergence_histogram(firsts: Sequence[int | None]) -> dict[str, int]:
    """Cases by the step where their trajectories first part ("never": they did not)."""
    counts = Counter("never" if f is None else str(f) for f in firsts)
    steps = sorted((k for k in counts if k != "never"), key=int)
    return {k: counts[k] for k in steps} | ({"never": counts["never"]} if "never" in counts else {})


def mean_of(values: Sequence[float | None]) -> float | None:
    """Mean of the defined values (None when none is)."""
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None
