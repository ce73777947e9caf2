"""n-of-k on Ray (`lab bench ray`, its replicas part): the same cases through 1 single-threaded
replica on a local Ray instance with 1 CPU against 2 replicas on 2 CPUs (lab.scale.sample),
as a ratio, and whether the two runs gave the same samples (they must: the calls, their
grouping and seeds do not depend on the replicas).

Speed-up = wall(1 replica) / wall(2 replicas), from the first call's record to the last (the
steady state: without Ray's start and the engines' load, shown apart as whole wall times).

    lab bench ray [--max-tokens 16]
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from lab.cases.loaders import load_cases
from lab.rundir import SAMPLES
from lab.scale.sample import RayOptions, sample_on_ray
from lab.store import RunStore
from lab.variance.config import load_config
from lab.variance.runner import open_run

#: bundled:basic's first cases, one case per engine call
CASES = 8
K = 4


def _run(replicas: int, max_tokens: int, cache_dir: str | None) -> dict[str, Any]:
    arrivals: list[float] = []
    options = RayOptions(
        address="local", replicas=replicas, local_cpus=replicas, cache_dir=cache_dir,
        on_call=lambda index, where: arrivals.append(time.perf_counter()),
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        values = {"cases": "bundled:basic", "k": K, "max_tokens": max_tokens, "backend": "hf"}
        config = load_config(None, values | {"rows_per_call": K, "out": out, "limit": CASES})
        cases = [c for _, c in config.select(load_cases(config.cases))]
        store = open_run(config, cases, config.engine_config(), fresh=True)
        started = time.perf_counter()
        sample_on_ray(config, store, cases, lambda line: None, None, options)
        wall = time.perf_counter() - started
        samples = {
            e["case_id"]: [(g["output_token_ids"], g["token_logprobs"]) for g in e["generations"]]
            for e in RunStore(store.path).entries(SAMPLES)
        }
    return {"wall": wall, "span": arrivals[-1] - arrivals[0], "samples": samples}


def bench_replicas(max_tokens: int = 16, cache_dir: str | None = None) -> dict[str, Any]:
    one = _run(1, max_tokens, cache_dir)
    two = _run(2, max_tokens, cache_dir)
    return {
        "replica_calls": CASES,
        "one_replica_wall_s": one["wall"],
        "two_replicas_wall_s": two["wall"],
        "one_replica_calls_2_to_8_s": one["span"],
        "two_replicas_calls_2_to_8_s": two["span"],
        "speedup_2_replicas": one["span"] / two["span"] if two["span"] > 0 else None,
        "replicas_samples_identical": one["samples"] == two["samples"],
    }
