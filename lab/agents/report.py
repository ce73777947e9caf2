"""An agent run's analysis and artifacts: checks on every trajectory, the n-of-k numbers every
run has (per-case success with Wilson intervals, tails, pass@k / pass^k, cohorts, the gate),
the agent metrics (lab.agents.metrics) and the report.

    RUN_DIR/metrics.json      headline, per-case numbers, agent metrics, definitions
    RUN_DIR/samples.parquet   one row per trajectory: final answer as `text`, verdict, reasons,
                              outcome, steps, calls, tokens, action sequence
    RUN_DIR/summary.md        the Markdown summary
    RUN_DIR/report.html       the self-contained HTML report (trajectories side by side)

A trajectory passes when it ended with a final answer, that answer passes every answer check,
and every trajectory check (called, not_called, max_calls, state) holds.

    lab sample-report RUN_DIR [--gate min_p5=0.2]    (an agent run is recognised by its logs)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lab import rundir, samplerun
from lab.agents import metrics as am
from lab.agents.records import Trajectory
from lab.agents.reliability import case_reliability, run_reliability
from lab.agents.render import agent_html, agent_markdown
from lab.cases.checks import normalize_answer, run_checks
from lab.cases.codechecks import CodePolicy, resolve_checks
from lab.cases.model import Case
from lab.errors import LabError
from lab.store import RunStore
from lab.variance.analyze import cohort_tails, sanitize, success_record
from lab.variance.config import SampleConfig
from lab.variance.gate import judge
from lab.variance.result import RunReport
from lab.variance.success import run_record, success_statistics

AGENT_DEFINITIONS = {
    "passed": "ended with a final answer that passes every answer check, and every trajectory "
    "check (called, not_called, max_calls, state) holds",
    "distinct_sequences": "distinct action sequences among the k (arXiv 2602.11619)",
    "first_divergence": "first step (1-based) where the k action sequences are not all equal",
    "tool_choice_agreement": "share of pairs with equal tool-name sequences",
    "argument_agreement": "among pairs with equal tool-name sequences, share with equal "
    "arguments too (cf. arXiv 2605.28840)",
    "outcome_consistency": "unanimity form: C_out = 1 - s^2/(p(1-p)), ddof 1, clipped "
    "(arXiv 2602.16666 Def. 3.1 as printed; 1 iff all k agree); graded: (2p-1)^2, the form "
    "hal-harness's code computes",
    "reliability": "hal-harness (princeton-pli/hal-harness reliability_eval/metrics/"
    "consistency.py) consistency: outcome (2p-1)^2; trajectory distribution = 1 - mean "
    "pairwise JS divergence (base 2) of action frequencies, sequence = mean pairwise 1 - "
    "Levenshtein / longer length, both over the successful trajectories (_all: over all k); "
    "resource = exp(-mean CV) of output tokens, tool calls, turns (CV over positive values, "
    "ddof 1); R_con = weighted mean (1/3 each of outcome, trajectory, resource) over the "
    "defined parts; run values: mean over the cases where defined",
    "cv_steps / cv_tokens": "std (ddof 1) / mean of steps / output tokens over the k",
    "cv_across_runs": "CV of success across the k runs, run j = trajectory j of every case "
    "(arXiv 2603.25764 reports 15-47%)",
}


def evaluate_trajectory(case: Case, trajectory: Trajectory) -> dict[str, Any]:
    """Verdict, one reason per check, and the extracted answer of one trajectory."""
    assert case.agent is not None
    reasons: list[str] = []
    ok = trajectory.outcome == "answer"
    answer_text = trajectory.final_answer or ""
    answer = None
    if not ok:
        reasons.append(f"no final answer ({trajectory.outcome})")
    else:
        results = run_checks(case.checks, answer_text, case)
        ok = all(r.passed for r in results)
        reasons += [f"{c.type}: {r.reason}" for c, r in zip(case.checks, results, strict=True)]
        answer = next((r.answer for r in results if r.answer is not None), None)
    checks = case.agent.run_checks(trajectory.calls(), trajectory.final_state)
    ok = ok and all(r.passed for r in checks)
    reasons += [f"{c.type}: {r.reason}" for c, r in zip(case.agent.checks, checks, strict=True)]
    if answer is None:
        answer = normalize_answer(answer_text)[:200] or f"({trajectory.outcome})"
    return {"passed": ok, "reasons": reasons, "answer": answer}


def load_trajectories(root: Path, cases: list[Case], k: int) -> dict[str, list[Trajectory]]:
    """Each case's k finished trajectories in sample order; LabError when some are missing."""
    by_case: dict[str, list[Trajectory]] = {c.id: [] for c in cases}
    for entry in rundir.read_trajectories(root):
        if entry["case_id"] in by_case:
            by_case[entry["case_id"]].append(Trajectory.from_dict(entry))
    for case_id, trajs in by_case.items():
        if len(trajs) < k:
            raise LabError(
                f"{root}: case {case_id!r} has {len(trajs)} of {k} trajectories; rerun lab "
                "sample to resume"
            )
        trajs.sort(key=lambda t: t.sample_index)
    return by_case


