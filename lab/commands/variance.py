"""The n-of-k variance commands: `lab sample` (sample every case k times, resumably, and write
the report) and `lab sample-report` (rebuild a run's report with other analysis settings).
Both print the run's summary (summary.md's text, from the metrics in memory) and exit 1 when
the run misses its gate.

    lab sample [CONFIG.yaml] --cases bundled:basic --k 32 --backend vllm --gate min_p5=0.1
    lab sample --cases bundled:basic --k 32 --ray auto --replicas 4    (lab.scale.sample)
    lab sample-report runs/basic --gate min_p5=0.2 [--cohorts cohorts.yaml]

Parsing and printing only: the work is in lab.variance. Listed in lab/cli.py (COMMANDS).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from lab import console
from lab.cli_options import (
    allow_module_option,
    check_out_dir,
    engine_settings,
    ray_options,
    ray_sampler,
    run_engine_options,
)
from lab.variance.result import RunReport


@click.command("sample")
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
@run_engine_options()
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
@allow_module_option
@click.option("--out", default=None, help="Run directory (resumed when it exists).")
@click.option("--fresh", is_flag=True, help="Discard the run directory's earlier samples.")
@click.option(
    "--max-turns",
    type=int,
    default=None,
    help="Agent cases: model turns at most (default: each case's).",
)
@click.option(
    "--tool-protocol",
    type=click.Choice(["auto", "native", "text"]),
    default=None,
    help="Agent cases: the chat template's tools (native) or the lab's text protocol.",
)
@ray_options()
@click.pass_obj
def sample_cmd(obj: dict[str, Any], config_path: str | None, fresh: bool, **flags: Any) -> None:
    """Sample every case k times; write the n-of-k variance report (exit 1 on a gate miss).
    Agent cases (with tools) run k trajectories each (lab.agents)."""
    from lab.agents.runner import is_agent_source, run_agents
    from lab.backends import close_all
    from lab.cases.loaders import load_cases
    from lab.errors import LabError
    from lab.variance.config import load_config
    from lab.variance.runner import run_sample

    sampler = ray_sampler(flags, obj["cache_dir"])
    config = load_config(config_path, engine_settings(flags))
    check_out_dir(config.out_dir(), fresh=fresh, kind="sample")
    whole = load_cases(config.cases)  # parsed once: which runner, the run, its report
    agents = is_agent_source(config, whole)
    if agents and sampler is not None:
        raise LabError(f"{config.cases}: agent cases (with tools) run locally; drop --ray")
    try:
        if agents:
            outcome = run_agents(
                config, fresh=fresh, emit=console.echo, cache_dir=obj["cache_dir"], cases=whole
            )
        else:
            outcome = run_sample(
                config, fresh=fresh, emit=console.echo, cache_dir=obj["cache_dir"],
                sampler=sampler, cases=whole,
            )  # fmt: skip
    finally:
        close_all()
    _print_sample_result(outcome.report)


@click.command("sample-report")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--gate", multiple=True, help="Threshold NAME=VALUE (see lab sample).")
@click.option("--cluster-threshold", type=float, default=None)
@click.option("--price-in", type=float, default=None)
@click.option("--price-out", type=float, default=None)
@click.option("--cohorts", default=None, help="YAML with a cohorts: section (new buckets).")
@allow_module_option
def sample_report_cmd(run_dir: str, **flags: Any) -> None:
    """Rebuild a sample run's report from its directory, without sampling."""
    from lab.rundir import is_agent_run
    from lab.variance.report import rebuild_report

    build = None
    if is_agent_run(run_dir):
        from lab.agents.report import build_agent_report

        build = build_agent_report
    written = rebuild_report(run_dir, flags, emit=lambda m: click.echo(m, err=True), build=build)
    _print_sample_result(written)


def _print_sample_result(written: RunReport | None) -> None:
    """The run's summary (what it wrote to summary.md, from memory, not read back from disk);
    exit 1 on a gate miss."""
    if written is None:
        return
    click.echo(written.summary)
    if not written.gate.passed:
        click.echo("gate failed: " + "; ".join(written.gate.reasons), err=True)
        sys.exit(1)


COMMANDS: list[click.Command] = [sample_cmd, sample_report_cmd]
