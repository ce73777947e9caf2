"""Click options shared by the commands, and the one option vocabulary of `lab`.

- `engine_options`: the engine options of every command that defines an engine (`lab
  generate`, `lab serve`, `lab load --serve`, and the n-of-k runs `lab sample`, `lab library
  run`, `lab quickstart`): one definition per option; `engine_config` turns their values into
  an EngineConfig, `engine_settings` into an n-of-k run's config keys.
- `renamed_option`: an option under its one name, with the name it had before kept for one
  release as a hidden alias (parses the same; stderr says "--old is now --new" once).
- the parser of `--engine-arg KEY=VALUE` pairs, the output-directory check every command
  runs, the n-of-k runs' `--ray [ADDRESS] --replicas R --cpus-per-replica C` (`ray_options`,
  `ray_sampler`: lab.scale.sample), and `retry_failed_option`.

One name per idea across verbs (tests/unit/test_cli_vocabulary.py holds the synonyms): where
verbs named one idea differently, the name most verbs already used won, else the one the
docs and messages already used:

    --k                samples per case / prompt     (was --n in lab generate)
    --gate             NAME=VALUE thresholds         (was --floor in lab library add)
    --retry-failed     on resume, rerun what failed  (was --retry-errors in lab load)
    --cpus-per-replica CPUs each Ray worker asks for (was --cpus-per-actor in lab sweep)
    --num-cases        how many cases a bench takes  (was --prompts, then --cases, in lab bench)
    --cases            which cases a run takes (a source: bundled:NAME, a file, a dataset dir)
    --rounds           timed repetitions of a bench  (was --repeats in lab bench kernels)
    --json-out PATH    also write the result as JSON (was --json PATH; --json alone prints JSON)

and one meaning per name: a name is a flag in every verb or takes the same kind of value in
every verb.

A module of its own so that command packages (lab/commands/serving.py) can use them while
lab/cli.py imports those packages.

    @engine_options(backends=("hf", "vllm"))
    def generate_cmd(**options): config = engine_config(options)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from lab.backends import registry
from lab.backends.base import EngineConfig
from lab.errors import LabError
from lab.runkinds import check_run_dir
from lab.variance.config import SampleConfig


def stack(options: list[Any]) -> Callable[[Any], Any]:
    """One decorator applying click `options` in order (the first one listed first in --help)."""

    def decorate(fn: Any) -> Any:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


class _RenamedOption(click.Option):
    """An option that also takes the value of its hidden old-name twins (`renamed_option`)."""

    def __init__(self, *args: Any, old_names: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.old_names = old_names  # the twins' parameter names

    def consume_value(self, ctx: click.Context, opts: Mapping[str, Any]) -> tuple[Any, Any]:
        given = [name for name in self.old_names if name in opts]  # the parser lists those given
        if not given:
            return super().consume_value(ctx, opts)
        old = next(p for p in ctx.command.params if p.name == given[0])
        assert isinstance(old, click.Option)
        value = opts[given[0]]
        # a --x/--no-x pair: the side given, so the message names what was typed
        negative = bool(old.secondary_opts) and value is False
        was = (old.secondary_opts if negative else old.opts)[0]
        now = (self.secondary_opts if negative else self.opts)[0]
        if self.name in opts or len(given) > 1:
            raise click.UsageError(f"{was} and {now} are one option; give {now} only", ctx)
        if not ctx.resilient_parsing:
            click.echo(f"{was} is now {now}", err=True)
        return value, click.core.ParameterSource.COMMANDLINE


def renamed_option(*decls: str, old: str | tuple[str, ...], **kwargs: Any) -> Callable[[Any], Any]:
    """click.option(*decls, **kwargs), and `old` (the name or names before, e.g. "--n" or
    "--retry-errors/--no-retry-errors") kept for one release: hidden from --help, each sets the
    same value; a deprecation line on stderr. decls must name the destination."""
    dest = next(d for d in decls if not d.startswith("-"))
    olds = (old,) if isinstance(old, str) else old
    twins = tuple(f"old{i or ''}_{dest}" for i in range(len(olds)))
    parse = {k: kwargs[k] for k in ("type", "multiple", "is_flag", "flag_value") if k in kwargs}
    return stack([
        click.option(*decls, cls=_RenamedOption, old_names=twins, **kwargs),
        *(click.option(name, twin, hidden=True, expose_value=False, **parse)
          for name, twin in zip(olds, twins, strict=True)),
    ])  # fmt: skip


def retry_failed_option(default: bool, text: str, old: str | None = None) -> Callable[[Any], Any]:
    """`--retry-failed/--no-retry-failed` (value `retry_failed`): on resume, run again what
    failed; `default` per command (a load test's errors are mostly transient, a sweep cell's
    failure mostly repeats). `old`: a former name kept as a hidden alias (renamed_option)."""
    decls = ("--retry-failed/--no-retry-failed", "retry_failed")
    keywords: dict[str, Any] = {"default": default, "show_default": True, "help": text}
    if old is not None:
        return renamed_option(*decls, old=old, **keywords)
    return click.option(*decls, **keywords)


def config_defaults(cls: Any) -> dict[str, Any]:
    """A config dataclass's field defaults (the values a run takes when nothing sets them)."""
    return {
        f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
    }


