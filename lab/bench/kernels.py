"""What batch invariance costs: each operator and end-to-end generation, mode on vs off.

Every figure is a ratio measured side by side in one run: off and on calls alternate, so load
from other processes hits both alike, and the ratio uses the fastest of the repeats (the
least disturbed). Operator shapes are SmolLM2-135M's: a decode step of 8 rows (and of 1 row:
a prompt alone), a prefill of 8 prompts x 40 tokens. End to end: greedy generation with the
hf backend, fp32, 8 chat prompts x 32 new tokens in one batch, and one prompt alone.

    lab bench kernels [--num-cases 8 --max-tokens 32 --rounds 3 --no-e2e] [--avx2]
    .venv/bin/python scripts/bench_kernels.py

Measured 2026-11-27 on the 2-core AMD EPYC (AVX-512), torch 2.13.0+cpu, 2 threads, with other
jobs on the machine (load ~2-3): generation 8 prompts x 32 tokens 2535 -> 2912 ms (1.15x;
1.13x with OMP_NUM_THREADS=1); 1 prompt alone 1330 -> 2070 ms (1.56x). Per operator: linears
at 8 and 320 rows 1.00-1.05x, LM head at 8 rows 1.00x; a 1-row linear 3.2x and a 1-row LM
head 1.8x (the row must take the GEMM path, not MKL's faster GEMV: the price of one row
matching its batched bits); attention 3.1x decode / 1.5x prefill per call (one fused call
per sequence); RMSNorm 1.7-2.5x and silu 1.7x on microsecond-sized calls. Decode steps are
~15% slower, prefill ~4%. Extra ops and per-sequence attention calls are extra OpenMP
regions, so the ratio grows when other processes contend for the cores.

Re-measured on a quiet machine (load < 1), same build: 8 prompts 2386 -> 2767 ms (1.16x); one
prompt alone 1389 -> 2414 ms (1.74x); 1-row linear 3.45x, 1-row LM head 1.23x.

With the "onednn" matmul strategy (cpu.py; packed weights, M padded to a multiple of 4), quiet:
8 prompts 2418 -> 1719 ms (0.71x); one prompt alone 1375 -> 1209 ms (0.88x); linears 0.47x at
320 rows, 0.56-0.66x at 8, 1.61x for a lone row; LM head 0.37x at 8 rows, 0.57x at 1. The
mode is faster than stock here because oneDNN's packed GEMM beats MKL's on these shapes: the
invariance itself costs the padding rows and the per-sequence attention.

2026-12-01, quiet 2-core AMD EPYC (Zen 4, AVX-512), onednn2, after the single-row mean, fp32
rsqrt and lone-sequence attention cuts: 8 prompts 0.76x, one prompt alone 0.92x; limited to
AVX2 (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2) 0.85x and
0.96x (pad, AVX2's first choice before: 1.33x and 1.64x).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from lab.backends.base import EngineConfig, SamplingConfig
from lab.backends.hf import HFBackend
from lab.backends.prompts import chat
from lab.kernels import cpu
from lab.kernels.mode import set_batch_invariant_mode
from lab.models import DEFAULT_MODEL

PROMPTS = [
    "Tell me about Richard Feynman.",
    "What is the capital of France? Answer in one word.",
    "Write a haiku about the sea.",
    "Explain photosynthesis in two sentences.",
    "List three prime numbers.",
    "Who wrote Hamlet?",
    "Describe a cat in one sentence.",
    "What is 2 + 2?",
]


@dataclass
class Timing:
    """One workload, stock kernels against batch-invariant ones."""

    name: str
    off_s: float
    on_s: float
    #: CPU matmul strategy -> seconds with the mode on and that strategy forced for every shape
    by_strategy: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.on_s / self.off_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ratio": self.ratio}


def _synchronize(device: str) -> None:
    """Wait for queued GPU work, so a timing covers the kernels and not only their launch."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextlib.contextmanager
def _strategy(mode: bool | str) -> Iterator[None]:
    """Within the block, the CPU matmul strategy `mode` names is forced (a bool: left alone)."""
    if not isinstance(mode, str):
        yield
        return
    previous = cpu.CPU_MATMUL_STRATEGY
    cpu.CPU_MATMUL_STRATEGY = mode
    try:
        yield
    finally:
        cpu.CPU_MATMUL_STRATEGY = previous


