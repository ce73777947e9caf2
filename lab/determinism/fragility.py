"""Fragility: which prompts will flip on other hardware, from one greedy run (no sweep).

A greedy path flips where a perturbation (another batch size, dtype, TP degree, GPU) moves the
top-1 and top-2 logits past each other, so a path that came close to a tie is the one to
watch. Each prompt is scored from the top-2 logprobs its record already holds:

- the gap at each step: top-1 minus top-2 logprob (nats; equal to the logit gap at
  temperature 0; a sampled record's processed logprobs are scaled back by its temperature);
- its smallest gap (the score: smaller is more fragile) and where on the path it is;
- how many steps fall under each of a few thresholds (default 0.01, 0.05, 0.1, 0.5 nats), and
  which steps.

On a sweep run directory the reference cell is scored (the first ok cell when it failed), and
every other ok cell says which prompts actually diverged from it: the report then tells how
well the score predicts divergence (AUROC of -min gap, precision in the top decile against the
base rate, and per threshold what flagging "a step under it" catches), and where each
divergence fell on the reference's gap scale. "Give Me FP32 or Give Me Death?" (arXiv
2506.09501) plots the top-1/top-2 *probability* gap along greedy paths to show that outputs
diverge at near ties; `gap_histogram` bins the same quantity (p1 - p2) for comparison.

Sources: a sweep run directory, a sample run directory (sample 0 of each case, when it kept
top logprobs: `lab sample --logprobs 2`), or a JSONL file of generation records (`lab generate
--json --logprobs 2 ... > gens.jsonl`). Nothing is written.

    lab fragility runs/quickstart/sweep [--thresholds 0.01,0.1] [--top 20] [--json FILE]
    from lab.determinism.fragility import load_source, analyze
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from lab.backends.base import Generation
from lab.determinism.divergence import compare, top_gap
from lab.determinism.fragility_sources import FragilitySource, load_source, sweep_reference
from lab.errors import LabError

__all__ = ["analyze", "format_report", "load_source", "parse_thresholds", "sweep_reference"]

#: default thresholds on the top-1/top-2 logprob gap, in nats (0.01 ~ a 1% probability ratio)
THRESHOLDS = (0.01, 0.05, 0.1, 0.5)
#: bins of the probability gap p1 - p2, as the paper's histograms bin it
PROB_BINS = 10


def parse_thresholds(text: str) -> tuple[float, ...]:
    """'0.01,0.1' -> (0.01, 0.1); LabError naming --thresholds for anything else."""
    try:
        values = tuple(sorted({float(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise LabError(f"--thresholds: expected numbers like 0.01,0.1, got {text!r}") from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise LabError(f"--thresholds: expected positive numbers like 0.01,0.1, got {text!r}")
    return values


def step_gaps(generation: Generation) -> list[float | None]:
    """Top-1 minus top-2 logprob at each step of a record (None where fewer than 2 kept).

    At temperature T > 0 the stored logprobs are those of the tempered distribution, whose
    gaps are the logit gaps divided by T: they are multiplied back by T, so every record is on
    the greedy (logit) scale."""
    temperature = float(generation.sampling.get("temperature") or 0.0)
    scale = temperature if temperature > 0 else 1.0
    out: list[float | None] = []
    for step in range(len(generation.top_logprobs)):
        gap = top_gap(generation, step)
        out.append(gap * scale if gap is not None and math.isfinite(gap) else None)
    return out


def probability_gap(generation: Generation, step: int) -> float | None:
    """p1 - p2 at one step, from the stored (processed) top-2 logprobs."""
    alternatives = generation.top_logprobs[step] if step < len(generation.top_logprobs) else []
    if len(alternatives) < 2:
        return None
    return math.exp(alternatives[0].logprob) - math.exp(alternatives[1].logprob)


@dataclass
class PromptFragility:
    """One prompt's score, and on a sweep what actually happened to it."""

    prompt: str
    #: steps whose gap is known (top-2 kept)
    steps: int
    #: the smallest top-1/top-2 logprob gap on the path (None: no step with two alternatives)
    min_gap: float | None
    #: the step (0-based output token index) where it is
    min_gap_step: int | None
    #: threshold (as text) -> steps whose gap is under it
    positions: dict[str, list[int]] = field(default_factory=dict)
    #: on a sweep: did any other cell's output differ from the reference's?
    diverged: bool | None = None
    #: on a sweep: the earliest first-divergence index over the cells, and the reference's
    #: gap there (None: the other output was a longer continuation, no step to read)
    first_divergence: int | None = None
    gap_at_divergence: float | None = None
    #: on a sweep: the number of cells / outputs that diverged from the reference
    outputs_diverged: int = 0
    outputs_compared: int = 0

    def under(self, threshold: float) -> int:
        return len(self.positions.get(_key(threshold), []))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _key(threshold: float) -> str:
    return f"{threshold:g}"


