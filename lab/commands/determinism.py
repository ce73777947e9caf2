"""The determinism commands: `lab sweep` (run or resume a temperature-zero sweep, then its
report) and `lab report` (rewrite a sweep's metrics.json, report.md and report.html).

    lab sweep experiments/feynman/config.yaml --out runs/feynman [--fresh] [--retry-failed]
    lab sweep experiments/agents-t0/sweep.yaml     # cases: agent cases (lab.agents.sweep)
    lab report runs/feynman [--x batch_size --y dtype]
    lab explain runs/feynman [CASE] [--cell-a dtype=fp32 --cell-b dtype=bf16]
    lab explain runs/sample-a runs/sample-b [CASE] [--sample I]

Parsing and printing only: the work is in lab.determinism. Listed in lab/cli.py (COMMANDS).
"""

from __future__ import annotations

import json
from typing import Any

import click

from lab.cli_options import check_out_dir, renamed_option, retry_failed_option
from lab.errors import LabError
from lab.rundir import EXPLAIN_RESULT, LOAD_SUMMARY, run_kind_of
from lab.safetext import terminal


@click.command("sweep")
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", default=None, help="Run directory (default runs/<name>).")
@click.option("--fresh", is_flag=True, help="Start over instead of resuming.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
# off by default, unlike `lab load`'s: a failed cell mostly fails again (a configuration the
# engine refuses) and each try starts an engine
@retry_failed_option(default=False, text="On resume, run the cells that failed again too.")
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="auto",
    default=None,
    metavar="[ADDRESS]",
    help="Run on Ray, one actor per engine configuration: `local` starts a Ray instance here; "
    "`auto` (the default of a bare --ray: RAY_ADDRESS, else the cluster `ray start` made) or "
    "ray://host:port joins a cluster. Needs the ray extra.",
)
@renamed_option(
    "--cpus-per-replica",
    "cpus_per_replica",
    old="--cpus-per-actor",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="With --ray on CPUs: CPUs (and so torch threads) each engine's actor asks for, where "
    "the config has no num_threads axis.",
)
@click.pass_obj
def sweep_cmd(
    obj: dict[str, Any],
    config_path: str,
    out_dir: str | None,
    fresh: bool,
    no_progress: bool,
    retry_failed: bool,
    ray_address: str | None,
    cpus_per_replica: int,
) -> None:
    """Run (or resume) a temperature-zero determinism sweep, then write its report."""
    if ray_address is not None:
        from lab.scale.cluster import check_address, require_ray

        require_ray()  # before the config is read: one line naming the extra
        check_address(ray_address)
    from lab.determinism.config import load_sweep_config
    from lab.determinism.report import write_sweep_report
    from lab.determinism.sweep import run_sweep

    config = load_sweep_config(config_path)
    out = out_dir or f"runs/{config.name}"
    check_out_dir(out, fresh=fresh, kind="sweep")
    if config.agents is not None:  # cases: agent trajectories in place of prompts
        if ray_address is not None:
            raise LabError(f"{config_path}: --ray runs prompt sweeps; run an agent sweep locally")
        _agent_sweep(config, out, fresh, obj["cache_dir"], not no_progress, retry_failed)
        return
    if ray_address is not None:
        from lab.scale.sweep import run_sweep_on_ray

        run_sweep_on_ray(
            config,
            out,
            ray_address,
            fresh=fresh,
            cache_dir=obj["cache_dir"],
            progress=not no_progress,
            retry_failed=retry_failed,
            cpus_per_actor=cpus_per_replica,
        )
    else:
        run_sweep(
            config,
            out,
            fresh=fresh,
            cache_dir=obj["cache_dir"],
            progress=not no_progress,
            retry_failed=retry_failed,
        )
    from lab.determinism.summary import summary_lines

    written = write_sweep_report(out)
    summary = written.summary
    for line in summary_lines(written.metrics):
        click.echo(terminal(line))
    if summary.get("cells_failed"):
        click.echo(
            f"{summary['cells_failed']} cell(s) failed (errors in the report); "
            "`--retry-failed` runs them again",
            err=True,
        )
    click.echo(f"report: {written.html}")


def _agent_sweep(
    config: Any, out: str, fresh: bool, cache_dir: str | None, progress: bool, retry: bool
) -> None:
    """`lab sweep` of an agent sweep config: the trajectories per cell, then the report."""
    from lab.agents.sweep import run_agent_sweep
    from lab.agents.sweepreport import agent_summary_lines, write_agent_sweep_report

    run_agent_sweep(config, out, fresh, cache_dir, progress, retry_failed=retry)
    written = write_agent_sweep_report(out)
    for line in agent_summary_lines(written.metrics):
        click.echo(terminal(line))
    if written.summary["cells_failed"]:
        click.echo(
            f"{written.summary['cells_failed']} cell(s) failed (errors in the report); "
            "`--retry-failed` runs them again",
            err=True,
        )
    click.echo(f"report: {written.html}")


