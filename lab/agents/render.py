"""An agent run's Markdown summary and self-contained HTML report.

The HTML shows the headline (as every n-of-k report), the agent metrics, the histogram of the
step where a case's trajectories first part, and per case the action-sequence distribution
(which sequences, how often, how many of each succeeded) and the k trajectories side by side,
one column each, one row per step, the row where they part highlighted. Every piece of model
text, call, tool answer, case id and reason goes through html.escape (lab.report.page shell).

`actions_line` and `split_line` are the lines `lab compare` shows for two agent runs (the
Jensen-Shannon divergence of their action sequences, and where their tokens part).

    from lab.agents.render import agent_html, agent_markdown
"""

from __future__ import annotations

import html
from typing import Any

from lab.report.page import page
from lab.safetext import inline, md_cell, scrub
from lab.variance.render import HEADLINE_ROWS, fmt, worst_cohorts_first

AGENT_ROWS = [
    ("mean_distinct_sequences", "distinct action sequences per case (mean)"),
    ("tool_choice_agreement", "tool-choice agreement (pairs, mean)"),
    ("argument_agreement", "argument agreement given the same tools (mean)"),
    ("outcome_consistency", "outcome consistency, unanimity form (paper Def. 3.1; mean)"),
    ("outcome_consistency_graded", "outcome consistency, hal-harness code form (2p-1)^2 (mean)"),
    ("cv_steps", "CV of trajectory length (mean)"),
    ("cv_tokens", "CV of output tokens (mean)"),
    ("mean_steps", "steps per trajectory (mean)"),
    ("malformed_steps", "malformed calls (steps)"),
    ("tool_errors", "tool calls answered with an error"),
]
#: (key in metrics.agent.reliability, what, which form)
RELIABILITY_ROWS = [
    ("outcome", "outcome consistency C_out", "(2p-1)^2, hal-harness code form"),
    ("trajectory_distribution", "trajectory consistency, distribution (which actions)",
     "1 - mean pairwise JS divergence of action frequencies; successful trajectories"),
    ("trajectory_sequence", "trajectory consistency, sequence (their order)",
     "mean pairwise 1 - edit distance / longer length; successful trajectories"),
    ("trajectory_distribution_all", "trajectory consistency, distribution, all k",
     "as above over all k trajectories"),
    ("trajectory_sequence_all", "trajectory consistency, sequence, all k",
     "as above over all k trajectories"),
    ("resource", "resource consistency C_res", "exp(-mean CV of tokens, calls, turns)"),
    ("cv_tokens", "CV of output tokens", "std (ddof 1) / mean over positive values"),
    ("cv_calls", "CV of tool calls", "std (ddof 1) / mean over positive values"),
    ("cv_turns", "CV of turns", "std (ddof 1) / mean over positive values"),
]  # fmt: skip
CSS = (
    ".traj{overflow-x:auto}.traj td{min-width:160px;max-width:320px}"
    ".part td{background:#fdebd0}.bar{background:#5b8def;height:10px;display:inline-block}"
)


def _interval(metrics: dict[str, Any], name: str) -> str:
    iv = metrics["intervals_95"].get(name)
    return "" if not iv or iv[0] is None else f"[{fmt(iv[0])}, {fmt(iv[1])}]"


def reliability_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """[metric, form, value, cases defined, undefined and why] per HAL consistency value, and
    R_con last; plain text (the caller escapes)."""
    rel = metrics["agent"].get("reliability")
    if not rel:
        return []
    rows = []
    for key, label, form in RELIABILITY_ROWS:
        r = rel[key]
        why = "; ".join(f"{reason}: {n}" for reason, n in r["reasons"].items())
        undefined = f"{r['undefined']} ({why})" if r["undefined"] else "0"
        rows.append([label, form, fmt(r["value"]), str(r["cases"]), undefined])
    rows.append(["R_con", "1/3 outcome + 1/3 trajectory + 1/3 resource, over the defined "
                 "parts (hal-harness compute_weighted_r_con)", fmt(rel["r_con"]["value"]),
                 "from " + (", ".join(rel["r_con"]["parts"]) or "none"), ""])  # fmt: skip
    return rows


def case_reliability_text(rel: dict[str, Any]) -> str:
    """One case's HAL consistency values in a line, each undefined one with its reason."""
    names = [("outcome", "C_out (2p-1)^2"), ("trajectory_distribution", "C_traj distribution"),
             ("trajectory_sequence", "C_traj sequence"), ("resource", "C_res")]  # fmt: skip
    parts = []
    for key, name in names:
        value = rel[key]
        parts.append(f"{name} {fmt(value, 3)}" if value is not None
                     else f"{name} undefined ({rel['undefined'].get(key, '?')})")  # fmt: skip
    return "hal-harness consistency: " + ", ".join(parts)


RELIABILITY_HEADERS = ["metric", "form", "value", "cases defined", "undefined (why)"]


