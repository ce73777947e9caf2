"""Write a run directory's artifacts from its samples log: the report that decides a launch.

    RUN_DIR/config.json        the run's identity (engine, sampling, case fingerprint)
    RUN_DIR/settings.json      every setting, analysis included
    RUN_DIR/environment.json   lab.envinfo.environment_record()
    RUN_DIR/cases.json         the cases as run
    RUN_DIR/samples.jsonl      one line per case with its k Generation records (resume log)
    RUN_DIR/samples.parquet    one row per sample: text, verdict, reasons, answer, tokens, ...
    RUN_DIR/metrics.json       every number of the report (definitions inside)
    RUN_DIR/summary.md         the Markdown summary
    RUN_DIR/report.html        the self-contained HTML report (inline SVG plots)
    RUN_DIR/embeddings.npz     every output's embedding, reused by a rebuild (embedcache.py)

Rebuild a report with other analysis settings (gate, prices, threshold, cohort buckets)
without sampling (and, with the same embedder, without embedding again):

    lab sample-report RUN_DIR [--gate min_p5=0.2] [--cohorts cohorts.yaml]
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.cases.model import Case, CaseFieldError, case_from_record
from lab.errors import LabError
from lab.store import RunStore, write_atomic
from lab.variance.analyze import analyze
from lab.variance.config import SampleConfig
from lab.variance.diversity import Embedder
from lab.variance.embedcache import CACHE_NAME
from lab.variance.gate import evaluate_gate
from lab.variance.render import html_report, markdown_summary
from lab.variance.runner import LOG


def load_run_cases(path: Path) -> list[Case]:
    if not (path / "cases.json").is_file():
        raise LabError(f"{path}: not a lab sample run directory (no cases.json)")
    try:
        specs = json.loads((path / "cases.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LabError(f"{path}/cases.json: cannot read the run's cases ({exc})") from None
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise LabError(f"{path}/cases.json: expected a list of case mappings")
    cases = []
    for i, spec in enumerate(specs):
        try:
            cases.append(case_from_record(spec, True, f"{path}/cases.json[{i}]"))
        except CaseFieldError as exc:  # a hand-edited or damaged cases.json
            raise LabError(f"{path}/cases.json[{i}]: field '{exc.field}': {exc}") from None
    return cases


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lab.safetext import scrub_all

    # Arrow stores UTF-8: a lone surrogate (a JSON "\\ud800" in a case file) would fail the write.
    table = pa.Table.from_pylist(scrub_all(rows))
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    return write_atomic(path, buffer.getvalue().to_pybytes())


def build_report(
    path: str | Path,
    config: SampleConfig,
    emit: Callable[[str], None] = print,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Analyze the finished samples of a run directory and write every artifact."""
    root = Path(path)
    store = RunStore(root)
    cases = load_run_cases(root)
    entries = list(store.entries(LOG))
    missing = [c.id for c in cases if c.id not in {e["case_id"] for e in entries}]
    if missing:
        raise LabError(
            f"{root}: {len(missing)} cases not sampled yet (e.g. {missing[0]!r}); "
            "rerun lab sample to resume"
        )
    emit(f"analyzing {len(entries)} cases: checks, embeddings, statistics")
    metrics, rows = analyze(cases, entries, config, embedder, root / CACHE_NAME)
    thresholds = {k: v for k, v in dataclasses.asdict(config.gate).items() if v is not None}
    reasons = evaluate_gate(metrics["headline"], config.gate)
    gate = {"thresholds": thresholds, "passed": not reasons, "reasons": reasons}
    metrics["gate"] = gate
    store.write_json("metrics.json", metrics)
    write_parquet(root / "samples.parquet", rows)
    store.write_text("summary.md", markdown_summary(metrics, gate))
    store.write_text("report.html", html_report(metrics, gate))
    emit(f"wrote {root}/report.html, summary.md, metrics.json, samples.parquet")
    return metrics


def rebuild_report(
    path: str | Path, overrides: dict[str, Any], emit: Callable[[str], None] = print
) -> dict[str, Any]:
    """Re-analyze a finished run with changed analysis settings (gate, prices, threshold)."""
    from lab.variance.config import load_config
    from lab.variance.runner import read_settings

    root = Path(path)
    base = dataclasses.asdict(read_settings(root))
    allowed = {"gate", "cluster_threshold", "price_in", "price_out", "embedder", "embed_device"}
    allowed.add("cohorts")  # cohort buckets are analysis only
    unknown = sorted(
        k for k, v in overrides.items() if v not in (None, (), []) and k not in allowed
    )
    if unknown:
        raise LabError(f"sample-report cannot change {unknown[0]!r}: it changes the samples")
    # Only flags actually given; thresholds given now replace the run's own gate.
    flags = {k: v for k, v in overrides.items() if k in allowed and v not in (None, (), [])}
    if isinstance(flags.get("cohorts"), str | Path):  # --cohorts FILE: new buckets, same samples
        from lab.cases.cohorts import load_cohorts_file

        flags["cohorts"] = load_cohorts_file(flags["cohorts"])
    config = load_config(None, base | flags)
    RunStore(root).write_json("settings.json", config.to_dict())
    return build_report(root, config, emit=emit)
