"""fp32 / bf16 / LayerCast side by side on the hf backend: memory, speed, and how much the
output moves with the batch.

"Give Me FP32 or Give Me Death?" (arXiv 2506.09501) reports LayerCast (bf16 weights, fp32
compute) keeping divergence under 3.4% with 34% less memory than fp32. This measures the three
dtypes on one machine in one run:

- memory: each dtype is loaded in its own child process, which reports its parameter bytes
  (as stored, exact), the working set of one batched greedy generation (the peak of its
  anonymous memory, sampled every 2 ms, above the level after loading: activations, KV cache,
  LayerCast's transient fp32 weight copies), their sum, and the child's peak resident memory
  (loading included). Resident memory after loading is no measure of the weights here: fp32
  tensors can stay zero-copy views of the mmap'd checkpoint, a converted dtype leaves loader
  buffers behind;
- speed: all three models loaded in this process; greedy generation of every prompt alone and
  in batches of `batch`, timed in interleaved rounds (fp32, bf16, layercast, fp32, ...) so that
  the other load on a shared machine falls on all three alike; tokens/s and the ratio to fp32;
- batch movement: per dtype, the share of prompts whose tokens differ between alone and in a
  batch, the share whose logprobs differ at all, the largest |delta logprob|; and against the
  fp32 output (alone): the share of prompts whose tokens differ, and where they first differ.

The load average before and after is part of the result: timings on a shared machine mean
little without it, ratios from one run a little more.

    lab bench layercast [--num-cases 24] [--max-tokens 32] [--batch 8] [--rounds 2]
                        [--json-out FILE]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

DTYPES = ("fp32", "bf16", "layercast")


@dataclass
class Memory:
    #: the parameters as stored (exact; tied weights once)
    parameter_bytes: int
    #: anonymous resident memory after loading, minus before (bytes). Not the weights alone:
    #: fp32 tensors may stay zero-copy views of the mmap'd checkpoint (file pages, not
    #: anonymous), a converted dtype leaves loader buffers behind
    anon_after_load: int
    #: the generation's working set: the peak of anonymous memory during one batched greedy
    #: generation (sampled every 2 ms) above its level after loading (activations, KV cache,
    #: LayerCast's transient fp32 weight copies)
    generate_working_set: int
    #: the process's peak resident memory (VmHWM) minus before: loading included (the same
    #: fp32 checkpoint read for every dtype)
    peak_rss: int

    @property
    def weights_and_working_set(self) -> int:
        return self.parameter_bytes + self.generate_working_set


@dataclass
class Movement:
    prompts: int
    #: alone vs in a batch: prompts whose tokens differ / whose logprobs differ at all
    batch_tokens_differ: int
    batch_logprobs_differ: int
    batch_max_abs_logprob_delta: float
    #: against fp32 alone: prompts whose tokens differ, their first divergence indices, and the
    #: largest |delta logprob| over the common prefixes
    vs_fp32_tokens_differ: int
    vs_fp32_first_divergences: list[int]
    vs_fp32_max_abs_logprob_delta: float


@dataclass
class LayerCastBench:
    model: str
    prompts: int
    max_tokens: int
    batch: int
    rounds: int
    loadavg_before: str
    loadavg_after: str = ""
    memory: dict[str, Memory] = field(default_factory=dict)
    #: dtype -> {"alone": [seconds per round], "batched": [...]}, and the output tokens
    seconds: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    tokens: dict[str, dict[str, int]] = field(default_factory=dict)
    movement: dict[str, Movement] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:  # not Linux
        return "n/a"


def _rss_bytes(field_name: str) -> int:
    """VmRSS / VmHWM of this process from /proc (Linux), in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field_name} in /proc/self/status")