def analyze_agents(
    cases: list[Case], by_case: dict[str, list[Trajectory]], config: SampleConfig
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metrics, Parquet rows) of a finished agent run."""
    k = config.k
    evals = [[evaluate_trajectory(c, t) for t in by_case[c.id]] for c in cases]
    passed = np.array([[e["passed"] for e in row] for row in evals], dtype=bool)  # [C, k]
    per_case: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for i, case in enumerate(cases):
        trajs = by_case[case.id]
        c = int(passed[i].sum())
        answers = [e["answer"] for e in evals[i]]
        agent = am.case_metrics(trajs, passed[i].tolist())
        agent["reliability"] = case_reliability(trajs, passed[i].tolist())
        worst = int(np.flatnonzero(~passed[i])[0]) if c < k else 0
        per_case.append(
            {
                **success_record(case, passed[i].tolist(), answers),
                "agent": agent,
                "worst": {
                    "sample_index": worst,
                    "passed": bool(passed[i, worst]),
                    "text": trajs[worst].final_answer or "",
                    "reasons": evals[i][worst]["reasons"],
                    "seed": trajs[worst].steps[0].seed if trajs[worst].steps else None,
                },
                "trajectories": [
                    {
                        "passed": bool(passed[i, j]),
                        "outcome": t.outcome,
                        "final_answer": t.final_answer,
                        "reasons": evals[i][j]["reasons"],
                        "final_state": t.final_state,
                        "steps": [_step_view(s) for s in t.steps],
                    }
                    for j, t in enumerate(trajs)
                ],
            }
        )
        for j, t in enumerate(trajs):
            rows.append(_row(case, t, evals[i][j], bool(passed[i, j])))
    success = success_statistics(
        passed,
        np.array([row["majority_correct"] for row in per_case], dtype=float),
        np.random.default_rng(config.bootstrap_seed),
        samples=config.bootstrap_samples,
    )
    agents = [row["agent"] for row in per_case]
    firsts = [a["first_divergence"] for a in agents]
    agent_headline = {
        "mean_distinct_sequences": am.mean_of([a["distinct_sequences"] for a in agents]),
        "first_divergence_histogram": am.divergence_histogram(firsts),
        "tool_choice_agreement": am.mean_of([a["tool_choice_agreement"] for a in agents]),
        "argument_agreement": am.mean_of([a["argument_agreement"] for a in agents]),
        "outcome_consistency": am.mean_of([a["outcome_consistency"] for a in agents]),
        "outcome_consistency_graded": am.mean_of([a["outcome_consistency_graded"] for a in agents]),
        "cv_steps": am.mean_of([a["cv_steps"] for a in agents]),
        "cv_tokens": am.mean_of([a["cv_tokens"] for a in agents]),
        "mean_steps": am.mean_of([a["mean_steps"] for a in agents]),
        "malformed_steps": sum(a["malformed_steps"] for a in agents),
        "tool_errors": sum(a["tool_errors"] for a in agents),
        "outcomes": {
            o: sum(a["outcomes"].get(o, 0) for a in agents)
            for o in ("answer", "max_turns", "error")
        },
        "protocol": next((t.protocol for ts in by_case.values() for t in ts), None),
        "reliability": run_reliability([a["reliability"] for a in agents]),
    }
    cohorts, cohort_info = cohort_tails(cases, success.rates, config.cohorts, config.model)
    metrics = {
        "run": {
            "kind": "agents",
            **run_record(config, passed),
            "max_turns": config.max_turns,
            "bootstrap_samples": config.bootstrap_samples,
        },
        "headline": success.headline,
        "agent": agent_headline,
        "intervals_95": success.intervals,
        "curves": success.curves,
        "run_rates": success.run_rates,
        "cost": _cost(by_case, config.prices),
        "cohorts": cohorts,
        "cohort_buckets": cohort_info,
        "cases": per_case,
        "definitions": AGENT_DEFINITIONS,
    }
    return sanitize(metrics), rows


def _step_view(step: Any) -> dict[str, Any]:
    """A step as the report shows it (no token-level detail: that stays in the logs)."""
    return {
        "kind": step.kind,
        "action": step.action,
        "text": step.text,
        "calls": [dataclasses.asdict(c) for c in step.calls],
        "reason": step.reason,
        "tokens": len(step.output_token_ids),
    }


def _row(case: Case, t: Trajectory, verdict: dict[str, Any], passed: bool) -> dict[str, Any]:
    return {
        "case_id": case.id,
        "sample_index": t.sample_index,
        "seed": t.steps[0].seed if t.steps else None,
        "tags": case.tags,
        "text": t.final_answer or "",
        "passed": passed,
        "reasons": "; ".join(verdict["reasons"]),
        "answer": verdict["answer"],
        "outcome": t.outcome,
        "steps": len(t.steps),
        "calls": len(t.calls()),
        "prompt_tokens": t.tokens_in,
        "output_tokens": t.tokens_out,
        "actions": am.sequence_text(t.actions()),
        "tool_sequence": am.sequence_text(t.tool_sequence()),
        "protocol": t.protocol,
    }


def _cost(by_case: dict[str, list[Trajectory]], prices: dict[str, float]) -> dict[str, Any]:
    trajs = [t for ts in by_case.values() for t in ts]
    steps = [s for t in trajs for s in t.steps]
    tokens_in = sum(s.prompt_tokens for s in steps)
    tokens_out = sum(len(s.output_token_ids) for s in steps)
    out: dict[str, Any] = {
        "trajectories": len(trajs),
        "steps": len(steps),
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "truncated_share": sum(s.finish_reason == "length" for s in steps) / max(len(steps), 1),
        "errors": sum(s.kind == "error" for s in steps),
    }
    if prices:
        out["price"] = tokens_in / 1e6 * prices.get("input", 0.0) + tokens_out / 1e6 * prices.get(
            "output", 0.0
        )
        out["prices_per_million"] = dict(prices)
    return out


def build_agent_report(
    path: str | Path,
    config: SampleConfig,
    emit: Callable[[str], None] = print,
    policy: CodePolicy | None = None,
    cases: list[Case] | None = None,
) -> RunReport:
    """Analyze the finished trajectories of a run directory and write every artifact.
    `policy`: the modules python checks may call (default: the run's own settings). `cases`:
    the run's cases when the caller holds them parsed (run_agents), else its cases.json."""
    root = Path(path)
    cases = rundir.read_cases(root) if cases is None else cases
    resolve_checks(cases, policy or config.code_policy())  # code in the case file: if allowed
    by_case = load_trajectories(root, cases, config.k)
    emit(f"analyzing {sum(map(len, by_case.values()))} trajectories of {len(cases)} cases")
    metrics, rows = analyze_agents(cases, by_case, config)
    verdict = judge(metrics["headline"], config.gate)
    metrics["gate"] = verdict.to_json()
    summary = agent_markdown(metrics)
    store = RunStore(root)
    store.write_json(rundir.METRICS, metrics)
    samplerun.write_parquet(root / rundir.PARQUET, rows)
    store.write_text(rundir.SUMMARY, summary)
    store.write_text(rundir.REPORT, agent_html(metrics))
    emit(f"wrote {root}/{rundir.REPORT}, {rundir.SUMMARY}, {rundir.METRICS}, {rundir.PARQUET}")
    return RunReport(root, metrics, verdict, summary)
