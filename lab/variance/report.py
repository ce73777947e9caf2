"""Write a run directory's artifacts from its samples log: the report that decides a launch.

    RUN_DIR/metrics.json       every number of the report (definitions inside)
    RUN_DIR/samples.parquet    one row per sample: text, verdict, reasons, answer, tokens, ...
    RUN_DIR/summary.md         the Markdown summary
    RUN_DIR/report.html        the self-contained HTML report (inline SVG plots)
    RUN_DIR/embeddings.npz     every output's embedding, reused by a rebuild (embedcache.py)

from the run's cases.json, settings and samples.jsonl (the whole directory: lab.rundir).

Rebuild a report with other analysis settings (gate, prices, threshold, cohort buckets)
without sampling (and, with the same embedder, without embedding again):

    lab sample-report RUN_DIR [--gate min_p5=0.2] [--cohorts cohorts.yaml]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.cases.codechecks import CodePolicy, resolve_checks
from lab.cases.cohorts import load_cohorts_file
from lab.cases.model import Case
from lab.errors import LabError
from lab.rundir import (
    EMBEDDINGS,
    METRICS,
    PARQUET,
    REPORT,
    SAMPLES,
    SETTINGS,
    SUMMARY,
    read_cases,
)
from lab.samplerun import write_parquet
from lab.store import RunStore
from lab.variance.analyze import analyze
from lab.variance.config import SampleConfig, load_config, read_settings
from lab.variance.diversity import Embedder
from lab.variance.gate import judge
from lab.variance.render import html_report, markdown_summary
from lab.variance.result import RunReport


def build_report(
    path: str | Path,
    config: SampleConfig,
    emit: Callable[[str], None] = print,
    embedder: Embedder | None = None,
    policy: CodePolicy | None = None,
    cases: list[Case] | None = None,
) -> RunReport:
    """Analyze the finished samples of a run directory and write every artifact. `policy`:
    the modules python checks may call (None: the lab's own examples only); the run's
    settings.json is not trusted to allow one. `cases`: the run's cases when the caller holds
    them parsed (run_sample), else read back from its cases.json."""
    root = Path(path)
    store = RunStore(root)
    cases = read_cases(root) if cases is None else cases
    resolve_checks(cases, policy or CodePolicy())
    entries = list(store.entries(SAMPLES))
    missing = [c.id for c in cases if c.id not in {e["case_id"] for e in entries}]
    if missing:
        raise LabError(
            f"{root}: {len(missing)} cases not sampled yet (e.g. {missing[0]!r}); "
            "rerun lab sample to resume"
        )
    emit(f"analyzing {len(entries)} cases: checks, embeddings, statistics")
    metrics, rows = analyze(cases, entries, config, embedder, root / EMBEDDINGS, emit)
    verdict = judge(metrics["headline"], config.gate)
    metrics["gate"] = verdict.to_json()
    summary = markdown_summary(metrics, metrics["gate"])
    store.write_json(METRICS, metrics)
    write_parquet(root / PARQUET, rows)
    store.write_text(SUMMARY, summary)
    store.write_text(REPORT, html_report(metrics, metrics["gate"]))
    emit(f"wrote {root}/{REPORT}, {SUMMARY}, {METRICS}, {PARQUET}")
    return RunReport(root, metrics, verdict, summary)


def rebuild_report(
    path: str | Path,
    overrides: dict[str, Any],
    emit: Callable[[str], None] = print,
    build: Callable[..., RunReport] | None = None,
) -> RunReport:
    """Re-analyze a finished run with changed analysis settings (gate, prices, threshold).
    `build`: the report builder (default build_report; an agent run passes its own)."""
    root = Path(path)
    base = dataclasses.asdict(read_settings(root))
    allowed = {"gate", "cluster_threshold", "price_in", "price_out", "embedder", "embed_device"}
    allowed.add("cohorts")  # cohort buckets are analysis only
    allowed.add("allow_modules")  # which python checks may run: the flags, not settings.json
    unknown = sorted(
        k for k, v in overrides.items() if v not in (None, (), []) and k not in allowed
    )
    if unknown:
        raise LabError(f"sample-report cannot change {unknown[0]!r}: it changes the samples")
    # Only flags actually given; thresholds given now replace the run's own gate.
    flags = {k: v for k, v in overrides.items() if k in allowed and v not in (None, (), [])}
    if isinstance(flags.get("cohorts"), str | Path):  # --cohorts FILE: new buckets, same samples
        flags["cohorts"] = load_cohorts_file(flags["cohorts"])
    base["allow_modules"] = []  # a run directory cannot allow code: only the user's flags
    config = load_config(None, base | flags)
    RunStore(root).write_json(SETTINGS, config.to_dict())
    policy = CodePolicy.from_settings(config.allow_modules, how=_how_to_allow(base))
    return (build or build_report)(root, config, emit=emit, policy=policy)


def _how_to_allow(settings: dict[str, Any]) -> str:
    """`--allow-module NAME`, with the file beside the run's case file when there is one."""
    cases = str(settings.get("cases", ""))
    folder = None if cases.startswith("bundled:") else Path(cases.partition("#")[0]).parent
    if folder is not None and folder.is_dir():
        return f"--allow-module {{name}} (a file: --allow-module {folder}/{{name}}.py)"
    return "--allow-module {name}"
