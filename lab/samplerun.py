"""An n-of-k run directory (`lab sample`): its files, written and read in one place.

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

The sampler (lab.variance.runner) opens a run with `open_run` and appends to the LOG; the
report (lab.variance.report), the comparison of runs (lab.comparison.runs), retry estimates and
the worst-case library (lab.longtail) read it back through the readers here, so a file's name,
format and the one-line error for a damaged or unfinished run are defined once. Settings are
read as a mapping: lab.variance turns them into its SampleConfig.

    store = open_run(out, identity, cases, settings, rows_per_call, fresh, environment)
    cases, entries = read_cases(RUN_DIR), read_entries(RUN_DIR)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lab.cases.model import Case, CaseFieldError, case_from_record
from lab.errors import LabError
from lab.safetext import scrub_all
from lab.store import RunStore, write_atomic

#: the resume log: one line per finished case (samples.jsonl)
LOG = "samples"
CONFIG = "config.json"
SETTINGS = "settings.json"
BATCHING = "batching.json"
ENVIRONMENT = "environment.json"
CASES = "cases.json"
PARQUET = "samples.parquet"
METRICS = "metrics.json"
SUMMARY = "summary.md"
REPORT = "report.html"
#: a sweep run directory's log (lab.determinism.sweep), how run_kind tells the two apart
SWEEP_LOG = "cells.jsonl"
#: an agent run's logs: finished trajectories, and the journal of steps (resume)
TRAJECTORIES = "trajectories"
JOURNAL = "steps"
#: how cases are grouped into engine calls (batching.json): by prompt length, or in case order
GROUPINGS = ("length", "order")


# --- writing ---------------------------------------------------------------------------------


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
    elif store.done_keys(LOG):
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
    `grouping` is a new run's; a resumed run keeps its own (read_grouping)."""
    store = RunStore.open(out_dir, identity, fresh=fresh, environment=environment, kind="sample")
    check_batching(store, rows_per_call, grouping)
    store.write_json(CASES, [c.to_dict() for c in cases])
    store.write_json(SETTINGS, settings)
    return store


def read_grouping(path: Path) -> str:
    """How a run groups its cases into engine calls (batching.json; "order" when unrecorded)."""
    try:
        value = json.loads((path / BATCHING).read_text()).get("grouping")
    except (OSError, json.JSONDecodeError, AttributeError):
        value = None
    return str(value) if value in GROUPINGS else "order"


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Arrow stores UTF-8: a lone surrogate (a JSON "\\ud800" in a case file) would fail the write.
    table = pa.Table.from_pylist(scrub_all(rows))
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    return write_atomic(path, buffer.getvalue().to_pybytes())


# --- reading ---------------------------------------------------------------------------------


def read_json(path: Path, what: str) -> Any:
    """A JSON file of a run directory; one LabError for a missing or unreadable one."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabError(
            f"{path}: missing; {path.parent} is not a finished `lab sample` run ({what})"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabError(f"{path}: cannot read {what} ({exc})") from None


def run_kind(path: str | Path) -> str:
    """'sample' or 'sweep'; LabError for anything else."""
    root = Path(path)
    if not root.is_dir():
        raise LabError(f"{root}: no such run directory")
    if (root / SWEEP_LOG).is_file():
        return "sweep"
    if (root / CASES).is_file() and (root / CONFIG).is_file():
        return "sample"
    raise LabError(f"{root}: neither a sample run (cases.json) nor a sweep run (cells.jsonl)")


def read_cases(path: Path) -> list[Case]:
    """The cases as run (cases.json), validated as a case file is."""
    if not (path / CASES).is_file():
        raise LabError(f"{path}: not a lab sample run directory (no cases.json)")
    try:
        specs = json.loads((path / CASES).read_text())
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


def is_agent_run(path: str | Path) -> bool:
    """An n-of-k run over agent cases (trajectories.jsonl, or a journal of steps)."""
    root = Path(path)
    return (root / f"{TRAJECTORIES}.jsonl").is_file() or (root / f"{JOURNAL}.jsonl").is_file()


def read_trajectories(path: str | Path) -> list[dict[str, Any]]:
    """The finished trajectories of an agent run, one record each, in log order."""
    return list(RunStore(Path(path)).entries(TRAJECTORIES))


def read_entries(path: Path) -> list[dict[str, Any]]:
    """The finished cases of a run directory, in log order."""
    return list(RunStore(Path(path)).entries(LOG))


def read_settings(path: Path) -> dict[str, Any]:
    """The settings a run directory was produced with (settings.json), as a mapping."""
    try:
        values = json.loads((Path(path) / SETTINGS).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LabError(f"{path}: not a sample run directory ({exc})") from None
    if not isinstance(values, dict):
        raise LabError(f"{path}/settings.json: expected a mapping of settings")
    return values


def read_samples(root: Path, columns: list[str]) -> list[dict[str, Any]]:
    """These columns of samples.parquet, one dict per sample."""
    path = root / PARQUET
    if not path.is_file():
        raise LabError(f"{path}: missing; run `lab sample-report {root}` to write it")
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=columns).to_pylist()
    except Exception as exc:  # noqa: BLE001 - any unreadable parquet is a user-facing problem
        raise LabError(f"{path}: cannot read samples ({exc})") from None


def run_identity(run_dir: Path) -> dict[str, Any]:
    """Which run produced a case: its config.json hash and the settings that matter most."""
    config = read_json(run_dir / CONFIG, "the run's config")
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    keep = ("backend", "model", "dtype", "k", "temperature", "top_p", "max_tokens", "seed")
    return {"config": digest} | {k: config.get(k) for k in keep if k in config}
