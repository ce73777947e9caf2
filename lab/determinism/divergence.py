"""Token- and logprob-level comparison of two generations of the same prompt.

Text rarely moves at this model size on the CPU, so the comparison reports logprob
differences over the common token prefix as well as the first divergent token (index, both
tokens, and the top-1/top-2 logprob gap of the reference there: a small gap means a near-tie
that a tiny numerical perturbation could flip).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lab.backends.base import Generation


@dataclass
class Divergence:
    """How generation `other` differs from `reference`."""

    tokens_equal: bool
    #: index of the first differing output token (None when the outputs are equal)
    first_divergence: int | None
    #: tokens at that index in reference / other (None past the end)
    reference_token: int | None
    other_token: int | None
    reference_logprob: float | None
    other_logprob: float | None
    #: reference's top-1 minus top-2 logprob at the divergence (None if unknown)
    reference_top_gap: float | None
    #: number of leading tokens both share
    common_prefix: int
    #: over the common prefix: the chosen-token logprob differences
    max_abs_logprob_delta: float
    mean_abs_logprob_delta: float
    #: positions in the common prefix whose logprob differs at all (bitwise)
    positions_logprob_differs: int
    length_reference: int
    length_other: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def top_gap_of(logprobs: Sequence[float]) -> float | None:
    """top-1 minus top-2 logprob of one step's recorded alternatives (best first); None with
    fewer than two. The lab's one definition of the gap (the margin of agent trajectories,
    lab.agents.divergence, and fragility's step gaps are this)."""
    if len(logprobs) < 2:
        return None
    return float(logprobs[0]) - float(logprobs[1])


def top_gap(generation: Generation, index: int) -> float | None:
    """top-1 minus top-2 logprob at one step, from the stored alternatives (top_gap_of)."""
    if index >= len(generation.top_logprobs):
        return None
    return top_gap_of([alt.logprob for alt in generation.top_logprobs[index]])


def compare(reference: Generation, other: Generation) -> Divergence:
    """Compare two generations of the same prompt token by token."""
    a, b = reference.output_token_ids, other.output_token_ids
    common = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        common += 1
    tokens_equal = a == b
    # When one output is a strict prefix of the other, they diverge where the shorter ends.
    first = None if tokens_equal else common
    deltas = [
        abs(reference.token_logprobs[i] - other.token_logprobs[i])
        for i in range(min(common, len(reference.token_logprobs), len(other.token_logprobs)))
    ]
    return Divergence(
        tokens_equal=tokens_equal,
        first_divergence=first,
        reference_token=a[first] if first is not None and first < len(a) else None,
        other_token=b[first] if first is not None and first < len(b) else None,
        reference_logprob=(
            reference.token_logprobs[first]
            if first is not None and first < len(reference.token_logprobs)
            else None
        ),
        other_logprob=(
            other.token_logprobs[first]
            if first is not None and first < len(other.token_logprobs)
            else None
        ),
        reference_top_gap=top_gap(reference, first) if first is not None else None,
        common_prefix=common,
        max_abs_logprob_delta=max(deltas, default=0.0),
        mean_abs_logprob_delta=sum(deltas) / len(deltas) if deltas else 0.0,
        positions_logprob_differs=sum(1 for d in deltas if d != 0.0),
        length_reference=len(a),
        length_other=len(b),
    )


def min_top_gap(generation: Generation) -> float | None:
    """The smallest top-1/top-2 gap along a generation's path: its nearest near-tie."""
    gaps = (top_gap(generation, i) for i in range(len(generation.top_logprobs)))
    return min((g for g in gaps if g is not None), default=None)
