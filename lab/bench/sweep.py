"""Sweep overhead benchmark: what the sweep machinery adds on top of the engine's own
generation time (grid expansion, request building, records, fsynced appends, resume checks),
told apart from the costs a sweep pays once whatever its size.

A 12-cell batch-size x seed grid on one engine. Each cell's wall time is taken between the
sweep's per-cell callbacks, so for every cell after the first:

    per-cell overhead = cell wall time - time inside backend.generate

Target: under 5% of the cell's generation time. The first cell's interval also holds the
one-off costs, reported apart: the environment record (its first call imports torch: 1.4-3.0 s
on the 2-core EPYC), opening the run directory, the engine start, and after the last cell the
engine's shutdown. The old single figure (everything but engine start and generation, over
generation) is printed too, as "all-in".

    lab bench sweep [--backend hf|vllm] [--max-tokens 16]
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from lab.determinism.config import parse_sweep_config
from lab.determinism.grid import Cell
from lab.determinism.sweep import run_sweep
from lab.rundir import CELLS


def bench_sweep(
    backend: str = "hf", max_tokens: int = 16, cache_dir: str | None = None
) -> dict[str, Any]:
    from lab.envinfo import environment_record

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
    marks: list[float] = []

    def on_cell(cell: Cell, payload: dict[str, Any]) -> None:
        marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        # What run_sweep's own first call would cost in a fresh `lab sweep` process (imports
        # torch); timed here so it is named, not hidden in the first cell.
        environment_record()
        env_s = time.perf_counter() - started
        sweep_started = time.perf_counter()
        store = run_sweep(config, out, fresh=True, cache_dir=cache_dir, progress=False,
                          on_cell=on_cell)  # fmt: skip
        ended = time.perf_counter()
        entries = list(store.entries(CELLS, latest=True))
    wall = ended - started
    ok = [e for e in entries if e["status"] == "ok"]
    generate = [e["timings"]["generate_s"] if e["status"] == "ok" else 0.0 for e in entries]
    generate_s = sum(generate)
    engine_s = ok[0]["timings"]["engine_start_s"] if ok else 0.0
    # cells 2..n: the interval between callbacks is one cell's generation plus its machinery
    intervals = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    per_cell = [i - g for i, g in zip(intervals, generate[1:], strict=False)]
    per_cell_s = sum(per_cell) / len(per_cell) if per_cell else float("nan")
    mean_generate = sum(generate[1:]) / len(per_cell) if per_cell else float("nan")
    first_cell_s = marks[0] - sweep_started if marks else 0.0
    shutdown_s = ended - marks[-1] if marks else 0.0
    # the first interval, less the engine, its generation and one cell's machinery
    startup_s = first_cell_s - engine_s - generate[0] - (per_cell_s if per_cell else 0.0)
    overhead = wall - engine_s - generate_s
    return {
        "backend": backend,
        "cells": len(entries),
        "cells_ok": len(ok),
        "output_tokens": sum(e["timings"]["output_tokens"] for e in ok),
        "engine_start_s": engine_s,
        "generate_s": generate_s,
        "sweep_wall_s": wall,
        "per_cell_overhead_s": per_cell_s,
        "per_cell_overhead_ratio": per_cell_s / mean_generate if per_cell else float("nan"),
        "environment_record_s": env_s,
        "startup_s": startup_s,
        "engine_shutdown_s": shutdown_s,
        "one_off_s": env_s + startup_s + engine_s + shutdown_s,
        "overhead_s": overhead,
        "overhead_ratio": overhead / generate_s if generate_s else float("nan"),
    }


def format_bench(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"sweep overhead ({result['backend']}, {result['cells']} cells, "
            f"{result['output_tokens']} output tokens): generation {result['generate_s']:.2f} s, "
            f"sweep wall {result['sweep_wall_s']:.2f} s",
            f"  per cell: machinery {1e3 * result['per_cell_overhead_s']:.1f} ms = "
            f"{100 * result['per_cell_overhead_ratio']:.2f}% of the cell's generation time "
            "(target < 5%)",
            f"  one-off: {result['one_off_s']:.2f} s = environment record "
            f"{result['environment_record_s']:.2f} s (first call: imports torch) + start-up "
            f"{result['startup_s']:.2f} s + engine start {result['engine_start_s']:.2f} s + "
            f"engine shutdown {result['engine_shutdown_s']:.2f} s",
            f"  all-in (wall - engine start - generation) / generation: "
            f"{100 * result['overhead_ratio']:.2f}% ({result['overhead_s']:.2f} s)",
        ]
    )
