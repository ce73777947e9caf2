"""Ray scale-out benchmark (`lab bench ray`): what running a sweep through Ray actors costs
and gains on this machine, as ratios.

- dispatch: the same one-engine grid (hf, batch 1/2 x seeds 0-2, 6 cells) through one actor
  of a local Ray instance against a local run with the same thread count (1). Overhead =
  the time from the first cell's record to the last one's on Ray / the same locally - 1
  (target under 5%): the steady state, without Ray's start, the worker's start and the
  engine load, which are shown apart as whole wall times.
- parallel: two engine configurations (the same work twice) as two single-threaded actors
  on a Ray instance with 2 CPUs against 1 CPU (the actors then run in turn): speed-up =
  wall(1 CPU) / wall(2 CPUs).

    lab bench ray [--max-tokens 16]
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from lab.determinism.config import SweepConfig, parse_sweep_config
from lab.determinism.sweep import run_sweep
from lab.rundir import CELLS
from lab.scale.sweep import run_sweep_on_ray


def _config(max_tokens: int, engines: int) -> SweepConfig:
    # max_num_seqs is an engine axis the hf backend does not use: N equal engines.
    return parse_sweep_config(
        {
            "name": "bench-ray",
            "mode": "single",
            "prompts": ["Tell me about Richard Feynman.", "What is the capital of France?"],
            "sampling": {"max_tokens": max_tokens},
            "axes": {
                "backend": ["hf"],
                "batch_size": [1, 2],
                "seed": [0, 1, 2],
                "max_num_seqs": [256 - i for i in range(engines)],
            },
        },
        "<bench>",
    )


def _timed(run: Any) -> tuple[float, float]:
    """(wall seconds, seconds from the first cell's record to the last one's) of one run."""
    arrivals: list[float] = []

    def arrived(cell: Any, payload: Any) -> None:
        arrivals.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        store = run(out, arrived)
        wall = time.perf_counter() - started
        entries = list(store.entries(CELLS, latest=True))
    failed = [e for e in entries if e["status"] != "ok"]
    if failed:
        raise RuntimeError(f"bench cell failed: {failed[0]['error']}")
    return wall, arrivals[-1] - arrivals[0]


def bench_ray(max_tokens: int = 16, cache_dir: str | None = None) -> dict[str, Any]:
    import torch

    from lab.backends import close_all

    one = _config(max_tokens, 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local_wall, local_span = _timed(
            lambda out, arrived: run_sweep(
                one, out, fresh=True, cache_dir=cache_dir, progress=False, on_cell=arrived
            )
        )
    finally:
        torch.set_num_threads(threads)
        close_all()

    def on_ray(config: SweepConfig, cpus: int) -> tuple[float, float]:
        return _timed(
            lambda out, arrived: run_sweep_on_ray(
                config, out, "local", fresh=True, cache_dir=cache_dir, progress=False,
                local_cpus=cpus, on_cell=arrived,
            )
        )  # fmt: skip

    ray_wall, ray_span = on_ray(one, 1)
    two = _config(max_tokens, 2)
    serial_wall, _ = on_ray(two, 1)
    parallel_wall, _ = on_ray(two, 2)
    return {
        "cells": 6,
        "local_wall_s": local_wall,
        "ray_wall_s": ray_wall,
        "ray_wall_ratio_with_start": ray_wall / local_wall,
        "local_cells_2_to_6_s": local_span,
        "ray_cells_2_to_6_s": ray_span,
        "dispatch_overhead": ray_span / local_span - 1 if local_span > 0 else None,
        "two_actors_1cpu_wall_s": serial_wall,
        "two_actors_2cpu_wall_s": parallel_wall,
        "speedup_2_actors": serial_wall / parallel_wall,
    }
