"""Click commands of the long-tail checks: `lab shift` and `lab retry` (thin: parse, call, print).

    lab shift DEMO PROD [--out DIR] [--embedder NAME] [--tokenizer MODEL|whitespace]
              [--seed S] [--permutations 1000]
    lab retry RUN_DIR [--max-attempts 3] [--fallback RUN_DIR2] [--out FILE.md]

Registered in lab/cli.py with `register(cli)`.
"""

from __future__ import annotations

import click

from lab.models import DEFAULT_MODEL
from lab.variance.diversity import DEFAULT_EMBEDDER


@click.command("shift")
@click.argument("demo")
@click.argument("prod")
@click.option("--out", default="shift-report", show_default=True, help="Output directory.")
@click.option("--embedder", default=DEFAULT_EMBEDDER, show_default=True)
@click.option(
    "--tokenizer",
    default=DEFAULT_MODEL,
    show_default=True,
    help="Model whose tokenizer counts input tokens, or 'whitespace'.",
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Permutation seed."
)
@click.option("--permutations", type=int, default=1000, show_default=True)
def shift_cmd(
    demo: str, prod: str, out: str, embedder: str, tokenizer: str, seed: int, permutations: int
) -> None:
    """How a curated DEMO case set differs from a PROD sample: gaps, tests, severities."""
    from lab.cli_options import check_out_dir
    from lab.longtail.shift import run_shift

    check_out_dir(out)
    given = click.get_current_context().get_parameter_source("tokenizer")
    if tokenizer != "whitespace" and given is click.core.ParameterSource.COMMANDLINE:
        # TokenCounter quietly counts words when a tokenizer cannot load (right for the
        # default); a name the user typed must exist, or the counts would silently change.
        from lab.models import resolve

        resolve(tokenizer, prepare=False)
    report = run_shift(demo, prod, out, embedder, tokenizer, permutations, seed)
    for g in report["gaps"]:
        p = g["test"]["p_value"] if g["test"] else None
        p_text = "" if p is None else f" (p={p:.3g})"
        click.echo(f"{g['severity']:>6}  {g['name']}: {g['size']:.3f}{p_text}  {g['detail']}")
    click.echo(f"wrote {out}/gaps.json, shift.md, shift.html")


@click.command("retry")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--max-attempts",
    type=int,
    default=3,
    show_default=True,
    help="Largest number of attempts in all (first try included) to estimate; <= k.",
)
@click.option(
    "--fallback",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="A second run of the same cases (another temperature, model or prompt).",
)
@click.option(
    "--out", default=None, help="Markdown file (JSON beside it); default RUN_DIR/retry.md."
)
def retry_cmd(run_dir: str, max_attempts: int, fallback: str | None, out: str | None) -> None:
    """What retrying or falling back would deliver, from the run's own k samples per case."""
    from pathlib import Path

    from lab.errors import LabError
    from lab.longtail.retry import run_retry

    if out is not None and Path(out).is_dir():
        raise LabError(f"--out {out}: is a directory; give a file name such as {out}/retry.md")
    _, text, path = run_retry(run_dir, max_attempts, fallback, out)
    click.echo(text)
    click.echo(f"wrote {path} and {path.with_suffix('.json')}", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(shift_cmd)
    cli.add_command(retry_cmd)
