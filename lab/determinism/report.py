"""`lab report RUN_DIR`: Markdown and HTML for a determinism sweep.

Contents: the summary, where the cells ran (a warning when compared cells ran on unlike
hardware; lab/determinism/hardware.py), the attribution table (which axis changes the
output) and beside it the divergences `lab explain` explained (lab/determinism/explain.py), a
heatmap of unique-completion counts over two chosen axes, the histogram of first-divergence
positions, each divergent prompt token by token (coloured by the reference's
top-1/top-2 gap, with the divergence point; lab/determinism/tokens.py), the divergent
continuations side by side, per-cell rows and the failed cells. All model text in the HTML
is escaped.

    lab report runs/feynman [--x batch_size --y dtype]
"""

from __future__ import annotations

import json
import statistics
from html import escape
from pathlib import Path
from typing import Any

from lab.determinism.cells import base_id
from lab.determinism.config import SweepConfig, read_run_config
from lab.determinism.explainreport import current_results, explained_html, explained_markdown
from lab.determinism.grid import varying_axes
from lab.determinism.hardware import hardware_table
from lab.determinism.metrics import SweepMetrics
from lab.determinism.result import SweepReport
from lab.determinism.summary import DEFINITIONS, tara_note
from lab.determinism.tokens import TOKEN_CSS, TokenView, render_token_views, token_views
from lab.report.page import page
from lab.report.svg import heatmap, histogram
from lab.safetext import inline, md_cell, md_code, scrub


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 and v != 0 else f"{v:.3f}"
    return str(v)


def unique_grid(
    config: SweepConfig, metrics: SweepMetrics, entries: list[dict[str, Any]], x: str, y: str
) -> tuple[list[str], list[str], list[list[float | None]]]:
    """Mean unique completions per target over the cells at each (y, x) pair."""
    xs = (
        [str(v) for v in config.axes[x]]
        if x != "repeat"
        else [str(r) for r in range(config.repeats)]
    )
    ys = (
        [str(v) for v in config.axes[y]]
        if y != "repeat"
        else [str(r) for r in range(config.repeats)]
    )

    def coord(entry: dict[str, Any], axis: str) -> str:
        return str(entry["repeat"]) if axis == "repeat" else str(entry["cell"][axis])

    grid: list[list[float | None]] = []
    ok = [e for e in entries if e["status"] == "ok"]
    for yv in ys:
        row: list[float | None] = []
        for xv in xs:
            cells = [e for e in ok if coord(e, x) == xv and coord(e, y) == yv]
            if not cells:
                row.append(None)
                continue
            per_prompt: dict[str, set[tuple[int, ...]]] = {}
            for e in cells:
                for output_id, out in e["outputs"].items():
                    per_prompt.setdefault(base_id(output_id), set()).add(
                        tuple(out["output_token_ids"])
                    )
            row.append(
                statistics.fmean(len(s) for s in per_prompt.values()) if per_prompt else None
            )
        grid.append(row)
    return ys, xs, grid


def logprob_grid(
    config: SweepConfig, metrics: SweepMetrics, x: str, y: str
) -> tuple[list[str], list[str], list[list[float | None]]]:
    """Share of outputs whose logprobs differ from the reference at all, per (y, x) pair."""
    xs, ys = _values(config, x), _values(config, y)

    def coord(row: dict[str, Any], axis: str) -> str | None:
        if axis == "repeat":
            return str(row.get("repeat"))
        return str(row["axes"][axis]) if axis in row.get("axes", {}) else None

    grid: list[list[float | None]] = []
    for yv in ys:
        line: list[float | None] = []
        for xv in xs:
            rows = [r for r in metrics.per_cell if coord(r, x) == xv and coord(r, y) == yv]
            compared = sum(r.get("outputs_compared", 0) for r in rows)
            differ = sum(r.get("logprobs_differ", 0) for r in rows)
            line.append(differ / compared if compared else None)
        grid.append(line)
    return ys, xs, grid


def _values(config: SweepConfig, axis: str) -> list[str]:
    if axis == "repeat":
        return [str(r) for r in range(config.repeats)]
    return [str(v) for v in config.axes[axis]]


