"""Write a distribution-shift report: gaps.json, shift.md and a self-contained shift.html.

Every file is written to a temporary file in the output directory and renamed into place
(lab.store.RunStore.write_*), so a reader never sees half a report. All case text in the HTML
goes through html.escape; the length histograms are inline SVG (lab/report/svg.py).

    from lab.longtail.shift_render import write_outputs
    write_outputs(report, Path("shift-out"))
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from lab.report.page import page
from lab.report.svg import histogram
from lab.rundir import SHIFT_HTML, SHIFT_JSON, SHIFT_MARKDOWN
from lab.safetext import inline, md_cell, scrub
from lab.store import RunStore


def _p(test: dict[str, Any] | None) -> str:
    if not test or test.get("p_value") is None:
        return "-"
    return f"{test['p_value']:.3g}"


def markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    method = report["method"]
    out = [
        f"# Distribution shift: demo ({report['demo_cases']} cases) vs production "
        f"({report['prod_cases']} cases)",
        "",
        f"Gaps by severity: high {s['high']}, medium {s['medium']}, low {s['low']}, "
        f"none {s['none']}.",
        "",
        "| severity | gap | size | measured as | test | p | what differs |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in report["gaps"]:
        test = g["test"]["name"] if g["test"] else "-"
        out.append(
            f"| {md_cell(g['severity'])} | {md_cell(g['name'])} | {g['size']:.3f} | "
            f"{md_cell(g['size_label'])} | {md_cell(test)} | {_p(g['test'])} | "
            f"{md_cell(g['detail'])} |"
        )
    emb = next((g for g in report["gaps"] if g["aspect"] == "embedding"), None)
    if emb is not None:
        out += ["", "## Production inputs least like any demo input", ""]
        for item in emb["data"]["least_covered"]:
            out.append(f"- ({item['nearest_similarity']:.2f}) {md_cell(item['text'][:160])}")
    out += [
        "",
        "## Method",
        "",
        f"- input length in {md_cell(method['tokens'])} tokens",
        f"- language: {md_cell(method['language_id'])}; script: the Unicode scripts of the letters",
        f"- embeddings: {md_cell(method['embedder'])}, MMD permutation test with "
        f"{method['permutations']} permutations (seed {method['seed']})",
        f"- severity: {md_cell(method['severity_rule'])}; alpha {method['alpha']}; thresholds "
        "(low, medium, high): "
        + ", ".join(f"{md_cell(k)} {md_cell(v)}" for k, v in method["thresholds"].items()),
        f"- load-bearing tag: >= {method['min_tag_share']} of production; under-represented: "
        f"demo share < prod share / {method['under_factor']}",
    ]
    return scrub("\n".join(out) + "\n")


def html_page(report: dict[str, Any]) -> str:
    e = html.escape
    s = report["summary"]
    title = (
        f"Distribution shift: demo ({report['demo_cases']} cases) vs production "
        f"({report['prod_cases']} cases)"
    )
    rows = []
    for g in report["gaps"]:
        test = e(g["test"]["name"]) if g["test"] else "-"
        rows.append(
            f"<tr class='{e(g['severity'])}'><td>{e(g['severity'])}</td><td>{e(g['name'])}</td>"
            f"<td>{g['size']:.3f}<br><small>{e(g['size_label'])}</small></td>"
            f"<td>{test}</td><td>{_p(g['test'])}</td><td>{e(g['detail'])}</td></tr>"
        )
    parts = [
        f"<h1>{e(title)}</h1>",
        f"<p>Gaps by severity: high {s['high']}, medium {s['medium']}, low {s['low']}, "
        f"none {s['none']}.</p>",
        "<table><tr><th>severity</th><th>gap</th><th>size</th><th>test</th><th>p</th>"
        "<th>what differs</th></tr>" + "".join(rows) + "</table>",
    ]
    length = next((g for g in report["gaps"] if g["aspect"] == "length"), None)
    if length is not None:
        unit = length["data"]["tokens"]
        parts.append("<h2>Input length</h2>")
        for name in ("demo", "prod"):
            values = [float(v) for v in length["data"][name]]
            parts.append(histogram(values, 20, f"{name}: input length", f"{unit} tokens"))
    emb = next((g for g in report["gaps"] if g["aspect"] == "embedding"), None)
    if emb is not None:
        items = "".join(
            f"<li>({item['nearest_similarity']:.2f}) {inline(item['text'])}</li>"
            for item in emb["data"]["least_covered"]
        )
        parts.append(f"<h2>Production inputs least like any demo input</h2><ul>{items}</ul>")
    method = "".join(f"<li><b>{e(k)}</b>: {e(str(v))}</li>" for k, v in report["method"].items())
    parts.append(f"<h2>Method</h2><ul>{method}</ul>")
    return scrub(page(title, parts))


def write_outputs(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    store = RunStore(out_dir)
    return {
        "json": store.write_json(SHIFT_JSON, report),
        "md": store.write_text(SHIFT_MARKDOWN, markdown(report)),
        "html": store.write_text(SHIFT_HTML, html_page(report)),
    }