def _trim() -> None:
    """glibc: hand freed heap memory back to the system (no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def memory_child(dtype: str, model: str, cache_dir: str | None, batch: int) -> dict[str, int]:
    """In a fresh process: load one dtype, generate one batch, report the memory."""
    import torch  # noqa: F401 - imported before the baseline is taken
    import transformers  # noqa: F401

    from lab.backends import EngineConfig, SamplingConfig
    from lab.backends.hf import HFBackend
    from lab.backends.layercast import parameter_bytes
    from lab.cases.loaders import load_cases

    requests = [c.request() for c in load_cases("bundled:basic")[:batch]]
    _trim()
    before, anon_before = _rss_bytes("VmRSS"), _rss_bytes("RssAnon")
    backend = HFBackend(
        EngineConfig(backend="hf", device="cpu", dtype=dtype, model=model), cache_dir
    )
    _trim()  # memory freed while loading (conversions) goes back to the system
    anon_load = _rss_bytes("RssAnon")
    peak = [anon_load]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.002):
            peak[0] = max(peak[0], _rss_bytes("RssAnon"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        backend.generate(requests, SamplingConfig(max_tokens=16, logprobs=2))
    finally:
        done.set()
        sampler.join()
    return {
        "parameter_bytes": parameter_bytes(backend.model),
        "anon_after_load": anon_load - anon_before,
        "generate_working_set": max(peak[0], _rss_bytes("RssAnon")) - anon_load,
        "peak_rss": _rss_bytes("VmHWM") - before,
    }


def _measure_memory(dtype: str, model: str, cache_dir: str | None, batch: int) -> Memory:
    cmd = [sys.executable, "-m", "lab.bench.layercast", "--memory-child", dtype, model, str(batch)]
    if cache_dir:
        cmd.append(cache_dir)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"memory child for {dtype} failed: {out.stderr.strip()[-500:]}")
    return Memory(**json.loads(out.stdout.strip().splitlines()[-1]))


def bench_layercast(
    prompts: int = 24,
    max_tokens: int = 32,
    batch: int = 8,
    rounds: int = 2,
    model: str = "smollm2-135m-instruct",
    cache_dir: str | None = None,
    emit: Any = None,
) -> LayerCastBench:
    from lab.backends import EngineConfig, SamplingConfig
    from lab.backends.hf import HFBackend
    from lab.cases.loaders import load_cases
    from lab.determinism.divergence import compare

    say = emit or (lambda message: None)
    result = LayerCastBench(model, prompts, max_tokens, batch, rounds, loadavg())
    for dtype in DTYPES:
        say(f"memory: {dtype} in a child process")
        result.memory[dtype] = _measure_memory(dtype, model, cache_dir, batch)
    requests = [c.request() for c in load_cases("bundled:basic")[:prompts]]
    sampling = SamplingConfig(max_tokens=max_tokens, logprobs=2)
    backends = {
        dtype: HFBackend(
            EngineConfig(backend="hf", device="cpu", dtype=dtype, model=model), cache_dir
        )
        for dtype in DTYPES
    }
    records: dict[str, dict[str, Any]] = {}
    try:
        for r in range(rounds):
            for dtype, backend in backends.items():
                say(f"round {r + 1}/{rounds}: {dtype}")
                times = result.seconds.setdefault(dtype, {"alone": [], "batched": []})
                started = time.perf_counter()
                alone = [backend.generate([q], sampling)[0] for q in requests]
                times["alone"].append(time.perf_counter() - started)
                started = time.perf_counter()
                batched = [
                    g
                    for i in range(0, len(requests), batch)
                    for g in backend.generate(requests[i : i + batch], sampling)
                ]
                times["batched"].append(time.perf_counter() - started)
                if r == 0:
                    records[dtype] = {"alone": alone, "batched": batched}
                    result.tokens[dtype] = {
                        "alone": sum(len(g.output_token_ids) for g in alone),
                        "batched": sum(len(g.output_token_ids) for g in batched),
                    }
    finally:
        for backend in backends.values():
            backend.close()
    result.loadavg_after = loadavg()
    for dtype in DTYPES:
        in_batch = [
            compare(a, b)
            for a, b in zip(records[dtype]["alone"], records[dtype]["batched"], strict=True)
        ]
        vs_fp32 = [
            compare(a, b)
            for a, b in zip(records["fp32"]["alone"], records[dtype]["alone"], strict=True)
        ]
        result.movement[dtype] = Movement(
            prompts=len(requests),
            batch_tokens_differ=sum(not d.tokens_equal for d in in_batch),
            batch_logprobs_differ=sum(d.positions_logprob_differs > 0 for d in in_batch),
            batch_max_abs_logprob_delta=max(d.max_abs_logprob_delta for d in in_batch),
            vs_fp32_tokens_differ=sum(not d.tokens_equal for d in vs_fp32),
            vs_fp32_first_divergences=sorted(
                d.first_divergence for d in vs_fp32 if d.first_divergence is not None
            ),
            vs_fp32_max_abs_logprob_delta=max(d.max_abs_logprob_delta for d in vs_fp32),
        )
    return result


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def format_layercast(result: LayerCastBench) -> str:
    fp32 = result.memory["fp32"]
    lines = [
        f"LayerCast bench: {result.model}, {result.prompts} prompts x {result.max_tokens} tokens "
        f"greedy, alone and in batches of {result.batch}, {result.rounds} round(s)",
        f"load average before {result.loadavg_before}, after {result.loadavg_after}",
        "",
        f"{'dtype':<10} {'weights':>9} {'vs fp32':>8} {'gen set':>9} {'sum':>9} {'vs fp32':>8} "
        f"{'peak RSS':>9}",
    ]
    for dtype, m in result.memory.items():
        total = m.weights_and_working_set
        lines.append(
            f"{dtype:<10} {_mib(m.parameter_bytes):>9} "
            f"{m.parameter_bytes / fp32.parameter_bytes:>8.2f} {_mib(m.generate_working_set):>9} "
            f"{_mib(total):>9} {total / fp32.weights_and_working_set:>8.2f} {_mib(m.peak_rss):>9}"
        )
    lines.append(
        "(gen set: the peak extra memory of one batched generation; sum: weights + gen set; "
        "peak RSS: the whole child, loading the fp32 checkpoint included)"
    )
    lines += [
        "",
        f"{'dtype':<10} {'alone tok/s':>12} {'vs fp32':>8} {'batched tok/s':>14} {'vs fp32':>8}",
    ]
    rate = {
        dtype: {
            mode: result.tokens[dtype][mode] / statistics.median(result.seconds[dtype][mode])
            for mode in ("alone", "batched")
        }
        for dtype in result.seconds
    }
    for dtype, r in rate.items():
        lines.append(
            f"{dtype:<10} {r['alone']:>12.1f} {r['alone'] / rate['fp32']['alone']:>8.2f} "
            f"{r['batched']:>14.1f} {r['batched'] / rate['fp32']['batched']:>8.2f}"
        )
    lines += [
        "",
        f"{'dtype':<10} {'batch moves tokens':>19} {'logprobs':>9} {'max |dlp|':>10} "
        f"{'vs fp32 tokens':>15} {'max |dlp|':>10}  first divergences",
    ]
    for dtype, mv in result.movement.items():
        lines.append(
            f"{dtype:<10} {mv.batch_tokens_differ:>14}/{mv.prompts:<4} "
            f"{mv.batch_logprobs_differ:>9} {mv.batch_max_abs_logprob_delta:>10.3g} "
            f"{mv.vs_fp32_tokens_differ:>10}/{mv.prompts:<4} "
            f"{mv.vs_fp32_max_abs_logprob_delta:>10.3g}  "
            f"{', '.join(map(str, mv.vs_fp32_first_divergences)) or '-'}"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # the memory child: python -m lab.bench.layercast --memory-child ...
    if len(sys.argv) >= 5 and sys.argv[1] == "--memory-child":
        cache = sys.argv[5] if len(sys.argv) > 5 else None
        print(json.dumps(memory_child(sys.argv[2], sys.argv[3], cache, int(sys.argv[4]))))
    else:
        sys.exit("usage: lab bench layercast (this module's own entry point is its memory child)")
