"""Sweep overhead benchmark: what the sweep machinery adds on top of the engine's own
generation time (grid expansion, request building, records, fsynced appends, resume checks).

A 12-cell batch-size x seed grid on one engine; overhead = (sweep wall time - engine start -
time inside backend.generate) / time inside backend.generate. Target: under 5%.

    lab bench sweep [--backend hf|vllm] [--max-tokens 16]
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from lab.determinism.config import parse_sweep_config
from lab.determinism.sweep import CELLS, run_sweep


def bench_sweep(
    backend: str = "hf", max_tokens: int = 16, cache_dir: str | None = None
) -> dict[str, Any]:
    config = parse_sweep_config(
        {
            "name": "bench-sweep",
            "mode": "single",
            "prompts": ["Tell me about Richard Feynman.", "What is the capital of France?"],
            "sampling": {"max_tokens": max_tokens},
            "axes": {"backend": [backend], "batch_size": [1, 2, 4, 8], "seed": [0, 1, 2]},
        },
        "<bench>",
    )
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        store = run_sweep(config, out, fresh=True, cache_dir=cache_dir, progress=False)
        wall = time.perf_counter() - started
        entries = list(store.entries(CELLS, latest=True))
    ok = [e for e in entries if e["status"] == "ok"]
    generate_s = sum(e["timings"]["generate_s"] for e in ok)
    engine_s = ok[0]["timings"]["engine_start_s"] if ok else 0.0
    overhead = wall - engine_s - generate_s
    return {
        "backend": backend,
        "cells": len(entries),
        "cells_ok": len(ok),
        "output_tokens": sum(e["timings"]["output_tokens"] for e in ok),
        "engine_start_s": engine_s,
        "generate_s": generate_s,
        "sweep_wall_s": wall,
        "overhead_s": overhead,
        "overhead_ratio": overhead / generate_s if generate_s else float("nan"),
    }


def format_bench(result: dict[str, Any]) -> str:
    return (
        f"sweep overhead ({result['backend']}, {result['cells']} cells, "
        f"{result['output_tokens']} output tokens): generation {result['generate_s']:.2f} s, "
        f"sweep wall {result['sweep_wall_s']:.2f} s "
        f"(engine start {result['engine_start_s']:.2f} s), "
        f"overhead {result['overhead_s']:.3f} s = {100 * result['overhead_ratio']:.2f}% of "
        "generation time (target < 5%)"
    )
