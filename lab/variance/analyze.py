"""From a run's samples to its metrics: checks, per-case statistics, tails, diversity, cost.

`analyze(cases, entries, config)` returns (metrics, rows): `metrics` is the JSON-ready dict
written to metrics.json (see lab/variance/stats.py for every definition), `rows` one dict per
sample for samples.parquet.

Majority vote (maj@k): each sample's answer is what its first extracting check pulled out (the
number, the label, canonical JSON, the normalized text), else its normalized text. The majority
answer is the most frequent one (ties: the one seen first); the case counts as solved under
maj@k when at least half of the samples giving that answer passed.

Worst output of a case: among its failing samples if any, else among all, the one least
similar on average to the case's other samples (lowest embedding typicality).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lab.cases.checks import normalize_answer, run_checks
from lab.cases.cohorts import CohortSpec, cohort_groups
from lab.cases.model import Case
from lab.progress import Heartbeat
from lab.variance import decompose, stats
from lab.variance.config import SampleConfig
from lab.variance.diversity import Embedder, diversity, weighted_semantic_entropy
from lab.variance.embedcache import embed_with_cache
from lab.variance.success import run_record, success_statistics


def evaluate_sample(case: Case, gen: dict[str, Any]) -> dict[str, Any]:
    """Checks on one sample -> passed, reason per check, extracted answer."""
    if gen.get("finish_reason") == "error":
        return {"passed": False, "reasons": [f"generation error: {gen.get('error')}"], "answer": ""}
    text = gen["text"]
    results = run_checks(case.checks, text, case)
    answer = next((r.answer for r in results if r.answer is not None), None)
    if answer is None:
        answer = normalize_answer(text)[:200]
    return {
        "passed": all(r.passed for r in results),
        "reasons": [f"{c.type}: {r.reason}" for c, r in zip(case.checks, results, strict=True)],
        "answer": answer,
    }


def success_record(case: Case, passed: list[bool], answers: list[Any]) -> dict[str, Any]:
    """One case's success over its k samples (or trajectories): rate, Wilson interval, pass@k
    and pass^k on the k grid, and the majority answer. Shared by the n-of-k and agent reports."""
    k, c = len(passed), sum(passed)
    lo, hi = stats.wilson_interval(c, k)
    ks = stats.k_grid(k)
    maj_answer, maj_share, maj_ok = majority(answers, passed)
    return {
        "id": case.id,
        "tags": case.tags,
        "n": k,
        "successes": c,
        "rate": c / k,
        "wilson_95": [lo, hi],
        "pass_at": {str(j): stats.pass_at_k(k, c, j) for j in ks},
        "pass_hat": {str(j): stats.pass_hat_k(k, c, j) for j in ks},
        "majority_answer": maj_answer,
        "majority_share": maj_share,
        "majority_correct": maj_ok,
    }


def majority(answers: list[str], passed: list[bool]) -> tuple[str, float, bool]:
    """(majority answer, its share, whether its samples mostly passed)."""
    answer, count = Counter(answers).most_common(1)[0]  # ties: first inserted wins
    group = [p for a, p in zip(answers, passed, strict=True) if a == answer]
    return answer, count / len(answers), sum(group) * 2 >= len(group)


def engine_record(gens: list[list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The engine record of the run's first generation that has one."""
    for row in gens:
        for g in row:
            if isinstance(g.get("engine"), dict) and g["engine"]:
                return dict(g["engine"])
    return None


def _finite(x: float) -> float | None:
    return x if isinstance(x, float | int) and math.isfinite(x) else None


def cost_frame(entries: list[dict[str, Any]], prices: dict[str, float]) -> dict[str, Any]:
    gens = [g for e in entries for g in e["generations"]]
    tokens_in = sum(len(g["prompt_token_ids"]) for g in gens)
    tokens_out = sum(len(g["output_token_ids"]) for g in gens)
    prefill = sum(len(e["generations"][0]["prompt_token_ids"]) for e in entries if e["generations"])
    wall = sum(float(e.get("wall_s", 0.0)) for e in entries)
    out: dict[str, Any] = {
        "inferences": len(gens),
        "tokens_in": tokens_in,
        "tokens_in_unique_prompts": prefill,
        "tokens_out": tokens_out,
        "wall_s": wall,
        "tokens_out_per_s": tokens_out / wall if wall > 0 else None,
        "tokens_total_per_s": (tokens_in + tokens_out) / wall if wall > 0 else None,
        "truncated_share": sum(g["finish_reason"] == "length" for g in gens) / max(len(gens), 1),
        "errors": sum(g["finish_reason"] == "error" for g in gens),
    }
    if prices:
        price = tokens_in / 1e6 * prices.get("input", 0.0) + tokens_out / 1e6 * prices.get(
            "output", 0.0
        )
        out["price"] = price
        out["price_per_inference"] = price / max(len(gens), 1)
        out["prices_per_million"] = dict(prices)
    return out


