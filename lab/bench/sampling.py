"""Benchmarks for n-of-k sampling: the lab's paths against the bare engines, ratios from one run.

    .venv/bin/python scripts/bench_sampling.py                      # parts a, b, c
    .venv/bin/python scripts/bench_sampling.py --parts vllm --cases 8 --k 32 --max-tokens 32

(a) vllm: first the KV block size (lab.bench.blocks): vLLM's own 128-token blocks against the
    lab's 32-token ones, in two engine processes, alternating: prefill-only seconds, n-of-k
    tok/s and whether the samples are token-identical (`--no-blocks` skips it). Then k samples
    per case through the lab (lab.variance.runner.sample_cases: backend.generate with n=k,
    prefix caching, a RunStore line per case) against a bare `LLM.generate` with
    SamplingParams(n=k) on the same engine object (one vLLM engine per process), same token-id
    prompts and settings. Rounds alternate A-B / B-A so neither side always runs warm.
(b) hf: the lab's transformers backend (one prefill per case, k rows, own decode loop) against
    `model.generate(num_return_sequences=k, do_sample=True)` on the same model and prompts, and
    against k sequential single-sample `model.generate` calls per case.
(c) diversity: C x k texts embedded in one call plus batched [C, k, k] measures, against a loop
    that embeds and scores one case at a time (pairs and components in Python).
(d) job: the whole `lab sample` job at N cases x k through vLLM, timed by stage: engine start,
    sampling (lab.variance.runner.sample_cases, the CLI's batching), the first report
    (lab.variance.report.build_report: checks, embedder load and embeddings, statistics,
    bootstrap, Parquet, HTML) and a rebuilt report (`lab sample-report`: embeddings reused);
    printed as the ratio analysis / sampling, with the artifact sizes. For 100 cases:
      .venv/bin/lab perturb bundled:basic --out /tmp/cases.jsonl --with-source
      .venv/bin/python scripts/bench_sampling.py --parts job --job-case-set /tmp/cases.jsonl \
          --job-cases 100 --k 32 --max-tokens 32
    `--block-size 128` runs parts (a) and (d) on vLLM's own block size instead of the lab's.

Timings on a shared machine move; compare ratios from the same run only.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from lab.backends import EngineConfig, load_backend
from lab.backends.prompts import render_token_ids
from lab.cases.loaders import load_cases
from lab.rundir import EMBEDDINGS, METRICS, PARQUET, REPORT, SAMPLES, log_file
from lab.store import RunStore
from lab.variance.config import SampleConfig
from lab.variance.runner import case_seed, sample_cases, sampling_config


def _tokens(gens: list[Any]) -> int:
    return sum(len(g.output_token_ids) for g in gens)


def interleaved(
    contenders: dict[str, Callable[[], tuple[float, float]]], rounds: int, unit: str
) -> dict[str, float]:
    """Best rate (work / seconds) per contender over `rounds`; the order rotates each round so
    that load from other processes on a shared machine does not always hit the same one."""
    names = list(contenders)
    best: dict[str, float] = {}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds, work = contenders[name]()
            rate = work / seconds
            best[name] = max(best.get(name, 0.0), rate)
            print(f"  round {r + 1} {name:28} {seconds:7.2f} s  {rate:9.2f} {unit}")
    return best


_ENGINES: dict[str, Any] = {}


def vllm_backend(block_size: int | None = None) -> Any:
    """The one vLLM engine of this process (parts a and d share it: one engine per process);
    block_size None: the backend's own choice (32 on the CPU)."""
    if "vllm" not in _ENGINES:
        args = {} if block_size is None else {"block_size": block_size}
        _ENGINES["vllm"] = load_backend(
            EngineConfig(backend="vllm", device="cpu", prefix_caching=True, max_num_seqs=64,
                         engine_args=args)
        )  # fmt: skip
    return _ENGINES["vllm"]


