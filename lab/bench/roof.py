"""How close k-sampling comes to what this machine can do: tokens/s as a fraction of a roof.

The roof is this machine's fp32 matmul peak (the faster of torch.mm, MKL's GEMM in the CPU
build, and oneDNN's packed linear, which vLLM's CPU matmuls use, on square matrices with the
threads torch is configured to use: on an AMD EPYC oneDNN reaches ~225 GFLOP/s where MKL stops
at ~197) divided by the FLOPs a model needs per generated token, counted
from its config.json: the non-embedding matmuls (attention projections and the MLP, per layer),
the LM head (hidden x vocabulary; tied or not, it is computed), and attention's score and
value products at the workload's mean context. For SmolLM2-135M that is about 212 + 57 + 4
MFLOP at 64 tokens of context. Prefill, padding, sampling, the KV cache and the engine's own
machinery all count against the fraction: they are the work a perfect engine would not do.

The workload is the lab's n-of-k path (`lab sample`): C bundled cases x k samples, T=0.7,
each case with its own base seed, through each backend's best path: vLLM with n=k, prefix
caching and the backend's KV block size (32 tokens on the CPU), all rows in one continuous
batch; the same through vLLM's compiled path (`vllm-compiled`: `lab sample --compiled`,
torch.compile's fused kernels; its start, compile included, is printed, and whether it draws
the same samples as the eager engine: compiled kernels round differently, so it need not); and
transformers with one prefill per case expanded to k rows, all rows in one decode batch.
`--max-num-seqs 64` measures the lab's default batch instead. Each path runs alone, in its own
child process (bench.workers), one after the other: start, warm-up, `rounds` timed calls (the
best counts), then the engine is closed, so no path shares the machine with another loaded
engine. The rounds of one path vary by up to 10% on a shared VM: compare paths within a run,
and runs by their best. The matmul peak is measured before and after.
`--profile` runs one more round per path under torch.profiler and says where the time goes
(matmuls, attention, sampling and logprobs, other operators, and time outside operators:
Python, the scheduler, the KV cache bookkeeping).

    lab bench roof [--backends vllm,vllm-compiled,hf] [--num-cases 8 --k 32 --max-tokens 32]
                   [--profile]
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from lab import models
from lab.bench.workers import EngineWorker
from lab.errors import LabError

#: operator-name fragments -> profile category (first match wins; lower case)
CATEGORIES = (
    ("matmul", ("mm", "linear", "matmul", "gemm", "onednn", "mkldnn", "bmm", "baddbmm")),
    ("attention", ("attn", "attention", "sdpa", "paged", "flash")),
    (
        "sampling and logprobs",
        (
            "softmax",
            "exponential",
            "topk",
            "sort",
            "multinomial",
            "argmax",
            "cumsum",
            "searchsorted",
            "rand",
            "gather",
            "div_",
            "masked_fill",
            "log",
        ),
    ),  # fmt: skip
    ("KV cache copies", ("cat", "index_select", "repeat_interleave", "copy_", "index_copy")),
)


@dataclass
class ModelFlops:
    """FLOPs of one generated token, by part (2 x multiply-adds)."""

    model: str
    #: attention projections and MLP over all layers
    non_embedding: float
    #: hidden x vocabulary
    lm_head: float
    #: attention scores and weighted values, per token of context (all layers)
    attention_per_context: float

    def per_token(self, context: float) -> float:
        return self.non_embedding + self.lm_head + self.attention_per_context * context


def model_flops(config: dict[str, Any], model: str = "model") -> ModelFlops:
    """ModelFlops from a Hugging Face config.json (Llama-style names; GPT-2 names too).

    Per layer: q and o projections 2 x h x (heads x head_dim), k and v 2 x h x (kv heads x
    head_dim) each, a gated MLP 3 x 2 x h x intermediate (2 matrices for GPT-2-style MLPs);
    attention at context c: 2 x 2 x heads x head_dim x c."""
    text = config.get("text_config") or config

    def number(*names: str, default: int | None = None) -> int:
        for name in names:
            if text.get(name):
                return int(text[name])
        if default is None:
            raise LabError(f"{model}: {models.MODEL_CONFIG} has none of {', '.join(names)}")
        return default

    h = number("hidden_size", "n_embd")
    layers = number("num_hidden_layers", "n_layer")
    heads = number("num_attention_heads", "n_head")
    kv_heads = number("num_key_value_heads", default=heads)
    head_dim = number("head_dim", default=h // heads)
    inter = number("intermediate_size", "n_inner", default=4 * h)
    vocab = number("vocab_size")
    gated = text.get("model_type") not in ("gpt2", "gpt_neox", "opt", "phi", "gptj")
    q_o = 2 * (2 * h * heads * head_dim)
    k_v = 2 * (2 * h * kv_heads * head_dim)
    mlp = (3 if gated else 2) * 2 * h * inter
    return ModelFlops(
        model=model,
        non_embedding=float(layers * (q_o + k_v + mlp)),
        lm_head=float(2 * h * vocab),
        attention_per_context=float(layers * 2 * 2 * heads * head_dim),
    )


def matmul_peaks(
    device: str = "cpu", sizes: tuple[int, ...] = (1024, 2048), repeats: int = 7
) -> dict[str, float]:
    """Best fp32 GFLOP/s over `sizes` (square) and `repeats`, with the threads torch uses, per
    GEMM: "torch.mm", and on a CPU whose torch has it "oneDNN" (its packed linear, the kernel
    vLLM's CPU matmuls and the lab's batch-invariant ones call). Each timing is short (~0.1 s),
    so the best of many catches a moment the cores were free on a shared machine."""
    import torch

    from lab.kernels.cpu import onednn_linear_available

    best: dict[str, float] = {}
    for n in sizes:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        out = torch.empty(n, n, device=device)
        gemms = {"torch.mm": functools.partial(torch.mm, a, b, out=out)}
        if not device.startswith("cuda") and onednn_linear_available():
            packed = torch.ops.mkldnn._reorder_linear_weight(b.t().contiguous(), None)
            gemms["oneDNN"] = functools.partial(
                torch.ops.mkldnn._linear_pointwise, a, packed, None, "none", [], ""
            )
        calls = max(1, int(1.5e10 // (2 * n**3)))
        for _ in range(repeats):  # the GEMMs alternate, so a busy moment hits each alike
            for name, gemm in gemms.items():
                gemm()  # warm-up (and, the first time, oneDNN's kernel creation)
                started = time.perf_counter()
                for _ in range(calls):
                    gemm()
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                seconds = (time.perf_counter() - started) / calls
                best[name] = max(best.get(name, 0.0), 2 * n**3 / seconds / 1e9)
    return best


def matmul_peak(device: str = "cpu") -> float:
    """The fastest GEMM's fp32 GFLOP/s here (see matmul_peaks)."""
    return max(matmul_peaks(device).values())


