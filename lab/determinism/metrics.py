"""Determinism metrics over a finished (or partial) sweep.

Definitions (all per target prompt, then aggregated):
- unique completions: distinct output token sequences over every ok cell and repeat; the share
  of the most common one.
- TARr@N (Atil et al., arXiv 2408.04667): share of targets whose N raw outputs are identical
  (N = outputs per target: ok cells x copies per cell; the smallest count if targets differ).
  TARa@N: the same on parsed answers; a parse failure counts as disagreement. Answers are
  the first group (or whole match) of the prompt's / config's answer_regex, else the whole
  text, normalized as every check's answer is (lab.cases.checks.normalize_answer).
- per cell against the reference cell: first divergent token, both tokens and logprobs, the
  reference's top-1/top-2 gap there, max / mean |delta logprob| over the common prefix.
- Avg_Std@Output_Length: mean over targets of the std of output length across cells.
- Std@Acc: std (ddof=1) across cells of per-cell accuracy (targets with `expected`); best /
  worst possible accuracy: share of targets correct in at least one / in every cell.
- attribution: for each swept axis, over the cells that differ from the reference only in that
  axis, the share of targets whose tokens change (and whose logprobs change at all); "repeat"
  does the same for re-running the reference cell unchanged.
- pairs: each axis with everything else fixed, every cell against its partner at the axis's
  first value (lab.determinism.pairs): e.g. TP 3 vs 1 at bf16 as well as at fp32.
- identical mode, within each cell: unique completions among the copies of a prompt, the
  modal completion's share, and where each other copy first diverges from the mode.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.backends.base import Generation
from lab.cases.checks import normalize_answer
from lab.determinism.cells import base_id, cell_of, outputs_of
from lab.determinism.config import SweepConfig
from lab.determinism.divergence import compare
from lab.determinism.grid import Cell, differs_only_in, reference_cell, varying_axes
from lab.determinism.hardware import hardware_summary
from lab.determinism.modes import target_prompts
from lab.determinism.pairs import axis_pairs


def parse_answer(text: str, regex: str | None) -> str | None:
    """The answer in an output; None when the regex finds nothing (a parse failure)."""
    if regex is None:
        return normalize_answer(text) or None
    match = re.search(regex, text, flags=re.DOTALL)
    if match is None:
        return None
    return normalize_answer(match.group(1) if match.groups() else match.group(0))


def tar(values_per_target: list[list[Any]]) -> float | None:
    """Share of targets whose values all agree; None counts as disagreement."""
    scored = [v for v in values_per_target if v]
    if not scored:
        return None
    agree = sum(1 for v in scored if None not in v and len(set(v)) == 1)
    return agree / len(scored)


@dataclass
class SweepMetrics:
    summary: dict[str, Any]
    per_target: list[dict[str, Any]]
    per_cell: list[dict[str, Any]]
    attribution: list[dict[str, Any]]
    divergences: list[dict[str, Any]]
    failed_cells: list[dict[str, Any]]
    within_cell: list[dict[str, Any]]
    #: each axis with everything else fixed (lab.determinism.pairs)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    #: where the cells ran, and a warning when compared cells ran on unlike hardware
    #: (lab.determinism.hardware)
    hardware: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


MAX_DIVERGENCE_EXAMPLES = 200


def compute_metrics(
    config: SweepConfig,
    entries: list[dict[str, Any]],
    context: int,
    decode: Callable[[list[int]], str] | None = None,
) -> SweepMetrics:
    """All metrics from the stored cells. `decode` turns token ids into text for the
    side-by-side continuations (omitted: continuations show token ids).

    Every output of a target is compared with the reference cell's first output of it."""
    targets = target_prompts(config, context)
    ok = [e for e in entries if e["status"] == "ok"]
    failed = [
        {"cell": e["cell"], "repeat": e["repeat"], "error": e["error"]}
        for e in entries
        if e["status"] != "ok"
    ]
    varying = varying_axes(config)
    ref_cell = reference_cell(config)
    by_key = {cell_of(e).key(): e for e in ok}
    reference = by_key.get(ref_cell.key()) or (ok[0] if ok else None)
    reference_note = (
        "reference cell"
        if reference is not None and ref_cell.key() in by_key
        else "reference cell failed or missing; first ok cell used"
    )
    target_ids = [p.id for p in targets]
    regex_of = {p.id: p.answer_regex or config.answer_regex for p in targets}
    expected_of = {p.id: p.expected for p in targets}
    ref_outputs = {
        tid: gens[0] for tid in target_ids if reference and (gens := outputs_of(reference, tid))
    }

    def correct(g: Generation, tid: str) -> bool:
        return parse_answer(g.text, regex_of[tid]) == normalize_answer(expected_of[tid] or "")

    per_target: list[dict[str, Any]] = []
    raw_all: list[list[Any]] = []
    parsed_all: list[list[Any]] = []
    best = worst = scored = 0
    for tid in target_ids:
        gens = [g for e in ok for g in outputs_of(e, tid)]
        seqs = [tuple(g.output_token_ids) for g in gens]
        counts = Counter(seqs)
        answers = [parse_answer(g.text, regex_of[tid]) for g in gens]
        raw_all.append(seqs)
        parsed_all.append(answers)
        lengths = [len(q) for q in seqs]
        per_target.append(
            {
                "target": tid,
                "outputs": len(seqs),
                "unique_completions": len(counts),
                "mode_share": max(counts.values()) / len(seqs) if seqs else None,
                "unique_answers": len(set(answers)),
                "length_std": statistics.pstdev(lengths) if len(lengths) > 1 else 0.0,
            }
        )
        if expected_of[tid] is not None and gens:
            results = [correct(g, tid) for g in gens]
            scored += 1
            best += any(results)
            worst += all(results)

    per_cell: list[dict[str, Any]] = []
    divergences: list[dict[str, Any]] = []
    for e in ok:
        cell = cell_of(e)
        label = cell.label(varying)
        row: dict[str, Any] = {
            "cell": label,
            "axes": e["cell"],
            "repeat": e["repeat"],
            **e.get("timings", {}),
        }
        diffs = []
        graded = []
        for tid in target_ids:
            gens = outputs_of(e, tid)
            if expected_of[tid] is not None:
                graded += [correct(g, tid) for g in gens]
            if tid not in ref_outputs:
                continue
            for g in gens:
                d = compare(ref_outputs[tid], g)
                diffs.append(d)
                if not d.tokens_equal and len(divergences) < MAX_DIVERGENCE_EXAMPLES:
                    divergences.append(
                        _divergence_example(tid, label, ref_outputs[tid], g, d.to_dict(), decode)
                    )
        row |= {
            "outputs_compared": len(diffs),
            "tokens_differ": sum(1 for d in diffs if not d.tokens_equal),
            "logprobs_differ": sum(1 for d in diffs if d.positions_logprob_differs),
            "max_abs_logprob_delta": max((d.max_abs_logprob_delta for d in diffs), default=0.0),
            "mean_abs_logprob_delta": (
                statistics.fmean(d.mean_abs_logprob_delta for d in diffs) if diffs else 0.0
            ),
            "first_divergences": [
                d.first_divergence for d in diffs if d.first_divergence is not None
            ],
        }
        if graded:
            row["accuracy"] = sum(graded) / len(graded)
        per_cell.append(row)

    accuracies = [r["accuracy"] for r in per_cell if "accuracy" in r]
    summary: dict[str, Any] = {
        "mode": config.mode,
        "cells_total": len(entries),
        "cells_ok": len(ok),
        "cells_failed": len(failed),
        "targets": len(target_ids),
        "outputs": sum(t["outputs"] for t in per_target),
        "reference": reference_note,
        # N of TARr@N is the outputs each target's agreement is over (Atil et al.: N runs);
        # identical mode has several copies per cell, so it is not the number of cells.
        "N": min((t["outputs"] for t in per_target if t["outputs"]), default=0),
        "TARr@N": tar(raw_all),
        "TARa@N": tar(parsed_all),
        # an unparsable answer counts as disagreement in TARa@N: how many prompts have one
        "targets_with_unparsed_answers": sum(1 for a in parsed_all if any(x is None for x in a)),
        "targets_with_one_completion": sum(1 for t in per_target if t["unique_completions"] == 1),
        "max_unique_completions": max((t["unique_completions"] for t in per_target), default=0),
        "avg_std_output_length": (
            statistics.fmean(t["length_std"] for t in per_target) if per_target else 0.0
        ),
        "divergent_outputs": sum(r["tokens_differ"] for r in per_cell),
        "outputs_with_logprob_differences": sum(r["logprobs_differ"] for r in per_cell),
        "max_abs_logprob_delta": max((r["max_abs_logprob_delta"] for r in per_cell), default=0.0),
    }
    if accuracies:
        summary["accuracy_mean"] = statistics.fmean(accuracies)
        summary["std_at_acc"] = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        summary["best_possible_accuracy"] = best / scored if scored else None
        summary["worst_possible_accuracy"] = worst / scored if scored else None
    attribution = _attribution(ok, target_ids, ref_cell, varying, ref_outputs, by_key)

    return SweepMetrics(
        summary,
        per_target,
        per_cell,
        attribution,
        divergences,
        failed,
        _within_cells(config, ok, varying),
        axis_pairs(config, entries),
        hardware_summary(entries),
    )


