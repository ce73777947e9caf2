"""Each axis with everything else fixed: every cell against its partner that differs only in
that axis (at the axis's first value), not only against the one reference cell.

The attribution table compares cells with the reference cell, so in a dtype x TP grid the TP
effect is measured at the reference dtype only, and a bf16 TP=3 cell mixes the dtype and the
TP effect. Here "TP 3 vs TP 1" is measured at fp32 and at bf16, at batch 1 and at batch 8, each
pair on its own (the same prompts, the same other settings): tokens that differ, logprobs that
differ at all, the largest |delta logprob| over the common prefix, first divergences.

    rows = axis_pairs(config, entries)   # lab.report.sweep_report shows them

`axis_partners` is the pairing alone, for any record kept per cell: the agent sweep report
(lab.agents.sweepreport) pairs its cells' trajectories with it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from lab.determinism.cells import base_id, cell_of, outputs_of
from lab.determinism.divergence import compare
from lab.determinism.grid import Cell, varying_axes

if TYPE_CHECKING:
    from lab.determinism.config import SweepConfig

T = TypeVar("T")


def axis_partners(
    config: SweepConfig, cells: Sequence[tuple[Cell, T]]
) -> Iterator[tuple[str, tuple[Cell, T], tuple[Cell, T]]]:
    """(axis, partner, cell) for each varying axis and each cell whose value on that axis is
    not the first: the partner is the cell with the axis at its first value and every other
    axis (and the repeat) equal. Cells without a partner among `cells` are left out; order:
    axis by axis, then the cells' own order."""
    by_key = {cell.key(): (cell, item) for cell, item in cells}
    for axis in varying_axes(config):
        base_value = config.axes[axis][0]
        for cell, item in cells:
            if cell.axes[axis] == base_value:
                continue
            partner_values = tuple((k, base_value if k == axis else v) for k, v in cell.values)
            partner = by_key.get(Cell(partner_values, cell.repeat).key())
            if partner is not None:
                yield axis, partner, (cell, item)


def partner_pairs(
    config: SweepConfig, entries: list[dict[str, Any]]
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(axis, partner, entry) for each finished cell whose value on a varying axis is not the
    first, with the finished cell that has that axis at its first value and every other axis
    (and the repeat) equal; in axis order, then log order. `lab explain` picks its pair here."""
    ok = [e for e in entries if e.get("status") == "ok"]
    for axis, (_, partner), (_, entry) in axis_partners(config, [(cell_of(e), e) for e in ok]):
        yield axis, partner, entry


def axis_pairs(config: SweepConfig, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (axis, cell whose value on that axis is not the first): that cell against
    the cell with the axis at its first value and every other axis (and the repeat) equal."""
    ok = [e for e in entries if e.get("status") == "ok"]
    varying = varying_axes(config)
    rows = []
    for axis, (_, partner), (cell, entry) in axis_partners(config, [(cell_of(e), e) for e in ok]):
        fixed = [a for a in varying if a != axis]
        compared = tokens_differ = logprobs_differ = 0
        max_delta = 0.0
        firsts: list[int] = []
        for target in dict.fromkeys(base_id(o) for o in partner["outputs"]):
            reference = outputs_of(partner, target)
            if not reference:
                continue
            for other in outputs_of(entry, target):
                d = compare(reference[0], other)
                compared += 1
                tokens_differ += not d.tokens_equal
                logprobs_differ += d.positions_logprob_differs > 0
                max_delta = max(max_delta, d.max_abs_logprob_delta)
                if d.first_divergence is not None:
                    firsts.append(d.first_divergence)
        rows.append(
            {
                "axis": axis,
                "value": str(cell.axes[axis]),
                "against": str(config.axes[axis][0]),
                "fixed": ", ".join(f"{a}={cell.axes[a]}" for a in fixed) or "-",
                "repeat": cell.repeat,
                "outputs_compared": compared,
                "tokens_differ": tokens_differ,
                "logprobs_differ": logprobs_differ,
                "max_abs_logprob_delta": max_delta,
                "first_divergences": sorted(firsts),
            }
        )
    return rows