def _side_by_side(
    name: str,
    run: Callable[[bool, int], object],
    repeats: int,
    inner: int = 1,
    device: str = "cpu",
    strategies: tuple[str, ...] = (),
) -> Timing:
    """Fastest of `repeats` timings of run(on, inner) (inner calls), off and on alternating,
    then each of `strategies` forced (run with on=True inside _strategy(s))."""
    modes: list[bool | str] = [False, True, *strategies]

    def call(mode: bool | str, calls: int) -> None:
        with _strategy(mode):
            run(bool(mode), calls)

    best: dict[bool | str, float] = {mode: float("inf") for mode in modes}
    for mode in modes:  # warm-up (allocations, first-call costs, Triton compiles)
        call(mode, 1)
    _synchronize(device)
    for _ in range(repeats):
        for mode in modes:
            started = time.perf_counter()
            call(mode, inner)
            _synchronize(device)
            best[mode] = min(best[mode], (time.perf_counter() - started) / inner)
    return Timing(name, best[False], best[True], {s: best[s] for s in strategies})


def strategy_names(device: str, dtype: torch.dtype) -> tuple[str, ...]:
    """The CPU matmul strategies to time one by one (none on CUDA)."""
    if device.startswith("cuda"):
        return ()
    return tuple(cpu.candidates(dtype))


def self_check_summary(dtype: torch.dtype = torch.float32) -> str:
    """The instruction set, the self-check's verdict on every strategy at SmolLM2's linear
    shapes, and what the mode chooses there: the line `lab bench kernels` prints first."""
    shapes = ((576, 1536), (1536, 576), (576, 192), (576, 49152))
    verdicts = []
    for strategy in cpu.candidates(dtype):
        held = [cpu.rows_invariant(strategy, dtype, k, n, True) for k, n in shapes]
        verdicts.append(f"{strategy} {'holds' if all(held) else 'moves rows'}")
    chosen = {cpu.strategy_for(dtype, k, n, True) for k, n in shapes}
    return (
        f"CPU {torch.backends.cpu.get_cpu_capability()} (preference order "
        f"{cpu.cpu_isa()}: {', '.join(cpu.candidates(dtype))}), {torch.get_num_threads()} "
        f"threads; self-check at SmolLM2's linears ({str(dtype).removeprefix('torch.')}): "
        f"{'; '.join(verdicts)}; the mode uses {', '.join(sorted(chosen))}"
    )


def _op_workloads(
    device: str = "cpu", dtype: torch.dtype = torch.float32
) -> list[tuple[str, Callable[[], object], int]]:
    """(name, call, calls per timing) with SmolLM2-135M's shapes, on `device` in `dtype`."""
    g = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    w_up, w_down, head = randn(1536, 576), randn(576, 1536), randn(49152, 576)
    x1, x8, x320 = randn(1, 576), randn(8, 576), randn(320, 576)
    h8, h320 = randn(8, 1536), randn(320, 1536)
    logits8 = randn(8, 49152)
    norm8, norm320 = randn(8, 1, 576), randn(8, 40, 576)
    # attention: decode over a 100-key cache, prefill of 40 tokens; rows left-padded
    pads = torch.tensor([0, 3, 7, 1, 12, 5, 9, 2], device=device)
    dq, dk, dv = randn(8, 9, 1, 64), randn(8, 9, 100, 64), randn(8, 9, 100, 64)
    dmask = (torch.arange(100, device=device)[None, :] >= pads[:, None])[:, None, None, :]
    pq, pk, pv = randn(8, 9, 40, 64), randn(8, 9, 40, 64), randn(8, 9, 40, 64)
    keys = torch.arange(40, device=device)
    real = keys[None, :] >= pads[:, None]
    pmask = ((keys[None, :] <= keys[:, None])[None] & real[:, None, :] & real[:, :, None])[:, None]

    def rms(x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)

    sdpa = F.scaled_dot_product_attention
    return [
        ("linear 576->1536, 1 row (alone)", lambda: F.linear(x1, w_up), 200),
        ("linear 576->1536, 8 rows (decode)", lambda: F.linear(x8, w_up), 200),
        ("linear 1536->576, 8 rows (decode)", lambda: F.linear(h8, w_down), 200),
        ("linear 576->1536, 320 rows (prefill)", lambda: F.linear(x320, w_up), 20),
        ("linear 1536->576, 320 rows (prefill)", lambda: F.linear(h320, w_down), 20),
        ("LM head 576->49152, 1 row (alone)", lambda: F.linear(x1, head), 10),
        ("LM head 576->49152, 8 rows (decode)", lambda: F.linear(x8, head), 10),
        ("log_softmax [8, 49152]", lambda: torch.log_softmax(logits8, -1), 50),
        ("rms_norm [8, 1, 576]", lambda: rms(norm8), 500),
        ("rms_norm [8, 40, 576]", lambda: rms(norm320), 100),
        ("silu [8, 1, 1536]", lambda: F.silu(h8), 500),
        ("attention decode [8,9,1,64] x 100 keys", lambda: sdpa(dq, dk, dv, attn_mask=dmask), 100),
        ("attention prefill [8,9,40,64]", lambda: sdpa(pq, pk, pv, attn_mask=pmask), 20),
    ]


