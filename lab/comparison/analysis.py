"""Paired comparison of n-of-k runs over the same cases: metrics, cohorts, moved cases, drift.

`compare_pair(cases_a, cases_b, options)` compares run B against run A case by case (the lists
are aligned: element i of both is the same case) and returns a JSON-ready dict:

- metrics: mean success, p5 of per-case success (worst-case users), pass@k and pass^k at the
  smaller of the two runs' k (per case, lab.variance.stats), each with B - A, a paired
  bootstrap interval, a paired permutation p-value and a one-sentence verdict naming its test.
  The mean's test is the sign-flip test on per-case rate differences; when k = 1 and the
  samples pair up (same seeds) it is exact McNemar instead (no clustering then). With k > 1 and
  paired samples McNemar is reported beside it: it counts the k samples of a case as
  independent, which understates the noise when cases differ.
- diversity: per-case mean pairwise cosine distance, Vendi score, semantic entropy, paired.
- cohorts: per tag, the same paired mean test (Holm over the tags) and p5 of each run; a
  cohort that moves against the overall mean is flagged.
- moved: the cases whose success moved most each way, one output of each run side by side.
- drift: |delta of the mean| against the spread the baseline predicts for an unchanged config
  (lab.comparison.drift).

`compare_runs(runs, ...)` compares every run with the first (the baseline) and applies Holm to
each metric over those comparisons when there are more than two runs.

    from lab.comparison.analysis import CompareOptions, compare_runs
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lab.agents.metrics import distribution, jensen_shannon
from lab.comparison import drift, paired
from lab.comparison.runs import (
    CaseData,
    SampleRun,
    align_cases,
    environment_differences,
    same_config,
)
from lab.variance import stats
from lab.variance.render import engine_summary

DIVERSITY = {
    "mean_distance": "semantic diversity (mean pairwise cosine distance)",
    "vendi": "Vendi score",
    "semantic_entropy": "semantic entropy",
}


@dataclass
class CompareOptions:
    alpha: float = 0.05
    seed: int = 0
    bootstrap: int = 2000
    permutations: int = 2000
    #: cases listed per direction among those that moved most
    moved: int = 5

    @property
    def level(self) -> float:
        return 1 - self.alpha


def _mean(x: np.ndarray) -> np.ndarray:
    return np.asarray(x.mean(axis=-1))


STATISTICS: dict[str, paired.Statistic] = {
    "mean": _mean,
    "p5": stats.p5_rows,
    "pass@k": stats.nanmean_rows,
    "pass^k": stats.nanmean_rows,
}
LABELS = {
    "mean": "mean success",
    "p5": "p5 of per-case success (worst-case users)",
    "pass@k": "pass@k",
    "pass^k": "pass^k (all k pass)",
}


def samples_pair(cases_a: list[CaseData], cases_b: list[CaseData]) -> bool:
    """Sample j of a case in A pairs with sample j in B: same k and the same recorded seeds."""
    return all(
        a.k == b.k and None not in a.seeds and a.seeds == b.seeds
        for a, b in zip(cases_a, cases_b, strict=True)
    )


def mcnemar_table(cases_a: list[CaseData], cases_b: list[CaseData]) -> dict[str, int]:
    """Discordant per-sample counts: b = A passed and B failed, c = A failed and B passed."""
    b = sum(int(np.sum(a.passed & ~o.passed)) for a, o in zip(cases_a, cases_b, strict=True))
    c = sum(int(np.sum(~a.passed & o.passed)) for a, o in zip(cases_a, cases_b, strict=True))
    return {"a_pass_b_fail": b, "a_fail_b_pass": c}


def per_case_values(cases: list[CaseData], k: int) -> dict[str, np.ndarray]:
    """Per-case rate, pass@k and pass^k at a common k (each case's own n samples)."""
    return {
        "mean": np.array([c.rate for c in cases]),
        "p5": np.array([c.rate for c in cases]),
        "pass@k": np.array([stats.pass_at_k(c.k, c.successes, k) for c in cases]),
        "pass^k": np.array([stats.pass_hat_k(c.k, c.successes, k) for c in cases]),
    }


def _metric_row(
    a: np.ndarray,
    b: np.ndarray,
    statistic: paired.Statistic,
    options: CompareOptions,
    rng: np.random.Generator,
    test: paired.TestResult | None = None,
) -> dict[str, Any]:
    keep = ~(np.isnan(a) | np.isnan(b))
    value_a = float(statistic(a[keep][None, :])[0]) if keep.any() else math.nan
    value_b = float(statistic(b[keep][None, :])[0]) if keep.any() else math.nan
    lo, hi = paired.paired_bootstrap(a, b, statistic, rng, options.bootstrap, options.level)
    if test is None:
        name = "sign-flip permutation test on per-case differences"
        if statistic is not _mean and statistic is not stats.nanmean_rows:
            name = "paired permutation test (A/B swapped within cases)"
        test = paired.paired_permutation_test(a, b, statistic, rng, options.permutations, name)
    return {
        "a": value_a,
        "b": value_b,
        "delta": value_b - value_a,
        "ci": [lo, hi],
        "p": test.p_value,
        "p_adjusted": test.p_value,
        "test": test.test,
        "test_method": test.method,
        "cases": int(keep.sum()),
    }


def _say(
    row: dict[str, Any], label: str, options: CompareOptions, name_b: str, **words: str
) -> str:
    test = row["test"] + (" , Holm-adjusted" if row["p_adjusted"] != row["p"] else "")
    return paired.verdict(
        label,
        row["delta"],
        (row["ci"][0], row["ci"][1]),
        row["p_adjusted"],
        options.alpha,
        test.replace(" ,", ","),
        name_b=name_b,
        level=options.level,
        **words,
    )


def _representative(case: CaseData, want_pass: bool) -> dict[str, Any]:
    """The first sample with the wanted outcome (else sample 0): what moved, shown."""
    index = next((j for j, p in enumerate(case.passed) if bool(p) == want_pass), 0)
    return {
        "sample_index": index,
        "passed": bool(case.passed[index]),
        "text": case.texts[index],
        "reasons": case.reasons[index],
        "seed": case.seeds[index],
    }


def _prompt(spec: dict[str, Any]) -> str:
    if isinstance(spec.get("prompt"), str):
        return str(spec["prompt"])
    messages = spec.get("messages") or []
    return str(messages[-1].get("content", "")) if messages else ""


def moved_cases(
    cases_a: list[CaseData], cases_b: list[CaseData], count: int
) -> dict[str, list[dict[str, Any]]]:
    """The `count` cases that moved most up (B better) and down, with outputs side by side."""
    deltas = np.array([b.rate - a.rate for a, b in zip(cases_a, cases_b, strict=True)])
    order = np.argsort(deltas, kind="stable")
    out: dict[str, list[dict[str, Any]]] = {"up": [], "down": []}
    for direction, indices in (("up", order[::-1]), ("down", order)):
        for i in indices[:count]:
            d = float(deltas[i])
            if (direction == "up" and d <= 0) or (direction == "down" and d >= 0):
                break
            a, b = cases_a[i], cases_b[i]
            out[direction].append(
                {
                    "id": a.id,
                    "tags": a.tags,
                    "prompt": _prompt(a.spec),
                    "a_rate": a.rate,
                    "b_rate": b.rate,
                    "delta": d,
                    "a_output": _representative(a, want_pass=direction == "down"),
                    "b_output": _representative(b, want_pass=direction == "up"),
                }
            )
    return out


def cohort_rows(
    cases_a: list[CaseData],
    cases_b: list[CaseData],
    overall_delta: float,
    options: CompareOptions,
    rng: np.random.Generator,
    name_b: str,
) -> list[dict[str, Any]]:
    """Per tag: paired mean delta (Holm over the tags), p5 of each run, a flag against the mean."""
    tags = sorted({t for c in cases_a for t in c.tags})
    rows = []
    for tag in tags:
        idx = [i for i, c in enumerate(cases_a) if tag in c.tags]
        a = np.array([cases_a[i].rate for i in idx])
        b = np.array([cases_b[i].rate for i in idx])
        row = _metric_row(a, b, _mean, options, rng)
        row |= {
            "tag": tag,
            "a_p5": stats.quantiles(a, (0.05,))[0],
            "b_p5": stats.quantiles(b, (0.05,))[0],
        }
        rows.append(row)
    for row, p in zip(rows, paired.holm([r["p"] for r in rows]), strict=True):
        row["p_adjusted"] = p
        # A cohort moving against the overall change: the tail a mean can hide.
        row["against_mean"] = bool(overall_delta * row["delta"] < 0)
        row["verdict"] = _say(row, f"cohort {row['tag']}", options, name_b)
    return rows


def _mean_js(a: list[list[str]], b: list[list[str]]) -> tuple[float, list[float]]:
    per = [jensen_shannon(distribution([[x] for x in p]), distribution([[x] for x in q]))
           for p, q in zip(a, b, strict=True)]  # fmt: skip
    return float(np.mean(per)), per


def action_divergence(
    cases_a: list[CaseData], cases_b: list[CaseData], rng: np.random.Generator, rounds: int = 500
) -> dict[str, Any] | None:
    """Two agent runs: per case the Jensen-Shannon divergence (base 2) of their action-sequence
    distributions, the mean over cases, and a permutation p-value (each case's trajectories
    shuffled between the runs: the mean two runs of one distribution would show at this k)."""
    if any(c.actions is None for c in cases_a + cases_b):
        return None
    a = [list(c.actions or []) for c in cases_a]
    b = [list(c.actions or []) for c in cases_b]
    observed, per = _mean_js(a, b)
    hits = 0
    for _ in range(rounds):
        pa, pb = [], []
        for x, y in zip(a, b, strict=True):
            pool = np.array(x + y, dtype=object)[rng.permutation(len(x) + len(y))].tolist()
            pa.append(pool[: len(x)])
            pb.append(pool[len(x) :])
        hits += _mean_js(pa, pb)[0] >= observed - 1e-12
    order = np.argsort(per, kind="stable")[::-1]
    return {
        "mean_js": observed,
        "p": (hits + 1) / (rounds + 1),
        "permutations": rounds,
        "cases": [
            {
                "id": cases_a[i].id,
                "js": per[i],
                "a_top": max(set(a[i]), key=a[i].count),
                "b_top": max(set(b[i]), key=b[i].count),
                "a_distinct": len(set(a[i])),
                "b_distinct": len(set(b[i])),
            }
            for i in order[:10]
        ],
    }


def compare_pair(
    cases_a: list[CaseData],
    cases_b: list[CaseData],
    options: CompareOptions,
    name_a: str = "A",
    name_b: str = "B",
) -> dict[str, Any]:
    """Every paired statistic of B against A over aligned cases (see the module docstring)."""
    rng = np.random.default_rng(options.seed)
    k = min(min(c.k for c in cases_a), min(c.k for c in cases_b))
    values_a, values_b = per_case_values(cases_a, k), per_case_values(cases_b, k)
    is_paired = samples_pair(cases_a, cases_b)
    table = mcnemar_table(cases_a, cases_b) if is_paired else None
    mcnemar: dict[str, Any] | None = None
    if table is not None:
        mcnemar = {
            **table,
            "p": paired.mcnemar_exact(table["a_pass_b_fail"], table["a_fail_b_pass"]),
            "role": "verdict test for the mean (k = 1)"
            if k == 1
            else "reported only: treats the k samples of a case as independent",
        }
    metrics: dict[str, Any] = {}
    for name, statistic in STATISTICS.items():
        test = None
        if name == "mean" and mcnemar is not None and k == 1:
            test = paired.TestResult(mcnemar["p"], "exact McNemar on paired samples", "exact")
        metrics[name] = _metric_row(values_a[name], values_b[name], statistic, options, rng, test)
        metrics[name]["label"] = LABELS[name]
    diversity: dict[str, Any] = {}
    for name, label in DIVERSITY.items():
        a = np.array([c.diversity.get(name, math.nan) for c in cases_a], dtype=float)
        b = np.array([c.diversity.get(name, math.nan) for c in cases_b], dtype=float)
        if np.all(np.isnan(a) | np.isnan(b)):
            continue
        diversity[name] = _metric_row(a, b, _mean, options, rng) | {"label": label}
    result: dict[str, Any] = {
        "a": name_a,
        "b": name_b,
        "cases": len(cases_a),
        "k_a": max(c.k for c in cases_a),
        "k_b": max(c.k for c in cases_b),
        "k_common": k,
        "samples_paired": is_paired,
        "mcnemar": mcnemar,
        "metrics": metrics,
        "diversity": diversity,
        "cohorts": cohort_rows(cases_a, cases_b, metrics["mean"]["delta"], options, rng, name_b),
        "moved": moved_cases(cases_a, cases_b, options.moved),
        "drift": drift.drift_check(cases_a, cases_b, options.alpha),
        "actions": action_divergence(cases_a, cases_b, rng),
        "per_case": [
            {"id": a.id, "tags": a.tags, "a_rate": a.rate, "b_rate": b.rate}
            for a, b in zip(cases_a, cases_b, strict=True)
        ],
    }
    write_verdicts(result, options)
    return result


def write_verdicts(result: dict[str, Any], options: CompareOptions) -> None:
    """(Re)write every verdict sentence from the current (possibly Holm-adjusted) p-values."""
    name_b = result["b"]
    for row in result["metrics"].values():
        row["verdict"] = _say(row, row["label"], options, name_b)
    for row in result["diversity"].values():
        row["verdict"] = _say(
            row, row["label"], options, name_b, better="more diverse", worse="less diverse"
        )


def compare_runs(
    runs: list[SampleRun], options: CompareOptions, intersection: bool = False
) -> dict[str, Any]:
    """Every run against the first (the baseline); Holm per metric when more than one pair."""
    ids, note = align_cases(runs, intersection)
    base = runs[0]
    comparisons = []
    for other in runs[1:]:
        cases_a = [base.cases[i] for i in ids]
        cases_b = [other.cases[i] for i in ids]
        result = compare_pair(cases_a, cases_b, options, base.name, other.name)
        same, differences = same_config(base, other)
        result["same_config"] = same
        result["config_differences"] = differences
        result["environment_differences"] = environment_differences(base, other)
        result["drift"]["applies"] = same
        comparisons.append(result)
    if len(comparisons) > 1:
        for family in ("metrics", "diversity"):
            for name in comparisons[0][family]:
                rows = [c[family][name] for c in comparisons if name in c[family]]
                for row, p in zip(rows, paired.holm([r["p"] for r in rows]), strict=True):
                    row["p_adjusted"] = p
        for c in comparisons:
            write_verdicts(c, options)
    return {
        "kind": "sample",
        "runs": [
            {
                "name": r.name,
                "path": str(r.path),
                "cases": len(r.cases),
                "k": r.k,
                "model": r.identity.get("model"),
                "backend": r.identity.get("backend"),
                "dtype": r.identity.get("dtype"),
                "temperature": r.identity.get("temperature"),
                "seed": r.identity.get("seed"),
                "engine": r.engine,
                "serving": engine_summary(r.engine),
            }
            for r in runs
        ],
        "baseline": base.name,
        "cases_compared": len(ids),
        "cases_note": note,
        "multiple_comparisons": (
            "every run against the first (baseline); p-values Holm-adjusted per metric over "
            f"the {len(comparisons)} comparisons; intervals are per comparison"
            if len(comparisons) > 1
            else "one comparison: no adjustment"
        ),
        "options": {
            "alpha": options.alpha,
            "seed": options.seed,
            "bootstrap": options.bootstrap,
            "permutations": options.permutations,
        },
        "comparisons": comparisons,
        "definitions": DEFINITIONS,
    }


DEFINITIONS = {
    "delta": "B - A, B the compared run, A the baseline (first run)",
    "ci": "paired percentile bootstrap over cases (the same resampled cases for both runs)",
    "sign-flip permutation test": "two-sided; per-case differences B - A with random signs "
    "(exact over all 2^C sign patterns when C <= 12)",
    "paired permutation test": "two-sided; A and B swapped within each case at random, the "
    "statistic (here p5) recomputed",
    "exact McNemar": "per-sample outcomes paired by (case, sample index, seed); binomial "
    "test on the discordant counts",
    "pass@k / pass^k": "per case at k = the smaller k of the two runs (lab.variance.stats)",
    "Holm": "step-down adjustment of the p-values of one metric over the comparisons",
    "drift": "|delta mean| beyond z * predicted sd, the sd an unchanged config predicts from "
    "the baseline's per-case binomial variance plus its between-run variance",
    "action JS divergence": "agent runs: per case the Jensen-Shannon divergence (base 2, 0 to 1) "
    "of the two runs' action-sequence distributions, mean over cases; p from shuffling each "
    "case's trajectories between the runs",
}
