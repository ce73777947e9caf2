"""The long-tail commands: the worst-case input library (`lab perturb`, `lab library
add|run|show`), the distribution-shift checklist (`lab shift`) and retry policies (`lab retry`).

    lab perturb bundled:basic --out perturbed.jsonl --seed 0 --kinds typos,mojibake
    lab library add runs/basic --library evals/library.yaml --threshold 0.5 [--gate min_mean=0.5]
    lab library run --library evals/library.yaml --k 8 --backend hf [--ray auto --replicas 4]
    lab library show --library evals/library.yaml
    lab shift DEMO PROD [--out DIR] [--embedder NAME] [--tokenizer MODEL|whitespace]
              [--seed S] [--permutations 1000]
    lab retry RUN_DIR [--max-attempts 3] [--fallback RUN_DIR2] [--out FILE.md]

Parsing and printing only: the work is in lab.longtail (perturb, library, shift, retry).
Listed in lab/cli.py (COMMANDS).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from lab import console
from lab.cli_options import (
    allow_module_option,
    engine_settings,
    ray_options,
    ray_sampler,
    renamed_option,
    run_engine_options,
)
from lab.errors import LabError
from lab.longtail.library import DEFAULT_LIBRARY
from lab.models import DEFAULT_MODEL
from lab.rundir import REPORT_DIR_FILES, RETRY
from lab.variance.diversity import DEFAULT_EMBEDDER


def _echo_err(message: str) -> None:
    console.echo(message)  # the terminal, while the engine writes to RUN_DIR/engine.log


def _same_file(cases: str, out: str) -> bool:
    """Whether --out would overwrite the case file being read (bundled sets included)."""
    from pathlib import Path

    from lab.cases.loaders import bundled_cases_path

    source = bundled_cases_path(cases.split(":", 1)[1]) if cases.startswith("bundled:") else None
    source = source or Path(cases.partition("#")[0])
    return Path(out).resolve() == source.resolve()


@click.command("perturb")
@click.argument("cases")
@click.option("--out", required=True, help="Case file to write (.jsonl or .yaml).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--kinds",
    default=None,
    help="Comma-separated families: typos, truncation, mojibake, locale, noise, fields, "
    "paraphrase (default: all).",
)
@click.option("--rate", type=float, default=0.05, show_default=True, help="Typo rate.")
@click.option(
    "--keep", type=float, default=None, help="Truncation: share kept (default drawn per variant)."
)
@click.option(
    "--tokenizer",
    default=None,
    help="Model whose tokenizer truncation counts tokens with (default: whitespace words).",
)
@click.option("--variants-per-case", type=int, default=1, show_default=True)
@click.option("--with-source", is_flag=True, help="Also write the unperturbed cases.")
@click.option("--drop-flagged", is_flag=True, help="Leave out variants marked answer-may-change.")
@click.pass_obj
def perturb_cmd(
    obj: dict[str, Any],
    cases: str,
    out: str,
    seed: int,
    kinds: str | None,
    rate: float,
    keep: float | None,
    tokenizer: str | None,
    variants_per_case: int,
    with_source: bool,
    drop_flagged: bool,
) -> None:
    """Write perturbed variants of each case, linked to their source (deterministic by seed)."""
    from lab.cases.loaders import load_cases
    from lab.longtail.library import write_case_file
    from lab.longtail.perturb import (
        MAY_CHANGE_TAG,
        PerturbOptions,
        load_tokenizer,
        parse_kinds,
        perturb_cases,
    )

    if not 0 <= rate <= 1:
        raise LabError(f"--rate must be in [0, 1], got {rate}")
    if keep is not None and not 0 < keep < 1:
        raise LabError(f"--keep must be in (0, 1), got {keep}")
    chosen = parse_kinds(kinds)
    source = load_cases(cases)
    if _same_file(cases, out):
        raise LabError(f"--out {out}: is the CASES file itself; write the variants elsewhere")
    options = PerturbOptions(rate=rate, keep=keep)
    if tokenizer is not None:
        options.tokenizer = load_tokenizer(tokenizer, obj.get("cache_dir") if obj else None)
    result = perturb_cases(source, chosen, seed, variants_per_case, options, source=cases)
    variants = result.variants
    if drop_flagged:
        variants = [c for c in variants if MAY_CHANGE_TAG not in c.tags]
    specs = ([c.to_dict() for c in source] if with_source else []) + [c.to_dict() for c in variants]
    if not specs:
        raise LabError(f"{cases}: no variant could be made with kinds {','.join(chosen)}")
    write_case_file(out, specs)
    skipped = ", ".join(f"{k} {n}" for k, n in sorted(result.skipped.items()))
    click.echo(
        f"wrote {out}: {len(variants)} variants of {len(source)} cases "
        f"({result.flagged} marked {MAY_CHANGE_TAG}"
        f"{', left out' if drop_flagged else ''}; not applicable: {skipped or 'none'})"
    )


@click.group("library")
def library_group() -> None:
    """The worst-case input library: a case file that grows from failed cases."""


@library_group.command("add")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--library", "library_path", default=DEFAULT_LIBRARY, show_default=True)
@click.option(
    "--threshold",
    type=float,
    default=0.5,
    show_default=True,
    help="Add cases whose success rate is under this.",
)
@renamed_option(
    "--gate",
    "gate",
    old="--floor",
    multiple=True,
    help="Set the library's gate (its floor), NAME=VALUE (min_mean, min_p5, ...; see lab "
    "sample); default for a new library min_mean=0.5,min_p5=0.1.",
)
def library_add_cmd(
    run_dir: str, library_path: str, threshold: float, gate: tuple[str, ...]
) -> None:
    """Add the cases of a `lab sample` run whose success fell under the threshold."""
    from lab.longtail.library import add_from_run
    from lab.variance.config import parse_gate

    floor_values = None
    if gate:
        floor_values = {k: v for k, v in vars(parse_gate(list(gate))).items() if v is not None}
    result = add_from_run(run_dir, library_path, threshold, floor_values)
    click.echo(
        f"{result.library}: {result.below} cases under {threshold:g} in {run_dir}; "
        f"added {len(result.added)}, already there {len(result.duplicates)}; "
        f"{result.total} cases in the library"
    )


@library_group.command("run")
@click.option("--library", "library_path", default=DEFAULT_LIBRARY, show_default=True)
@click.option("--k", type=int, default=8, show_default=True, help="Samples per case.")
@run_engine_options()
@click.option("--temperature", type=float, default=None, help="Default 0.7.")
@click.option("--top-p", type=float, default=None)
@click.option("--top-k", type=int, default=None)
@click.option("--max-tokens", type=int, default=None, help="Default 64.")
@click.option("--seed", type=int, default=None)
@click.option("--rows-per-call", type=int, default=None)
@click.option("--embedder", default=None)
@click.option("--cluster-threshold", type=float, default=None)
@click.option("--price-in", type=float, default=None)
@click.option("--price-out", type=float, default=None)
@allow_module_option
@click.option("--out", default=None, help="Run directory (default: one per library content).")
@click.option("--fresh", is_flag=True, help="Discard the run directory's earlier samples.")
@ray_options()
@click.pass_obj
def library_run_cmd(obj: dict[str, Any], library_path: str, fresh: bool, **flags: Any) -> None:
    """Sample the library k times per case; exit 1 with reasons when under its floor."""
    from lab.backends import close_all
    from lab.cli_options import check_out_dir
    from lab.longtail.library import run_library

    sampler = ray_sampler(flags, obj["cache_dir"])
    check_out_dir(flags.get("out"), fresh=fresh, kind="sample")
    try:
        run = run_library(
            library_path,
            engine_settings(flags),
            fresh=fresh,
            emit=_echo_err,
            cache_dir=obj["cache_dir"],
            sampler=sampler,
        )
    finally:
        close_all()
    if run.report is None:
        return
    click.echo(run.report.summary)  # summary.md's text, from memory
    if run.reasons:
        click.echo("library under its floor: " + "; ".join(run.reasons), err=True)
        sys.exit(1)
    click.echo(f"library holds its floor ({run.path})")


@library_group.command("show")
@click.option("--library", "library_path", default=DEFAULT_LIBRARY, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def library_show_cmd(library_path: str, as_json: bool) -> None:
    """Size, floor, sources and perturbation kinds of a library."""
    from pathlib import Path

    from lab.longtail.library import format_summary, read_library, summarize

    if not Path(library_path).exists():
        raise LabError(f"{library_path}: no such library; lab library add RUN_DIR creates it")
    summary = summarize(read_library(library_path))
    click.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))


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
    click.echo(f"wrote {out}/{', '.join(REPORT_DIR_FILES['shift'])}")


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
    "--out", default=None, help=f"Markdown file (JSON beside it); default RUN_DIR/{RETRY}."
)
@allow_module_option
def retry_cmd(
    run_dir: str,
    max_attempts: int,
    fallback: str | None,
    out: str | None,
    allow_modules: tuple[str, ...],
) -> None:
    """What retrying or falling back would deliver, from the run's own k samples per case."""
    from pathlib import Path

    from lab.errors import LabError
    from lab.longtail.retry import run_retry

    if out is not None and Path(out).is_dir():
        raise LabError(f"--out {out}: is a directory; give a file name such as {out}/{RETRY}")
    _, text, path = run_retry(run_dir, max_attempts, fallback, out, allow_modules)
    click.echo(text)
    click.echo(f"wrote {path} and {path.with_suffix('.json')}", err=True)


COMMANDS: list[click.Command] = [perturb_cmd, library_group, shift_cmd, retry_cmd]