def choose_axes(config: SweepConfig, x: str | None, y: str | None) -> tuple[str, str]:
    varying = varying_axes(config) + (["repeat"] if config.repeats > 1 else [])
    candidates = varying + [a for a in ("batch_size", "dtype", "backend") if a not in varying]
    known = [*config.axes, "repeat"]
    for option, axis in (("--x", x), ("--y", y)):
        if axis is not None and axis not in known:
            from lab.errors import LabError

            raise LabError(f"{option}: unknown axis {axis!r}; this sweep has {', '.join(known)}")
    x = x or candidates[0]
    y = y or next((a for a in candidates if a != x), "dtype")
    return x, y


def divergence_positions(metrics: SweepMetrics) -> list[float]:
    positions = [float(p) for row in metrics.per_cell for p in row.get("first_divergences", [])]
    positions += [
        float(p) for row in metrics.within_cell for p in row["first_divergences"] if p is not None
    ]
    return positions


def _continuation(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _inline(v: Any) -> str:
    """One-line form for a Markdown code span (line breaks shown as \\n, backticks as ')."""
    return md_code(_continuation(v))


def render_markdown(
    config: SweepConfig,
    metrics: SweepMetrics,
    x: str,
    y: str,
    grid: tuple[list[str], list[str], list[list[float | None]]],
    explained: list[dict[str, Any]] | None = None,
) -> str:
    lines = [
        f"# Determinism sweep: {md_cell(config.name)}",
        "",
        f"Mode `{md_code(config.mode)}`, model `{md_code(config.model)}`, "
        f"sampling {md_cell(config.sampling)}.",
        "",
        "## Summary",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {md_cell(k)} | {md_cell(_fmt(v))} |" for k, v in metrics.summary.items()]
    note = tara_note(metrics.summary)
    if note is not None:
        lines += ["", f"Note: {note}."]
    headers, rows = hardware_table(metrics.hardware)
    if rows:
        lines += ["", "## Where the cells ran", ""]
        if metrics.hardware.get("warning"):
            lines += [f"**Warning**: {md_cell(metrics.hardware['warning'])}.", ""]
        lines += ["| " + " | ".join(headers) + " |", "|---" * len(headers) + "|"]
        lines += ["| " + " | ".join(md_cell(_fmt(c)) for c in row) + " |" for row in rows]
    lines += [
        "",
        "## Attribution: which axis changes the output",
        "",
        "| axis | values | cells | share of targets whose tokens change | "
        "share whose logprobs change |",
        "|---|---|---|---|---|",
    ]
    for r in metrics.attribution:
        lines.append(
            f"| {md_cell(r['axis'])} | {md_cell(', '.join(r['values']))} | {r['cells']} | "
            f"{_fmt(r['tokens_change_share'])} | {_fmt(r['logprobs_change_share'])} |"
        )
    if not metrics.attribution:
        lines.append("| (no axis varies, or the reference cell is missing) | | | | |")
    lines += explained_markdown(explained or [])
    if metrics.pairs:
        lines += [
            "",
            "## Each axis, everything else fixed",
            "",
            "| axis | value vs | fixed | tokens differ | logprobs differ | max abs dlogprob | "
            "first divergences |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {md_cell(r['axis'])} | {md_cell(r['value'])} vs {md_cell(r['against'])} | "
            f"{md_cell(r['fixed'])} | {r['tokens_differ']}/{r['outputs_compared']} | "
            f"{r['logprobs_differ']} | {_fmt(r['max_abs_logprob_delta'])} | "
            f"{md_cell(', '.join(map(str, r['first_divergences'])) or '-')} |"
            for r in metrics.pairs
        ]
    ys, xs, values = grid
    lines += [
        "",
        f"## Mean unique completions per prompt: {md_cell(y)} (rows) x {md_cell(x)} (columns)",
        "",
        f"| {md_cell(y)} \\ {md_cell(x)} | " + " | ".join(md_cell(v) for v in xs) + " |",
        "|---" * (len(xs) + 1) + "|",
    ]
    for yv, row in zip(ys, values, strict=True):
        lines.append(f"| {md_cell(yv)} | " + " | ".join(_fmt(v) for v in row) + " |")
    positions = divergence_positions(metrics)
    lines += [
        "",
        "## First divergence positions",
        "",
        f"{len(positions)} divergent comparisons"
        + (
            f"; median position {statistics.median(positions):g}"
            if positions
            else ": the text never diverged. Logprob-level differences are in the per-cell "
            "table (max |delta logprob|)."
        ),
    ]
    lines += [
        "",
        "## Per cell (against the reference cell)",
        "",
        "| cell | tokens differ | logprobs differ | max abs dlogprob | generate s | "
        "output tokens |",
        "|---|---|---|---|---|---|",
    ]
    for r in metrics.per_cell:
        lines.append(
            f"| {md_cell(r['cell'])} | "
            f"{r.get('tokens_differ', '-')}/{r.get('outputs_compared', '-')} | "
            f"{r.get('logprobs_differ', '-')} | {_fmt(r.get('max_abs_logprob_delta'))} | "
            f"{_fmt(r.get('generate_s'))} | {r.get('output_tokens', '-')} |"
        )
    if metrics.within_cell:
        lines += [
            "",
            "## Within each cell (identical prompts)",
            "",
            "| cell | prompt | copies | unique | modal count |",
            "|---|---|---|---|---|",
        ]
        for r in metrics.within_cell:
            lines.append(
                f"| {md_cell(r['cell'])} | {md_cell(r['prompt'])} | {r['copies']} | "
                f"{r['unique_completions']} | {r['mode_count']} |"
            )
    if metrics.divergences:
        lines += ["", "## Divergent continuations (first 20)", ""]
        for d in metrics.divergences[:20]:
            lines += [
                f"- **{md_cell(d['target'])}** in *{md_cell(d['cell'])}* at token "
                f"{d['first_divergence']} "
                f"(reference top1-top2 gap {_fmt(d['reference_top_gap'])}):",
                f"  - context: `{_inline(d['context'])}`",
                f"  - reference: `{_inline(d['reference_continuation'])}`",
                f"  - other: `{_inline(d['other_continuation'])}`",
            ]
    if metrics.failed_cells:
        lines += ["", "## Failed cells", ""]
        lines += [
            f"- {md_cell(json.dumps(f['cell']))} repeat {f['repeat']}: {md_cell(f['error'])}"
            for f in metrics.failed_cells
        ]
    lines += ["", "## Definitions", ""]
    lines += [f"- **{md_cell(k)}**: {md_cell(v)}" for k, v in DEFINITIONS.items()]
    return scrub("\n".join(lines) + "\n")


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pairs_html(metrics: SweepMetrics) -> list[str]:
    if not metrics.pairs:
        return []
    return [
        "<h2>Each axis, everything else fixed</h2>",
        _table(
            ["axis", "value vs", "fixed", "tokens differ", "outputs", "logprobs differ",
             "max |dlogprob|", "first divergences"],
            [
                [r["axis"], f"{r['value']} vs {r['against']}", r["fixed"], r["tokens_differ"],
                 r["outputs_compared"], r["logprobs_differ"], r["max_abs_logprob_delta"],
                 ", ".join(map(str, r["first_divergences"])) or "-"]
                for r in metrics.pairs
            ],
        ),
    ]  # fmt: skip


def _hardware_html(metrics: SweepMetrics) -> list[str]:
    headers, rows = hardware_table(metrics.hardware)
    if not rows:
        return []
    warning = metrics.hardware.get("warning")
    return [
        "<h2>Where the cells ran</h2>",
        *([f"<p class='warn'><b>Warning</b>: {escape(warning)}.</p>"] if warning else []),
        _table(headers, rows),
    ]


def render_html(
    config: SweepConfig,
    metrics: SweepMetrics,
    x: str,
    y: str,
    grid: tuple[list[str], list[str], list[list[float | None]]],
    token_views: list[TokenView] | None = None,
    explained: list[dict[str, Any]] | None = None,
) -> str:
    ys, xs, values = grid
    parts = [
        f"<h1>Determinism sweep: {escape(config.name)}</h1>",
        f"<p>Mode <code>{escape(config.mode)}</code>, model <code>{escape(config.model)}</code>, "
        f"sampling <code>{escape(json.dumps(config.sampling))}</code>.</p>",
        "<h2>Summary</h2>",
        _table(["metric", "value"], [[k, v] for k, v in metrics.summary.items()]),
        *([f"<p>Note: {escape(note)}.</p>"] if (note := tara_note(metrics.summary)) else []),
        *_hardware_html(metrics),
        "<h2>Attribution: which axis changes the output</h2>",
        _table(
            [
                "axis",
                "values",
                "cells",
                "tokens change (share of targets)",
                "logprobs change (share)",
            ],
            [
                [
                    r["axis"],
                    ", ".join(r["values"]),
                    r["cells"],
                    r["tokens_change_share"],
                    r["logprobs_change_share"],
                ]
                for r in metrics.attribution
            ],
        ),
        *explained_html(explained or []),
        *_pairs_html(metrics),
        "<h2>Unique completions</h2>",
        heatmap(ys, xs, values, f"mean unique completions per prompt ({y} rows, {x} columns)"),
        heatmap(
            *logprob_grid(config, metrics, x, y),
            f"share of outputs whose logprobs differ from the reference ({y} rows, {x} columns)",
            fmt="{:.2f}",
        ),
        "<h2>First divergence positions</h2>",
        histogram(divergence_positions(metrics), 20, "first divergent token index", "token index"),
    ]
    parts.append(render_token_views(token_views or []))
    if metrics.divergences:
        parts.append("<h2>Divergent continuations</h2>")
        for d in metrics.divergences[:20]:
            gap = escape(_fmt(d["reference_top_gap"]))
            parts.append(
                f"<p><b>{inline(d['target'])}</b> in <i>{inline(d['cell'])}</i> at token "
                f"{d['first_divergence']} (reference top1-top2 gap {gap})"
                f"</p><pre>{escape(_continuation(d['context']))}</pre><div class='side'>"
                f"<pre>reference: {escape(_continuation(d['reference_continuation']))}</pre>"
                f"<pre>other: {escape(_continuation(d['other_continuation']))}</pre></div>"
            )
    parts += [
        "<h2>Per cell</h2>",
        _table(
            [
                "cell",
                "tokens differ",
                "outputs compared",
                "logprobs differ",
                "max |dlogprob|",
                "generate s",
                "output tokens",
            ],
            [
                [
                    r["cell"],
                    r.get("tokens_differ"),
                    r.get("outputs_compared"),
                    r.get("logprobs_differ"),
                    r.get("max_abs_logprob_delta"),
                    r.get("generate_s"),
                    r.get("output_tokens"),
                ]
                for r in metrics.per_cell
            ],
        ),
    ]
    if metrics.within_cell:
        parts += [
            "<h2>Within each cell (identical prompts)</h2>",
            _table(
                ["cell", "prompt", "copies", "unique", "modal count"],
                [
                    [r["cell"], r["prompt"], r["copies"], r["unique_completions"], r["mode_count"]]
                    for r in metrics.within_cell
                ],
            ),
        ]
    if metrics.failed_cells:
        parts += [
            "<h2>Failed cells</h2>",
            _table(
                ["cell", "repeat", "error"],
                [[json.dumps(f["cell"]), f["repeat"], f["error"]] for f in metrics.failed_cells],
            ),
        ]
    defs = "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in DEFINITIONS.items())
    parts.append(f"<h2>Definitions</h2><ul>{defs}</ul>")
    css = TOKEN_CSS if token_views else ""
    return scrub(page(f"{config.name}: determinism sweep", parts, css=css, sep=""))


def write_sweep_report(
    run_dir: str | Path, x: str | None = None, y: str | None = None, with_tokenizer: bool = True
) -> SweepReport:
    """Compute metrics for a run directory and write metrics.json, report.md, report.html."""
    from lab.determinism.metrics import compute_metrics
    from lab.determinism.result import write_sweep_files
    from lab.determinism.sweep import context_length
    from lab.errors import LabError
    from lab.rundir import CELLS
    from lab.store import RunStore

    root = Path(run_dir)
    config = read_run_config(root)  # a damaged run directory: one line, not a traceback
    if config.agents is not None:
        raise LabError(f"{root}: an agent sweep (lab report writes it: lab.agents.sweepreport)")
    store = RunStore(root)
    entries = list(store.entries(CELLS, latest=True))
    context = context_length(config)
    decode = _decoder(config.model) if with_tokenizer else None
    metrics = compute_metrics(config, entries, context, decode)
    x, y = choose_axes(config, x, y)
    grid = unique_grid(config, metrics, entries, x, y)
    views = token_views(config, entries, (lambda i: decode([i])) if decode else None)
    explained = current_results(root, entries)  # lab explain's, of these cells' records
    markdown = render_markdown(config, metrics, x, y, grid, explained)
    html = render_html(config, metrics, x, y, grid, views, explained)
    return write_sweep_files(store, metrics.to_dict(), markdown, html)


def _decoder(model: str) -> Any:
    """tokenizer.decode for the swept model, or None when it cannot be loaded."""
    try:
        from transformers import AutoTokenizer

        from lab import models

        tokenizer = AutoTokenizer.from_pretrained(str(models.resolve(model, prepare=False)))
    except Exception:  # noqa: BLE001 - the report then shows token ids
        return None
    return lambda ids: tokenizer.decode(ids)
