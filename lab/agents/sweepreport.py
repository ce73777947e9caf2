"""The report of an agent sweep (lab.agents.sweep): per case, does each cell's greedy trajectory
equal the reference cell's, and where not, where it parts and what changed.

For every ok cell and every case, against the reference cell (the grid's first), token by
token (lab.agents.divergence.split): identical, or the first step and token where they part,
the token each side chose, its logprob and the top-1/top-2 margin each side had there, and
whether the action at that step differs; and whether the outcome changed: success (the case's
checks), the final answer, the action sequence. Per axis, over the cells that differ from the
reference in that axis only: how many case trajectories part, and at which step (a
histogram). Over all cells: the same, and how many part beyond step 1.

    report = write_agent_sweep_report("runs/agents-sweep")   # lab.determinism.result.SweepReport
    for line in agent_summary_lines(report.metrics): print(line)
"""

from __future__ import annotations

from collections import Counter
from html import escape
from pathlib import Path
from typing import Any

from lab.agents.divergence import smallest_margin, split
from lab.agents.records import Trajectory
from lab.determinism.cells import cell_of
from lab.determinism.config import SweepConfig, read_run_config
from lab.determinism.grid import Cell, differs_only_in, expand, reference_cell, varying_axes
from lab.determinism.pairs import axis_partners
from lab.determinism.result import SweepReport, write_sweep_files
from lab.errors import LabError
from lab.report.page import page
from lab.rundir import CELLS
from lab.store import RunStore

#: what a cell stores beside each trajectory's own fields (lab.agents.sweep)
VERDICT = ("passed", "answer")


def read_config(root: Path) -> SweepConfig:
    return read_run_config(root)