def score_generation(
    prompt: str, generation: Generation, thresholds: tuple[float, ...] = THRESHOLDS
) -> PromptFragility:
    gaps = step_gaps(generation)
    known = [(i, g) for i, g in enumerate(gaps) if g is not None]
    smallest = min(known, key=lambda item: item[1]) if known else None
    return PromptFragility(
        prompt=prompt,
        steps=len(known),
        min_gap=smallest[1] if smallest else None,
        min_gap_step=smallest[0] if smallest else None,
        positions={_key(t): [i for i, g in known if g < t] for t in thresholds},
    )


def rank(prompts: list[PromptFragility]) -> list[PromptFragility]:
    """Most fragile first: smallest min gap, then most steps under the smallest threshold;
    prompts without a known gap last."""

    def key(p: PromptFragility) -> tuple[float, int, str]:
        first = min(p.positions, key=float) if p.positions else None
        return (
            p.min_gap if p.min_gap is not None else math.inf,
            -len(p.positions[first]) if first else 0,
            p.prompt,
        )

    return sorted(prompts, key=key)


# -- prediction quality ------------------------------------------------------------------


def auroc(scores: list[float], labels: list[bool]) -> float | None:
    """Area under the ROC curve of `scores` (higher = predicted positive) for `labels`:
    the probability that a random positive outscores a random negative, ties counting half
    (the Mann-Whitney U statistic over n_pos * n_neg, with average ranks). None without at
    least one positive and one negative."""
    positives = sum(labels)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        average = (start + end) / 2 + 1  # ranks are 1-based
        for j in range(start, end + 1):
            ranks[order[j]] = average
        start = end + 1
    rank_sum = sum(r for r, label in zip(ranks, labels, strict=True) if label)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def precision_at_top(ranked_labels: list[bool], share: float = 0.1) -> tuple[float | None, int]:
    """Share of positives among the first ceil(share * n) of a ranking (at least one), and
    that count."""
    if not ranked_labels:
        return None, 0
    k = max(1, math.ceil(share * len(ranked_labels)))
    return sum(ranked_labels[:k]) / k, k


def gap_histogram(values: list[float], bins: int = PROB_BINS) -> list[int]:
    """Counts of probability gaps p1 - p2 in `bins` equal bins over [0, 1]."""
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int(v * bins)))] += 1
    return counts


@dataclass
class FragilityReport:
    source: str
    #: "sweep", "sample" or "records"
    kind: str
    #: what was scored (e.g. "reference cell dtype=float32, batch_size=1")
    scored: str
    thresholds: list[float]
    prompts: list[PromptFragility]
    notes: list[str] = field(default_factory=list)
    #: sweep only: how well the score predicts divergence
    prediction: dict[str, Any] | None = None
    #: probability-gap histograms (p1 - p2, PROB_BINS bins on [0, 1]): every scored step, and
    #: (sweep) the reference's step where each divergent output first differed
    histograms: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["prompts"] = [p.to_dict() for p in self.prompts]
        return d


def analyze(source: FragilitySource, thresholds: tuple[float, ...] = THRESHOLDS) -> FragilityReport:
    """Score every prompt of a source, rank them, and on a sweep measure the prediction."""
    scored = {pid: score_generation(pid, g, thresholds) for pid, g in source.records.items()}
    step_probability_gaps = [
        gap
        for g in source.records.values()
        for i in range(len(g.top_logprobs))
        if (gap := probability_gap(g, i)) is not None
    ]
    histograms = {"all_steps": gap_histogram(step_probability_gaps)}
    prediction = None
    if source.others is not None:
        at_divergence: list[float] = []
        for pid, prompt in scored.items():
            reference = source.records[pid]
            diffs = [compare(reference, g) for g in source.others.get(pid, [])]
            firsts = [d.first_divergence for d in diffs if d.first_divergence is not None]
            prompt.outputs_compared = len(diffs)
            prompt.outputs_diverged = len(firsts)
            prompt.diverged = bool(firsts) if diffs else None
            if firsts:
                first = min(firsts)
                gaps = step_gaps(reference)
                prompt.first_divergence = first
                prompt.gap_at_divergence = gaps[first] if first < len(gaps) else None
                for f in firsts:
                    if (gap := probability_gap(reference, f)) is not None:
                        at_divergence.append(gap)
        histograms["at_divergence"] = gap_histogram(at_divergence)
        prediction = _prediction(rank(list(scored.values())), thresholds)
    return FragilityReport(
        source=source.path,
        kind=source.kind,
        scored=source.scored,
        thresholds=list(thresholds),
        prompts=rank(list(scored.values())),
        notes=list(source.notes),
        prediction=prediction,
        histograms=histograms,
    )


