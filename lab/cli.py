"""The `lab` command: parse arguments and call the library; no logic lives here.

    lab env                      the environment record every run stores
    lab models list|prepare      the model registry
    lab generate ...             completions with per-token logprobs
    lab demo                     greedy, alone vs in a batch of 8, through hf and vLLM

Exit codes: 0 success, 2 usage or input error (one line naming what was wrong).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import click

import lab.comparison.commands
import lab.longtail.commands_library
import lab.longtail.commands_tail
import lab.serving.commands
from lab.backends import registry
from lab.cli_options import check_out_dir, engine_options, parse_engine_args
from lab.errors import LabError
from lab.models import DEFAULT_MODEL


@click.group()
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where prepared models live (default $LAB_CACHE_DIR or ~/.cache/determinism-lab).",
)
@click.pass_context
def cli(ctx: click.Context, cache_dir: str | None) -> None:
    """The determinism and variance lab."""
    ctx.obj = {"cache_dir": cache_dir}


@cli.command("env")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def env_cmd(as_json: bool) -> None:
    """Print the environment record (devices, versions, env vars, lab commit)."""
    from lab.envinfo import environment_record

    record = environment_record()
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    for key, value in record.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {v}")
        else:
            click.echo(f"{key}: {value}")


@cli.group("models")
def models_group() -> None:
    """The model registry."""


@models_group.command("list")
@click.pass_obj
def models_list(obj: dict[str, Any]) -> None:
    """Bundled models and whether they are prepared. Any local HF checkpoint directory or hub
    id in the local HF cache also works wherever a model is asked for."""
    from lab.models import list_models

    for row in list_models(obj["cache_dir"]):
        click.echo(f"{row['name']:24} {row['kind']:8} {row['state']:13} {row['description']}")
        click.echo(f"{'':24} {row['path']}")


@models_group.command("prepare")
@click.argument("name")
@click.option("--force", is_flag=True, help="Prepare again even if already prepared.")
@click.pass_obj
def models_prepare(obj: dict[str, Any], name: str, force: bool) -> None:
    """Prepare a bundled model (GGUF -> safetensors checkpoint in the cache), atomically."""
    from lab.models import BUNDLED, prepare_bundled, resolve

    if name not in BUNDLED:
        path = resolve(name, obj["cache_dir"])  # validates; nothing to prepare
        click.echo(f"{name}: ready at {path} (not a bundled model; nothing to convert)")
        return
    path = prepare_bundled(name, obj["cache_dir"], force=force)
    click.echo(f"{name}: prepared at {path}")


@cli.command("generate")
@engine_options()
@click.option("--prompt", "prompts", multiple=True, required=True, help="Repeat for a batch.")
@click.option("--raw", is_flag=True, help="Send the prompt as raw text, not as a chat message.")
@click.option("--n", type=int, default=1, show_default=True, help="Samples per prompt.")
@click.option("--temperature", type=float, default=0.0, show_default=True)
@click.option("--top-p", type=float, default=1.0, show_default=True)
@click.option("--top-k", type=int, default=0, show_default=True)
@click.option("--seed", type=int, default=None)
@click.option("--max-tokens", type=int, default=64, show_default=True)
@click.option("--logprobs", type=int, default=5, show_default=True, help="Top alternatives kept.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON lines.")
@click.pass_obj
def generate_cmd(
    obj: dict[str, Any],
    prompts: tuple[str, ...],
    raw: bool,
    n: int,
    temperature: float,
    top_p: float,
    top_k: int,
    seed: int | None,
    max_tokens: int,
    logprobs: int,
    as_json: bool,
    engine_args: tuple[str, ...],
    **engine: Any,
) -> None:
    """Generate completions with per-token logprobs."""
    from lab.backends import EngineConfig, Request, SamplingConfig, close_all, load_backend
    from lab.backends.prompts import chat

    for i, text in enumerate(prompts):
        if not text.strip():
            raise LabError(f"--prompt number {i + 1} is empty; give the text to send")
    config = EngineConfig(**engine, engine_args=parse_engine_args(engine_args))
    sampling = SamplingConfig(
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=seed,
        n=n,
        max_tokens=max_tokens,
        logprobs=logprobs,
    )
    requests = [
        Request(id=f"p{i}", prompt=text) if raw else chat(f"p{i}", text)
        for i, text in enumerate(prompts)
    ]
    try:
        records = load_backend(config, obj["cache_dir"]).generate(requests, sampling)
    finally:
        close_all()
    for g in records:
        if as_json:
            click.echo(json.dumps(g.to_dict()))
            continue
        click.echo(
            f"== {g.request_id} sample {g.sample_index} (seed {g.seed}) [{g.finish_reason}] =="
        )
        if g.error:
            click.echo(f"error: {g.error}")
            continue
        click.echo(g.text)
        for i, (tid, lp) in enumerate(zip(g.output_token_ids, g.token_logprobs, strict=True)):
            alts = " ".join(f"{a.token!r}:{a.logprob:.3f}" for a in g.top_logprobs[i][:3])
            click.echo(f"  {i:>3} {tid:>6} {lp:>9.4f}  | {alts}")


@cli.command("demo")
@click.option("--backends", default=",".join(registry.ENGINES), show_default=True)
@click.option("--model", default=DEFAULT_MODEL, show_default=True)
@click.option("--dtype", default="fp32", show_default=True)
@click.option("--max-tokens", type=int, default=48, show_default=True)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the results (and the environment record) to this JSON file.",
)
@click.pass_obj
def demo_cmd(
    obj: dict[str, Any],
    backends: str,
    model: str,
    dtype: str,
    max_tokens: int,
    json_path: str | None,
) -> None:
    """Greedy: each prompt alone vs inside a batch of 8, through hf and vLLM."""
    from lab.backends import close_all
    from lab.demo import format_demo, run_demo
    from lab.envinfo import environment_record

    names = [b.strip() for b in backends.split(",") if b.strip()]
    if not names:
        raise LabError("--backends: give at least one of hf, vllm")
    for name in names:
        if name not in registry.ENGINES:
            raise LabError(
                f"--backends: unknown backend {name!r}; use {' and/or '.join(registry.ENGINES)}"
            )
    try:
        result = run_demo(
            names,
            model,
            dtype,
            max_tokens,
            obj["cache_dir"],
            progress=lambda m: click.echo(m, err=True),
        )
    finally:
        close_all()
    click.echo(format_demo(result))
    if json_path:
        payload = dataclasses.asdict(result) | {"environment": environment_record()}
        with open(json_path, "w") as fh:
            json.dump(payload, fh, indent=2)


@cli.command("quickstart")
@click.option("--out", default="runs/quickstart", show_default=True, help="Run directory.")
@click.option(
    "--k", type=click.IntRange(min=1), default=8, show_default=True, help="Samples per case."
)
@click.option(
    "--backend", type=click.Choice(registry.choices("vllm")), default="vllm", show_default=True
)
@click.option("--cases", default="bundled:basic", show_default=True, help="Case set to sample.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=48, show_default=True)
@click.option("--fresh", is_flag=True, help="Start over instead of resuming.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_obj
def quickstart_cmd(
    obj: dict[str, Any],
    out: str,
    k: int,
    backend: str,
    cases: str,
    max_tokens: int,
    fresh: bool,
    no_progress: bool,
) -> None:
    """The main job: a small sweep, the kernels off vs on, an n-of-k report; then index.html."""
    from lab.cases.loaders import load_cases
    from lab.quickstart import run_quickstart

    # Its three steps run one after another: check what the last one needs before the first.
    check_out_dir(out)
    load_cases(cases)
    result = run_quickstart(
        out=out,
        k=k,
        backend=backend,
        cases=cases,
        max_tokens=max_tokens,
        fresh=fresh,
        cache_dir=obj["cache_dir"],
        progress=not no_progress,
        emit=lambda line: click.echo(line, err=True),
    )
    click.echo(f"sweep report: {result.sweep_report}")
    click.echo(f"variance report: {result.sample_report}")
    click.echo(f"report: {result.index}")


@cli.command("sweep")
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", default=None, help="Run directory (default runs/<name>).")
@click.option("--fresh", is_flag=True, help="Start over instead of resuming.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option(
    "--retry-failed", is_flag=True, help="On resume, run the cells that failed again too."
)
@click.pass_obj
def sweep_cmd(
    obj: dict[str, Any],
    config_path: str,
    out_dir: str | None,
    fresh: bool,
    no_progress: bool,
    retry_failed: bool,
) -> None:
    """Run (or resume) a temperature-zero determinism sweep, then write its report."""
    from lab.determinism.config import load_sweep_config
    from lab.determinism.sweep import run_sweep
    from lab.report.sweep_report import write_sweep_report

    config = load_sweep_config(config_path)
    out = out_dir or f"runs/{config.name}"
    check_out_dir(out, fresh=fresh)
    run_sweep(
        config,
        out,
        fresh=fresh,
        cache_dir=obj["cache_dir"],
        progress=not no_progress,
        retry_failed=retry_failed,
    )
    paths = write_sweep_report(out)
    summary = json.loads(paths["metrics"].read_text())["summary"]
    for key, value in summary.items():
        click.echo(f"{key}: {value}")
    if summary.get("cells_failed"):
        click.echo(
            f"{summary['cells_failed']} cell(s) failed (errors in the report); "
            "`--retry-failed` runs them again",
            err=True,
        )
    click.echo(f"report: {paths['html']}")


@cli.group("bench")
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


@cli.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--x", "x_axis", default=None, help="Heatmap column axis.")
@click.option("--y", "y_axis", default=None, help="Heatmap row axis.")
def report_cmd(run_dir: str, x_axis: str | None, y_axis: str | None) -> None:
    """Write metrics.json, report.md and report.html for a sweep run directory."""
    from lab.report.sweep_report import write_sweep_report

    paths = write_sweep_report(run_dir, x_axis, y_axis)
    click.echo(f"report: {paths['html']}")


@cli.command("sample")
@click.argument(
    "config_path", metavar="[CONFIG.yaml]", required=False, type=click.Path(dir_okay=False)
)
@click.option(
    "--cases", default=None, help="bundled:NAME, .jsonl/.yaml/.csv, or a saved dataset dir."
)
@click.option(
    "--only-tags", default=None, help="Only cases with one of these tags (comma-separated)."
)
@click.option(
    "--limit", type=int, default=None, help="At most N cases (the first, after --only-tags)."
)
@click.option("--k", type=int, default=None, help="Samples per case (default 32).")
@click.option(
    "--backend", type=click.Choice(registry.choices()), default=None, help="Default vllm."
)
@click.option("--model", default=None, help=f"Default {DEFAULT_MODEL}.")
@click.option("--dtype", default=None, help="fp32 (default), bf16, fp16.")
@click.option("--device", default=None, help="auto (default), cpu, cuda[:N].")
@click.option("--temperature", type=float, default=None, help="Default 0.7.")
@click.option("--top-p", type=float, default=None, help="Default 1.0 (off).")
@click.option("--top-k", type=int, default=None, help="Default 0 (off).")
@click.option("--max-tokens", type=int, default=None, help="Default 64.")
@click.option(
    "--seed", type=int, default=None, help="Base seed (default 0); case j sample i: seed+j*k+i."
)
@click.option(
    "--independent-seeds/--shared-seeds",
    default=None,
    help="Default independent: no two samples share a seed. Shared: sample i of every case "
    "uses seed + i.",
)
@click.option("--max-num-seqs", type=int, default=None)
@click.option("--rows-per-call", type=int, default=None, help="Samples per engine call.")
@click.option("--embedder", default=None, help="sentence-transformers model name or path.")
@click.option("--cluster-threshold", type=float, default=None)
@click.option("--price-in", type=float, default=None, help="Price per million input tokens.")
@click.option("--price-out", type=float, default=None, help="Price per million output tokens.")
@click.option(
    "--gate",
    multiple=True,
    help="Threshold NAME=VALUE: min_mean, min_p5, "
    "max_mean_over_p5, min_pass_hat_k (repeat or comma-separate).",
)
@click.option("--out", default=None, help="Run directory (resumed when it exists).")
@click.option("--fresh", is_flag=True, help="Discard the run directory's earlier samples.")
@click.pass_obj
def sample_cmd(obj: dict[str, Any], config_path: str | None, fresh: bool, **flags: Any) -> None:
    """Sample every case k times; write the n-of-k variance report (exit 1 on a gate miss)."""
    from lab.backends import close_all
    from lab.variance.config import load_config
    from lab.variance.runner import run_sample

    config = load_config(config_path, flags)
    check_out_dir(config.out_dir(), fresh=fresh)
    try:
        outcome = run_sample(
            config, fresh=fresh, emit=lambda m: click.echo(m, err=True), cache_dir=obj["cache_dir"]
        )
    finally:
        close_all()
    _print_sample_result(outcome.path, outcome.metrics)


@cli.command("sample-report")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--gate", multiple=True, help="Threshold NAME=VALUE (see lab sample).")
@click.option("--cluster-threshold", type=float, default=None)
@click.option("--price-in", type=float, default=None)
@click.option("--price-out", type=float, default=None)
@click.option("--cohorts", default=None, help="YAML with a cohorts: section (new buckets).")
def sample_report_cmd(run_dir: str, **flags: Any) -> None:
    """Rebuild a sample run's report from its directory, without sampling."""
    from lab.variance.report import rebuild_report

    _print_sample_result(
        run_dir, rebuild_report(run_dir, flags, emit=lambda m: click.echo(m, err=True))
    )