def compare_case(ref: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """One case's trajectory in a cell against the reference cell's."""
    row = split(ref, other)
    a, b = (
        Trajectory.from_dict({k: v for k, v in t.items() if k not in VERDICT}) for t in (ref, other)
    )
    row["passed"] = [bool(ref.get("passed")), bool(other.get("passed"))]
    row["final_answers"] = [a.final_answer, b.final_answer]
    row["success_changed"] = row["passed"][0] != row["passed"][1]
    row["answer_changed"] = a.final_answer != b.final_answer
    row["actions_changed"] = a.actions() != b.actions()
    row["steps"] = [len(a.steps), len(b.steps)]
    return row


def _tally(rows: list[dict[str, Any]]) -> dict[str, Any]:
    parted = [r for r in rows if not r["same"]]
    return {
        "compared": len(rows),
        "parted": len(parted),
        "step_histogram": {
            str(k): v for k, v in sorted(Counter(r["step"] for r in parted).items())
        },
        "beyond_step_1": sum(1 for r in parted if r["step"] > 1),
        "actions_changed": sum(1 for r in rows if r["actions_changed"]),
        "success_changed": sum(1 for r in rows if r["success_changed"]),
        "answers_changed": sum(1 for r in rows if r["answer_changed"]),
    }


def compute_agent_sweep(config: SweepConfig, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's numbers from a sweep's latest cell entries (module docstring)."""
    varying = varying_axes(config)
    reference = reference_cell(config)
    by_key = {cell_of(e).key(): (cell_of(e), e) for e in entries}
    ref_entry = by_key.get(reference.key(), (None, None))[1]
    if ref_entry is not None and ref_entry.get("status") != "ok":
        ref_entry = None
    ref_trajs = (ref_entry or {}).get("trajectories") or {}
    cells: list[dict[str, Any]] = []
    per_axis: dict[str, list[dict[str, Any]]] = {axis: [] for axis in varying}
    all_rows: list[dict[str, Any]] = []
    for key, (cell, entry) in by_key.items():
        ok = entry.get("status") == "ok"
        trajs = entry.get("trajectories") or {}
        row: dict[str, Any] = {
            "label": cell.label(varying),
            "axes": cell.axes,
            "repeat": cell.repeat,
            "reference": key == reference.key(),
            "status": entry.get("status"),
            "error": entry.get("error"),
            "passed": sum(1 for t in trajs.values() if t.get("passed")),
            "trajectories": len(trajs),
            "closest": smallest_margin(list(trajs.values())) if ok else None,
            "timings": entry.get("timings", {}),
        }
        if ok and ref_entry is not None and key != reference.key():
            rows = {c: compare_case(ref_trajs[c], trajs[c]) for c in ref_trajs if c in trajs}
            row["cases"] = rows
            row |= _tally(list(rows.values()))
            same = [r["max_logprob_delta"] for r in rows.values() if r["same"]]
            row["max_logprob_delta_identical"] = max(same, default=None)
            all_rows += rows.values()
            for axis in varying:
                if differs_only_in(cell, reference, axis):
                    per_axis[axis] += rows.values()
        cells.append(row)
    cells.sort(key=lambda r: (not r["reference"], r["label"]))
    failed = sum(1 for r in cells if r["status"] != "ok")
    return {
        "kind": "agent_sweep",
        "reference": reference.label(varying),
        "reference_ok": ref_entry is not None,
        "cases": sorted(ref_trajs),
        "cells": cells,
        "axes": {axis: _tally(rows) for axis, rows in per_axis.items()},
        "axis_pairs": axis_pairs(config, by_key),
        "summary": {
            "cells_total": len(cells),
            "cells_failed": failed,
            "cells_grid": len(expand(config)),
            **_tally(all_rows),
        },
    }


def axis_pairs(
    config: SweepConfig, by_key: dict[str, tuple[Cell, dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """Each axis with everything else fixed: every ok cell holding the axis's first value
    against each ok cell that differs from it in that axis only (bf16 at batch 1 vs bf16 at
    batch 4, not only against the reference), case by case; the pairs are
    lab.determinism.pairs.axis_partners's (one pairing for prompt and agent sweeps)."""
    varying = varying_axes(config)
    ok = [(cell, entry) for cell, entry in by_key.values() if entry.get("status") == "ok"]
    rows: dict[str, list[dict[str, Any]]] = {axis: [] for axis in varying}
    pairs: dict[str, list[dict[str, Any]]] = {axis: [] for axis in varying}
    for axis, (cell, entry), (other, found) in axis_partners(config, ok):
        a, b = entry["trajectories"], found["trajectories"]
        pair = {c: compare_case(a[c], b[c]) for c in a if c in b}
        rows[axis] += pair.values()
        parted = {c: r for c, r in pair.items() if not r["same"]}
        pairs[axis].append(
            {
                "cells": [cell.label(varying), other.label(varying)],
                **_tally(list(pair.values())),
                "parted_cases": parted,
            }
        )
    return {axis: {**_tally(rows[axis]), "pairs": pairs[axis]} for axis in varying}


def hist_text(histogram: dict[str, int]) -> str:
    """{"1": 3, "2": 1} -> "step 1: 3, step 2: 1" ("-" when empty)."""
    return ", ".join(f"step {k}: {v}" for k, v in histogram.items()) or "-"


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def split_text(case: str, r: dict[str, Any]) -> str:
    """One parted case as a line: where, which tokens, the margins, what changed."""
    texts = r.get("token_texts") or [None, None]
    chosen = [t if t is not None else c for t, c in zip(texts, r["chosen"], strict=True)]
    lps = r.get("logprobs") or [None, None]
    what = [
        "another action there" if r["action_differs"] else "same action there",
        "success changed" if r["success_changed"] else "success same",
        "final answer changed" if r["answer_changed"] else "final answer same",
    ]
    return (
        f"{case}: step {r['step']} token {r['token']}: reference {chosen[0]!r} "
        f"(logprob {_num(lps[0])}, margin {_num(r['margins'][0])}) vs {chosen[1]!r} "
        f"(logprob {_num(lps[1])}, margin {_num(r['margins'][1])}); {', '.join(what)}"
    )


def agent_summary_lines(metrics: dict[str, Any]) -> list[str]:
    """The agent sweep's answer in a few lines (what `lab sweep` prints)."""
    s = metrics["summary"]
    ref = next((c for c in metrics["cells"] if c["reference"]), None)
    lines = [
        f"agent sweep: {s['cells_total']} of {s.get('cells_grid', '?')} cells recorded "
        f"({s['cells_failed']} failed), "
        f"{len(metrics['cases'])} cases, reference cell: {metrics['reference']}"
    ]
    if not metrics["reference_ok"]:
        return [*lines, "the reference cell is missing or failed: nothing to compare"]
    if ref is not None:
        close = ref["closest"]
        where = "" if close is None else (
            f"; its closest call: {close['key']} step {close['step']} token {close['token']}, "
            f"top-1 - top-2 = {close['margin']:.4f}"
        )  # fmt: skip
        lines.append(f"reference: {ref['passed']} of {ref['trajectories']} succeed{where}")
    for axis, t in metrics["axes"].items():
        if not t["compared"]:
            lines.append(f"axis {axis}: no finished cell differs from the reference in it alone")
            continue
        lines.append(
            f"axis {axis}: {t['parted']} of {t['compared']} case trajectories part from the "
            f"reference ({hist_text(t['step_histogram'])}), {t['actions_changed']} with "
            f"another action sequence, {t['success_changed']} with another success"
        )
    for axis, t in metrics.get("axis_pairs", {}).items():
        lines.append(
            f"axis {axis}, every pair of cells differing in it alone: {t['parted']} of "
            f"{t['compared']} case trajectories part ({hist_text(t['step_histogram'])}), "
            f"{t['actions_changed']} with another action sequence, {t['success_changed']} with "
            "another success"
        )
        for pair in t["pairs"]:
            if pair["parted"]:
                lines.append(f"  {pair['cells'][0]} vs {pair['cells'][1]}: {pair['parted']} part")
                for case, r in sorted(pair["parted_cases"].items()):
                    lines.append("    " + split_text(case, r).replace("reference ", "", 1))
    for cell in metrics["cells"]:
        if cell["reference"] or cell["status"] != "ok":
            continue
        lines.append(
            f"{cell['label']}: {cell['parted']} of {cell['compared']} part "
            f"({hist_text(cell['step_histogram'])}); max |logprob delta| on identical "
            f"{_num(cell['max_logprob_delta_identical'])}"
        )
        for case, r in sorted(cell["cases"].items()):
            if not r["same"]:
                lines.append("  " + split_text(case, r))
    if s["parted"] == 0:
        lines.append(f"no trajectory parts from the reference in {s['compared']} comparisons")
    elif s["beyond_step_1"] == 0:
        lines.append(
            f"every split is at step 1: nothing flips beyond step 1 ({s['parted']} parted)"
        )
    else:
        lines.append(f"{s['beyond_step_1']} of {s['parted']} splits come after step 1")
    return lines


def render_markdown(metrics: dict[str, Any]) -> str:
    lines = agent_summary_lines(metrics)  # indented lines: nested items
    out = ["# Agent sweep", "", *[f"{line[: len(line) - len(line.lstrip())]}- {line.strip()}"
                                  for line in lines], ""]  # fmt: skip
    out += ["| cell | status | passed | parted | at step | actions / success / answers changed "
            "| engine calls | generate s |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in metrics["cells"]:
        changed = "/".join(str(c.get(k, "-")) for k in
                           ("actions_changed", "success_changed", "answers_changed"))  # fmt: skip
        t = c["timings"]
        out.append(
            f"| {c['label']}{' (reference)' if c['reference'] else ''} | {c['status']}"
            f"{': ' + str(c['error']) if c['error'] else ''} | {c['passed']}/{c['trajectories']}"
            f" | {c.get('parted', '-')} | {hist_text(c.get('step_histogram', {}))} | {changed} | "
            f"{t.get('engine_calls', '-')} | {_num(t.get('generate_s'))} |"
        )
    return "\n".join(out) + "\n"


def nested_list(lines: list[str]) -> list[str]:
    """Summary lines as nested <ul> (two leading spaces per level, as in the markdown), every
    line escaped."""
    parts: list[str] = []
    depth = -1
    for line in lines:
        level = (len(line) - len(line.lstrip(" "))) // 2
        if level > depth:
            parts += ["<ul>"] * (level - depth)
        else:
            parts.append("</li>")
            parts += ["</ul></li>"] * (depth - level)
        parts.append(f"<li>{escape(line.strip())}")
        depth = level
    if depth >= 0:
        parts.append("</li>")
        parts += ["</ul></li>"] * depth + ["</ul>"]
    return parts


def render_html(metrics: dict[str, Any]) -> str:
    """The same as the markdown, every run value escaped (model text included): the cells
    first, then the findings with each pair's and each cell's splits nested under it."""
    lines = agent_summary_lines(metrics)
    parts = ["<h1>Agent sweep</h1>", f"<p>{escape(lines[0])}</p>", "<h2>Cells</h2>"]
    parts.append("<table><tr><th>cell</th><th>status</th><th>passed</th><th>parted</th>"
                 "<th>at step</th><th>actions / success / answers changed</th></tr>")  # fmt: skip
    for c in metrics["cells"]:
        changed = "/".join(str(c.get(k, "-")) for k in
                           ("actions_changed", "success_changed", "answers_changed"))  # fmt: skip
        status = str(c["status"]) + (f": {c['error']}" if c["error"] else "")
        parts.append(
            f"<tr><td>{escape(c['label'])}{' (reference)' if c['reference'] else ''}</td>"
            f"<td>{escape(status)}</td><td>{c['passed']}/{c['trajectories']}</td>"
            f"<td>{c.get('parted', '-')}</td><td>{escape(hist_text(c.get('step_histogram', {})))}"
            f"</td><td>{changed}</td></tr>"
        )
    parts.append("</table>")
    parts += ["<h2>Where trajectories part</h2>", *nested_list(lines[1:])]
    return page("agent sweep", parts)


def write_agent_sweep_report(run_dir: str | Path) -> SweepReport:
    """metrics.json, report.md and report.html of an agent sweep's run directory."""
    root = Path(run_dir)
    config = read_config(root)
    if config.agents is None:
        raise LabError(f"{root}: a prompt sweep, not an agent sweep (lab report writes it)")
    store = RunStore(root)
    metrics = compute_agent_sweep(config, list(store.entries(CELLS, latest=True)))
    return write_sweep_files(store, metrics, render_markdown(metrics), render_html(metrics))