def bench_vllm(args: argparse.Namespace) -> dict[str, float]:
    from vllm import SamplingParams

    results: dict[str, float] = {}
    if args.blocks:  # before this process starts its own engine: two engines in two children
        from lab.bench.blocks import bench_block_size, format_block_size

        blocks = bench_block_size(
            args.cases, args.k, args.max_tokens, args.temperature, args.rounds, args.case_set
        )
        print(format_block_size(blocks))
        nk = blocks["n-of-k"]
        rates = {n: nk["tokens"][n] / nk["seconds"][n] for n in ("128", "lab")}
        results |= {
            "block128_tok_s": rates["128"],
            "block_lab_tok_s": rates["lab"],
            "prefill_only_128_s": blocks["prefill only"]["seconds"]["128"],
            "prefill_only_lab_s": blocks["prefill only"]["seconds"]["lab"],
            "block_samples_identical": float(blocks["identical"]),
        }
    cases = load_cases(args.case_set)[: args.cases]
    config = SampleConfig(
        cases=args.case_set,
        k=args.k,
        backend="vllm",
        max_tokens=args.max_tokens,
        seed=1,
        rows_per_call=args.cases * args.k,
        temperature=args.temperature,
    )
    backend = vllm_backend(args.block_size)
    engine: Any = backend  # the vLLM backend: .tokenizer and .llm (the engine object)
    prompts = [{"prompt_token_ids": render_token_ids(engine.tokenizer, c.request())} for c in cases]
    # One SamplingParams per prompt with the lab's per-case seed (case j: seed + j * k), so the
    # two sides draw the same samples.
    params = [
        SamplingParams(
            n=args.k,
            temperature=args.temperature,
            top_p=1.0,
            top_k=0,
            seed=case_seed(config, j),
            max_tokens=args.max_tokens,
        )
        for j in range(len(cases))
    ]

    samples: dict[str, list[list[int]]] = {}

    def lab_run() -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as tmp:
            store = RunStore.open(tmp, {"bench": True})
            started = time.perf_counter()
            sample_cases(config, backend, store, cases, emit=lambda m: None)
            wall = time.perf_counter() - started
            entries = list(store.entries(SAMPLES))
        samples["lab"] = [g["output_token_ids"] for e in entries for g in e["generations"]]
        return wall, sum(len(x) for x in samples["lab"])

    def bare_run() -> tuple[float, float]:
        started = time.perf_counter()
        outs = engine.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        wall = time.perf_counter() - started
        by_index = [sorted(o.outputs, key=lambda c: c.index) for o in outs]
        samples["bare"] = [list(c.token_ids) for completions in by_index for c in completions]
        return wall, sum(len(x) for x in samples["bare"])

    backend.generate([cases[0].request()], sampling_config(config, 0))  # warm-up
    best = interleaved({"lab": lab_run, "bare LLM.generate": bare_run}, args.rounds, "tok/s")
    lab, bare = best["lab"], best["bare LLM.generate"]
    same = samples["lab"] == samples["bare"]
    print(f"  same seeds, same samples token for token: {'yes' if same else 'NO'}")
    print(
        f"(a) vLLM {len(cases)} cases x k={args.k}: lab {lab:.1f} tok/s, bare LLM.generate "
        f"{bare:.1f} tok/s, ratio {lab / bare:.3f} (target >= 0.95)"
    )
    return results | {"vllm_lab_tok_s": lab, "vllm_bare_tok_s": bare, "vllm_ratio": lab / bare}


