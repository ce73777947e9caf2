"""`lab bench ...`: the benchmarks of lab.bench, each printing ratios measured in one run.

    lab bench sweep [--backend hf|vllm] [--max-tokens 16]
    lab bench backends [--backends hf,vllm] [--max-tokens 64] [--dtype fp32]
    lab bench roof [--backends vllm,vllm-compiled,hf] [--num-cases 8 --k 32 --max-tokens 32]
                   [--profile]
    lab bench kernels [--num-cases 8 --rounds 3] [--device cuda --dtype bf16 --model M] [--avx2]
    lab bench embeddings [--device cuda --embedder PATH --num-cases 50 --k 32]
    lab bench agents [--backend hf|vllm] [--num-cases 10] [--k 8] [--max-tokens 32]
    lab bench ray [--max-tokens 16] [--part all|sweep|replicas]

Parsing and printing only. Listed in lab/cli.py (COMMANDS).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from lab.backends import registry
from lab.cli_options import renamed_option
from lab.errors import LabError
from lab.models import DEFAULT_MODEL


@click.group("bench")
def bench_group() -> None:
    """Benchmarks: ratios measured side by side in one run (never asserted in tests)."""


@bench_group.command("sweep")
@click.option(
    "--backend", type=click.Choice(registry.choices("hf")), default="hf", show_default=True
)
@click.option("--max-tokens", type=click.IntRange(min=1), default=16, show_default=True)
@click.pass_obj
def bench_sweep_cmd(obj: dict[str, Any], backend: str, max_tokens: int) -> None:
    """Sweep machinery overhead over the engine's own generation time (12-cell grid)."""
    from lab.bench.sweep import bench_sweep, format_bench

    click.echo(format_bench(bench_sweep(backend, max_tokens, obj["cache_dir"])))


