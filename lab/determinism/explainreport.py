"""The sweep report's "explained" table: one row per `lab explain` recorded inside the run
directory (explain-CASE/explain.json, lab.determinism.explain): the case, the pair, the first
divergent token, its top-1/top-2 gap and the axis whose single toggle moves it. The report
(lab.determinism.report) renders the rows beside its attribution table, escaping model text.

    headers, rows = explained_table(read_results(run_dir))
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from lab.determinism.cells import cell_of, outputs_of
from lab.determinism.explain import AXIS_NAMES, read_results
from lab.determinism.explainpair import records_digest
from lab.safetext import md_cell

__all__ = ["HEADERS", "current_results", "explained_html", "explained_markdown", "explained_table"]

TITLE = "Explained divergences (lab explain: the one setting that moves the token)"

HEADERS = ["case", "A vs B", "first divergent token", "gap (A)", "label", "toggles that move it"]


def _token(recorded: dict[str, Any]) -> str:
    texts = recorded.get("token_texts") or [None, None]
    shown = [repr(t) if t is not None else str(i) for t, i in zip(texts, recorded["tokens"],
                                                                  strict=False)]  # fmt: skip
    return f"{recorded['first_divergence']}: {shown[0]} vs {shown[1]}"


def current_results(run_dir: Path, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The explain results of a sweep whose two cells still hold the records explained (a
    sweep run again with --fresh has new ones: its old explanations are not shown)."""
    by_key = {cell_of(e).key(): e for e in entries if e.get("status") == "ok"}
    kept = []
    for r in read_results(run_dir):
        cells = [by_key.get(k) for k in r.get("cells") or []]
        if len(cells) != 2 or cells[0] is None or cells[1] is None:
            continue  # another sweep's pair, or a cell no longer there
        a, b = outputs_of(cells[0], r["case"]), outputs_of(cells[1], r["case"])
        if a and b and records_digest(a[0], b[0]) == r.get("records"):
            kept.append(r)
    return kept


def explained_table(results: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """The rows (plain values: the renderer escapes them)."""
    rows = []
    for r in results:
        recorded = r["recorded"]
        moving = [
            f"{AXIS_NAMES.get(t['axis'], t['axis'])} ({t['change']})"
            for t in r.get("toggles", [])
            if not t.get("skipped") and t.get("moved")
        ]
        rows.append([
            r["case"],
            f"{r['names'][0]} vs {r['names'][1]}",
            _token(recorded) if recorded["moved"] else "-",
            recorded.get("gap"),
            r["label"],
            "; ".join(moving) or "-",
        ])  # fmt: skip
    return HEADERS, rows


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("-" if value is None else str(value))


def explained_markdown(results: list[dict[str, Any]]) -> list[str]:
    """The table as Markdown lines (none without results)."""
    if not results:
        return []
    headers, rows = explained_table(results)
    lines = ["", f"## {TITLE}", "", "| " + " | ".join(headers) + " |", "|---" * len(headers) + "|"]
    return lines + ["| " + " | ".join(md_cell(_cell(c)) for c in row) + " |" for row in rows]


def explained_html(results: list[dict[str, Any]]) -> list[str]:
    """The table as HTML (model text escaped; none without results)."""
    if not results:
        return []
    headers, rows = explained_table(results)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return [f"<h2>{escape(TITLE)}</h2>",
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"]  # fmt: skip