#: the paths `lab bench roof` can time: backend name -> (lab backend, vLLM compiled)
PATHS = {"vllm": ("vllm", False), "vllm-compiled": ("vllm", True), "hf": ("hf", False)}


@dataclass
class PathResult:
    """One backend's k-sampling path: best of the rounds."""

    backend: str
    settings: str
    tokens: int
    seconds: float
    #: seconds of every round
    rounds_s: list[float] = field(default_factory=list)
    profile: dict[str, float] = field(default_factory=dict)
    top_ops: list[tuple[str, float]] = field(default_factory=list)
    #: seconds from asking for the engine to its first answer (load, compile, warm-up)
    start_s: float = 0.0
    #: vllm-compiled: how many of the samples differ from the eager engine's (None: not run)
    samples_differ: int | None = None
    samples: int = 0

    @property
    def tok_per_s(self) -> float:
        return self.tokens / self.seconds


@dataclass
class RoofResult:
    machine: dict[str, Any]
    peak_gflops: float
    flops: ModelFlops
    context: float
    workload: str
    paths: list[PathResult]
    #: GEMM -> its best fp32 GFLOP/s here (peak_gflops is the largest)
    peaks: dict[str, float] = field(default_factory=dict)

    @property
    def flops_per_token(self) -> float:
        return self.flops.per_token(self.context)

    @property
    def roof_tok_per_s(self) -> float:
        return self.peak_gflops * 1e9 / self.flops_per_token

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "peak_gflops": self.peak_gflops,
            "peaks_gflops": self.peaks,
            "flops": dataclasses.asdict(self.flops),
            "mean_context": self.context,
            "flops_per_token": self.flops_per_token,
            "roof_tok_per_s": self.roof_tok_per_s,
            "workload": self.workload,
            "paths": [
                dataclasses.asdict(p)
                | {"tok_per_s": p.tok_per_s, "fraction": p.tok_per_s / self.roof_tok_per_s}
                for p in self.paths
            ],
        }