@bench_group.command("ray")
@click.option("--max-tokens", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--part",
    type=click.Choice(["all", "sweep", "replicas"]),
    default="all",
    show_default=True,
    help="sweep: actors per engine configuration; replicas: n-of-k on 2 replicas vs 1.",
)
@click.pass_obj
def bench_ray_cmd(obj: dict[str, Any], max_tokens: int, part: str) -> None:
    """Ray: one actor against a local run (dispatch overhead), 2 single-threaded actors
    against 1 CPU (speed-up), an n-of-k run on 2 single-threaded replicas against 1 (speed-up,
    same samples). Needs the ray extra."""
    from lab.scale.cluster import require_ray

    require_ray()
    result: dict[str, Any] = {}
    if part in ("all", "sweep"):
        from lab.bench.scale import bench_ray

        result |= bench_ray(max_tokens, obj["cache_dir"])
    if part in ("all", "replicas"):
        from lab.bench.replicas import bench_replicas

        result |= bench_replicas(max_tokens, obj["cache_dir"])
    for key, value in result.items():
        click.echo(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")


@bench_group.command("backends")
@click.option("--backends", default=",".join(registry.ENGINES), show_default=True)
@click.option("--max-tokens", type=int, default=64, show_default=True)
@click.option("--dtype", default="fp32", show_default=True)
@click.pass_obj
def bench_backends_cmd(obj: dict[str, Any], backends: str, max_tokens: int, dtype: str) -> None:
    """Engine start and greedy tokens/s at batch 1 and 16, per backend."""
    from lab.bench.backends import bench_backends, format_backends

    names = [b.strip() for b in backends.split(",") if b.strip()]
    click.echo(format_backends(bench_backends(names, max_tokens, dtype, obj["cache_dir"])))


@bench_group.command("roof")
@click.option(
    "--backends", default="vllm,vllm-compiled,hf", show_default=True,
    help="Paths to time: vllm, vllm-compiled (torch.compile; starts slower), hf.",
)  # fmt: skip
@renamed_option("--num-cases", "cases", old="--cases", type=click.IntRange(min=1), default=8,
                show_default=True, help="The first N bundled cases.")  # fmt: skip
@click.option("--k", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--max-tokens", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--max-num-seqs", type=click.IntRange(min=1), default=None,
    help="Rows decoded together (default: all cases x k at once).",
)  # fmt: skip
@click.option("--profile", is_flag=True, help="Also say where each backend's time goes.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def bench_roof_cmd(obj: dict[str, Any], backends: str, as_json: bool, **options: Any) -> None:
    """k-sampling tokens/s per backend as a fraction of this machine's roof (matmul peak /
    the model's FLOPs per generated token)."""
    from lab.backends import close_all
    from lab.bench.roof import PATHS, bench_roof, format_roof

    names = [b.strip() for b in backends.split(",") if b.strip()]
    unknown = sorted(set(names) - set(PATHS))
    if not names or unknown:
        raise LabError(f"--backends: give any of {', '.join(PATHS)}, got {backends!r}")
    try:
        result = bench_roof(names, cache_dir=obj["cache_dir"], **options)
    finally:
        close_all()
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else format_roof(result))


@bench_group.command("agents")
@click.option(
    "--backend", type=click.Choice(registry.choices("hf")), default="hf", show_default=True
)
@renamed_option("--num-cases", "cases", old="--cases", type=click.IntRange(min=1, max=26),
                default=10, show_default=True, help="The first N bundled agent cases.")  # fmt: skip
@click.option("--k", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--max-tokens", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--max-turns", type=click.IntRange(min=1, max=64), default=3, show_default=True)
@click.pass_obj
def bench_agents_cmd(
    obj: dict[str, Any], backend: str, cases: int, k: int, max_tokens: int, max_turns: int
) -> None:
    """Agent trajectories stepped together (one call per turn) vs each alone, as a ratio."""
    from lab.backends import close_all
    from lab.bench.agents import bench_agents, format_agents

    try:
        result = bench_agents(backend, cases, k, max_tokens, max_turns, obj["cache_dir"])
    finally:
        close_all()
    click.echo(format_agents(result))


@bench_group.command("kernels")
@renamed_option("--num-cases", "cases", old=("--prompts", "--cases"), type=click.IntRange(min=1),
                default=8, show_default=True, help="The first N bundled cases.")  # fmt: skip
@click.option("--max-tokens", type=click.IntRange(min=1), default=32, show_default=True)
@renamed_option("--rounds", "rounds", old="--repeats", type=click.IntRange(min=1), default=3,
                show_default=True, help="Timed repetitions (the fastest is kept).")  # fmt: skip
@click.option("--e2e/--no-e2e", default=True, help="Also time generation end to end.")
@click.option(
    "--device", default="cpu", show_default=True, help="cpu, or cuda for the Triton kernels."
)
@click.option("--dtype", default="fp32", show_default=True, help="Operators' and model's dtype.")
@click.option(
    "--model",
    default=DEFAULT_MODEL,
    show_default=True,
    help="Model for the end-to-end timing (a bundled name or a checkpoint directory).",
)
@click.option(
    "--strategies/--no-strategies", default=True, show_default=True,
    help="CPU: also time the linears and generation with each matmul strategy forced.",
)  # fmt: skip
@click.option(
    "--avx2", is_flag=True,
    help="CPU: then the same bench again with torch, oneDNN and MKL limited to AVX2 (a child "
    "process), as an AVX2-only CPU would choose and pay.",
)  # fmt: skip
@click.pass_obj
def bench_kernels_cmd(
    obj: dict[str, Any],
    cases: int,
    max_tokens: int,
    rounds: int,
    e2e: bool,
    device: str,
    dtype: str,
    model: str,
    strategies: bool,
    avx2: bool,
) -> None:
    """Cost of the batch-invariant kernels: each operator and generation, on/off ratios."""
    from lab.backends.base import canonical_dtype
    from lab.bench.kernels import (
        bench_generation,
        bench_ops,
        format_bench,
        self_check_summary,
        strategy_names,
    )
    from lab.devices import resolve_device, torch_dtype

    resolved = resolve_device(device)  # LabError (exit 2) for cuda without a GPU
    if avx2 and resolved.startswith("cuda"):
        raise LabError("--avx2 limits the CPU's kernels: use it with --device cpu")
    canonical = canonical_dtype(dtype)
    names = strategy_names(resolved, torch_dtype(canonical)) if strategies else ()
    if not resolved.startswith("cuda"):
        click.echo(self_check_summary(torch_dtype(canonical)))
    timings = bench_ops(max(rounds, 3), resolved, torch_dtype(canonical), names)
    if e2e:
        timings += bench_generation(
            cases, max_tokens, rounds, model, obj["cache_dir"], resolved, canonical, names
        )
    click.echo(format_bench(timings))
    if avx2:
        from lab.bench.kernels import rerun_limited_to_avx2

        click.echo("\nthe same, with torch, oneDNN and MKL limited to AVX2 (a child process):")
        args = ["--num-cases", cases, "--max-tokens", max_tokens, "--rounds", rounds]
        args += ["--dtype", dtype, "--model", model, "--e2e" if e2e else "--no-e2e"]
        args += ["--strategies" if strategies else "--no-strategies"]
        rerun_limited_to_avx2([str(a) for a in args], obj["cache_dir"])


@bench_group.command("layercast")
@renamed_option("--num-cases", "cases", old=("--prompts", "--cases"),
                type=click.IntRange(min=1, max=50), default=24, show_default=True,
                help="The first N bundled cases.")  # fmt: skip
@click.option("--max-tokens", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--batch", type=click.IntRange(min=2), default=8, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--model", default=DEFAULT_MODEL, show_default=True)
@renamed_option("--json-out", "json_path", old="--json", type=click.Path(dir_okay=False),
                default=None, help="Also write the result to this JSON file.")  # fmt: skip
@click.pass_obj
def bench_layercast_cmd(
    obj: dict[str, Any],
    cases: int,
    max_tokens: int,
    batch: int,
    rounds: int,
    model: str,
    json_path: str | None,
) -> None:
    """fp32 / bf16 / layercast on the hf backend: memory, speed, batch movement (one run)."""
    from lab.bench.layercast import bench_layercast, format_layercast
    from lab.models import model_info

    model_info(model, obj["cache_dir"])  # an unknown model: exit 2 before any child starts
    result = bench_layercast(
        cases, max_tokens, batch, rounds, model, obj["cache_dir"],
        emit=lambda m: click.echo(m, err=True),
    )  # fmt: skip
    click.echo(format_layercast(result))
    if json_path:
        from lab.store import write_atomic

        write_atomic(json_path, json.dumps(result.to_dict(), indent=2))


@bench_group.command("embeddings")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--embedder",
    default="all-MiniLM-L6-v2",
    show_default=True,
    help="A sentence-transformers model name or directory.",
)
@renamed_option("--num-cases", "cases", old="--cases", type=click.IntRange(min=1), default=50,
                show_default=True, help="Synthetic cases of k outputs each.")  # fmt: skip