def cohort_tails(
    cases: list[Case], rates: np.ndarray, spec: CohortSpec | dict[str, Any] | None, model: str
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Tail summary per tag and per configured bucket (lab.cases.cohorts), worst tail first
    (stats.tail_order); and how the buckets were made."""
    groups, info = cohort_groups(cases, spec, model)
    tails = {
        name: stats.tail_summary(rates[np.array(members)]) | {"kind": kind}
        for name, (kind, members) in groups.items()
    }
    ordered = sorted(tails.items(), key=lambda kv: (*stats.tail_order(kv[1]), kv[0]))
    return dict(ordered), info


def analyze(
    cases: list[Case],
    entries: list[dict[str, Any]],
    config: SampleConfig,
    embedder: Embedder | None = None,
    embeddings_cache: Path | None = None,
    emit: Callable[[str], None] = lambda line: None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`embeddings_cache`: RUN_DIR/embeddings.npz (lab.variance.embedcache); None: no cache.
    `emit`: a line as each step starts (checks, embeddings, statistics), and periodic lines
    while the embedding pass runs (lab.progress.Heartbeat)."""
    by_id = {e["case_id"]: e for e in entries}
    cases = [c for c in cases if c.id in by_id]
    if not cases:
        raise ValueError("no sampled cases to analyze")
    k = config.k
    gens = [sorted(by_id[c.id]["generations"], key=lambda g: g["sample_index"]) for c in cases]
    emit(f"analysis 1/3: checks on {sum(len(gs) for gs in gens)} samples")
    evals = [[evaluate_sample(c, g) for g in gs] for c, gs in zip(cases, gens, strict=True)]
    passed = np.array([[e["passed"] for e in row] for row in evals], dtype=bool)  # [C, k]

    texts = [[g["text"] for g in gs] for gs in gens]
    # [C, k, d], one pass; a rebuilt report reuses the first one's (the model is not loaded)
    label = f"analysis 2/3: embeddings of {sum(len(t) for t in texts)} outputs ({config.embedder})"
    emit(label)
    with Heartbeat(emit, label):
        emb, embedder_name, embed_device = embed_with_cache(
            embeddings_cache, texts, config, embedder
        )
    emit("analysis 3/3: statistics, bootstrap intervals, cohorts")
    div = diversity(emb, config.cluster_threshold)
    typicality = div.typicality.cpu().numpy()
    labels = div.labels.cpu().numpy()

    classes = decompose.consistency_classes(passed, labels, config.consistent_share)
    per_case: list[dict[str, Any]] = []
    for i, case in enumerate(cases):
        answers = [e["answer"] for e in evals[i]]
        failing = np.flatnonzero(~passed[i])
        pool = failing if len(failing) else np.arange(k)
        worst = int(pool[np.argmin(typicality[i, pool])])
        per_case.append(
            {
                **success_record(case, passed[i].tolist(), answers),
                "mean_distance": float(div.mean_distance[i]),
                "vendi": float(div.vendi[i]),
                "clusters": int(div.clusters[i]),
                "semantic_entropy": float(div.semantic_entropy[i]),
                "semantic_entropy_weighted": weighted_semantic_entropy(
                    labels[i], [g["token_logprobs"] for g in gens[i]]
                ),
                "consistency": classes[i]["class"],
                "dominant_cluster_share": classes[i]["dominant_cluster_share"],
                "dominant_cluster_pass_share": classes[i]["dominant_cluster_pass_share"],
                "worst": {
                    "sample_index": worst,
                    "passed": bool(passed[i, worst]),
                    "text": gens[i][worst]["text"],
                    "reasons": evals[i][worst]["reasons"],
                    "seed": gens[i][worst]["seed"],
                },
            }
        )

    success = success_statistics(
        passed,
        np.array([row["majority_correct"] for row in per_case], dtype=float),
        np.random.default_rng(config.bootstrap_seed),
        samples=config.bootstrap_samples,
    )
    rates = success.rates
    headline = success.headline | {
        "mean_vendi": float(div.vendi.mean()),
        "mean_semantic_entropy": float(div.semantic_entropy.float().mean()),
        **decompose.class_counts(classes),
    }
    decomposition = decompose.decomposition(
        passed,
        np.random.default_rng(config.bootstrap_seed),
        samples=config.bootstrap_samples,
    )
    # per tag and per configured bucket (locale, length band, schema, intent), worst tail first
    cohorts, cohort_info = cohort_tails(cases, rates, config.cohorts, config.model)

    rows = []
    for i, case in enumerate(cases):
        for j, g in enumerate(gens[i]):
            lps = g["token_logprobs"]
            rows.append(
                {
                    "case_id": case.id,
                    "sample_index": g["sample_index"],
                    "seed": g["seed"],
                    "tags": case.tags,
                    "text": g["text"],
                    "passed": bool(passed[i, j]),
                    "reasons": "; ".join(evals[i][j]["reasons"]),
                    "answer": evals[i][j]["answer"],
                    "finish_reason": g["finish_reason"],
                    "prompt_tokens": len(g["prompt_token_ids"]),
                    "output_tokens": len(g["output_token_ids"]),
                    "mean_logprob": float(np.mean(lps)) if lps else None,
                    "typicality": float(typicality[i, j]),
                    "cluster": int(labels[i, j]),
                    "output_token_ids": g["output_token_ids"],
                    "token_logprobs": lps,
                }
            )
    metrics = {
        "run": {
            # the engine: what it recorded itself (device, versions, what TP ran with), else
            # the configuration asked for
            **run_record(config, passed, engine_record(gens) or config.engine_config().to_dict()),
            "independent_seeds": config.independent_seeds,
            "embedder": embedder_name,
            "embed_device": embed_device,
            "cluster_threshold": config.cluster_threshold,
            "consistent_share": config.consistent_share,
            "bootstrap_samples": config.bootstrap_samples,
        },
        "headline": headline,
        "intervals_95": success.intervals,
        "variance_decomposition": decomposition,
        "curves": success.curves,
        "run_rates": success.run_rates,
        "cost": cost_frame([by_id[c.id] for c in cases], config.prices),
        "cohorts": cohorts,
        "cohort_buckets": cohort_info,
        "cases": per_case,
        "definitions": DEFINITIONS,
    }
    return sanitize(metrics), rows


DEFINITIONS = {
    "quantiles": "numpy 'linear' (Hyndman & Fan type 7) over per-case success rates",
    "pass@k": "mean over cases of 1 - C(n-c,k)/C(n,k) (unbiased, product form); NaN if n < k",
    "pass^k": "mean over cases of C(c,k)/C(n,k) (tau-bench); NaN if n < k",
    "maj@k": "share of cases whose most frequent answer (ties: first seen) mostly passed",
    "cv_across_runs": "sample std (ddof=1) / mean of the k run success rates; run j = sample j",
    "high_variance": "mean success > 2 x p5 of per-case success",
    "intervals_95": "percentile bootstrap over cases (cases resampled with replacement)",
    "wilson_95": "Wilson score interval, z = norm.ppf(0.975) = 1.959963984540054",
    "vendi": "exp(entropy of eigenvalues of S/k), S = cosine similarity of the k outputs",
    "clusters": "connected components of cosine similarity >= cluster_threshold",
    "semantic_entropy": "discrete semantic entropy: entropy (nats) of the cluster shares, each "
    "sample weighing 1/k",
    "semantic_entropy_weighted": "likelihood-weighted semantic entropy (nats): a cluster's "
    "probability is its samples' exp(mean token logprob) summed, normalized over the k samples "
    "(Farquhar et al. 2024's reference estimator); null where logprobs are missing",
    "variance_decomposition": "one sample's success variance = between-case var(p) (input) + "
    "within-case E[p(1-p)] (sampling); within = mean(r(1-r)) k/(k-1), between = var(r, ddof=1) "
    "- within/k clipped at 0; shares over their sum with case-bootstrap 95% intervals; "
    "run_mean_variance = between/n + within/(n k); k_star = ceil(within/between), the samples "
    "per case past which more cases help more; cases_needed_* = ceil(z^2 (between + within/k) "
    "/ h^2) for a 95% half-width h on mean success",
    "consistency": "consistent-correct / consistent-wrong: the dominant semantic cluster holds "
    ">= consistent_share of the k samples and >= consistent_share of its samples pass / fail "
    "every check; flaky: every other case",
    "consistent_wrong_share": "share of cases that are consistent-wrong (confidently wrong)",
    "tokens_in": "prompt tokens summed over every sample (what an API bills)",
    "tokens_in_unique_prompts": "prompt tokens summed over cases (what a prefix cache prefills)",
}


def sanitize(value: Any) -> Any:
    """JSON-safe: NaN -> None, +-inf -> "inf"/"-inf", numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): sanitize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sanitize(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value