#: The engine options, each defined once: (flags, EngineConfig field, click keywords, help).
#: Their defaults are the config's a command builds (EngineConfig's, or SampleConfig's for an
#: n-of-k run, whose k samples of one prompt share its prefill: prefix caching on there).
_ENGINE_OPTIONS: list[tuple[str, str, dict[str, Any], str]] = [
    ("--model", "model", {}, "Bundled model name, checkpoint directory or hub id."),
    ("--dtype", "dtype", {}, "fp32, bf16, fp16, or layercast (hf: bf16 weights, fp32 compute)."),
    ("--device", "device", {}, "auto, cpu, cuda[:N]."),
    ("--tp", "tensor_parallel_size", {"type": int}, "Tensor-parallel degree (vllm backend)."),
    (
        "--batch-invariant/--no-batch-invariant", "batch_invariant", {},
        "Batch-invariant mode (hf: the lab's kernels; vllm: VLLM_BATCH_INVARIANT=1).",
    ),
    ("--prefix-caching/--no-prefix-caching", "prefix_caching", {}, "vLLM prefix caching."),
    (
        "--eager/--compiled", "enforce_eager", {},
        "vLLM eager mode, or compiled (minutes to start on a CPU).",
    ),
    ("--attention-backend", "attention_backend", {}, "vLLM attention backend name."),
    (
        "--max-num-seqs", "max_num_seqs", {"type": int},
        "vLLM: sequences scheduled together; hf: rows per forward pass.",
    ),
    ("--max-model-len", "max_model_len", {"type": int}, "Context length cap."),
]  # fmt: skip

_SHORT_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def _shown(value: Any) -> Any:
    """A default as --help shows it (fp32, not float32: the spelling the options take)."""
    return _SHORT_DTYPES.get(value, value) if isinstance(value, str) else value