def _cases_worst_first(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(metrics["cases"], key=lambda c: (c["rate"], c["id"]))


def agent_markdown(metrics: dict[str, Any]) -> str:
    run, head, agent = metrics["run"], metrics["headline"], metrics["agent"]
    out = [
        f"# agent trajectories: {run['cases']} cases x k={run['k']}",
        "",
        md_cell(
            f"{run['backend']} / {run['model']} / {run['dtype']}, temperature "
            f"{run['temperature']}, max_tokens {run['max_tokens']} per turn, seed {run['seed']}, "
            f"{agent.get('protocol')} tool protocol"
        ),
        "",
        "| metric | value | 95% bootstrap |",
        "|---|---|---|",
    ]
    for key, label in HEADLINE_ROWS:
        out.append(f"| {label} | {fmt(head.get(key))} | {_interval(metrics, key)} |")
    out += ["", "## Trajectories", "", "| metric | value |", "|---|---|"]
    out += [f"| {label} | {fmt(agent.get(key))} |" for key, label in AGENT_ROWS]
    rel_rows = reliability_rows(metrics)
    if rel_rows:
        out += ["", "## Reliability (hal-harness consistency)", ""]
        out += ["| " + " | ".join(RELIABILITY_HEADERS) + " |", "|---|---|---|---|---|"]
        out += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rel_rows]
    hist = agent["first_divergence_histogram"]
    parts = ", ".join(f"step {k}: {v}" for k, v in hist.items())
    outcomes = ", ".join(f"{k} {v}" for k, v in agent["outcomes"].items())
    out += ["", md_cell(f"First step where a case's trajectories part: {parts}")]
    out += ["", md_cell(f"Trajectory outcomes: {outcomes}")]
    if metrics["cohorts"]:
        out += ["", "## Cohorts, worst tail first", ""]
        out += ["| cohort | cases | mean | p5 | p50 |", "|---|---|---|---|---|"]
        for tag, t in worst_cohorts_first(metrics["cohorts"]):
            out.append(
                f"| {md_cell(tag)} | {int(t['cases'])} | {fmt(t['mean'])} | {fmt(t['p5'])} | "
                f"{fmt(t['p50'])} |"
            )
    out += ["", "## Lowest-success cases", ""]
    out += [
        "| case | success | sequences | parts at | most frequent sequence |",
        "|---|---|---|---|---|",
    ]
    for case in _cases_worst_first(metrics)[:10]:
        a = case["agent"]
        top = a["sequences"][0]
        out.append(
            f"| {md_cell(case['id'])} | {case['successes']}/{case['n']} | "
            f"{a['distinct_sequences']} | {a['first_divergence'] or 'never'} | "
            f"{md_cell(top['sequence'], 80)} (x{top['count']}) |"
        )
    gate = metrics.get("gate") or {"thresholds": {}}
    out += ["", "## Gate", ""]
    if not gate["thresholds"]:
        out.append("no gate thresholds given")
    else:
        out.append("PASSED" if gate["passed"] else "FAILED:")
        out += [f"- {md_cell(r)}" for r in gate.get("reasons", [])]
    return scrub("\n".join(out) + "\n")


