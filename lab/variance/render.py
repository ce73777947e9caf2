"""Render a run's metrics as the Markdown summary and the self-contained HTML report.

The HTML has no external resources (the shared page shell of lab.report.page, inline SVG);
every piece of model text, case id, tag and check reason goes through html.escape.

    from lab.variance.render import markdown_summary, html_report
"""

from __future__ import annotations

import html
import math
from typing import Any

from lab.report import svg as plots
from lab.report.page import page
from lab.rundir import PARQUET
from lab.safetext import inline, md_cell, scrub
from lab.variance.render_decompose import decomposition_html, decomposition_markdown
from lab.variance.stats import tail_order

HEADLINE_ROWS = [
    ("mean", "expected success (mean over cases and samples)"),
    ("p5", "worst-case users: p5 of per-case success"),
    ("p10", "p10"),
    ("p50", "p50"),
    ("p90", "p90"),
    ("mean_over_p5", "mean / p5"),
    ("pass@1", "pass@1"),
    ("pass@k", "pass@k"),
    ("pass^k", "pass^k (all k pass)"),
    ("maj@k", "maj@k"),
    ("cv_across_runs", "CV of success across the k runs"),
]


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if value == "inf":
        return "inf"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def headline_value(head: dict[str, Any], key: str) -> str:
    """A headline number as the report shows it; mean / p5 says why it has no value instead
    of printing inf (p5 is 0) or n/a."""
    value = head.get(key)
    if key == "mean_over_p5" and value in ("inf", math.inf):
        return "unbounded: p5 is 0 (the worst 5% of cases never pass)"
    if key == "mean_over_p5" and value is None:
        return "n/a: no case passes"
    return fmt(value)


_DTYPE_NAMES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def engine_summary(engine: dict[str, Any] | None) -> str:
    """The serving configuration of a run in one line: the engine (and its version), device,
    dtype, TP, prefix caching, eager/compiled, batch-invariant mode, max_num_seqs and any other
    engine setting, e.g. "vllm 0.32.0 on cpu, fp32, TP 3, prefix caching on, eager, ..."."""
    if not engine:
        return "engine not recorded"
    e = engine
    name = str(e.get("backend", "?"))
    if e.get("vllm_version"):
        name += f" {e['vllm_version']}"
    dtype = str(e.get("dtype"))
    parts = [f"{name} on {e.get('device', '?')}", _DTYPE_NAMES.get(dtype, dtype)]
    parts.append(f"TP {e.get('tensor_parallel_size', 1)}")
    if e.get("backend") == "vllm":
        parts.append(f"prefix caching {'on' if e.get('prefix_caching') else 'off'}")
        parts.append("eager" if e.get("enforce_eager", True) else "compiled")
    mode = "on" if e.get("batch_invariant") else "off"
    if e.get("batch_invariant") and e.get("batch_invariant_kernels") is False:
        mode += " (no batch-invariant kernels on this device)"
    parts.append(f"batch-invariant {mode}")
    parts.append(f"max_num_seqs {e.get('max_num_seqs', '?')}")
    for key in ("attention_backend", "max_model_len", "memory_fraction"):
        if e.get(key) is not None:
            parts.append(f"{key} {e[key]}")
    if e.get("engine_args"):
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(e["engine_args"].items()))
        parts.append(f"engine args {args}")
    return ", ".join(str(p) for p in parts)


def _interval(metrics: dict[str, Any], name: str) -> str:
    iv = metrics["intervals_95"].get(name)
    if not iv or iv[0] is None:
        return ""
    return f"[{fmt(iv[0])}, {fmt(iv[1])}]"