def _default_text(decls: str, value: Any) -> str:
    """' Default X.' for an option whose value None means "the config file's, else X" (a
    --x/--no-x pair: the side that is the default, as click's show_default names it)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return f" Default {decls.split('/')[0 if value else 1].lstrip('-')}."
    return f" Default {_shown(value)}."


def engine_options(
    backends: tuple[str, ...] | None = registry.ENGINES,
    config: Any = EngineConfig,
    from_file: bool = False,
    engine_arg_help: str = "Extra vLLM engine argument KEY=VALUE (value parsed as JSON when it "
    "can be; repeat for more).",
) -> Callable[[Any], Any]:
    """A decorator adding the engine options, with `config`'s defaults (EngineConfig, or
    SampleConfig for an n-of-k run). backends None: no --backend option (the command has one
    engine kind). from_file: the run reads a config file too, so every default is None (not
    given: the file's value, else `config`'s, which --help states) and --base-url comes with
    --backend (openai)."""
    defaults = config_defaults(config)

    def option(decls: str, dest: str, keywords: dict[str, Any], text: str) -> Any:
        if from_file:
            return click.option(
                decls, dest, default=None, help=f"{text}{_default_text(decls, defaults[dest])}",
                **keywords,
            )  # fmt: skip
        return click.option(
            decls, dest, default=_shown(defaults[dest]), show_default=True, help=text, **keywords
        )

    options = []
    if backends is not None:
        options.append(
            option(
                "--backend", "backend", {"type": click.Choice(list(backends))},
                "openai: the server at --base-url, else a managed vLLM server on loopback."
                if "openai" in backends else "Which engine runs the model.",
            )
        )  # fmt: skip
        if from_file:
            options.append(
                click.option(
                    "--base-url", default=None,
                    help="openai backend: the server's OpenAI-compatible base URL "
                    "(http://HOST:PORT/v1).",
                )
            )  # fmt: skip
    options += [option(*spec) for spec in _ENGINE_OPTIONS]
    options.append(click.option("--engine-arg", "engine_args", multiple=True, help=engine_arg_help))
    return stack(options)


def run_engine_options(backend: bool = True) -> Callable[[Any], Any]:
    """The engine options of an n-of-k run (`lab sample`, `lab library run`, `lab
    quickstart`'s step 3): a config file may set them too, so every flag defaults to None
    (SampleConfig's defaults, shown in --help, apply when neither gives one). backend False:
    the command has its own --backend (the quickstart)."""
    names = tuple(registry.choices(names=registry.NAMES)) if backend else None
    return engine_options(backends=names, config=SampleConfig, from_file=True)


#: `--allow-module` (repeatable): a module whose functions the cases' python checks may call
allow_module_option = click.option(
    "--allow-module",
    "allow_modules",
    multiple=True,
    help="Let the cases' `python: MODULE:function` checks (and agent cases' environments) "
    "call this module (a name or a .py file; repeat for more). Such checks run code: allow "
    "only modules you trust. NAME.py beside the case file is allowed without it.",
)


def engine_settings(flags: dict[str, Any]) -> dict[str, Any]:
    """`flags` with `--engine-arg` pairs parsed into the `engine_args` mapping (None when none
    was given, so a config file's mapping stands)."""
    pairs = tuple(flags.get("engine_args") or ())
    return flags | {"engine_args": parse_engine_args(pairs) or None}


def parse_engine_args(pairs: tuple[str, ...]) -> dict[str, Any]:
    """("max_num_batched_tokens=8192", "seed=3") -> {"max_num_batched_tokens": 8192, ...};
    values parse as JSON when they can, else stay strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise LabError(f"--engine-arg {pair!r}: expected KEY=VALUE")
        key, raw = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise LabError(f"--engine-arg {pair!r}: the KEY before '=' is empty")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def engine_config(options: dict[str, Any], **fixed: Any) -> EngineConfig:
    """The EngineConfig of a command's engine options (engine_options() values; `--engine-arg`
    pairs parsed; other options of the command ignored), with `fixed` settings on top (e.g.
    backend="vllm" for a command that has one engine kind): EngineConfig.from_values, the
    builder sweep cells and n-of-k runs share."""
    args = parse_engine_args(tuple(options.get("engine_args", ())))
    return EngineConfig.from_values(options | fixed, engine_args=args)


def check_out_dir(
    path: str | Path | None, option: str = "--out", fresh: bool = False, kind: str | None = None
) -> None:
    """An output directory option must not name an existing file; a run's (`kind`: sample,
    sweep, load, quickstart) must hold nothing, that kind of run, or (without --fresh) files
    it would not overwrite: lab.runkinds.check_run_dir (checked before any work)."""
    if path is None or not Path(path).exists():
        return
    if kind is not None:
        check_run_dir(path, kind, fresh, option)
    elif not Path(path).is_dir():
        raise LabError(f"{option} {path}: is a file, not a directory; choose a directory")


def ray_options(what: str = "replicas of the run's engine configuration") -> Callable[[Any], Any]:
    """`--ray [ADDRESS]`, `--replicas R` and `--cpus-per-replica` of an n-of-k run (`lab
    sample`, `lab library run`); `ray_sampler(flags)` turns them into its sampler."""
    options = [
        click.option(
            "--ray", "ray_address", is_flag=False, flag_value="auto", default=None,
            metavar="[ADDRESS]",
            help="Run on Ray, the engine calls shared by --replicas copies of the engine: "
            "`local` starts a Ray instance here; `auto` (a bare --ray: RAY_ADDRESS, else the "
            "cluster `ray start` made) or ray://host:port joins a cluster. Needs the ray extra.",
        ),
        click.option(
            "--replicas", type=click.IntRange(min=1), default=None,
            help=f"With --ray: {what} (default 1); the samples do not depend on it.",
        ),
        click.option(
            "--cpus-per-replica", type=click.IntRange(min=1), default=None,
            help="With --ray on CPUs: CPUs (and so torch threads) each replica asks for "
            "(default 1).",
        ),
    ]  # fmt: skip

    return stack(options)


def ray_sampler(flags: dict[str, Any], cache_dir: str | None) -> Any:
    """Pop ray_options' values from `flags`; the lab.variance.runner Sampler they ask for
    (lab.scale.sample on Ray replicas), or None without --ray (Ray is then never imported)."""
    address = flags.pop("ray_address", None)
    replicas = flags.pop("replicas", None)
    cpus = flags.pop("cpus_per_replica", None)
    if address is None:
        if replicas is not None or cpus is not None:
            given = "--replicas" if replicas is not None else "--cpus-per-replica"
            raise LabError(f"{given} needs --ray [ADDRESS]")
        return None
    from lab.scale.cluster import check_address, require_ray

    require_ray()  # before the config is read: one line naming the extra
    check_address(address)
    from lab.scale.sample import RayOptions
    from lab.scale.sample import ray_sampler as make

    return make(
        RayOptions(
            address=address, replicas=replicas or 1, cpus_per_replica=cpus or 1,
            cache_dir=cache_dir,
        )
    )  # fmt: skip