def machine_record() -> dict[str, Any]:
    """CPU model, the instruction set torch's kernels use, threads, and the load average."""
    import torch

    from lab.envinfo import cpu_model

    return {
        "cpu": cpu_model(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
    }


def _profile(run: Any) -> tuple[dict[str, float], list[tuple[str, float]], float]:
    """(share of wall time per category, the 8 heaviest operators' shares, wall seconds) of
    one run() under torch.profiler (operators' self CPU time on the calling thread)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        run()
        wall = time.perf_counter() - started
    shares: dict[str, float] = {name: 0.0 for name, _ in CATEGORIES}
    shares["other operators"] = 0.0
    ops: list[tuple[str, float]] = []
    for event in prof.key_averages():
        seconds = event.self_cpu_time_total / 1e6
        if seconds <= 0:
            continue
        ops.append((event.key, seconds / wall))
        name = event.key.lower()
        category = next(
            (c for c, parts in CATEGORIES if any(p in name for p in parts)), "other operators"
        )
        shares[category] += seconds / wall
    shares["outside operators (Python, scheduler)"] = max(0.0, 1.0 - sum(shares.values()))
    ops.sort(key=lambda item: -item[1])
    return shares, ops[:8], wall


def bench_roof(
    backends: list[str],
    cases: int = 8,
    k: int = 32,
    max_tokens: int = 32,
    rounds: int = 3,
    max_num_seqs: int | None = None,
    profile: bool = False,
    model: str = "smollm2-135m-instruct",
    cache_dir: str | None = None,
    device: str = "cpu",
) -> RoofResult:
    """Measure the peak, run each backend's k-sampling path `rounds` times (each path alone), and
    relate its tokens/s to the roof."""
    from lab.backends import EngineConfig
    from lab.cases.loaders import load_cases
    from lab.variance.config import SampleConfig
    from lab.variance.runner import case_seed, sampling_config

    info = models.model_info(model, cache_dir)
    flops = model_flops(json.loads((info.path / models.MODEL_CONFIG).read_text()), model)
    config = SampleConfig(k=k, max_tokens=max_tokens, seed=1, logprobs=0, model=model)
    chosen = load_cases(config.cases)[:cases]
    requests = [
        dataclasses.replace(c.request(), seed=case_seed(config, j)) for j, c in enumerate(chosen)
    ]
    sampling = sampling_config(config, config.seed)
    seqs = max_num_seqs or len(requests) * k  # every row in one batch
    machine = machine_record()
    peaks = matmul_peaks(device)
    results: dict[str, PathResult] = {}
    outputs: dict[str, list[list[int]]] = {}
    prompt_tokens: list[int] = []
    lengths: list[int] = []
    warm_up = dataclasses.replace(sampling, n=2, max_tokens=4)
    for name in backends:  # one path at a time, alone, each in its own process
        backend, compiled = PATHS[name]
        engine = EngineConfig(
            backend=backend, model=model, device=device, max_num_seqs=seqs,
            prefix_caching=backend == "vllm", enforce_eager=not compiled,
        )  # fmt: skip
        started = time.perf_counter()
        with EngineWorker(engine, cache_dir) as worker:
            worker.generate(requests[:1], warm_up)
            record = worker.engine_record
            if backend == "vllm":
                settings = (
                    f"n={k}, prefix caching, {record.get('kv_block_size')}-token KV blocks, "
                    f"{seqs} seqs{', compiled' if compiled else ''}"
                )
            else:
                settings = f"one prefill per case, {seqs} rows per pass"
            result = results[name] = PathResult(
                name, settings, 0, float("inf"), start_s=time.perf_counter() - started
            )
            for _ in range(rounds):
                seconds, records = worker.generate(requests, sampling)
                tokens = [list(r["output_token_ids"]) for r in records]
                result.rounds_s.append(seconds)
                if seconds < result.seconds:
                    result.seconds, result.tokens = seconds, sum(len(t) for t in tokens)
                outputs[name] = tokens
                prompt_tokens = [len(r["prompt_token_ids"]) for r in records]
                lengths = [len(t) for t in tokens]
            if profile:
                result.profile, result.top_ops = worker.call(profile_generate, requests, sampling)
    if "vllm" in outputs and "vllm-compiled" in outputs:
        pairs = list(zip(outputs["vllm"], outputs["vllm-compiled"], strict=True))
        results["vllm-compiled"].samples = len(pairs)
        results["vllm-compiled"].samples_differ = sum(a != b for a, b in pairs)
    # mean context of a generated token: its prompt plus the tokens before it (every row of a
    # case shares its prompt; the last round's lengths)
    context = sum(p * n + n * (n - 1) / 2 for p, n in zip(prompt_tokens, lengths, strict=True))
    context /= max(1, sum(lengths))
    for name, value in matmul_peaks(device).items():
        peaks[name] = max(peaks.get(name, 0.0), value)
    machine["load_average_after"] = os.getloadavg()[0]
    workload = (
        f"{len(requests)} bundled cases x k={k}, at most {max_tokens} tokens, T="
        f"{config.temperature}, per-case seeds"
    )
    return RoofResult(
        machine, max(peaks.values()), flops, context, workload,
        [results[n] for n in backends], peaks=peaks,
    )  # fmt: skip


def profile_generate(
    backend: Any, requests: list[Any], sampling: Any
) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """One backend.generate under torch.profiler: (share of wall time per category, the
    heaviest operators); run inside the engine's worker (EngineWorker.call)."""
    shares, ops, _ = _profile(lambda: backend.generate(requests, sampling))
    return shares, ops


def format_roof(result: RoofResult) -> str:
    m, f = result.machine, result.flops
    lines = [
        f"machine: {m['cpu']}, ISA {m['isa']} (torch), {m['threads']} threads, load average "
        f"{m['load_average']:.2f} -> {m['load_average_after']:.2f}",
        f"matmul peak: {result.peak_gflops:.1f} GFLOP/s (fp32, the faster of "
        + (" / ".join(f"{n} {g:.1f}" for n, g in result.peaks.items()) or "torch.mm")
        + "; best of before/after)",
        f"model {f.model}: {result.flops_per_token / 1e6:.1f} MFLOP per generated token = "
        f"{f.non_embedding / 1e6:.1f} non-embedding matmuls + {f.lm_head / 1e6:.1f} LM head + "
        f"{f.attention_per_context * result.context / 1e6:.1f} attention at "
        f"{result.context:.0f} tokens of context",
        f"roof: {result.roof_tok_per_s:.0f} tok/s; workload: {result.workload}",
        f"  {'backend':13} {'tokens':>7} {'best s':>8} {'tok/s':>8} {'of roof':>8} "
        f"{'start s':>8}  path",
    ]
    for p in result.paths:
        lines.append(
            f"  {p.backend:13} {p.tokens:>7} {p.seconds:>8.2f} {p.tok_per_s:>8.1f} "
            f"{100 * p.tok_per_s / result.roof_tok_per_s:>7.1f}% {p.start_s:>8.1f}  {p.settings} "
            f"(rounds: {', '.join(f'{s:.1f}' for s in p.rounds_s)} s)"
        )
    for p in result.paths:
        if p.samples_differ is not None:
            lines.append(
                f"  {p.backend}: {p.samples_differ} of {p.samples} samples differ from the eager "
                f"engine's (same seeds){'' if p.samples_differ else ': token for token the same'}"
            )
    for p in result.paths:
        if not p.profile:
            continue
        lines.append(f"  where {p.backend}'s time goes (share of one profiled round's wall time):")
        for name, share in p.profile.items():
            lines.append(f"    {name:40} {100 * share:5.1f}%")
        lines.append("    heaviest operators: " + "; ".join(
            f"{op} {100 * s:.1f}%" for op, s in p.top_ops
        ))  # fmt: skip
    return "\n".join(lines)