def bench_hf(args: argparse.Namespace) -> dict[str, float]:
    import torch

    from lab.backends import SamplingConfig

    cases = load_cases(args.case_set)[: args.hf_cases]
    backend: Any = load_backend(EngineConfig(backend="hf", device="cpu", max_num_seqs=64))
    k, max_tokens = args.hf_k, args.max_tokens
    requests = [c.request() for c in cases]
    sampling = SamplingConfig(
        temperature=args.temperature, n=k, max_tokens=max_tokens, seed=1, logprobs=0
    )
    backend.generate(requests[:1], SamplingConfig(temperature=1.0, n=2, max_tokens=4, seed=0))

    def lab_run() -> tuple[float, float]:
        started = time.perf_counter()
        gens = backend.generate(requests, sampling)
        return time.perf_counter() - started, _tokens(gens)

    tok, model = backend.tokenizer, backend.model
    ids = [render_token_ids(tok, r) for r in requests]
    eos = sorted(backend.eos_ids)

    def count(out: Any, prompt_width: int) -> int:
        total = 0
        for row in out[:, prompt_width:].tolist():
            n = 0
            for t in row:
                n += 1
                if t in eos:
                    break
            total += n
        return total

    def hf_generate(batch: list[list[int]], n: int) -> int:
        width = max(len(x) for x in batch)
        input_ids = torch.full((len(batch), width), backend.pad_id, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, x in enumerate(batch):
            input_ids[row, width - len(x) :] = torch.tensor(x)
            mask[row, width - len(x) :] = 1
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                do_sample=True,
                temperature=args.temperature,
                top_p=1.0,
                top_k=0,
                max_new_tokens=max_tokens,
                num_return_sequences=n,
                pad_token_id=backend.pad_id,
            )
        return count(out, width)

    per_batch = max(1, 64 // k)  # the same rows per forward pass as the lab's backend

    def generate_run() -> tuple[float, float]:
        started = time.perf_counter()
        tokens = sum(hf_generate(ids[i : i + per_batch], k) for i in range(0, len(ids), per_batch))
        return time.perf_counter() - started, tokens

    def sequential_run() -> tuple[float, float]:
        started = time.perf_counter()
        tokens = sum(hf_generate([x], 1) for x in ids for _ in range(k))
        return time.perf_counter() - started, tokens

    best = interleaved(
        {
            "lab": lab_run,
            "generate(num_return_sequences)": generate_run,
            f"{k} sequential generate calls": sequential_run,
        },
        args.rounds,
        "tok/s",
    )
    lab, gen, seq = best.values()
    print(
        f"(b) transformers {len(cases)} cases x k={k}: lab {lab:.1f} tok/s; "
        f"lab / generate(num_return_sequences) = {lab / gen:.2f}; "
        f"lab / sequential = {lab / seq:.2f}"
    )
    return {"hf_lab_tok_s": lab, "hf_generate_tok_s": gen, "hf_sequential_tok_s": seq}


def bench_diversity(args: argparse.Namespace) -> dict[str, float]:
    from lab.bench.embeddings import synthetic_outputs
    from lab.variance.diversity import Embedder, diversity

    texts = synthetic_outputs(args.div_cases, args.div_k)
    embedder = Embedder(device="cpu")
    timings: dict[str, float] = {}

    def batched() -> tuple[float, float]:
        started = time.perf_counter()
        emb = embedder.embed_cases(texts)  # one encode call for all C x k outputs
        embedded = time.perf_counter()
        div = diversity(emb)
        float(div.vendi.sum())  # force the result
        spent = time.perf_counter() - embedded
        timings["batched measures"] = min(timings.get("batched measures", spent), spent)
        return time.perf_counter() - started, 1.0

    def looped() -> tuple[float, float]:
        started = time.perf_counter()
        measures = 0.0
        for case in texts:
            e = embedder.embed(case)  # one encode call per case
            t0 = time.perf_counter()
            _loop_measures(e)
            measures += time.perf_counter() - t0
        timings["loop measures"] = min(timings.get("loop measures", measures), measures)
        return time.perf_counter() - started, 1.0

    embedder.embed_cases(texts[:2])  # warm-up of both paths
    diversity(embedder.embed_cases(texts[:2]))
    best = interleaved({"batched": batched, "per-case loop": looped}, args.rounds, "runs/s")
    ratio = best["batched"] / best["per-case loop"]
    print(
        f"(c) diversity {args.div_cases} x {args.div_k}: per-case loop / batched time = "
        f"{ratio:.2f} overall; measures alone (best) {timings['batched measures'] * 1e3:.0f} "
        f"ms batched vs {timings['loop measures'] * 1e3:.0f} ms looped"
    )
    return {"div_batched_s": 1 / best["batched"], "div_loop_s": 1 / best["per-case loop"]}


def _loop_measures(e: Any) -> None:
    """One case the straightforward way: Python over pairs, one eigvalsh, union-find."""
    import torch

    k = e.shape[0]
    sims = (e @ e.T).tolist()
    _ = sum(1 - sims[i][j] for i in range(k) for j in range(k) if i != j) / (k * (k - 1))
    eig = torch.linalg.eigvalsh(torch.tensor(sims, dtype=torch.float64) / k).clamp(min=0)
    _ = math.exp(-sum(float(x * math.log(x)) for x in eig if x > 0))
    parent = list(range(k))
    for i in range(k):
        for j in range(i + 1, k):
            if sims[i][j] >= 0.8:
                parent[_root(parent, i)] = _root(parent, j)


def _root(parent: list[int], x: int) -> int:
    while parent[x] != x:
        x = parent[x]
    return x


def bench_job(args: argparse.Namespace) -> dict[str, float]:
    import os

    from lab.variance.report import build_report
    from lab.variance.runner import open_run

    with tempfile.TemporaryDirectory() as tmp:
        config = SampleConfig(
            cases=args.job_case_set,
            k=args.k,
            backend="vllm",
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            limit=args.job_cases,
            out=tmp,
        )
        selected = config.select(load_cases(config.cases))
        cases = [c for _, c in selected]
        positions = {c.id: i for i, c in selected}
        started = time.perf_counter()
        backend = vllm_backend(args.block_size)  # already started when part (a) ran first
        engine_s = time.perf_counter() - started
        store = open_run(config, cases, backend.config, fresh=True)
        started = time.perf_counter()
        sample_cases(config, backend, store, cases, lambda m: None, positions=positions)
        sampling_s = time.perf_counter() - started
        tokens = sum(
            len(g["output_token_ids"]) for e in store.entries(SAMPLES) for g in e["generations"]
        )
        stages = {}
        for name in ("first report", "rebuilt report"):
            started = time.perf_counter()
            build_report(store.path, config, emit=lambda m: None)
            stages[name] = time.perf_counter() - started
        sizes = {
            name: os.path.getsize(store.path / name) / 1e6
            for name in (
                log_file(SAMPLES),
                PARQUET,
                EMBEDDINGS,
                METRICS,
                REPORT,
            )
        }
    load = os.getloadavg()[0]
    print(f"  engine start {engine_s:.1f} s (not counted below)")
    print(f"  sampling {sampling_s:.1f} s, {tokens / sampling_s:.1f} output tok/s")
    for name, seconds in stages.items():
        print(f"  {name} {seconds:.1f} s")
    print("  sizes (MB): " + ", ".join(f"{n} {v:.2f}" for n, v in sizes.items()))
    ratio = stages["first report"] / sampling_s
    print(
        f"(d) whole job {len(cases)} cases x k={args.k}, {args.max_tokens} tokens: sampling "
        f"{sampling_s:.1f} s, analysis {stages['first report']:.1f} s, analysis / sampling = "
        f"{ratio:.3f}; a rebuilt report {stages['rebuilt report']:.1f} s (load average {load:.1f})"
    )
    return {
        "job_sampling_s": sampling_s,
        "job_analysis_s": stages["first report"],
        "job_rebuild_s": stages["rebuilt report"],
        "job_analysis_over_sampling": ratio,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="vllm,hf,diversity")
    parser.add_argument("--case-set", default="bundled:basic")
    parser.add_argument("--cases", type=int, default=4, help="cases for the vLLM part")
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--hf-cases", type=int, default=4)
    parser.add_argument("--hf-k", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--div-cases", type=int, default=50)
    parser.add_argument("--div-k", type=int, default=32)
    parser.add_argument("--job-case-set", default="bundled:basic", help="cases for part (d)")
    parser.add_argument("--job-cases", type=int, default=50, help="cases for part (d)")
    parser.add_argument("--block-size", type=int, default=None, help="vLLM KV block size, a, d")
    parser.add_argument("--no-blocks", dest="blocks", action="store_false",
                        help="part (a) without the 128 vs 32-token block comparison")  # fmt: skip
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress under a pipe
    parts = {p.strip() for p in args.parts.split(",")}
    results: dict[str, float] = {}
    if "diversity" in parts:
        results |= bench_diversity(args)
    if "hf" in parts:
        results |= bench_hf(args)
    if "vllm" in parts:
        results |= bench_vllm(args)
    if "job" in parts:
        results |= bench_job(args)
    print({k: round(v, 3) for k, v in results.items()})


if __name__ == "__main__":
    main()