def bench_ops(
    repeats: int = 5,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    strategies: tuple[str, ...] = (),
) -> list[Timing]:
    """Each operator at the model's shapes on `device` ("cpu", or "cuda": the Triton kernels),
    stock against batch-invariant; the linears also with each of `strategies` forced."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    timings = []
    # Built outside inference mode, like a model's parameters: the CPU matmul caches a packed
    # copy of each weight, which it can do only for tensors with a version counter.
    workloads = _op_workloads(device, dtype)
    with torch.inference_mode():
        for name, call, inner in workloads:

            def run(on: bool, calls: int, call: Callable[[], object] = call) -> None:
                with set_batch_invariant_mode(on, device=kind):  # switched once per timing
                    for _ in range(calls):
                        call()

            matmul = name.startswith(("linear", "LM head"))
            timings.append(
                _side_by_side(name, run, repeats, inner, device, strategies if matmul else ())
            )
    return timings


def bench_generation(
    prompts: int = 8,
    max_tokens: int = 32,
    repeats: int = 3,
    model: str = DEFAULT_MODEL,
    cache_dir: str | None = None,
    device: str = "cpu",
    dtype: str = "fp32",
    strategies: tuple[str, ...] = (),
) -> list[Timing]:
    """Greedy generation through the hf backend on `device` in `dtype`: a batch, and one
    prompt alone, with the mode off and on (and on with each of `strategies` forced)."""
    engines = {
        on: HFBackend(
            EngineConfig(backend="hf", model=model, device=device, dtype=dtype, batch_invariant=on),
            cache_dir,
        )
        for on in (False, True)
    }
    requests = [chat(f"p{i}", PROMPTS[i % len(PROMPTS)]) for i in range(prompts)]
    sampling = SamplingConfig(max_tokens=max_tokens, logprobs=5)
    try:
        return [
            _side_by_side(
                f"generate {prompts} prompts x {max_tokens} tokens (one batch)",
                lambda on, _: engines[on].generate(requests, sampling),
                repeats,
                device=device,
                strategies=strategies,
            ),
            _side_by_side(
                f"generate 1 prompt x {max_tokens} tokens (alone)",
                lambda on, _: engines[on].generate(requests[:1], sampling),
                repeats,
                device=device,
                strategies=strategies,
            ),
        ]
    finally:
        for engine in engines.values():
            engine.close()


#: what limits torch's CPU kernels, oneDNN and MKL to AVX2 on an AVX-512 machine (read once,
#: when each library starts: hence a child process)
AVX2_ENVIRONMENT = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}


def rerun_limited_to_avx2(bench_args: list[str], cache_dir: str | None) -> None:
    """`lab bench kernels BENCH_ARGS` in a child process with AVX2_ENVIRONMENT set (its output
    goes straight to this one's); LabError when it fails."""
    import os
    import subprocess
    import sys

    from lab.errors import LabError

    command = [sys.executable, "-m", "lab.cli"]
    if cache_dir:
        command += ["--cache-dir", cache_dir]
    command += ["bench", "kernels", *bench_args]
    done = subprocess.run(command, env=os.environ | AVX2_ENVIRONMENT, check=False)
    if done.returncode:
        raise LabError(f"the AVX2-limited bench exited with {done.returncode} (see above)")


def format_bench(timings: list[Timing]) -> str:
    """The timings as a text table: seconds per call off and on, and the ratio; then, where
    strategies were timed, each one's on/off ratio."""
    names = list(dict.fromkeys(s for t in timings for s in t.by_strategy))
    lines = [
        f"{'workload':48} {'off':>10} {'on':>10} {'on/off':>7}" + "".join(f" {s:>8}" for s in names)
    ]
    for t in timings:
        lines.append(
            f"{t.name:48} {t.off_s * 1e3:8.2f}ms {t.on_s * 1e3:8.2f}ms {t.ratio:6.2f}x"
            + "".join(
                f" {t.by_strategy[s] / t.off_s:7.2f}x" if s in t.by_strategy else f" {'':8}"
                for s in names
            )
        )
    return "\n".join(lines)
