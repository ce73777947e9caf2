"""`lab serve` and `lab load`: a managed vLLM server, and a load test against any server.

lab serve --model smollm2-135m-instruct [--dtype fp32] [--engine-arg KEY=VALUE] [--port 0]
lab load --base-url http://127.0.0.1:8000/v1 --requests 500 --concurrency 32
lab load --serve --requests 500 --concurrency 32 --max-tokens 16 --out runs/load [--no-retry-failed]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from lab.cli_options import check_out_dir, engine_config, engine_options, retry_failed_option
from lab.errors import LabError

# The engine options of `lab generate`, without --backend (always vLLM) and with
# --max-num-seqs: what defines the managed server.
server_options = engine_options(
    backends=None,
    engine_arg_help="Extra `vllm serve` argument KEY=VALUE (value parsed as JSON when it can be).",
)


@click.command("serve")
@click.option("--backend", type=click.Choice(["vllm"]), default="vllm", show_default=True)
@server_options
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="0: a free port."
)
@click.option("--log", "log_path", type=click.Path(dir_okay=False), default=None)
@click.option(
    "--startup-timeout", type=click.FloatRange(min=0, min_open=True), default=300.0,
    show_default=True,
)  # fmt: skip
@click.pass_obj
def serve_cmd(
    obj: dict[str, Any],
    backend: str,
    port: int,
    log_path: str | None,
    startup_timeout: float,
    **kw: Any,
) -> None:
    """Run vLLM's OpenAI-compatible server on 127.0.0.1 until Ctrl-C; print its base URL."""
    from lab.backends.server import ManagedServer

    server = ManagedServer(
        engine_config(kw, backend="vllm"),
        log_path=log_path,
        port=port,
        cache_dir=obj["cache_dir"],
        startup_timeout_s=startup_timeout,
    )
    click.echo(f"starting vLLM on 127.0.0.1 (log {server.log_path}) ...", err=True)
    with server:
        click.echo(server.base_url)
        sys.stdout.flush()
        try:
            while server.alive():
                time.sleep(0.5)
        except KeyboardInterrupt:
            click.echo("stopping", err=True)
            return
    raise LabError(f"the server exited on its own; see {server.log_path}")


@click.command("load")
@click.option("--base-url", default=None, help="An OpenAI-compatible server's base URL.")
@click.option("--serve", is_flag=True, help="Start a managed vLLM server (engine options below).")
@server_options
@click.option("--requests", type=int, default=500, show_default=True)
@click.option("--concurrency", type=int, default=32, show_default=True)
@click.option("--max-tokens", type=int, default=16, show_default=True)
@click.option("--timeout", "timeout_s", type=float, default=120.0, show_default=True)
@click.option("--retries", type=int, default=3, show_default=True, help="Transport errors only.")
# on by default, unlike a sweep's: a load test's errors are mostly transient (timeouts,
# refused connections) and resuming is how the missing requests get an outcome
@retry_failed_option(
    default=True,
    text="On resume, resend requests whose last outcome was an error (never-sent ones always).",
    old="--retry-errors/--no-retry-errors",
)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run directory.")
@click.option("--fresh", is_flag=True, help="Start the run directory over.")
@click.pass_obj
def load_cmd(
    obj: dict[str, Any],
    base_url: str | None,
    serve: bool,
    requests: int,
    concurrency: int,
    max_tokens: int,
    timeout_s: float,
    retries: int,
    retry_failed: bool,
    out: str | None,
    fresh: bool,
    **kw: Any,
) -> None:
    """Bounded load test: every request recorded once; run again to send the missing ones.
    Exit 1 when not every request ended ok."""
    from lab.backends.server import ManagedServer
    from lab.models import check_model
    from lab.rundir import SERVER_LOG
    from lab.serving.loadtest import format_summary, interrupted_line, run_load
    from lab.store import prepare_run_dir

    if (base_url is None) == (not serve):
        raise LabError("give exactly one of --base-url URL or --serve")
    # Checked here, before --fresh deletes the run directory or a server starts.
    for name, value in (("--requests", requests), ("--concurrency", concurrency),
                        ("--max-tokens", max_tokens)):  # fmt: skip
        if value < 1:
            raise LabError(f"{name} must be >= 1, got {value}")
    if timeout_s <= 0:
        raise LabError(f"--timeout must be > 0, got {timeout_s}")
    if retries < 0:
        raise LabError(f"--retries must be >= 0, got {retries}")
    out_dir = Path(out or f"runs/load-{requests}x{max_tokens}")
    check_out_dir(out_dir, fresh=fresh, kind="load")
    args: dict[str, Any] = {
        "requests": requests,
        "concurrency": concurrency,
        "max_tokens": max_tokens,
        "retry_errors": retry_failed,
        "timeout_s": timeout_s,
        "retries": retries,
        "fresh": fresh,
    }
    if serve:
        config = engine_config(kw, backend="vllm")
        check_model(config.model, obj["cache_dir"])  # before the directory is touched
        # the server logs into the run directory: it is made a load run's now (--fresh deletes
        # what a load run wrote, nothing else)
        prepare_run_dir(out_dir, "load", fresh)
        server = ManagedServer(config, log_path=out_dir / SERVER_LOG, cache_dir=obj["cache_dir"])
        click.echo(f"starting vLLM on 127.0.0.1 (log {server.log_path}) ...", err=True)
        with server:
            summary = run_load(
                server.base_url,
                out_dir,
                model=server.served_name,
                server=server.record(),
                **(args | {"fresh": False}),
            )
    else:
        assert base_url is not None
        # The bundled default name means nothing to another server: ask it unless given.
        given = click.get_current_context().get_parameter_source("model")
        model = kw["model"] if given is click.core.ParameterSource.COMMANDLINE else None
        summary = run_load(base_url, out_dir, model=model, **args)
    if summary.interrupted:  # Ctrl-C: one line, as every command (summary.json has the rest)
        click.echo(interrupted_line(summary), err=True)
        sys.exit(130)
    click.echo(format_summary(summary))
    if not summary.complete:
        sys.exit(1)


COMMANDS: list[click.Command] = [serve_cmd, load_cmd]
