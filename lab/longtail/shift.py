"""Distribution-shift checklist: how does a curated demo set differ from what production sends?

`lab shift DEMO PROD` loads both case sets (any format lab.cases.load_cases reads; production
samples need no checks) and lists gaps. Each gap has a size (its unit in `size_label`), a
statistical test where one applies, and a severity:

    aspect        size                                        test
    language      total variation distance of language shares  chi-square, 2 x languages
                  (langid.py; "und" when unsure)
    script        total variation of script-mix shares (the    chi-square, 2 x mixes
                  scripts of a case's letters: LATIN, LATIN+CJK)
    length        KS statistic D of input token counts         two-sample KS
    schema FIELD  |missing-or-empty share prod - demo|         Fisher exact, 2 x 2
    tags          total variation of tag-occurrence shares     chi-square, 2 x tags (approx.
                                                               when cases carry several tags)
    tag TAG       prod share, for a tag that is >= MIN_TAG_SHARE of prod and absent from demo
                  or under-represented there by UNDER_FACTOR   Fisher exact, 2 x 2
    embedding     unbiased MMD^2 (RBF, median-heuristic        permutation test
                  bandwidth) of the input embeddings

Severity (THRESHOLDS below, per aspect: low / medium / high): the size picks the level; when a
test applies and is not significant (p >= ALPHA) the level is capped at "low", since the size
may then be sampling noise. A tag absent from demo is a coverage gap whatever the test says:
"high" when Fisher's p < ALPHA, else "medium"; an under-represented tag is "medium" when
significant, else "low". Gaps come sorted by severity, then size.

    from lab.longtail.shift import compare_sets
    report = compare_sets(demo_cases, prod_cases, embedder, TokenCounter(), permutations=1000)
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from lab.cases import textinfo
from lab.cases.loaders import load_cases
from lab.cases.model import Case
from lab.errors import LabError
from lab.longtail.twosample import (
    chi_square,
    fisher_2x2,
    ks_test,
    mmd_test,
    shares,
    total_variation,
)
from lab.models import DEFAULT_MODEL

LEVELS = ("none", "low", "medium", "high")
ALPHA = 0.05
#: size at or above which a gap is low / medium / high, per aspect
THRESHOLDS: dict[str, tuple[float, float, float]] = {
    "language": (0.05, 0.10, 0.25),
    "script": (0.05, 0.10, 0.25),
    "length": (0.10, 0.20, 0.35),
    "schema": (0.05, 0.10, 0.25),
    "tags": (0.05, 0.10, 0.25),
    # MMD^2 of L2-normalized sentence embeddings with the median-heuristic bandwidth: two
    # samples of one distribution give ~0 (+-0.01 at 50 cases each); a change of topic or
    # language mix gives 0.1 and more.
    "embedding": (0.02, 0.05, 0.15),
}
#: a tag is load-bearing when at least this share of production cases carries it
MIN_TAG_SHARE = 0.02
#: ... and under-represented when its demo share is below prod share / UNDER_FACTOR
UNDER_FACTOR = 2.0
#: production inputs whose nearest demo input has a lower cosine similarity are "uncovered"
COVERAGE_SIMILARITY = 0.5


def severity(size: float, thresholds: tuple[float, float, float], p_value: float | None) -> str:
    level = sum(size >= t for t in thresholds)
    if p_value is not None and p_value >= ALPHA:
        level = min(level, 1)
    return LEVELS[level]


def gap(
    aspect: str,
    name: str,
    size: float,
    size_label: str,
    detail: str,
    test: dict[str, Any] | None,
    level: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    p = test["p_value"] if test else None
    return {
        "aspect": aspect,
        "name": name,
        "size": float(size),
        "size_label": size_label,
        "severity": level or severity(size, THRESHOLDS[aspect], p),
        "test": test,
        "detail": detail,
        "data": data or {},
    }


def load_inputs(source: str, label: str) -> list[Case]:
    """Cases for a comparison: checks optional, encoding problems named."""
    try:
        return load_cases(source, require_checks=False)
    except UnicodeDecodeError as exc:
        raise LabError(f"{source}: {label} file is not valid UTF-8 (byte {exc.start})") from None


def _share_text(share: dict[str, float], top: int = 5) -> str:
    items = sorted(share.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return ", ".join(f"{k} {100 * v:.0f}%" for k, v in items)


def categorical_gap(aspect: str, demo: list[str], prod: list[str]) -> dict[str, Any]:
    """Language or script mix: shares, TV distance, chi-square on the 2 x K table."""
    d_share, p_share = shares(demo), shares(prod)
    keys = sorted(set(demo) | set(prod))
    dc, pc = Counter(demo), Counter(prod)
    test = chi_square(np.array([[dc[k] for k in keys], [pc[k] for k in keys]]))
    under = [
        k
        for k in keys
        if p_share.get(k, 0) >= MIN_TAG_SHARE
        and d_share.get(k, 0) * UNDER_FACTOR < p_share.get(k, 0)
    ]
    detail = f"prod: {_share_text(p_share)}; demo: {_share_text(d_share)}"
    if under:
        detail += f"; under-represented in demo: {', '.join(under)}"
    return gap(
        aspect,
        f"{aspect} mix",
        total_variation(d_share, p_share),
        "total variation distance of shares",
        detail,
        test.to_dict() if test else None,
        data={"demo": d_share, "prod": p_share, "under_represented": under},
    )


def length_gap(demo: list[int], prod: list[int], tokens: str) -> dict[str, Any]:
    test = ks_test(demo, prod)
    q = (0.5, 0.9)
    d_q = np.quantile(demo, q).tolist()
    p_q = np.quantile(prod, q).tolist()
    detail = (
        f"median {d_q[0]:.0f} -> {p_q[0]:.0f} tokens, p90 {d_q[1]:.0f} -> {p_q[1]:.0f}, "
        f"max {max(demo)} -> {max(prod)} (demo -> prod; {tokens})"
    )
    return gap(
        "length",
        "input length",
        test.statistic,
        "KS statistic D (max CDF difference)",
        detail,
        test.to_dict(),
        data={"tokens": tokens, "demo": demo, "prod": prod},
    )


def schema_gaps(demo: list[Case], prod: list[Case]) -> list[dict[str, Any]]:
    d_fields = [textinfo.structured_fields(c) for c in demo]
    p_fields = [textinfo.structured_fields(c) for c in prod]
    names = sorted({f for fs in d_fields + p_fields for f in fs})
    out = []
    for name in names:
        d_miss = sum(textinfo.is_empty(fs.get(name)) for fs in d_fields)
        p_miss = sum(textinfo.is_empty(fs.get(name)) for fs in p_fields)
        d_share, p_share = d_miss / len(demo), p_miss / len(prod)
        test = fisher_2x2(d_miss, len(demo), p_miss, len(prod))
        direction = "more often" if p_share > d_share else "less often"
        out.append(
            gap(
                "schema",
                f"field {name}",
                abs(p_share - d_share),
                "difference in missing-or-empty share",
                f"missing or empty in {100 * p_share:.0f}% of prod vs {100 * d_share:.0f}% of "
                f"demo ({direction} in production)",
                test.to_dict(),
                data={"demo_missing": d_share, "prod_missing": p_share},
            )
        )
    return out


def case_labels(case: Case, intent_field: str) -> list[str]:
    """Tags, plus "intent:VALUE" from a metadata intent field."""
    labels = list(case.tags)
    value = case.metadata.get(intent_field)
    if value not in (None, "") and f"intent:{value}" not in labels:
        labels.append(f"intent:{value}")
    return labels


def tag_gaps(demo: list[Case], prod: list[Case], intent_field: str) -> list[dict[str, Any]]:
    d_tags = [case_labels(c, intent_field) for c in demo]
    p_tags = [case_labels(c, intent_field) for c in prod]
    if not any(d_tags) and not any(p_tags):
        return []
    # Occurrences: a case with two tags counts twice; untagged cases have their own column.
    d_occ = [t for ts in d_tags for t in ts] + ["(untagged)"] * sum(not ts for ts in d_tags)
    p_occ = [t for ts in p_tags for t in ts] + ["(untagged)"] * sum(not ts for ts in p_tags)
    overall = categorical_gap("tags", d_occ, p_occ)
    overall["name"] = "tag / intent prevalence"
    if overall["test"] and any(len(ts) > 1 for ts in d_tags + p_tags):
        overall["test"]["note"] += "; cases with several tags count once per tag (approximate)"
    out = [overall]
    for tag in sorted({t for ts in p_tags for t in ts}):
        a = sum(tag in ts for ts in d_tags)
        b = sum(tag in ts for ts in p_tags)
        d_share, p_share = a / len(demo), b / len(prod)
        if p_share < MIN_TAG_SHARE or d_share * UNDER_FACTOR >= p_share:
            continue
        test = fisher_2x2(a, len(demo), b, len(prod))
        significant = test.p_value is not None and test.p_value < ALPHA
        if a == 0:
            level = "high" if significant else "medium"
            what = "absent from demo"
        else:
            level = "medium" if significant else "low"
            what = f"under-represented in demo {p_share / d_share:.1f}x"
        out.append(
            gap(
                "tags",
                f"tag {tag}",
                p_share,
                "share of production cases carrying it",
                f"{what}: {100 * p_share:.0f}% of prod ({b}/{len(prod)}) vs "
                f"{100 * d_share:.0f}% of demo ({a}/{len(demo)})",
                test.to_dict(),
                level=level,
                data={"demo_share": d_share, "prod_share": p_share},
            )
        )
    return out


def embedding_gap(
    demo_texts: list[str],
    prod_texts: list[str],
    embedder: Any,
    permutations: int,
    seed: int,
) -> dict[str, Any]:
    emb = embedder.embed(demo_texts + prod_texts)  # [m + n, d], one batched pass
    x, y = emb[: len(demo_texts)], emb[len(demo_texts) :]
    result = mmd_test(x, y, permutations=permutations, seed=seed)
    nearest = (y @ x.T).max(dim=1).values.cpu().numpy()  # [n] best demo similarity per prod
    order: list[int] = []
    seen: set[str] = set()
    for i in np.argsort(nearest):  # the five least covered distinct texts
        if prod_texts[i] not in seen and len(order) < 5:
            seen.add(prod_texts[i])
            order.append(int(i))
    uncovered = float((nearest < COVERAGE_SIMILARITY).mean())
    test = {
        "name": f"permutation test ({permutations} permutations)",
        "statistic": result.mmd2,
        "p_value": result.p_value,
        "note": f"RBF bandwidth {result.sigma:.3f} (median heuristic); null mean "
        f"{result.null_mean:.4f}, null p95 {result.null_p95:.4f}",
    }
    return gap(
        "embedding",
        "embedding distribution (MMD)",
        max(result.mmd2, 0.0),
        "unbiased MMD^2",
        f"{100 * uncovered:.0f}% of prod inputs have no demo input with cosine similarity >= "
        f"{COVERAGE_SIMILARITY} (embedder {embedder.name})",
        test,
        data={
            "mmd2": result.mmd2,
            "uncovered_share": uncovered,
            "least_covered": [
                {"text": prod_texts[i][:300], "nearest_similarity": float(nearest[i])}
                for i in order
            ],
        },
    )


def compare_sets(
    demo: list[Case],
    prod: list[Case],
    embedder: Any,
    tokens: textinfo.TokenCounter,
    permutations: int = 1000,
    seed: int = 0,
    intent_field: str = "intent",
) -> dict[str, Any]:
    """Every gap between the demo and the production cases, and a summary."""
    if len(demo) < 2 or len(prod) < 2:
        raise LabError("shift needs at least 2 cases in each set")
    d_text = [textinfo.case_text(c) for c in demo]
    p_text = [textinfo.case_text(c) for c in prod]
    d_lang = [lang for lang, _ in textinfo.languages(d_text)]
    p_lang = [lang for lang, _ in textinfo.languages(p_text)]
    gaps = [
        categorical_gap("language", d_lang, p_lang),
        categorical_gap(
            "script",
            [textinfo.script_mix(t) for t in d_text],
            [textinfo.script_mix(t) for t in p_text],
        ),
        length_gap(tokens.count(d_text), tokens.count(p_text), tokens.kind),
        *schema_gaps(demo, prod),
        *tag_gaps(demo, prod, intent_field),
        embedding_gap(d_text, p_text, embedder, permutations, seed),
    ]
    gaps.sort(key=lambda g: (-LEVELS.index(g["severity"]), -g["size"], g["name"]))
    counts = Counter(g["severity"] for g in gaps)
    return {
        "demo_cases": len(demo),
        "prod_cases": len(prod),
        "summary": {level: counts.get(level, 0) for level in reversed(LEVELS)},
        "gaps": gaps,
        "method": {
            "tokens": tokens.kind,
            "embedder": embedder.name,
            "permutations": permutations,
            "seed": seed,
            "alpha": ALPHA,
            "thresholds": {k: list(v) for k, v in THRESHOLDS.items()},
            "min_tag_share": MIN_TAG_SHARE,
            "under_factor": UNDER_FACTOR,
            "language_id": f"langid.py, 'und' below probability {textinfo.MIN_LANGUAGE_PROB}",
            "severity_rule": "size thresholds per aspect; capped at low when the test's "
            "p >= alpha; absent load-bearing tag: high if significant else medium",
        },
    }


def run_shift(
    demo_source: str,
    prod_source: str,
    out_dir: str | Path,
    embedder_name: str,
    tokenizer: str = DEFAULT_MODEL,
    permutations: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Load, compare, and write gaps.json, shift.md and shift.html into out_dir."""
    from lab.longtail.shift_render import write_outputs
    from lab.variance.diversity import Embedder

    if permutations < 1:
        raise LabError(f"--permutations must be >= 1, got {permutations}")
    demo = load_inputs(demo_source, "demo")
    prod = load_inputs(prod_source, "production")
    for source, cases in ((demo_source, demo), (prod_source, prod)):
        if len(cases) < 2:  # checked before the embedding model loads
            raise LabError(f"{source}: shift needs at least 2 cases in each set, got {len(cases)}")
    report = compare_sets(
        demo, prod, Embedder(embedder_name), textinfo.TokenCounter(tokenizer), permutations, seed
    )
    report["sources"] = {"demo": str(demo_source), "prod": str(prod_source)}
    write_outputs(report, Path(out_dir))
    return report