def _divergence_example(
    tid: str,
    label: str,
    ref: Generation,
    other: Generation,
    d: dict[str, Any],
    decode: Callable[[list[int]], str] | None,
) -> dict[str, Any]:
    at = d["first_divergence"]
    before = max(0, at - 8)

    def show(ids: list[int]) -> str | list[int]:
        return decode(ids) if decode is not None else ids

    return {
        "target": tid,
        "cell": label,
        "first_divergence": at,
        "reference_top_gap": d["reference_top_gap"],
        "reference_logprob": d["reference_logprob"],
        "other_logprob": d["other_logprob"],
        "context": show(ref.output_token_ids[before:at]),
        "reference_continuation": show(ref.output_token_ids[at : at + 24]),
        "other_continuation": show(other.output_token_ids[at : at + 24]),
    }


def _attribution(
    ok: list[dict[str, Any]],
    target_ids: list[str],
    ref_cell: Cell,
    varying: list[str],
    ref_outputs: dict[str, Generation],
    by_key: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    if ref_cell.key() not in by_key:
        return []
    candidates: list[tuple[str, list[dict[str, Any]]]] = [
        (axis, [e for e in ok if differs_only_in(cell_of(e), ref_cell, axis)]) for axis in varying
    ]
    repeats = [e for e in ok if cell_of(e).values == ref_cell.values and e["repeat"] > 0]
    if repeats:
        candidates.append(("repeat", repeats))
    rows = []
    measured = [t for t in target_ids if t in ref_outputs]
    for axis, cells in candidates:
        if not cells:
            continue
        token_changed = logprob_changed = 0
        for tid in measured:
            diffs = [compare(ref_outputs[tid], g) for e in cells for g in outputs_of(e, tid)]
            token_changed += any(not d.tokens_equal for d in diffs)
            logprob_changed += any(d.positions_logprob_differs > 0 for d in diffs)
        n = len(measured)
        rows.append(
            {
                "axis": axis,
                "values": sorted(
                    {str(e["repeat"]) if axis == "repeat" else str(e["cell"][axis]) for e in cells}
                ),
                "cells": len(cells),
                "tokens_change_share": token_changed / n if n else None,
                "logprobs_change_share": logprob_changed / n if n else None,
            }
        )
    return rows


def _within_cells(
    config: SweepConfig, ok: list[dict[str, Any]], varying: list[str]
) -> list[dict[str, Any]]:
    """Identical mode: agreement among the copies of each prompt inside each cell."""
    if config.mode != "identical":
        return []
    rows = []
    for e in ok:
        for base in sorted({base_id(o) for o in e["outputs"]}):
            gens = outputs_of(e, base)
            counts = Counter(tuple(g.output_token_ids) for g in gens)
            modal_seq = counts.most_common(1)[0][0]
            modal = next(g for g in gens if tuple(g.output_token_ids) == modal_seq)
            positions = [
                compare(modal, g).first_divergence
                for g in gens
                if tuple(g.output_token_ids) != modal_seq
            ]
            rows.append(
                {
                    "cell": cell_of(e).label(varying),
                    "prompt": base,
                    "copies": len(gens),
                    "unique_completions": len(counts),
                    "mode_count": counts[modal_seq],
                    "first_divergences": positions,
                }
            )
    return rows
