"""Backend throughput: engine start time and greedy output tokens/s at batch 1 and batch 16.

Each backend is measured in the same run on the same prompts (distinct chat prompts, greedy,
fixed max_tokens); a warm-up call runs first so lazy initialisation is not counted.

    lab bench backends [--backends hf,vllm] [--max-tokens 64]
"""

from __future__ import annotations

import time
from typing import Any

from lab.backends import EngineConfig, SamplingConfig, close_all, load_backend
from lab.determinism.modes import filler_requests


def bench_backends(
    backends: list[str], max_tokens: int = 64, dtype: str = "fp32", cache_dir: str | None = None
) -> list[dict[str, Any]]:
    sampling = SamplingConfig(temperature=0.0, max_tokens=max_tokens, logprobs=1)
    prompts = filler_requests(16)
    rows = []
    for name in backends:
        started = time.perf_counter()
        backend = load_backend(EngineConfig(backend=name, dtype=dtype), cache_dir)
        start_s = time.perf_counter() - started
        backend.generate(prompts[:2], SamplingConfig(max_tokens=4))  # warm-up
        row: dict[str, Any] = {"backend": name, "dtype": dtype, "engine_start_s": start_s}
        for batch in (1, 16):
            t0 = time.perf_counter()
            gens = backend.generate(prompts[:batch], sampling)
            seconds = time.perf_counter() - t0
            tokens = sum(len(g.output_token_ids) for g in gens)
            row[f"batch{batch}_tokens"] = tokens
            row[f"batch{batch}_tok_per_s"] = tokens / seconds
        rows.append(row)
        close_all()  # one engine in memory at a time
    return rows


def format_backends(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'backend':8} {'dtype':9} {'start s':>8} {'batch 1 tok/s':>14} {'batch 16 tok/s':>15}"
    ]
    for r in rows:
        lines.append(
            f"{r['backend']:8} {r['dtype']:9} {r['engine_start_s']:>8.1f} "
            f"{r['batch1_tok_per_s']:>14.1f} {r['batch16_tok_per_s']:>15.1f}"
        )
    return "\n".join(lines)
