"""The report sections on where a run's variance comes from and which cases are confidently
wrong (lab.variance.decompose), as Markdown lines and as HTML (every case id, answer and
output escaped). A metrics.json written before these figures existed renders nothing.

    lines = decomposition_markdown(metrics)     # [] for an older run
    html = decomposition_html(metrics)          # "" for an older run
"""

from __future__ import annotations

import html
from typing import Any

from lab.safetext import inline, md_cell

#: how many consistent-wrong cases the report lists (all are in metrics.json)
LISTED = 10


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _interval(iv: Any) -> str:
    if not iv or iv[0] is None:
        return "n/a"
    return f"[{100 * iv[0]:.1f}%, {100 * iv[1]:.1f}%]"


def decomposition_lines(metrics: dict[str, Any]) -> list[str]:
    """Plain sentences: the two shares, what each needs, the consistency counts."""
    dec, head = metrics.get("variance_decomposition"), metrics["headline"]
    if dec is None:
        return []
    out = []
    if dec["between_share"] is not None:
        ivs = dec["intervals_95"]
        out.append(
            f"between-case (input) share {_pct(dec['between_share'])} "
            f"{_interval(ivs['between_share'])}, within-case (sampling) share "
            f"{_pct(dec['within_share'])} {_interval(ivs['within_share'])} "
            f"(var(p) {dec['between']:.4f}, E[p(1-p)] {dec['within']:.4f})"
        )
    if dec["undefined"]:
        out.append(f"decomposition undefined: {dec['undefined']}")
    if dec["k_star"] is not None:
        out.append(
            f"past k* = {dec['k_star']} samples per case more cases help more than more "
            f"samples; a +-{dec['target_half_width']:g} 95% interval on mean success needs "
            f"{dec['cases_needed_at_k']} cases at k={dec['k']} and "
            f"{dec['cases_needed_at_k_star']} at k*"
        )
    elif dec["cases_needed_at_k"] is not None:
        out.append(
            f"no between-case variance measured: a +-{dec['target_half_width']:g} 95% interval "
            f"on mean success needs {dec['cases_needed_at_k']} cases at k={dec['k']}"
        )
    if "consistent_wrong" in head:
        out.append(
            f"consistent-correct {head['consistent_correct']}, consistent-wrong "
            f"{head['consistent_wrong']} ({_pct(head['consistent_wrong_share'])} of cases: "
            f"the samples agree and fail), flaky {head['flaky']}"
        )
    return out


def _wrong_cases(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    wrong = [c for c in metrics["cases"] if c.get("consistency") == "consistent-wrong"]
    return sorted(wrong, key=lambda c: (-c["dominant_cluster_share"], c["id"]))[:LISTED]


def decomposition_markdown(metrics: dict[str, Any]) -> list[str]:
    lines = decomposition_lines(metrics)
    if not lines:
        return []
    out = ["", "## Where the variance comes from; confidently wrong", ""]
    out += [f"- {md_cell(line)}" for line in lines]
    wrong = _wrong_cases(metrics)
    if wrong:
        out += ["", "| consistent-wrong case | agreeing share | majority answer |", "|---|---|---|"]
        out += [
            f"| {md_cell(c['id'])} | {c['dominant_cluster_share']:.2f} | "
            f"{md_cell(str(c['majority_answer'])[:40])} |"
            for c in wrong
        ]
    return out


def decomposition_html(metrics: dict[str, Any]) -> str:
    lines = decomposition_lines(metrics)
    if not lines:
        return ""
    e = html.escape
    parts = ["<h2>Where the variance comes from; confidently wrong</h2><ul>"]
    parts += [f"<li>{e(line)}</li>" for line in lines]
    parts.append("</ul>")
    wrong = _wrong_cases(metrics)
    if wrong:
        rows = "".join(
            f"<tr><td>{inline(c['id'])}</td><td>{c['dominant_cluster_share']:.2f}</td>"
            f"<td><pre>{e(str(c['majority_answer']))}</pre></td>"
            f"<td><pre>{e(c['worst']['text'])}</pre></td></tr>"
            for c in wrong
        )
        parts.append(
            "<table><tr><th>consistent-wrong case</th><th>agreeing share</th>"
            f"<th>majority answer</th><th>an output</th></tr>{rows}</table>"
        )
    return "".join(parts)