@click.option("--k", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=None,
    help="Batch size of the batched pass and the loop (default: the lab's for the device).",
)  # fmt: skip
@click.option("--batch-sizes", default="16,32,64,128,256,512,1024", show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--run", "run_dir", type=click.Path(file_okay=False, exists=True), default=None,
    help="Embed this sample run's outputs instead of synthetic ones.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def bench_embeddings_cmd(
    device: str,
    embedder: str,
    cases: int,
    k: int,
    batch_size: int | None,
    batch_sizes: str,
    rounds: int,
    run_dir: str | None,
    as_json: bool,
) -> None:
    """Diversity embeddings: one batched pass vs a per-case loop, and sentences/s by batch size."""
    from lab.bench.embeddings import bench_embeddings, format_embedding_bench
    from lab.devices import resolve_device

    try:
        sizes = tuple(int(s) for s in batch_sizes.split(",") if s.strip())
    except ValueError:
        raise LabError(f"--batch-sizes: expected integers like 32,128, got {batch_sizes!r}") from (
            None
        )
    if not sizes or min(sizes) < 1:
        raise LabError(f"--batch-sizes: expected positive integers, got {batch_sizes!r}")
    texts = None
    if run_dir is not None:
        from lab.rundir import read_entries

        texts = [[g["text"] for g in e["generations"]] for e in read_entries(Path(run_dir))]
        if not texts:
            raise LabError(f"--run {run_dir}: no finished cases in this sample run")
    result = bench_embeddings(
        embedder, resolve_device(device), cases, k, batch_size, sizes, rounds, texts
    )
    click.echo(
        json.dumps(result.to_dict(), indent=2) if as_json else format_embedding_bench(result)
    )


COMMANDS: list[click.Command] = [bench_group]
