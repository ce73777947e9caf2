"""The `lab` command: parse arguments and call the library; no logic lives here.

    lab env                      the environment record every run stores
    lab models list|prepare      the model registry
    lab generate ...             completions with per-token logprobs
    lab demo                     greedy, alone vs in a batch of 8, through hf and vLLM
    lab quickstart               the main job: sweep, kernels off / on, n-of-k report
    lab probe                    which operators are batch-invariant here

Every other command lives in lab/commands/, one module per capability (determinism,
variance, comparison, longtail, serving, bench), as a plain `@click.command` listed in its
COMMANDS; COMMANDS below adds them all to the group, so one list shows every command. A new
command goes in its capability's module there and its COMMANDS, never onto `cli` directly.
They sit in the cli layer, not inside the capability packages, because a command may join
capabilities (`lab sample` runs agent or n-of-k cases, `lab sweep` on Ray or not). Command
bodies import the library lazily: `lab --help` loads no engine stack.

Exit codes: 0 success, 2 usage or input error (one line naming what was wrong).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import click

import lab.commands.bench
import lab.commands.comparison
import lab.commands.determinism
import lab.commands.longtail
import lab.commands.serving
import lab.commands.variance
from lab import console
from lab.backends import registry
from lab.cli_options import (
    allow_module_option,
    check_out_dir,
    engine_config,
    engine_options,
    engine_settings,
    renamed_option,
    run_engine_options,
)
from lab.errors import LabError
from lab.models import DEFAULT_MODEL
from lab.rundir import ENGINE_LOG


@click.group()
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where prepared models live (default $LAB_CACHE_DIR or ~/.cache/determinism-lab).",
)
@click.option(
    "--verbose",
    is_flag=True,
    help="Show the engines' own output (vLLM / torch warnings, weight-loading bars) instead of "
    f"writing it to RUN_DIR/{ENGINE_LOG}.",
)
@click.pass_context
def cli(ctx: click.Context, cache_dir: str | None, verbose: bool) -> None:
    """The determinism and variance lab."""
    console.set_verbose(verbose)
    ctx.obj = {"cache_dir": cache_dir}


@click.command("env")
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


@click.group("models")
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


@click.command("generate")
@engine_options()
@click.option("--prompt", "prompts", multiple=True, required=True, help="Repeat for a batch.")
@click.option("--raw", is_flag=True, help="Send the prompt as raw text, not as a chat message.")
@renamed_option("--k", "k", old="--n", type=int, default=1, show_default=True,
                help="Samples per prompt.")  # fmt: skip
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
    k: int,
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
    from lab.backends import Request, SamplingConfig, close_all, load_backend
    from lab.backends.prompts import chat

    for i, text in enumerate(prompts):
        if not text.strip():
            raise LabError(f"--prompt number {i + 1} is empty; give the text to send")
    config = engine_config(engine | {"engine_args": engine_args})
    sampling = SamplingConfig(
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=seed,
        n=k,
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


@click.command("demo")
@click.option("--backends", default=",".join(registry.ENGINES), show_default=True)
@click.option("--model", default=DEFAULT_MODEL, show_default=True)
@click.option("--dtype", default="fp32", show_default=True)
@click.option("--max-tokens", type=int, default=48, show_default=True)
@renamed_option(
    "--json-out", "json_path", old="--json", type=click.Path(dir_okay=False), default=None,
    help="Also write the results (and the environment record) to this JSON file.",
)  # fmt: skip
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


@click.command("quickstart")
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
@run_engine_options(backend=False)
@allow_module_option
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
    allow_modules: tuple[str, ...],
    **engine: Any,
) -> None:
    """The main job: a small sweep, the kernels off vs on, an n-of-k report; then index.html.

    The engine options (--tp, --prefix-caching, --engine-arg, ...) configure step 3's n-of-k
    run, as they do `lab sample`'s."""
    from lab.cases.codechecks import resolve_checks
    from lab.cases.loaders import load_cases
    from lab.quickstart import run_quickstart
    from lab.variance.config import SampleConfig

    # Its three steps run one after another: check what the last one needs before the first.
    check_out_dir(out, fresh=fresh, kind="quickstart")
    settings = {k: v for k, v in engine_settings(engine).items() if v is not None}
    if allow_modules:
        settings["allow_modules"] = list(allow_modules)
    step3 = SampleConfig(cases=cases, backend=backend, **settings)  # checked now
    parsed = load_cases(cases)  # once: checked here, sampled by step 3
    resolve_checks(parsed, step3.code_policy())
    result = run_quickstart(
        out=out,
        k=k,
        backend=backend,
        cases=cases,
        parsed_cases=parsed,
        max_tokens=max_tokens,
        fresh=fresh,
        cache_dir=obj["cache_dir"],
        progress=not no_progress,
        emit=console.echo,  # the terminal, while the engines write to RUN_DIR/engine.log
        engine=settings,
    )
    click.echo(f"sweep report: {result.sweep_report}")
    click.echo(f"variance report: {result.sample_report}")
    click.echo(f"report: {result.index}")


@click.command("probe")
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


#: Every command, in one list: the ones above, then each capability's (lab/commands/).
COMMANDS: list[click.Command] = [
    env_cmd,
    models_group,
    generate_cmd,
    demo_cmd,
    quickstart_cmd,
    probe_cmd,
    *lab.commands.determinism.COMMANDS,
    *lab.commands.variance.COMMANDS,
    *lab.commands.comparison.COMMANDS,
    *lab.commands.longtail.COMMANDS,
    *lab.commands.serving.COMMANDS,
    *lab.commands.bench.COMMANDS,
]
for _command in COMMANDS:
    cli.add_command(_command)


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
    except click.UsageError as exc:
        # Click's three lines (usage, "Try --help", the error) as one, like every bad input
        command = exc.ctx.command_path if exc.ctx is not None else "lab"
        message = exc.format_message().rstrip(".")
        click.echo(f"error: {message} (see `{command} --help`)", err=True)
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