def worst_cohorts_first(cohorts: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Cohorts ordered by p5, then p10, then mean (lab.variance.stats.tail_order)."""
    return sorted(cohorts.items(), key=lambda kv: (*tail_order(kv[1]), kv[0]))


def _md_cell(text: Any, limit: int = 80) -> str:
    return md_cell(text, limit)


def _cost_lines(cost: dict[str, Any]) -> list[str]:
    lines = [
        f"inferences {cost['inferences']}, tokens in {cost['tokens_in']} "
        f"(unique prompts {cost['tokens_in_unique_prompts']}), tokens out {cost['tokens_out']}",
        f"generation wall time {fmt(cost['wall_s'], 1)} s, {fmt(cost['tokens_out_per_s'], 1)} "
        f"output tok/s ({fmt(cost['tokens_total_per_s'], 1)} in+out tok/s)",
        f"truncated at max_tokens: {100 * cost['truncated_share']:.1f}% of samples, "
        f"errors {cost['errors']}",
    ]
    if "price" in cost:
        p = cost["prices_per_million"]
        lines.append(
            f"price {cost['price']:.6f} at {p.get('input', 0)} in / {p.get('output', 0)} out "
            f"per million tokens ({cost['price_per_inference']:.2e} per inference)"
        )
    return lines


def markdown_summary(metrics: dict[str, Any], gate: dict[str, Any]) -> str:
    run, head = metrics["run"], metrics["headline"]
    out = [
        f"# n-of-k variance: {run['cases']} cases x k={run['k']}",
        "",
        md_cell(
            f"{run['backend']} / {run['model']} / {run['dtype']}, temperature "
            f"{run['temperature']}, top_p {run['top_p']}, top_k {run['top_k']}, "
            f"max_tokens {run['max_tokens']}, seed {run['seed']}"
        ),
        "",
        "Engine: " + md_cell(engine_summary(run.get("engine"))),
        "",
        "| metric | value | 95% bootstrap |",
        "|---|---|---|",
    ]
    for key, label in HEADLINE_ROWS:
        out.append(f"| {label} | {headline_value(head, key)} | {_interval(metrics, key)} |")
    flag = "**yes**: mean > 2 x p5" if head["high_variance"] else "no"
    out += ["", f"High-variance feature: {flag}"]
    out += decomposition_markdown(metrics)
    out += ["", "## Cost", ""]
    out += [f"- {line}" for line in _cost_lines(metrics["cost"])]
    if metrics["cohorts"]:
        out += ["", "## Cohorts, worst tail first", ""]
        out += ["| cohort | kind | cases | mean | p5 | p10 | p50 | p90 |", "|---" * 8 + "|"]
        for tag, t in worst_cohorts_first(metrics["cohorts"]):
            out.append(
                f"| {_md_cell(tag)} | {_md_cell(t.get('kind', 'tag'))} | {int(t['cases'])} | "
                f"{fmt(t['mean'])} | {fmt(t['p5'])} | "
                f"{fmt(t['p10'])} | {fmt(t['p50'])} | {fmt(t['p90'])} |"
            )
    out += [
        "",
        "## Lowest-success cases",
        "",
        "| case | success | majority answer | worst output |",
    ]
    out.append("|---|---|---|---|")
    for case in sorted(metrics["cases"], key=lambda c: (c["rate"], c["id"]))[:10]:
        out.append(
            f"| {_md_cell(case['id'])} | {case['successes']}/{case['n']} | "
            f"{_md_cell(case['majority_answer'], 30)} ({case['majority_share']:.2f}) | "
            f"{_md_cell(case['worst']['text'])} |"
        )
    out += ["", "## Gate", ""]
    if not gate["thresholds"]:
        out.append("no gate thresholds given")
    elif gate["passed"]:
        out.append(
            md_cell(f"PASSED ({', '.join(f'{k}={v}' for k, v in gate['thresholds'].items())})")
        )
    else:
        out.append("FAILED:")
        out += [f"- {md_cell(r)}" for r in gate["reasons"]]
    return scrub("\n".join(out) + "\n")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """Cells must already be escaped HTML."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_report(metrics: dict[str, Any], gate: dict[str, Any]) -> str:
    e = html.escape
    run, head, cases = metrics["run"], metrics["headline"], metrics["cases"]
    rates = [c["rate"] for c in cases]
    ids = [c["id"] for c in cases]
    title = f"n-of-k variance: {run['cases']} cases x k={run['k']}"
    parts = [
        f"<h1>n-of-k variance: {run['cases']} cases x k={run['k']}</h1>",
        "<p>"
        + e(f"{run['backend']} / ")
        + inline(run["model"])
        + e(
            f" / {run['dtype']}, temperature "
            f"{run['temperature']}, top_p {run['top_p']}, top_k {run['top_k']}, "
            f"max_tokens {run['max_tokens']}, seed {run['seed']}"
        )
        + "</p>",
        "<p><b>Engine:</b> " + inline(engine_summary(run.get("engine"))) + "</p>",
    ]
    if head["high_variance"]:
        parts.append(
            "<p class='flag'><b>High-variance feature:</b> mean success is more than twice the "
            "5th percentile of per-case success.</p>"
        )
    if gate["thresholds"]:
        verdict = "PASSED" if gate["passed"] else "FAILED: " + "; ".join(gate["reasons"])
        cls = "pass" if gate["passed"] else "fail"
        parts.append(f"<p class='{cls}'><b>Gate {e(verdict)}</b></p>")
    parts.append("<h2>Headline</h2>")
    parts.append(
        _table(
            ["metric", "value", "95% bootstrap"],
            [
                [e(label), e(headline_value(head, key)), _interval(metrics, key)]
                for key, label in HEADLINE_ROWS
            ],
        )
    )
    parts.append(decomposition_html(metrics))
    parts.append("<h2>Per-case success, sorted</h2>")
    marks = {"p5": head["p5"], "p50": head["p50"], "mean": head["mean"]}
    parts.append(plots.sorted_bars(rates, ids, marks))
    parts.append("<h2>Distribution of per-case success</h2>")
    parts.append(plots.success_histogram([c["successes"] for c in cases], run["k"]))
    parts.append("<h2>pass@k and pass^k</h2>")
    curves = metrics["curves"]
    parts.append(
        plots.curves(curves["k"], {"pass@k": curves["pass@k"], "pass^k": curves["pass^k"]})
    )
    parts.append("<h2>Diversity against success</h2>")
    vendi = [c["vendi"] if c["vendi"] is not None else float("nan") for c in cases]
    parts.append(
        plots.scatter(vendi, rates, ids, "Vendi score (effective number of outputs)", "success")
    )
    parts.append(
        "<h2>Cost</h2><ul>"
        + "".join(f"<li>{e(x)}</li>" for x in _cost_lines(metrics["cost"]))
        + "</ul>"
    )
    if metrics["cohorts"]:
        parts.append("<h2>Cohorts, worst tail first</h2>")
        rows = [
            [e(tag), e(str(t.get("kind", "tag"))), str(int(t["cases"]))]
            + [fmt(t[q]) for q in ("mean", "p5", "p10", "p50", "p90")]
            for tag, t in worst_cohorts_first(metrics["cohorts"])
        ]
        heads = ["cohort", "kind", "cases", "mean", "p5", "p10", "p50", "p90"]
        parts.append(_table(heads, rows))
    parts.append("<h2>Cases and their worst outputs</h2>")
    # One output per case keeps the page light at scale (hundreds of cases x k); every sample
    # is in the Parquet file.
    parts.append(
        f"<p><small>One output per case (its worst). All {run['samples']} samples (text, "
        f"verdict, check reasons, seed, tokens) are in {PARQUET}.</small></p>"
    )
    rows = []
    for c in sorted(cases, key=lambda c: (c["rate"], c["id"])):
        worst = c["worst"]
        lo, hi = c["wilson_95"]
        rows.append(
            [
                inline(c["id"]) + "<br><small>" + ", ".join(map(inline, c["tags"])) + "</small>",
                f"{c['successes']}/{c['n']}<br><small>[{fmt(lo, 2)}, {fmt(hi, 2)}]</small>",
                f"<pre>{e(c['majority_answer'])}</pre><small>{c['majority_share']:.2f}</small>",
                f"{fmt(c['vendi'], 2)} / {c['clusters']} / {fmt(c['semantic_entropy'], 2)}",
                f"<pre>{e(worst['text'])}</pre>"
                f"<small class='{'pass' if worst['passed'] else 'fail'}'>"
                f"sample {worst['sample_index']} (seed {worst['seed']}): "
                f"{e('; '.join(worst['reasons']))}</small>",
            ]
        )
    parts.append(
        _table(
            [
                "case",
                "success [Wilson 95%]",
                "majority answer (share)",
                "Vendi / clusters / entropy",
                "worst output",
            ],
            rows,
        )
    )
    defs = "".join(f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in metrics["definitions"].items())
    parts.append(f"<h2>Definitions</h2><ul>{defs}</ul>")
    return scrub(page(title, parts))