#: what `lab report` says of a run directory that is not a sweep's, by run kind
OTHER_REPORTS = {
    "sample": "an n-of-k sample run, not a sweep; `lab sample-report {run}` rebuilds its report",
    "load": "a load test, not a sweep; `lab load ... --out {run}` prints its summary "
    f"({LOAD_SUMMARY})",
    "quickstart": "a quickstart, not a sweep; `lab report {run}/sweep` for its sweep, "
    "`lab sample-report {run}/variance` for its n-of-k run",
}


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--x", "x_axis", default=None, help="Heatmap column axis.")
@click.option("--y", "y_axis", default=None, help="Heatmap row axis.")
def report_cmd(run_dir: str, x_axis: str | None, y_axis: str | None) -> None:
    """Write metrics.json, report.md and report.html for a sweep run directory."""
    from lab.agents.sweepreport import write_agent_sweep_report
    from lab.determinism.report import write_sweep_report
    from lab.rundir import is_agent_sweep

    other = OTHER_REPORTS.get(run_kind_of(run_dir) or "sweep")
    if other is not None:  # another kind of run: name the command that reports it
        raise LabError(f"{run_dir}: {other.format(run=run_dir)}")
    if is_agent_sweep(run_dir):
        written = write_agent_sweep_report(run_dir)
    else:
        written = write_sweep_report(run_dir, x_axis, y_axis)
    click.echo(f"report: {written.html}")


@click.command("fragility")
@click.argument("source", metavar="RUN_DIR|RECORDS.jsonl", type=click.Path(exists=True))
@click.option(
    "--thresholds", default="0.01,0.05,0.1,0.5", show_default=True,
    help="Top-1/top-2 logprob gaps (nats) to count steps under.",
)  # fmt: skip
@click.option("--top", type=click.IntRange(min=1), default=None, help="Show the N most fragile.")
@renamed_option("--json-out", "json_path", old="--json", type=click.Path(dir_okay=False),
                default=None, help="Also write the full result to this JSON file.")  # fmt: skip
def fragility_cmd(source: str, thresholds: str, top: int | None, json_path: str | None) -> None:
    """Rank prompts by how close their greedy path came to a tie; on a sweep, how well that
    predicts which prompts diverged (AUROC)."""
    from lab.determinism.fragility import analyze, format_report, load_source, parse_thresholds

    cuts = parse_thresholds(thresholds)
    report = analyze(load_source(source), cuts)
    click.echo(format_report(report, top))
    if json_path:
        from lab.store import write_atomic

        write_atomic(json_path, json.dumps(report.to_dict(), indent=2))


@click.command("explain")
@click.argument("run_a", metavar="RUN_A", type=click.Path(file_okay=False))
@click.argument("rest", metavar="[RUN_B] [CASE]", nargs=-1)
@click.option("--cell-a", default=None, help="A sweep's cell as AXIS=VALUE[,AXIS=VALUE].")
@click.option("--cell-b", default=None, help="The other cell (RUN_B's, or RUN_A's again).")
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=None,
    help="Two lab sample runs: sample (trajectory) I of CASE, not the first that parts.",
)
@click.option(
    "--out", "out_dir", default=None, help="Where the replays go (default RUN_A/explain-CASE)."
)
@click.option("--fresh", is_flag=True, help="Replay every toggle again.")
def explain_cmd(
    run_a: str, rest: tuple[str, ...], cell_a: str | None, cell_b: str | None,
    sample: int | None, out_dir: str | None, fresh: bool,
) -> None:  # fmt: skip
    """Replay the case where two runs (or two cells of a sweep) part, toggling one setting at
    a time, and name the setting that moves the first divergent token."""
    from pathlib import Path

    from lab.determinism.explain import explain, format_result
    from lab.determinism.explainsource import kind_of, load_pair

    if len(rest) > 2:
        raise LabError(f"lab explain takes RUN_A [RUN_B] [CASE]; got {len(rest) + 1} arguments")
    run_b: str | None = None
    case: str | None = None
    if len(rest) == 2:
        run_b, case = rest
    elif rest and Path(rest[0]).is_dir():  # RUN_A RUN_B, else RUN_A CASE
        run_b = rest[0]
    elif rest:
        case = rest[0]
    kind_of(run_a)  # bad input named before anything is read further
    from lab.agents.explainpair import agent_pair

    pair = load_pair(run_a, run_b, case, cell_a, cell_b, sample, agent_reader=agent_pair)
    if pair is None:
        what = f"case {case!r}" if case else "any case"
        click.echo(f"no divergence: {run_a} and {run_b or 'its other cells'} do not part on "
                   f"{what}")  # fmt: skip
        return
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in pair.case)
    out = out_dir or str(Path(run_a) / f"explain-{safe}")
    check_out_dir(out, fresh=fresh, kind="explain")
    result = explain(pair, out, fresh=fresh)
    for line in format_result(result).splitlines():
        click.echo(terminal(line))  # model text: control characters shown, not obeyed
    click.echo(f"recorded: {Path(out) / EXPLAIN_RESULT}")
    if pair.kind == "sweep" and Path(out).resolve().parent == Path(run_a).resolve():
        from lab.determinism.report import write_sweep_report

        # the sweep's report shows the explained table beside its attribution table
        click.echo(f"report: {write_sweep_report(run_a).html}")


COMMANDS: list[click.Command] = [sweep_cmd, report_cmd, fragility_cmd, explain_cmd]
