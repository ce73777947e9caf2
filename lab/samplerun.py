"""An n-of-k run directory (`lab sample`): how it is written. The names of its files and their
readers are lab.rundir's (its docstring lists them); this module opens or resumes a run and
writes what the sampler and the report hand it.

    RUN_DIR/config.json        the run's identity (engine, sampling, case fingerprint)
    RUN_DIR/settings.json      every setting, analysis included
    RUN_DIR/batching.json      samples per engine call and how cases are grouped into calls
                               (which cases share a batch)
    RUN_DIR/environment.json   lab.envinfo.environment_record() (environments.jsonl: resumes
                               in another environment)
    RUN_DIR/cases.json         the cases as run
    RUN_DIR/samples.jsonl      one line per case with its k Generation records and where its
                               engine call ran (placement) (resume log)
    RUN_DIR/nodes.jsonl        a run on Ray (lab.scale.sample): one environment record per node
    RUN_DIR/failures.jsonl     a run on Ray: cases whose call was lost with its replica too often
                               (no samples line: the same command samples them again)
    RUN_DIR/samples.parquet    one row per sample: text, verdict, reasons, answer, tokens, ...
    RUN_DIR/metrics.json       every number of the report (definitions inside)
    RUN_DIR/summary.md         the Markdown summary
    RUN_DIR/report.html        the self-contained HTML report (inline SVG plots)
    RUN_DIR/embeddings.npz     every output's embedding, reused by a rebuild
                               (lab.variance.embedcache)

An agent run (cases with tools, lab.agents) keeps trajectories instead of samples: a kind of
record this directory stores beside the same config, settings, cases, Parquet, metrics and
report files (samples.parquet: one row per trajectory, its final answer as the text):

    RUN_DIR/steps.jsonl          the resume journal: one line per engine call, the step each
                                 trajectory in it took (lab.agents.records.Step)
    RUN_DIR/trajectories.jsonl   one line per finished trajectory, all its steps (Trajectory)

The sampler (lab.variance.runner) opens a run with `open_run` and appends to the log
(lab.rundir.SAMPLES); the report (lab.variance.report), the comparison of runs
(lab.comparison.runs), retry estimates and the worst-case library (lab.longtail) read it back
through lab.rundir's readers.

    store = open_run(out, identity, cases, settings, rows_per_call, fresh, environment)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.cases.model import Case
from lab.errors import LabError
from lab.rundir import BATCHING, CASES, GROUPINGS, SAMPLES, SETTINGS
from lab.safetext import scrub_all
from lab.store import RunStore, write_atomic


def check_batching(store: RunStore, rows: int, grouping: str = "length") -> str:
    """Refuse to resume with other samples per engine call than the run started with; returns
    the grouping of cases into calls the run uses ("length": by prompt length, "order": in case
    order, what runs made before the grouping was recorded used).

    Both decide which cases share a batch, and batch composition moves the hf backend's
    logprobs (and can flip a token): one run must not mix two. Kept beside config.json, not in
    it, because it is no part of what a comparison calls the configuration. A run made
    before this file existed records its current value."""
    path = store.path / BATCHING
    recorded: Any = None
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            recorded = data.get("rows_per_call")
        except (OSError, json.JSONDecodeError, AttributeError):
            recorded = None  # unreadable: written again below
        if recorded is not None and recorded != rows:
            raise LabError(
                f"{store.path} was sampled with rows_per_call {recorded}, not {rows}: batch "
                f"composition changes the samples; pass --rows-per-call {recorded} to resume, "
                "or --fresh to start over"
            )
        if recorded == rows:
            if data.get("grouping") in GROUPINGS:
                return str(data["grouping"])
            grouping = "order"  # recorded before the grouping was: it sampled in case order
    elif store.done_keys(SAMPLES):
        grouping = "order"  # a run older than batching.json
    store.write_json(BATCHING, {"rows_per_call": rows, "grouping": grouping})
    return grouping


def open_run(
    out_dir: str | Path,
    identity: dict[str, Any],
    cases: list[Case],
    settings: dict[str, Any],
    rows_per_call: int,
    fresh: bool,
    environment: dict[str, Any],
    grouping: str = "length",
) -> RunStore:
    """Create or resume a run directory (RunStore.open checks the identity), then record the
    batching, the cases as run and every setting: the report can be rebuilt from it alone.
    `grouping` is a new run's; a resumed run keeps its own (lab.rundir.read_grouping)."""
    store = RunStore.open(out_dir, identity, fresh=fresh, environment=environment, kind="sample")
    check_batching(store, rows_per_call, grouping)
    store.write_json(CASES, [c.to_dict() for c in cases])
    store.write_json(SETTINGS, settings)
    return store


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Arrow stores UTF-8: a lone surrogate (a JSON "\\ud800" in a case file) would fail the write.
    table = pa.Table.from_pylist(scrub_all(rows))
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    return write_atomic(path, buffer.getvalue().to_pybytes())
