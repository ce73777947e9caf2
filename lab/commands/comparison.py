"""CLI: `lab compare` (paired run / sweep comparison, drift) and `lab plan` (sample sizes).

    lab compare RUN_A RUN_B [RUN_C ...] [--out DIR] [--intersection] [--alpha 0.05]
                [--seed 0] [--bootstrap 2000]
    lab plan --baseline RUN --delta 0.05 [--power 0.8] [--alpha 0.05] [--design paired]

Listed in lab/cli.py (COMMANDS).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np

from lab.errors import LabError


def default_out(paths: list[str]) -> Path:
    names = "-vs-".join(Path(p).name for p in paths[:3]) + ("-etc" if len(paths) > 3 else "")
    return Path("runs") / f"compare-{names}"


def run_compare(
    paths: list[str], out: Path, intersection: bool, alpha: float, seed: int, bootstrap: int
) -> tuple[dict[str, Path], str]:
    """Compare the runs (sample or sweep), write the report; returns (paths, the Markdown's
    text for a terminal: no Markdown escapes, controls inert)."""
    from lab.comparison.analysis import CompareOptions, compare_runs
    from lab.comparison.render import markdown_sample, markdown_sweep, write_comparison
    from lab.comparison.runs import load_sample_run
    from lab.comparison.sweeps import compare_sweeps
    from lab.rundir import require_kind
    from lab.safetext import plain_cell
    from lab.variance.analyze import sanitize

    if len(paths) < 2:
        raise LabError("lab compare needs at least two run directories")
    resolved = [Path(p).resolve() for p in paths]
    for i, path in enumerate(resolved):  # a run compared with itself says nothing
        if path in resolved[:i]:
            raise LabError(
                f"{paths[i]}: the same run directory is given twice; give different runs"
            )
    if not 0 < alpha < 1:
        raise LabError(f"--alpha must lie strictly between 0 and 1, got {alpha}")
    if bootstrap < 1:
        raise LabError(f"--bootstrap must be >= 1, got {bootstrap}")
    kinds = [require_kind(p, ("sample", "sweep"), "lab compare") for p in paths]
    if "sweep" in kinds:
        if kinds != ["sweep", "sweep"]:
            raise LabError(
                "sweeps compare two at a time, and only with sweeps: give two sweep dirs"
            )
        result = compare_sweeps(Path(paths[0]), Path(paths[1]))
        written = write_comparison(result, out)
        return written, markdown_sweep(sanitize(result), cell=plain_cell)
    runs = [load_sample_run(p) for p in paths]
    names = [r.name for r in runs]
    for i, run in enumerate(runs):  # two dirs with one basename would make the report ambiguous
        if names.count(run.name) > 1:
            run.name = f"{run.name}#{i + 1}"
    options = CompareOptions(alpha=alpha, seed=seed, bootstrap=bootstrap)
    result = compare_runs(runs, options, intersection)
    _agent_token_splits(paths, result)
    written = write_comparison(result, out)
    return written, markdown_sample(sanitize(result), cell=plain_cell)


def _agent_token_splits(paths: list[str], result: dict[str, Any]) -> None:
    """Agent runs: where each run's trajectories part from the baseline's, token by token
    (lab.agents.divergence; the T=0 question: which step, which token, what margin)."""
    from lab.agents.divergence import compare_agent_runs
    from lab.rundir import is_agent_run

    if not all(is_agent_run(p) for p in paths):
        return
    for path, comparison in zip(paths[1:], result["comparisons"], strict=True):
        comparison["token_split"] = compare_agent_runs(paths[0], path)


@click.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", default=None, help="Report directory (default runs/compare-A-vs-B).")
@click.option(
    "--intersection", is_flag=True, help="Compare on the shared cases when case sets differ."
)
@click.option("--alpha", type=float, default=0.05, show_default=True)
@click.option(
    "--seed",
    type=click.IntRange(min=0),  # numpy generators take no negative seed
    default=0,
    show_default=True,
    help="Bootstrap/permutations.",
)
@click.option("--bootstrap", type=int, default=2000, show_default=True)
def compare_cmd(
    runs: tuple[str, ...],
    out: str | None,
    intersection: bool,
    alpha: float,
    seed: int,
    bootstrap: int,
) -> None:
    """Paired comparison of n-of-k runs (all vs the first) or of two sweeps."""
    target = Path(out) if out else default_out(list(runs))
    if target.exists() and not target.is_dir():
        raise LabError(f"--out {target}: is a file, not a directory; choose a directory")
    written, markdown = run_compare(list(runs), target, intersection, alpha, seed, bootstrap)
    click.echo(markdown)
    click.echo(f"report: {written['html']}", err=True)


@click.command("plan")
@click.option("--baseline", required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--delta", type=float, required=True, help="Change in mean success to detect.")
@click.option("--power", "target", type=float, default=0.8, show_default=True)
@click.option("--alpha", type=float, default=0.05, show_default=True)
@click.option(
    "--design",
    type=click.Choice(["paired", "independent"]),
    default="paired",
    show_default=True,
    help="paired: the same cases in both runs (what lab compare tests).",
)
def plan_cmd(baseline: str, delta: float, target: float, alpha: float, design: str) -> None:
    """Cases and samples per case needed to detect a change in mean success."""
    from lab.comparison.plan import format_plan, plan_from_rates
    from lab.comparison.runs import load_sample_run

    run = load_sample_run(baseline)
    rates = np.array([c.rate for c in run.cases.values()])
    ks = {c.k for c in run.cases.values()}
    plan = plan_from_rates(rates, min(ks), delta, target, alpha, design)
    click.echo(format_plan(plan))


COMMANDS: list[click.Command] = [compare_cmd, plan_cmd]