def _print_sample_result(path: Any, metrics: dict[str, Any] | None) -> None:
    if metrics is None:
        return
    click.echo((Path(path) / "summary.md").read_text())
    if not metrics["gate"]["passed"]:
        click.echo("gate failed: " + "; ".join(metrics["gate"]["reasons"]), err=True)
        sys.exit(1)


@cli.command("probe")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--dtype", default="fp32", show_default=True, help="fp32, bf16 or fp16.")
@click.option("--op", "ops", multiple=True, help="Only this operator (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def probe_cmd(device: str, dtype: str, ops: tuple[str, ...], as_json: bool) -> None:
    """Which operators are batch-invariant here, with and without lab.kernels' mode."""
    from lab.backends.base import canonical_dtype
    from lab.devices import resolve_device
    from lab.kernels.probe import format_probe, operators, probe

    unknown = sorted(set(ops) - set(operators()))
    if unknown:
        raise LabError(f"--op: unknown operator(s) {unknown}; known: {operators()}")
    rows = probe(resolve_device(device), canonical_dtype(dtype), list(ops) or None)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
    else:
        click.echo(format_probe(rows))


@bench_group.command("kernels")
@click.option("--prompts", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--max-tokens", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
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
@click.pass_obj
def bench_kernels_cmd(
    obj: dict[str, Any],
    prompts: int,
    max_tokens: int,
    repeats: int,
    e2e: bool,
    device: str,
    dtype: str,
    model: str,
) -> None:
    """Cost of the batch-invariant kernels: each operator and generation, on/off ratios."""
    from lab.backends.base import canonical_dtype
    from lab.bench.kernels import bench_generation, bench_ops, format_bench
    from lab.devices import resolve_device, torch_dtype

    resolved = resolve_device(device)  # LabError (exit 2) for cuda without a GPU
    canonical = canonical_dtype(dtype)
    timings = bench_ops(max(repeats, 3), resolved, torch_dtype(canonical))
    if e2e:
        timings += bench_generation(
            prompts, max_tokens, repeats, model, obj["cache_dir"], resolved, canonical
        )
    click.echo(format_bench(timings))


@bench_group.command("embeddings")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--embedder",
    default="all-MiniLM-L6-v2",
    show_default=True,
    help="A sentence-transformers model name or directory.",
)
@click.option("--cases", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--k", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=128, show_default=True,
    help="Batch size of the batched pass and the loop.",
)  # fmt: skip
@click.option("--batch-sizes", default="16,32,64,128,256,512,1024", show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def bench_embeddings_cmd(
    device: str,
    embedder: str,
    cases: int,
    k: int,
    batch_size: int,
    batch_sizes: str,
    rounds: int,
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
    result = bench_embeddings(embedder, resolve_device(device), cases, k, batch_size, sizes, rounds)
    click.echo(
        json.dumps(result.to_dict(), indent=2) if as_json else format_embedding_bench(result)
    )


# Commands that live in their own packages: each `register(cli)` adds its commands to the group.
# (One line per package; keep this block just above main().)
lab.longtail.commands_library.register(cli)
lab.longtail.commands_tail.register(cli)
lab.comparison.commands.register(cli)
lab.serving.commands.register(cli)


def main() -> None:
    """Entry point: LabError -> one line on stderr, exit 2."""
    from lab.store import install_interrupt_handler

    install_interrupt_handler()  # a Ctrl-C swallowed by a finalizer still stops the run
    try:
        cli.main(standalone_mode=False)
    except LabError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        # A path the user gave that cannot be used (a file where a directory goes, no
        # permission, disk full): one line naming it, not a traceback. No filename: a bug.
        if exc.filename is None:
            raise
        click.echo(f"error: {exc.filename}: {exc.strerror}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:  # Ctrl-C (click turns KeyboardInterrupt into Abort)
        from lab.store import interrupted_message

        click.echo(interrupted_message(), err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