def _table(headers: list[str], rows: list[list[str]], cls: list[str] | None = None) -> str:
    """Cells must already be escaped HTML; `cls`: a class per row ('' for none)."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join(
        (f"<tr class='{cls[i]}'>" if cls and cls[i] else "<tr>")
        + "".join(f"<td>{c}</td>" for c in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _step_cell(step: dict[str, Any] | None) -> str:
    e = html.escape
    if step is None:
        return ""
    lines = [f"<b>{e(step['action'])}</b>"]
    for call in step["calls"]:
        answer = f"error: {call['error']}" if call["error"] is not None else str(call["result"])
        lines.append(f"<small>&rarr; {e(answer[:200])}</small>")
    if step["reason"]:
        lines.append(f"<small class='fail'>{e(step['reason'])}</small>")
    lines.append(f"<pre>{e(step['text'])}</pre>")
    return "<br>".join(lines)


def _case_section(case: dict[str, Any]) -> str:
    e = html.escape
    a = case["agent"]
    lo, hi = case["wilson_95"]
    head = (
        f"<h3>{inline(case['id'])}: {case['successes']}/{case['n']} "
        f"<small>[{fmt(lo, 2)}, {fmt(hi, 2)}]</small></h3><p><small>"
        f"{a['distinct_sequences']} distinct sequences; "
        + (
            f"trajectories part at step {a['first_divergence']}"
            if a["first_divergence"]
            else "trajectories never part"
        )
        + "; tool-choice agreement "
        f"{fmt(a['tool_choice_agreement'], 2)}, argument agreement "
        f"{fmt(a['argument_agreement'], 2)}</small></p>"
        + (f"<p><small>{e(case_reliability_text(a['reliability']))}</small></p>"
           if a.get("reliability") else "")
    )  # fmt: skip
    dist = _table(
        ["action sequence", "trajectories", "succeeded"],
        [
            [f"<code>{e(s['sequence'])}</code>", str(s["count"]), str(s["successes"])]
            for s in a["sequences"]
        ],
    )
    trajs = case["trajectories"]
    longest = max((len(t["steps"]) for t in trajs), default=0)
    part = a["first_divergence"]
    headers = ["step"] + [
        f"#{j} <span class='{'pass' if t['passed'] else 'fail'}'>"
        f"{'pass' if t['passed'] else 'fail'}</span>"
        for j, t in enumerate(trajs)
    ]
    rows, classes = [], []
    for s in range(longest):
        cells = [_step_cell(t["steps"][s] if s < len(t["steps"]) else None) for t in trajs]
        rows.append([str(s + 1) + (" <b>parts</b>" if part == s + 1 else "")] + cells)
        classes.append("part" if part == s + 1 else "")
    rows.append(
        ["end"]
        + [
            f"{e(t['outcome'])}<br><pre>{e(t['final_answer'] or '')}</pre>"
            f"<small>{e('; '.join(t['reasons']))}</small>"
            for t in trajs
        ]
    )
    classes.append("")
    side = f"<div class='traj'>{_table(headers, rows, classes)}</div>"
    return head + dist + side


def _histogram(hist: dict[str, int]) -> str:
    top = max(hist.values(), default=1) or 1
    rows = [
        [html.escape(k), str(v), f"<span class='bar' style='width:{int(200 * v / top)}px'></span>"]
        for k, v in hist.items()
    ]
    return _table(["first divergent step", "cases", ""], rows)


def agent_html(metrics: dict[str, Any]) -> str:
    e = html.escape
    run, head, agent = metrics["run"], metrics["headline"], metrics["agent"]
    title = f"agent trajectories: {run['cases']} cases x k={run['k']}"
    parts = [
        f"<h1>{e(title)}</h1>",
        "<p>"
        + e(f"{run['backend']} / ")
        + inline(run["model"])
        + e(
            f" / {run['dtype']}, temperature {run['temperature']}, max_tokens "
            f"{run['max_tokens']} per turn, seed {run['seed']}, {agent.get('protocol')} tool "
            "protocol"
        )
        + "</p>",
    ]
    gate = metrics.get("gate") or {"thresholds": {}}
    if gate["thresholds"]:
        verdict = "PASSED" if gate["passed"] else "FAILED: " + "; ".join(gate["reasons"])
        parts.append(
            f"<p class='{'pass' if gate['passed'] else 'fail'}'><b>Gate {e(verdict)}</b></p>"
        )
    parts.append("<h2>Headline</h2>")
    parts.append(
        _table(
            ["metric", "value", "95% bootstrap"],
            [[e(label), fmt(head.get(k)), _interval(metrics, k)] for k, label in HEADLINE_ROWS],
        )
    )
    parts.append("<h2>Trajectories</h2>")
    parts.append(
        _table(["metric", "value"], [[e(lab), fmt(agent.get(k))] for k, lab in AGENT_ROWS])
    )
    outcomes = ", ".join(f"{k} {v}" for k, v in agent["outcomes"].items())
    parts.append(f"<p>Outcomes: {e(outcomes)}</p>")
    rel_rows = reliability_rows(metrics)
    if rel_rows:
        parts.append("<h2>Reliability (hal-harness consistency)</h2>")
        parts.append(_table(RELIABILITY_HEADERS, [[e(c) for c in row] for row in rel_rows]))
    parts.append("<h2>Where the trajectories of a case part</h2>")
    parts.append(_histogram(agent["first_divergence_histogram"]))
    if metrics["cohorts"]:
        parts.append("<h2>Cohorts, worst tail first</h2>")
        rows = [
            [e(tag), str(int(t["cases"]))] + [fmt(t[q]) for q in ("mean", "p5", "p50", "p90")]
            for tag, t in worst_cohorts_first(metrics["cohorts"])
        ]
        parts.append(_table(["cohort", "cases", "mean", "p5", "p50", "p90"], rows))
    parts.append("<h2>Cases, lowest success first</h2>")
    parts += [_case_section(c) for c in _cases_worst_first(metrics)]
    defs = "".join(f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in metrics["definitions"].items())
    parts.append(f"<h2>Definitions</h2><ul>{defs}</ul>")
    return scrub(page(title, parts, css=CSS))


# --- lines lab compare shows for two agent runs ---------------------------------------------


def actions_line(actions: dict[str, Any]) -> str:
    """Two agent runs: how far apart their action-sequence distributions are."""
    return (
        f"action sequences: mean Jensen-Shannon divergence {actions['mean_js']:.3f} over cases "
        f"(0 same, 1 disjoint), permutation p = {actions['p']:.3g} "
        f"({actions['permutations']} shuffles of trajectories between the runs)"
    )


def split_line(split: dict[str, Any]) -> str:
    """Two agent runs, token by token: how many trajectories part, and the first few splits."""
    text = (
        f"tokens: {split['identical']} of {split['trajectories']} trajectories token-identical, "
        f"{len(split['parted'])} part ({split['actions_differ']} with another action there); "
        f"max |logprob delta| on the identical ones {split['max_logprob_delta_identical']:.3g}"
    )
    for key, r in sorted(split["parted"].items())[:5]:
        margins = "/".join("n/a" if m is None else f"{m:.3f}" for m in r["margins"])
        text += f"; {key} at step {r['step']} token {r['token']} (margins {margins})"
    return text
