"""`lab demo`: the foundation's main job.

Greedy generation of a few chat prompts on the default model through both backends; each
target prompt alone and inside a batch of 8 different prompts. Prints, per backend and prompt,
whether the tokens and the per-token logprobs matched, where they first diverged, and how the
two backends compare with each other.

    lab demo [--backends hf,vllm] [--max-tokens 48] [--json out.json]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from lab.backends import EngineConfig, Generation, SamplingConfig, load_backend
from lab.backends.prompts import chat
from lab.determinism.divergence import compare, min_top_gap

TARGETS = [
    ("capital-of-france", "What is the capital of France? Answer in one word."),
    ("feynman", "Tell me about Richard Feynman."),
    ("sort-list", "Sort these numbers from smallest to largest: 42, 7, 19, 3."),
]
FILLERS = [
    ("haiku", "Write a haiku about the sea."),
    ("photosynthesis", "Explain photosynthesis to a ten-year-old."),
    ("python-reverse", "How do I reverse a list in Python?"),
    ("translate", "Translate 'good morning' into Spanish and German."),
    ("sum", "What is 17 plus 25?"),
]
BATCH_SIZE = 8


@dataclass
class DemoRow:
    backend: str
    prompt: str
    tokens_match: bool
    first_divergence: int | None
    max_abs_logprob_delta: float
    positions_logprob_differs: int
    tokens: int
    min_top_gap: float | None
    text: str


@dataclass
class DemoResult:
    rows: list[DemoRow] = field(default_factory=list)
    cross_backend: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)


def demo_requests() -> tuple[list[Any], list[Any]]:
    targets = [chat(rid, text) for rid, text in TARGETS]
    fillers = [chat(rid, text) for rid, text in FILLERS]
    return targets, (targets + fillers)[:BATCH_SIZE]


def run_demo(
    backends: list[str],
    model: str,
    dtype: str = "fp32",
    max_tokens: int = 48,
    cache_dir: str | None = None,
    progress: Any = print,
) -> DemoResult:
    targets, batch = demo_requests()
    sampling = SamplingConfig(temperature=0.0, max_tokens=max_tokens, logprobs=5)
    result = DemoResult()
    alone_by_backend: dict[str, dict[str, Generation]] = {}
    for name in backends:
        progress(f"[{name}] starting the engine ({model}, {dtype}) ...")
        started = time.perf_counter()
        backend = load_backend(EngineConfig(backend=name, model=model, dtype=dtype), cache_dir)
        start_s = time.perf_counter() - started
        progress(f"[{name}] engine ready in {start_s:.1f} s; generating")
        t0 = time.perf_counter()
        alone = {t.id: backend.generate([t], sampling)[0] for t in targets}
        alone_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        batched = {g.request_id: g for g in backend.generate(batch, sampling)}
        batch_s = time.perf_counter() - t0
        alone_tokens = sum(len(g.output_token_ids) for g in alone.values())
        batch_tokens = sum(len(g.output_token_ids) for g in batched.values())
        result.timings[name] = {
            "engine_start_s": start_s,
            "alone_tok_per_s": alone_tokens / alone_s,
            "batch8_tok_per_s": batch_tokens / batch_s,
        }
        alone_by_backend[name] = alone
        for target in targets:
            d = compare(alone[target.id], batched[target.id])
            result.rows.append(
                DemoRow(
                    backend=name,
                    prompt=target.id,
                    tokens_match=d.tokens_equal,
                    first_divergence=d.first_divergence,
                    max_abs_logprob_delta=d.max_abs_logprob_delta,
                    positions_logprob_differs=d.positions_logprob_differs,
                    tokens=len(alone[target.id].output_token_ids),
                    min_top_gap=min_top_gap(alone[target.id]),
                    text=alone[target.id].text,
                )
            )
    if len(backends) >= 2:
        ref, other = backends[0], backends[1]
        for target in targets:
            d = compare(alone_by_backend[ref][target.id], alone_by_backend[other][target.id])
            result.cross_backend.append(
                {"prompt": target.id, "reference": ref, "other": other} | d.to_dict()
            )
    return result


def format_demo(result: DemoResult) -> str:
    lines = [
        "Each target prompt alone vs inside a batch of 8 (greedy, same engine):",
        f"{'backend':8} {'prompt':18} {'tokens':>6} {'tokens match':>12} {'first div':>9} "
        f"{'logprobs match':>14} {'max |dlogprob|':>14} {'min top1-top2':>13}",
    ]
    for r in result.rows:
        differ = r.positions_logprob_differs
        logprobs_match = "bitwise" if differ == 0 else f"{differ} differ"
        lines.append(
            f"{r.backend:8} {r.prompt:18} {r.tokens:>6} {('yes' if r.tokens_match else 'NO'):>12} "
            f"{('-' if r.first_divergence is None else str(r.first_divergence)):>9} "
            f"{logprobs_match:>14} "
            f"{r.max_abs_logprob_delta:>14.2e} "
            f"{('-' if r.min_top_gap is None else f'{r.min_top_gap:.4f}'):>13}"
        )
    if result.cross_backend:
        lines.append("")
        lines.append("Across backends, each prompt alone:")
        for c in result.cross_backend:
            match = (
                "tokens identical"
                if c["tokens_equal"]
                else (f"tokens diverge at {c['first_divergence']}")
            )
            lines.append(
                f"  {c['reference']} vs {c['other']} {c['prompt']:18} {match}; "
                f"max |dlogprob| {c['max_abs_logprob_delta']:.2e} over {c['common_prefix']} tokens"
            )
    lines.append("")
    for name, t in result.timings.items():
        lines.append(
            f"[{name}] engine start {t['engine_start_s']:.1f} s; alone {t['alone_tok_per_s']:.1f} "
            f"tok/s; batch of 8 {t['batch8_tok_per_s']:.1f} tok/s"
        )
    lines.append("")
    lines.append("Greedy answers (alone):")
    seen = set()
    for r in result.rows:
        if r.prompt in seen:
            continue
        seen.add(r.prompt)
        lines.append(f"  {r.prompt}: {r.text[:100]!r}")
    return "\n".join(lines)
