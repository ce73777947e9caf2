"""Write a comparison as comparison.json, comparison.md and a self-contained comparison.html.

The HTML has no external resources: the paired scatter (per-case success, baseline vs other)
and the histogram of per-case deltas are inline SVG from lab.report.svg;
intervals are drawn as CSS bars. Every case id, tag, prompt and model output passes through
html.escape. Files are written atomically (lab.store.RunStore: temp file + os.replace).

    paths = write_comparison(result, Path("runs/compare-a-b"))
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.agents.render import actions_line, split_line
from lab.report.page import page
from lab.report.svg import histogram, scatter
from lab.rundir import COMPARISON_HTML, COMPARISON_JSON, COMPARISON_MARKDOWN
from lab.safetext import inline, md_cell, scrub
from lab.store import RunStore
from lab.variance.analyze import sanitize


def _f(x: Any, digits: int = 3, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float | int):
        return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"
    return str(x)


def _ci(row: dict[str, Any]) -> str:
    return f"[{_f(row['ci'][0], sign=True)}, {_f(row['ci'][1], sign=True)}]"


# ---------------------------------------------------------------- Markdown


def markdown_sample(result: dict[str, Any], cell: Callable[..., str] = md_cell) -> str:
    """comparison.md; `cell=plain_cell`: the same text for a terminal (no Markdown escapes)."""
    runs = ", ".join(
        cell(
            f"{r['name']} ({r['cases']} cases x k={r['k']}, {r['backend']} {r['dtype']}, "
            f"T={r['temperature']}, seed {r['seed']})"
        )
        for r in result["runs"]
    )
    lines = [
        f"# Paired comparison against {cell(result['baseline'])}",
        "",
        f"Runs: {runs}.",
        f"Cases compared: {result['cases_compared']}."
        + (f" {cell(result['cases_note'])}." if result["cases_note"] else ""),
        f"Multiple comparisons: {cell(result['multiple_comparisons'])}.",
        "",
        "## Configurations",
        "",
    ]
    lines += [
        f"- {cell(r['name'])}: {cell(r.get('serving', 'engine not recorded'))}"
        for r in result["runs"]
    ]
    for c in result["comparisons"]:
        differ = c["config_differences"] or ["none (same configuration apart from the seed)"]
        lines.append(f"- {cell(c['b'])} vs {cell(c['a'])}: {cell('; '.join(differ))}")
    lines.append("")
    for c in result["comparisons"]:
        lines += [f"## {cell(c['b'])} vs {cell(c['a'])}", ""]
        if c.get("same_config"):
            lines.append("Same configuration (identity equal apart from the seed): drift check.")
        else:
            differ = "; ".join(c["config_differences"][:8])
            lines.append(f"Configurations differ: {cell(differ)}.")
        if c.get("environment_differences"):
            differ = "; ".join(c["environment_differences"][:8])
            lines.append(f"Environment differs: {cell(differ)}")
        lines += ["", "### Verdicts", ""]
        lines += [f"- {cell(row['verdict'])}" for row in c["metrics"].values()]
        lines += [f"- {cell(row['verdict'])}" for row in c["diversity"].values()]
        if c["mcnemar"]:
            m = c["mcnemar"]
            lines.append(
                f"- per-sample exact McNemar (samples paired by seed): {m['a_pass_b_fail']} "
                f"pass->fail, {m['a_fail_b_pass']} fail->pass, p = {m['p']:.3g} ({m['role']})"
            )
        if c.get("actions"):
            lines.append(f"- {cell(actions_line(c['actions']))}")
        if c.get("token_split"):
            lines.append(f"- {cell(split_line(c['token_split']))}")
        d = c["drift"]
        lines.append(
            f"- {'drift' if d.get('applies') else 'against run-to-run variance'}: "
            f"{cell(d['note'])} "
            f"(predicted sd {d['predicted_sd']:.4f})"
        )
        lines += [
            "",
            f"| metric | {cell(c['a'])} | {cell(c['b'])} | delta | 95% CI | p | test |",
            "|---|---:|---:|---:|---|---:|---|",
        ]
        for row in list(c["metrics"].values()) + list(c["diversity"].values()):
            lines.append(
                f"| {cell(row['label'])} | {_f(row['a'])} | {_f(row['b'])} | "
                f"{_f(row['delta'], sign=True)} | {_ci(row)} | {_f(row['p_adjusted'], 3)} | "
                f"{cell(row['test'])} |"
            )
        if c["cohorts"]:
            lines += [
                "",
                "### Cohorts (tags; p Holm-adjusted over the tags)",
                "",
                "| tag | cases | mean A | mean B | delta | 95% CI | p | p5 A | p5 B | note |",
                "|---|---:|---:|---:|---:|---|---:|---:|---:|---|",
            ]
            for row in c["cohorts"]:
                note = "moves against the mean" if row["against_mean"] else ""
                lines.append(
                    f"| {cell(row['tag'], 100)} | {row['cases']} | {_f(row['a'])} | "
                    f"{_f(row['b'])} | "
                    f"{_f(row['delta'], sign=True)} | {_ci(row)} | {_f(row['p_adjusted'])} | "
                    f"{_f(row['a_p5'])} | {_f(row['b_p5'])} | {note} |"
                )
        for direction, title in (("up", "improved most"), ("down", "worsened most")):
            rows = c["moved"][direction]
            if not rows:
                continue
            lines += [
                "",
                f"### Cases that {title}",
                "",
                f"| case | {cell(c['a'])} | {cell(c['b'])} | output {cell(c['a'])} | "
                f"output {cell(c['b'])} |",
                "|---|---:|---:|---|---|",
            ]
            for m in rows:
                lines.append(
                    f"| {cell(m['id'], 100)} | {_f(m['a_rate'], 2)} | {_f(m['b_rate'], 2)} | "
                    f"{cell(m['a_output']['text'], 60)} | {cell(m['b_output']['text'], 60)} |"
                )
        lines.append("")
    return scrub("\n".join(lines))


def markdown_sweep(result: dict[str, Any], cell: Callable[..., str] = md_cell) -> str:
    """comparison.md of two sweeps; `cell=plain_cell` for a terminal."""
    a, b = result["runs"][0]["name"], result["runs"][1]["name"]
    s = result["summary"]
    lines = [
        f"# Sweep comparison: {cell(b)} vs {cell(a)}",
        "",
        cell(result["verdict"]) + ".",
        "",
        f"Targets compared {s['targets_compared']}, cells in both {s['cells_shared']}.",
        "",
        "| target | unique A | unique B | raw agree A | raw agree B | answers agree A | "
        "answers agree B |",
        "|---|---:|---:|---|---|---|---|",
    ]
    changed_targets = [t for t in result["targets"] if t["changed"]]
    if not changed_targets:
        lines = lines[:-2] + ["No target's agreement changed."]
    for t in changed_targets:
        if t["changed"]:
            lines.append(
                f"| {cell(t['target'], 100)} | {t['a_unique']} | {t['b_unique']} | "
                f"{_f(t['a_raw_agree'])} | {_f(t['b_raw_agree'])} | {_f(t['a_answers_agree'])} | "
                f"{_f(t['b_answers_agree'])} |"
            )
    if result["cells"]:
        lines += [
            "",
            "## Cells whose agreement or tokens changed",
            "",
            "| cell | target | unique A | unique B | off-reference A | off-reference B | "
            "first div. A | first div. B | same tokens A/B | first div. A/B |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        for c in result["cells"]:
            lines.append(
                f"| {cell(c['cell'], 100)} | {cell(c['target'], 100)} | {c['a']['unique']} | "
                f"{c['b']['unique']} | {c['a']['differs_from_reference']} | "
                f"{c['b']['differs_from_reference']} | {_f(c['a']['first_divergence'])} | "
                f"{_f(c['b']['first_divergence'])} | {_f(c['same_tokens_across_sweeps'])} | "
                f"{_f(c['first_divergence_across_sweeps'])} |"
            )
    for side, key in ((a, "cells_only_in_a"), (b, "cells_only_in_b")):
        if result[key]:
            only = "; ".join(result[key][:20])
            lines.append(f"\nCells only in {cell(side)}: {cell(only)}")
    return scrub("\n".join(lines) + "\n")


# ---------------------------------------------------------------- HTML

#: the interval bars (the rest of the style is the shared page shell's)
STYLE = (
    "pre{max-width:420px}"
    ".bar{position:relative;width:300px;height:14px;background:#f4f4f4}"
    ".bar .ci{position:absolute;top:4px;height:6px;background:#7fb3d5}"
    ".bar .pt{position:absolute;top:0;width:2px;height:14px;background:#1a5276}"
    ".bar .zero{position:absolute;top:0;left:150px;width:1px;height:14px;background:#555}"
)


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _interval_bar(row: dict[str, Any], scale: float) -> str:
    """The delta and its interval on [-scale, +scale]; the zero line in the middle."""

    def px(v: float) -> float:
        return 150 + 150 * max(-1.0, min(1.0, v / scale))

    lo, hi, d = row["ci"][0], row["ci"][1], row["delta"]
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (lo, hi, d)):
        return ""
    return (
        f'<div class="bar"><div class="zero"></div><div class="ci" style="left:{px(lo):.1f}px;'
        f'width:{max(px(hi) - px(lo), 1):.1f}px"></div>'
        f'<div class="pt" style="left:{px(d):.1f}px"></div></div>'
    )


def _verdict_class(text: str) -> str:
    # Diversity moving is neither good nor bad by itself: only success verdicts get colours.
    if " is better" in text:
        return "better"
    return "worse" if " is worse" in text else "same"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _output_cell(out: dict[str, Any]) -> str:
    mark = "pass" if out["passed"] else "fail"
    return (
        f"<b>{mark}</b> (sample {out['sample_index']}, seed {_esc(out['seed'])})"
        f"<pre>{_esc(out['text'])}</pre><small>{_esc(out['reasons'])}</small>"
    )


def html_sample(result: dict[str, Any]) -> str:
    parts = [
        f"<h1>Paired comparison against {_esc(result['baseline'])}</h1>",
        f"<p>Cases compared: {result['cases_compared']}. "
        + (_esc(result["cases_note"]) + ". " if result["cases_note"] else "")
        + f"Multiple comparisons: {_esc(result['multiple_comparisons'])}.</p>",
        "<h2>Configurations</h2>",
        "<ul>"
        + "".join(
            f"<li>{inline(r['name'])}: {_esc(r.get('serving', 'engine not recorded'))}</li>"
            for r in result["runs"]
        )
        + "".join(
            f"<li>{inline(c['b'])} vs {inline(c['a'])}: "
            + _esc(
                "; ".join(c["config_differences"])
                or "none (same configuration apart from the seed)"
            )
            + "</li>"
            for c in result["comparisons"]
        )
        + "</ul>",
    ]
    for c in result["comparisons"]:
        parts.append(f"<h2>{inline(c['b'])} vs {inline(c['a'])}</h2>")
        if c.get("same_config"):
            parts.append("<p>Same configuration apart from the seed: a drift check.</p>")
        else:
            parts.append(
                "<p>Configurations differ: " + _esc("; ".join(c["config_differences"][:8])) + "</p>"
            )
        if c.get("environment_differences"):
            parts.append(
                "<p>Environment differs: "
                + _esc("; ".join(c["environment_differences"][:8]))
                + "</p>"
            )
        verdicts = [r["verdict"] for r in c["metrics"].values()] + [
            r["verdict"] for r in c["diversity"].values()
        ]
        parts.append(
            "<ul>"
            + "".join(f'<li class="{_verdict_class(v)}">{_esc(v)}</li>' for v in verdicts)
            + f"<li>{'drift' if c['drift'].get('applies') else 'against run-to-run variance'}: "
            f"{_esc(c['drift']['note'])}</li></ul>"
        )
        if c.get("token_split"):
            parts.append(f"<p>{_esc(split_line(c['token_split']))}</p>")
        if c.get("actions"):
            parts.append(f"<p>{_esc(actions_line(c['actions']))}</p>")
            parts.append(
                _table(
                    ["case", "JS divergence", f"most frequent in {c['a']}",
                     f"most frequent in {c['b']}", "distinct A / B"],
                    [[_esc(r["id"]), _f(r["js"]), _esc(r["a_top"]), _esc(r["b_top"]),
                      f"{r['a_distinct']} / {r['b_distinct']}"] for r in c["actions"]["cases"]],
                )
            )  # fmt: skip
        if c["mcnemar"]:
            m = c["mcnemar"]
            parts.append(
                f"<p>Per-sample exact McNemar: {m['a_pass_b_fail']} pass&rarr;fail, "
                f"{m['a_fail_b_pass']} fail&rarr;pass, p = {m['p']:.3g} ({_esc(m['role'])}).</p>"
            )
        rows = []
        for row in list(c["metrics"].values()) + list(c["diversity"].values()):
            scale = (
                1.0
                if row in c["metrics"].values()
                else max(abs(row["ci"][0] or 0), abs(row["ci"][1] or 0), 1e-9) * 1.5
            )
            rows.append(
                [
                    _esc(row["label"]),
                    _f(row["a"]),
                    _f(row["b"]),
                    _f(row["delta"], sign=True),
                    _ci(row),
                    _f(row["p_adjusted"]),
                    _esc(row["test"]),
                    _interval_bar(row, scale),
                ]
            )
        parts.append(
            _table(["metric", c["a"], c["b"], "delta", "95% CI", "p", "test", "delta and CI"], rows)
        )
        per = c["per_case"]
        parts.append("<h3>Per-case success, paired</h3>")
        parts.append(
            scatter(
                [p["a_rate"] for p in per],
                [p["b_rate"] for p in per],
                [p["id"] for p in per],
                f"success in {c['a']}",
                f"success in {c['b']}",
            )
        )
        deltas = [p["b_rate"] - p["a_rate"] for p in per]
        parts.append(
            histogram(deltas, 20, "per-case delta of success (B - A)", "delta success rate")
        )
        if c["cohorts"]:
            parts.append("<h3>Cohorts (tags; p Holm-adjusted over the tags)</h3>")
            parts.append(
                _table(
                    [
                        "tag",
                        "cases",
                        "mean A",
                        "mean B",
                        "delta",
                        "95% CI",
                        "p",
                        "p5 A",
                        "p5 B",
                        "note",
                        "delta and CI",
                    ],
                    [
                        [
                            _esc(r["tag"]),
                            str(r["cases"]),
                            _f(r["a"]),
                            _f(r["b"]),
                            _f(r["delta"], sign=True),
                            _ci(r),
                            _f(r["p_adjusted"]),
                            _f(r["a_p5"]),
                            _f(r["b_p5"]),
                            "moves against the mean" if r["against_mean"] else "",
                            _interval_bar(r, 1.0),
                        ]
                        for r in c["cohorts"]
                    ],
                )
            )
        for direction, title in (("up", "improved most"), ("down", "worsened most")):
            moved = c["moved"][direction]
            if not moved:
                continue
            parts.append(f"<h3>Cases that {title}</h3>")
            parts.append(
                _table(
                    ["case", "prompt", c["a"], c["b"], f"output {c['a']}", f"output {c['b']}"],
                    [
                        [
                            _esc(m["id"]),
                            f"<pre>{_esc(m['prompt'])}</pre>",
                            _f(m["a_rate"], 2),
                            _f(m["b_rate"], 2),
                            _output_cell(m["a_output"]),
                            _output_cell(m["b_output"]),
                        ]
                        for m in moved
                    ],
                )
            )
    parts.append("<h3>Definitions</h3><ul>")
    parts += [f"<li><b>{_esc(k)}</b>: {_esc(v)}</li>" for k, v in result["definitions"].items()]
    parts.append("</ul>")
    return scrub(page(f"Comparison against {result['baseline']}", parts, STYLE, sep=""))


def html_sweep(result: dict[str, Any]) -> str:
    a, b = result["runs"][0]["name"], result["runs"][1]["name"]
    parts = [
        f"<h1>Sweep comparison: {inline(b)} vs {inline(a)}</h1>",
        f"<p>{_esc(result['verdict'])}.</p>",
        _table(
            [
                "target",
                "unique A",
                "unique B",
                "raw agree A",
                "raw agree B",
                "answers agree A",
                "answers agree B",
                "changed",
            ],
            [
                [
                    _esc(t["target"]),
                    str(t["a_unique"]),
                    str(t["b_unique"]),
                    _f(t["a_raw_agree"]),
                    _f(t["b_raw_agree"]),
                    _f(t["a_answers_agree"]),
                    _f(t["b_answers_agree"]),
                    _f(t["changed"]),
                ]
                for t in result["targets"]
            ],
        ),
    ]
    if result["cells"]:
        parts.append("<h2>Cells whose agreement or tokens changed</h2>")
        parts.append(
            _table(
                [
                    "cell",
                    "target",
                    "unique A",
                    "unique B",
                    "off-reference A",
                    "off-reference B",
                    "first div. A",
                    "first div. B",
                    "same tokens A/B",
                    "first div. A/B",
                ],
                [
                    [
                        _esc(c["cell"]),
                        _esc(c["target"]),
                        str(c["a"]["unique"]),
                        str(c["b"]["unique"]),
                        str(c["a"]["differs_from_reference"]),
                        str(c["b"]["differs_from_reference"]),
                        _f(c["a"]["first_divergence"]),
                        _f(c["b"]["first_divergence"]),
                        _f(c["same_tokens_across_sweeps"]),
                        _f(c["first_divergence_across_sweeps"]),
                    ]
                    for c in result["cells"]
                ],
            )
        )
    return scrub(page(f"Sweep comparison {b} vs {a}", parts, STYLE, sep=""))


def write_comparison(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """comparison.json, comparison.md, comparison.html under out_dir, each atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    store = RunStore(out_dir)
    clean = sanitize(result)
    sweep = result.get("kind") == "sweep"
    return {
        "json": store.write_json(COMPARISON_JSON, clean),
        "markdown": store.write_text(
            COMPARISON_MARKDOWN, markdown_sweep(clean) if sweep else markdown_sample(clean)
        ),
        "html": store.write_text(
            COMPARISON_HTML, html_sweep(clean) if sweep else html_sample(clean)
        ),
    }