def _prediction(ranked: list[PromptFragility], thresholds: tuple[float, ...]) -> dict[str, Any]:
    labelled = [p for p in ranked if p.diverged is not None]
    labels = [bool(p.diverged) for p in labelled]
    scores = [-(p.min_gap if p.min_gap is not None else math.inf) for p in labelled]
    precision, k = precision_at_top(labels)
    divergent = [p for p in labelled if p.diverged]
    rows = []
    for t in thresholds:
        flagged = [p for p in labelled if p.under(t)]
        hits = sum(1 for p in flagged if p.diverged)
        rows.append(
            {
                "threshold": t,
                "flagged": len(flagged),
                "flagged_diverged": hits,
                "precision": hits / len(flagged) if flagged else None,
                "recall": hits / len(divergent) if divergent else None,
            }
        )
    at_min = [
        p
        for p in divergent
        if p.first_divergence is not None and p.first_divergence == p.min_gap_step
    ]
    return {
        "prompts": len(labelled),
        "diverged": len(divergent),
        "base_rate": len(divergent) / len(labelled) if labelled else None,
        "auroc": auroc(scores, labels),
        "precision_top_decile": precision,
        "top_decile_size": k,
        "thresholds": rows,
        "diverged_at_min_gap_step": len(at_min),
    }


# -- text output --------------------------------------------------------------------------


def _g(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def format_report(report: FragilityReport, top: int | None = None) -> str:
    """The ranking and (on a sweep) the prediction, as plain text for a terminal."""
    from lab.safetext import terminal

    t_keys = [_key(t) for t in report.thresholds]
    lines = [f"fragility of {terminal(report.source)} ({report.kind})"]
    lines.append(f"scored: {terminal(report.scored)}")
    lines += [f"note: {n}" for n in report.notes]
    header = f"{'rank':>4}  {'prompt':<24} {'min gap':>9} {'at':>4} " + " ".join(
        f"{'<' + k:>6}" for k in t_keys
    )
    sweep = report.prediction is not None
    if sweep:
        header += f" {'diverged':>9} {'first div':>9} {'gap there':>9}"
    lines += ["", header]
    shown = report.prompts if top is None else report.prompts[:top]
    for i, p in enumerate(shown, 1):
        row = (
            f"{i:>4}  {terminal(p.prompt)[:24]:<24} {_g(p.min_gap):>9} "
            f"{'-' if p.min_gap_step is None else p.min_gap_step:>4} "
            + " ".join(f"{len(p.positions.get(k, [])):>6}" for k in t_keys)
        )
        if sweep:
            div = "-" if p.diverged is None else f"{p.outputs_diverged}/{p.outputs_compared}"
            first = "-" if p.first_divergence is None else str(p.first_divergence)
            row += f" {div:>9} {first:>9} {_g(p.gap_at_divergence):>9}"
        lines.append(row)
    if top is not None and len(report.prompts) > top:
        lines.append(f"      ... {len(report.prompts) - top} more (--top)")
    near = [p for p in shown if p.positions.get(t_keys[0])]
    if near:
        lines += ["", f"steps under {t_keys[0]} nats:"]
        lines += [
            f"  {terminal(p.prompt)}: {', '.join(map(str, p.positions[t_keys[0]]))}" for p in near
        ]
    pred = report.prediction
    if pred is not None:
        lines += [
            "",
            f"prediction on this sweep: {pred['diverged']} of {pred['prompts']} prompts diverged "
            f"in some cell (base rate {_g(pred['base_rate'])})",
            f"AUROC: {_g(pred['auroc'])}"
            + (" (undefined: needs diverged and stable prompts)" if pred["auroc"] is None else ""),
            f"precision at the top decile ({pred['top_decile_size']} prompt(s)): "
            f"{_g(pred['precision_top_decile'])}",
            f"divergences at the path's smallest-gap step: {pred['diverged_at_min_gap_step']} of "
            f"{pred['diverged']}",
            "",
            f"{'flag: a step under':>20} {'flagged':>8} {'diverged':>9} {'precision':>10} "
            f"{'recall':>7}",
        ]
        for r in pred["thresholds"]:
            lines.append(
                f"{r['threshold']:>20g} {r['flagged']:>8} {r['flagged_diverged']:>9} "
                f"{_g(r['precision']):>10} {_g(r['recall']):>7}"
            )
    lines += ["", "top-1 minus top-2 probability (p1 - p2), as binned in arXiv 2506.09501:"]
    edges = [f"{i / PROB_BINS:.1f}" for i in range(PROB_BINS)]
    lines.append(f"{'bin from':>16} " + " ".join(f"{e:>5}" for e in edges))
    names = {"all_steps": "every step", "at_divergence": "at divergences"}
    for name, counts in report.histograms.items():
        lines.append(f"{names.get(name, name):>16} " + " ".join(f"{c:>5}" for c in counts))
    return "\n".join(lines)
