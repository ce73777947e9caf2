"""Click options shared by commands that define an engine (`lab generate`, `lab serve`,
`lab load --serve`; `engine_setting_options` for the n-of-k runs, whose config file supplies
the defaults), the one place their values become an EngineConfig (`engine_config`), the
parser of `--engine-arg KEY=VALUE` pairs, the output-directory check every command runs, and
the n-of-k runs' `--ray [ADDRESS] --replicas R` (`ray_options`, `ray_sampler`: lab.scale.sample).

A module of its own so that command packages (lab/commands/serving.py) can use them while
lab/cli.py imports those packages.

    @engine_options(backends=("hf", "vllm"))
    def generate_cmd(**options): config = engine_config(options)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lab.backends import registry
from lab.backends.base import EngineConfig
from lab.errors import LabError
from lab.models import DEFAULT_MODEL
from lab.runkinds import check_run_dir


def stack(options: list[Any]) -> Callable[[Any], Any]:
    """One decorator applying click `options` in order (the first one listed first in --help)."""

    def decorate(fn: Any) -> Any:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def engine_options(
    backends: tuple[str, ...] | None = registry.ENGINES,
    max_num_seqs: int | None = None,
    engine_arg_help: str = "Extra vLLM engine argument KEY=VALUE (value parsed as JSON when it "
    "can be).",
) -> Callable[[Any], Any]:
    """A decorator adding the engine options. backends None: no --backend option (the command
    has one engine kind); max_num_seqs: add --max-num-seqs with this default."""
    options = []
    if backends is not None:
        options.append(
            click.option(
                "--backend", type=click.Choice(list(backends)), default=backends[0],
                show_default=True,
            )
        )  # fmt: skip
    options += [
        click.option("--model", default=DEFAULT_MODEL, show_default=True),
        click.option(
            "--dtype",
            default="fp32",
            show_default=True,
            help="fp32, bf16, fp16, or layercast (hf: bf16 weights, fp32 compute).",
        ),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda[:N]."),
        click.option("--tp", "tensor_parallel_size", type=int, default=1, show_default=True),
        click.option("--batch-invariant/--no-batch-invariant", default=False),
        click.option("--prefix-caching/--no-prefix-caching", default=False),
        click.option("--eager/--compiled", "enforce_eager", default=True, show_default=True),
    ]
    if max_num_seqs is not None:
        options.append(
            click.option("--max-num-seqs", type=int, default=max_num_seqs, show_default=True)
        )
    options += [
        click.option("--max-model-len", type=int, default=None),
        click.option("--engine-arg", "engine_args", multiple=True, help=engine_arg_help),
    ]

    return stack(options)


def engine_setting_options(backend: bool = True) -> Callable[[Any], Any]:
    """The engine options of an n-of-k run (`lab sample`, `lab library run`, `lab
    quickstart`'s step 3): the fields of a sweep cell's engine plus `lab generate`'s
    --max-model-len and --engine-arg, every default None (not given: the config file's value,
    else SampleConfig's default). `engine_settings()` turns the values into config keys."""
    options = []
    if backend:
        options.append(
            click.option(
                "--backend", type=click.Choice(registry.choices(names=registry.NAMES)),
                default=None,
                help="Default vllm. openai: the server at --base-url, else a managed vLLM server "
                "on loopback.",
            )
        )  # fmt: skip
        options.append(
            click.option(
                "--base-url", default=None,
                help="openai backend: the server's OpenAI-compatible base URL "
                "(http://HOST:PORT/v1).",
            )
        )  # fmt: skip
    options += [
        click.option("--model", default=None, help=f"Default {DEFAULT_MODEL}."),
        click.option("--dtype", default=None, help="fp32 (default), bf16, fp16, layercast (hf)."),
        click.option("--device", default=None, help="auto (default), cpu, cuda[:N]."),
        click.option(
            "--tp", "tensor_parallel_size", type=int, default=None,
            help="Tensor-parallel degree (vllm backend; default 1).",
        ),
        click.option(
            "--batch-invariant/--no-batch-invariant", default=None,
            help="Batch-invariant mode (hf: the lab's kernels; vllm: VLLM_BATCH_INVARIANT=1); "
            "default off.",
        ),
        click.option(
            "--prefix-caching/--no-prefix-caching", default=None,
            help="vLLM prefix caching (default on for n-of-k runs).",
        ),
        click.option(
            "--eager/--compiled", "enforce_eager", default=None,
            help="vLLM eager mode (default) or compiled (minutes to start on a CPU).",
        ),
        click.option("--attention-backend", default=None, help="vLLM attention backend name."),
        click.option("--max-num-seqs", type=int, default=None, help="Default 64."),
        click.option("--max-model-len", type=int, default=None, help="Context length cap."),
        click.option(
            "--engine-arg", "engine_args", multiple=True,
            help="Extra vLLM engine argument KEY=VALUE (value parsed as JSON when it can be; "
            "repeat for more).",
        ),
    ]  # fmt: skip

    return stack(options)


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
