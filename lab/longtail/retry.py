"""Variance-aware retry policies: what retrying or falling back would deliver, from k samples.

For a run of C cases with k samples each (lab sample), case i having c_i passing samples:

    one attempt             p_i = c_i / k
    same config, up to r    1 - C(k - c_i, r) / C(k, r): r of the case's OWN k outcomes drawn
    attempts in all         without replacement (= the unbiased pass@r estimator), so a case that
                            always fails stays failed however often it is retried
    fallback A -> B         p_A,i + (1 - p_A,i) p_B,i: try A once, on failure B once, with B's
                            rate on the same case from a second run (A and B are taken as
                            independent given the case: no joint samples exist to say more)

Overall numbers are means over cases. The independence assumption (every attempt an
independent coin flip with the overall mean p) predicts 1 - (1 - p)^r for retrying; the
report shows how far that overestimates the per-case estimate.

Expected cost, per case, exactly under the same without-replacement model: attempt j + 1
happens when the first j failed, with probability C(k - c, j) / C(k, j); given that, it is a
uniform draw from the c passing and k - c - j remaining failing samples, so its expected tokens
are (c T_pass + (k - c - j) T_fail) / (k - j), T_pass / T_fail being the case's mean tokens (in +
out) of passing / failing samples. Fallback: T_A + (1 - p_A) T_B.

Verdicts are the n-of-k report's own (lab.variance.analyze.evaluate_sample on samples.jsonl
and cases.json), so no report needs to be built first. A `python` check re-run here needs its
module allowed again (`--allow-module`): a run directory cannot allow code by itself.

    lab retry RUN_DIR [--max-attempts 3] [--fallback RUN_DIR2] [--out retry.md]
    from lab.longtail.retry import load_outcomes, retry_report
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from lab.cases.codechecks import CodePolicy, resolve_checks
from lab.errors import LabError
from lab.rundir import RETRY, CaseSuccess, per_case_success
from lab.safetext import md_cell, scrub
from lab.store import RunStore
from lab.variance.analyze import evaluate_sample
from lab.variance.stats import pass_at_k


class CaseOutcomes(CaseSuccess):
    """One case of a run: pass/fail of each of its k samples and their token counts (prompt +
    output tokens of each sample)."""

    @property
    def k(self) -> int:
        return len(self.passed)

    def mean_tokens(self, passing: bool) -> float:
        values = [t for p, t in zip(self.passed, self.tokens, strict=True) if p == passing]
        return float(np.mean(values)) if values else 0.0


def load_outcomes(run_dir: str | Path, policy: CodePolicy | None = None) -> list[CaseOutcomes]:
    """Per-case verdicts and tokens of a finished lab sample run directory, judged here from
    its log (lab.rundir.per_case_success). `policy`: the modules its python checks may call
    (None: the lab's own examples only; a run directory cannot allow code,
    lab.cases.codechecks)."""
    judged = per_case_success(
        Path(run_dir),
        judge=lambda case, g: bool(evaluate_sample(case, g)["passed"]),
        prepare=lambda cases: resolve_checks(cases, policy or CodePolicy()),
    )
    return [CaseOutcomes(c.id, c.passed, c.tokens) for c in judged]


def fail_streak(k: int, c: int, j: int) -> float:
    """P(the first j draws without replacement from k outcomes, c passing, all fail)."""
    if j > k:
        return math.nan
    return 1.0 - pass_at_k(k, c, j) if j > 0 else 1.0


def retry_case(case: CaseOutcomes, attempts: int) -> dict[str, float]:
    """Success and expected attempts / tokens of up to `attempts` tries of the same config."""
    k, c = case.k, case.successes
    t_pass, t_fail = case.mean_tokens(True), case.mean_tokens(False)
    expected_attempts = 0.0
    expected_tokens = 0.0
    for j in range(attempts):
        reach = fail_streak(k, c, j)  # attempt j + 1 happens
        expected_attempts += reach
        expected_tokens += reach * (c * t_pass + (k - c - j) * t_fail) / (k - j)
    return {
        "success": pass_at_k(k, c, attempts),
        "attempts": expected_attempts,
        "tokens": expected_tokens,
    }


def fallback_case(a: CaseOutcomes, b: CaseOutcomes) -> dict[str, float]:
    p_a, p_b = a.successes / a.k, b.successes / b.k
    t_a = float(np.mean(a.tokens))
    t_b = float(np.mean(b.tokens))
    return {
        "success": p_a + (1 - p_a) * p_b,
        "attempts": 1 + (1 - p_a),
        "tokens": t_a + (1 - p_a) * t_b,
    }


def _policy(name: str, per_case: list[dict[str, float]], independent: float | None) -> dict:
    success = float(np.mean([r["success"] for r in per_case]))
    out: dict[str, Any] = {
        "policy": name,
        "success": success,
        "expected_attempts": float(np.mean([r["attempts"] for r in per_case])),
        "expected_tokens": float(np.mean([r["tokens"] for r in per_case])),
        "cases_never_solved": int(sum(r["success"] == 0 for r in per_case)),
    }
    if independent is not None:
        out["independence_prediction"] = independent
        out["independence_overestimate"] = independent - success
    return out


def retry_report(
    run: list[CaseOutcomes],
    max_attempts: int = 3,
    fallback: list[CaseOutcomes] | None = None,
    run_label: str = "A",
    fallback_label: str = "B",
) -> dict[str, Any]:
    """Every policy, overall and per case."""
    ks = {c.k for c in run}
    k = min(ks)
    if max_attempts < 1:
        raise LabError(f"--max-attempts must be >= 1, got {max_attempts}")
    if max_attempts > k:
        raise LabError(
            f"--max-attempts {max_attempts} needs at least {max_attempts} samples per case "
            f"(the run has k={k}); retries are drawn from a case's own samples"
        )
    p_bar = float(np.mean([c.successes / c.k for c in run]))
    policies = []
    per_case: dict[str, dict[str, Any]] = {c.id: {"k": c.k, "successes": c.successes} for c in run}
    for r in range(1, max_attempts + 1):
        rows = [retry_case(c, r) for c in run]
        name = "one attempt" if r == 1 else f"same config, up to {r} attempts"
        indep = 1 - (1 - p_bar) ** r
        policies.append(_policy(name, rows, indep if r > 1 else None))
        for c, row in zip(run, rows, strict=True):
            per_case[c.id][f"up_to_{r}"] = row["success"]
    if fallback is not None:
        by_id = {c.id: c for c in fallback}
        missing = [c.id for c in run if c.id not in by_id]
        if missing:
            raise LabError(
                f"fallback run lacks {len(missing)} of the run's cases (e.g. {missing[0]!r}); "
                "give a run of the same cases"
            )
        rows = [fallback_case(c, by_id[c.id]) for c in run]
        pb_bar = float(np.mean([by_id[c.id].successes / by_id[c.id].k for c in run]))
        policies.append(
            _policy(
                f"fallback {run_label} -> {fallback_label}",
                rows,
                1 - (1 - p_bar) * (1 - pb_bar),
            )
        )
        for c, row in zip(run, rows, strict=True):
            per_case[c.id]["fallback_rate"] = by_id[c.id].successes / by_id[c.id].k
            per_case[c.id]["fallback"] = row["success"]
    return {
        "cases": len(run),
        "k": k,
        "mean_success": p_bar,
        "policies": policies,
        "per_case": per_case,
        "definitions": {
            "retry": "mean over cases of 1 - C(k-c, r)/C(k, r): r of the case's own k outcomes "
            "drawn without replacement",
            "fallback": "mean over cases of p_A + (1 - p_A) p_B (A, B independent given the case)",
            "independence_prediction": "1 - (1 - mean p)^r (retry) or 1 - (1 - mean p_A)"
            "(1 - mean p_B) (fallback): every attempt an independent coin flip",
            "expected_tokens": "prompt + output tokens, expected over the attempts made",
        },
    }


def markdown(report: dict[str, Any], title: str) -> str:
    out = [
        f"# Retry policies: {md_cell(title)}",
        "",
        f"{report['cases']} cases, k={report['k']} samples each; mean one-attempt success "
        f"{report['mean_success']:.3f}.",
        "",
        "| policy | success | independence predicts | overestimate | expected attempts | "
        "expected tokens | cases never solved |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in report["policies"]:
        indep = p.get("independence_prediction")
        over = p.get("independence_overestimate")
        out.append(
            f"| {md_cell(p['policy'])} | {p['success']:.3f} | "
            f"{'-' if indep is None else f'{indep:.3f}'} | "
            f"{'-' if over is None else f'{over:+.3f}'} | {p['expected_attempts']:.2f} | "
            f"{p['expected_tokens']:.1f} | {p['cases_never_solved']} |"
        )
    out += ["", "## Definitions", ""]
    out += [f"- {k}: {v}" for k, v in report["definitions"].items()]
    return scrub("\n".join(out) + "\n")


def run_retry(
    run_dir: str,
    max_attempts: int,
    fallback_dir: str | None,
    out: str | None,
    allow_modules: tuple[str, ...] = (),
) -> tuple[dict[str, Any], str, Path]:
    """Load, estimate, write OUT (Markdown) and OUT with .json; returns (report, md, path).
    `allow_modules`: --allow-module entries (python checks re-run here)."""
    policy = CodePolicy.from_settings(allow_modules)
    run = load_outcomes(run_dir, policy)
    fallback = load_outcomes(fallback_dir, policy) if fallback_dir else None
    report = retry_report(
        run, max_attempts, fallback, Path(run_dir).name, Path(fallback_dir or "B").name
    )
    report["runs"] = {"run": run_dir, "fallback": fallback_dir}
    text = markdown(report, Path(run_dir).name)
    path = Path(out) if out else Path(run_dir) / RETRY
    if path.suffix == ".json":  # --out x.json: the JSON there, the Markdown beside it
        path = path.with_suffix(".md")
    path.parent.mkdir(parents=True, exist_ok=True)
    store = RunStore(path.parent)
    store.write_text(path.name, text)
    store.write_json(path.with_suffix(".json").name, report)
    return report, text, path
