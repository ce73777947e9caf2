"""The run directory: its kinds, the name of every file each kind writes, which kind a directory
holds, and the readers of its files. Every verb takes a run file's name from here, so a name,
a format and the one-line error for a damaged or unfinished run are defined once.

Five kinds of run write a directory (RUN_FILES lists every name each writes; `--out` / `--fresh`
follow lab.runkinds, appending and atomic writes lab.store):

    sample      lab sample: config.json, settings.json, batching.json, cases.json, the log
                samples.jsonl (one line per case, its k generations; lab.samplerun writes it),
                the report's metrics.json, samples.parquet, summary.md, report.html, ...
                An agent run keeps trajectories (a record kind of the same directory):
                trajectories.jsonl (one line per finished trajectory) and its resume journal
                steps.jsonl, beside the same config, cases, report files
    sweep       lab sweep: sweep_config.json, the log cells.jsonl (one line per cell), the
                report's metrics.json, report.md, report.html
    load        lab load: requests.jsonl, passes.jsonl, summary.json
    explain     lab explain: toggles.jsonl (one line per replayed toggle), explain.json
    quickstart  lab quickstart: index.html and one step directory per step (runs of their own)

Every kind also writes config.json (what was asked), environment.json (where it ran) and the
marker `.lab-run.json` naming its kind. `run_kind_of` is THE detector: the marker's kind, else
(a directory written before the marker existed) the kind its files show.

A log is named without its `.jsonl` (RunStore.append(SAMPLES, ...)); `log_file` gives the file.
Reading a log drops a partial last line left by a kill (`read_log` truncates it, so an append
after it does not glue two records; `repair=False` reads without touching the file).

    kind = run_kind_of("runs/x")                       # "sample", "sweep", "load", ... or None
    cases, entries = read_cases(root), read_entries(root)
    success = per_case_success(root)                   # each case's verdicts (the report's)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.cases.model import Case, CaseFieldError, case_from_record
from lab.errors import LabError

# --- names -----------------------------------------------------------------------------------

#: the marker file of a run directory: {"kind": ..., "command": ..., "writes": [...]}
MARKER = ".lab-run.json"
#: every kind: what was asked (a resume must ask the same), where it ran, the engines' output
CONFIG = "config.json"
ENVIRONMENT = "environment.json"
#: the log of resumed sessions whose environment differs from environment.json's
ENVIRONMENTS = "environments"
ENGINE_LOG = "engine.log"
#: a sample run's (lab sample; lab.samplerun writes these, lab.variance.report the report)
SAMPLES = "samples"  # the log: one line per finished case with its k generations
SETTINGS = "settings.json"
BATCHING = "batching.json"
#: how cases are grouped into engine calls (batching.json): by prompt length, or in case order
GROUPINGS = ("length", "order")
CASES = "cases.json"
PARQUET = "samples.parquet"
METRICS = "metrics.json"  # a sweep's report too
SUMMARY = "summary.md"
REPORT = "report.html"  # a sweep's report too
EMBEDDINGS = "embeddings.npz"
RETRY = "retry.md"  # lab retry's report (retry.json beside it)
RETRY_JSON = "retry.json"
#: an agent run's logs (lab.agents): finished trajectories, and the journal of steps (resume)
TRAJECTORIES = "trajectories"
JOURNAL = "steps"
#: a run on Ray's (lab.scale): one environment per node; cases lost with their replica
NODES = "nodes"
FAILURES = "failures"
#: a sweep run's (lab sweep)
SWEEP_CONFIG = "sweep_config.json"
CELLS = "cells"
SWEEP_MARKDOWN = "report.md"
#: a load test's (lab load)
REQUESTS = "requests"
PASSES = "passes"
LOAD_SUMMARY = "summary.json"
SERVER_LOG = "server.log"
#: an explain run's (lab explain; inside a sweep's directory as explain-CASE/ by default)
TOGGLES = "toggles"
EXPLAIN_RESULT = "explain.json"
#: a quickstart's: its page, and one directory per step (each a run of its own kind)
INDEX = "index.html"
STEP_DIRS = ("sweep", "kernels-off", "kernels-on", "variance")


def log_file(name: str) -> str:
    """The file of a log: `samples` -> samples.jsonl."""
    return f"{name}.jsonl"


_COMMON = (MARKER, CONFIG, ENVIRONMENT, log_file(ENVIRONMENTS), ENGINE_LOG)
#: the temp files of atomic writes (lab.store.write_atomic)
_TEMPS = (".*.tmp", ".*.tmp-*")
#: the names (glob patterns) each kind of run writes into its directory: --fresh deletes these
#: and nothing else. A quickstart's step directories are runs of their own kinds.
RUN_FILES: dict[str, tuple[str, ...]] = {
    "sample": _COMMON
    + _TEMPS
    + (
        SETTINGS, BATCHING, CASES, log_file(SAMPLES), PARQUET, METRICS, SUMMARY, REPORT,
        EMBEDDINGS, RETRY, RETRY_JSON,
        log_file(TRAJECTORIES), log_file(JOURNAL),  # an agent run's (lab.agents)
        "server-*.log",  # the managed server's (openai backend without a base_url)
        log_file(NODES), log_file(FAILURES),  # a run on Ray's (lab.scale.sample)
    ),
    "sweep": _COMMON
    + _TEMPS
    + (SWEEP_CONFIG, log_file(CELLS), log_file(NODES), METRICS, SWEEP_MARKDOWN, REPORT,
       "server-*.log"),
    "load": _COMMON
    + _TEMPS
    + (log_file(REQUESTS), log_file(PASSES), LOAD_SUMMARY, SERVER_LOG),
    "explain": _COMMON + _TEMPS + (log_file(TOGGLES), EXPLAIN_RESULT),
    "quickstart": (MARKER, INDEX) + _TEMPS + STEP_DIRS,
}  # fmt: skip
#: the files of the report directories that are no run (no marker, no resume, no --fresh):
#: what `lab compare` and `lab shift` write into their --out
COMPARISON_JSON = "comparison.json"
COMPARISON_MARKDOWN = "comparison.md"
COMPARISON_HTML = "comparison.html"
SHIFT_JSON = "gaps.json"
SHIFT_MARKDOWN = "shift.md"
SHIFT_HTML = "shift.html"
REPORT_DIR_FILES: dict[str, tuple[str, ...]] = {
    "compare": (COMPARISON_JSON, COMPARISON_MARKDOWN, COMPARISON_HTML),
    "shift": (SHIFT_JSON, SHIFT_MARKDOWN, SHIFT_HTML),
}
#: what the run commands are called, for messages
COMMAND = {
    "sample": "lab sample",
    "sweep": "lab sweep",
    "load": "lab load",
    "explain": "lab explain",
    "quickstart": "lab quickstart",
}


# --- which kind ------------------------------------------------------------------------------


def json_object(path: Path) -> dict[str, Any] | None:
    """A JSON file's object; None when it is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def run_kind_of(path: str | os.PathLike[str]) -> str | None:
    """The kind of run a directory holds: its marker's, else (a directory written before the
    marker existed) the kind its files show (an explain's toggles.jsonl, a sweep's
    cells.jsonl, a load test's requests.jsonl, a sample run's samples.jsonl, cases.json or
    trajectories.jsonl, a quickstart's step directories; else its config.json); None when it
    holds no lab run."""
    root = Path(path)
    if not root.is_dir():
        return None
    marker = json_object(root / MARKER)
    if marker is not None and marker.get("kind") in RUN_FILES:
        return str(marker["kind"])
    names = {p.name for p in root.iterdir()}
    config = json_object(root / CONFIG)
    if log_file(TOGGLES) in names or EXPLAIN_RESULT in names:
        return "explain"
    if log_file(CELLS) in names or (config is not None and "axes" in config):
        return "sweep"
    if names & {log_file(REQUESTS), log_file(PASSES)} or (config or {}).get("kind") == "load":
        return "load"
    sample_files = {log_file(SAMPLES), CASES, log_file(TRAJECTORIES)}
    if names & sample_files or (config or {}).get("cases_fingerprint"):
        return "sample"
    steps = [n for n in STEP_DIRS if n in names]
    if INDEX in names and steps or any(run_kind_of(root / n) for n in steps):
        return "quickstart"
    return None


def require_kind(path: str | os.PathLike[str], kinds: tuple[str, ...], verb: str) -> str:
    """The kind of the run in `path` (run_kind_of), which `verb` reads; LabError (one line)
    for a missing directory, a directory with no run, or a run of another kind."""
    root = Path(path)
    if not root.is_dir():
        raise LabError(f"{root}: no such run directory")
    kind = run_kind_of(root)
    if kind is None:
        wanted = " or ".join(f"a {k} run ({COMMAND[k]})" for k in kinds)
        raise LabError(f"{root}: holds no lab run; {verb} reads {wanted}")
    if kind not in kinds:
        wanted = " or ".join(f"a {k} run" for k in kinds)
        raise LabError(f"{root}: holds a {kind} run ({COMMAND[kind]}); {verb} reads {wanted}")
    return kind


def is_agent_run(path: str | Path) -> bool:
    """A sample run over agent cases (trajectories.jsonl, or a journal of steps)."""
    root = Path(path)
    return (root / log_file(TRAJECTORIES)).is_file() or (root / log_file(JOURNAL)).is_file()


def is_agent_sweep(path: str | Path) -> bool:
    """A sweep run of agent cases (its sweep_config.json has `agents`)."""
    config = json_object(Path(path) / SWEEP_CONFIG)
    return config is not None and config.get("agents") is not None


# --- logs ------------------------------------------------------------------------------------


def repair_tail(path: Path) -> None:
    """Drop a partial last line left by a process killed mid-write.

    Reads only the tail (a samples log can be large): back from the end to the last newline."""
    if not path.exists():
        return
    with open(path, "rb+") as fh:
        end = fh.seek(0, os.SEEK_END)
        if end == 0:
            return
        fh.seek(end - 1)
        if fh.read(1) == b"\n":
            return
        position = end
        while position > 0:
            start = max(0, position - 65536)
            fh.seek(start)
            newline = fh.read(position - start).rfind(b"\n")
            if newline >= 0:
                fh.truncate(start + newline + 1)
                return
            position = start
        fh.truncate(0)


def read_log(path: Path, latest: bool = False) -> Iterator[dict[str, Any]]:
    """Every complete entry of a log file, one per key, in the order keys first appear: its
    first entry (streamed), or with `latest` its last one (a failed sweep cell retried with
    --retry-failed is appended again; held in memory, so for small logs). A partial last line
    is cut off the file first (repair_tail)."""
    repair_tail(path)
    if not path.exists():
        return
    seen: set[str] = set()
    last: dict[str, dict[str, Any]] = {}  # insertion order = first appearance
    with open(path) as fh:
        for number, line in enumerate(fh, 1):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LabError(f"{path}:{number}: corrupt record ({exc})") from exc
            if latest:
                last[entry["key"]] = entry
            elif entry["key"] not in seen:
                seen.add(entry["key"])
                yield entry
    yield from last.values()


def read_log_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of every complete line of a JSONL file, touching nothing: a
    partial last line (a run still being written, or killed mid-write) is left out, the file
    is not repaired (lab fragility reads runs it must not change)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LabError(f"{path}: not UTF-8 text") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        lines.pop()  # no newline at the end: a partial line
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LabError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(value, dict):
            raise LabError(f"{path}:{number}: expected a JSON object")
        out.append((number, value))
    return out


# --- readers ---------------------------------------------------------------------------------


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


def read_config(root: Path) -> Any:
    """What the run was asked (config.json)."""
    return read_json(Path(root) / CONFIG, "the run's config")


def read_cases(path: Path) -> list[Case]:
    """The cases as run (cases.json), validated as a case file is."""
    if not (path / CASES).is_file():
        raise LabError(f"{path}: not a lab sample run directory (no {CASES})")
    try:
        specs = json.loads((path / CASES).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LabError(f"{path}/{CASES}: cannot read the run's cases ({exc})") from None
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise LabError(f"{path}/{CASES}: expected a list of case mappings")
    cases = []
    for i, spec in enumerate(specs):
        try:
            cases.append(case_from_record(spec, True, f"{path}/{CASES}[{i}]"))
        except CaseFieldError as exc:  # a hand-edited or damaged cases.json
            raise LabError(f"{path}/{CASES}[{i}]: field '{exc.field}': {exc}") from None
    return cases


def read_entries(path: Path) -> list[dict[str, Any]]:
    """The finished cases of a sample run directory (samples.jsonl), in log order."""
    return list(read_log(Path(path) / log_file(SAMPLES)))


def read_trajectories(path: str | Path) -> list[dict[str, Any]]:
    """The finished trajectories of an agent run, one record each, in log order."""
    return list(read_log(Path(path) / log_file(TRAJECTORIES)))


def read_cells(path: str | Path, latest: bool = True) -> list[dict[str, Any]]:
    """A sweep's cells (cells.jsonl), each cell's latest entry (a retried cell's retry)."""
    return list(read_log(Path(path) / log_file(CELLS), latest=latest))


def read_sweep_config(path: str | Path) -> dict[str, Any]:
    """A sweep's full config (sweep_config.json) as a mapping; LabError for a missing,
    unreadable or non-mapping one."""
    config_path = Path(path) / SWEEP_CONFIG
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LabError(f"{config_path}: cannot read the sweep config ({exc})") from None
    if not isinstance(config, dict):
        raise LabError(f"{config_path}: the sweep config must be a JSON object (a mapping)")
    return config


def read_settings(path: Path) -> dict[str, Any]:
    """The settings a run directory was produced with (settings.json), as a mapping."""
    try:
        values = json.loads((Path(path) / SETTINGS).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LabError(f"{path}: not a sample run directory ({exc})") from None
    if not isinstance(values, dict):
        raise LabError(f"{path}/{SETTINGS}: expected a mapping of settings")
    return values


def read_grouping(path: Path) -> str:
    """How a run groups its cases into engine calls (batching.json; "order" when unrecorded)."""
    try:
        value = json.loads((path / BATCHING).read_text()).get("grouping")
    except (OSError, json.JSONDecodeError, AttributeError):
        value = None
    return str(value) if value in GROUPINGS else "order"


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


def read_text(root: Path, name: str) -> str:
    """A text file of a run directory (summary.md, ...); LabError when it is missing."""
    path = Path(root) / name
    try:
        return path.read_text()
    except OSError as exc:
        raise LabError(f"{path}: cannot read ({exc.strerror})") from None


def run_identity(run_dir: Path) -> dict[str, Any]:
    """Which run produced a case: its config.json hash and the settings that matter most."""
    config = read_config(run_dir)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    keep = ("backend", "model", "dtype", "k", "temperature", "top_p", "max_tokens", "seed")
    return {"config": digest} | {k: config.get(k) for k in keep if k in config}


# --- per-case success ------------------------------------------------------------------------


@dataclass
class CaseSuccess:
    """One case of a sample run: each sample's verdict and tokens (prompt + output), in
    sample_index order."""

    id: str
    passed: list[bool]
    tokens: list[int]

    @property
    def n(self) -> int:
        return len(self.passed)

    @property
    def successes(self) -> int:
        return sum(self.passed)

    @property
    def rate(self) -> float:
        return self.successes / self.n if self.n else float("nan")


#: a verdict on one sample: (the case, its generation record) -> passed
Verdict = Callable[[Case, dict[str, Any]], bool]


def per_case_success(
    root: Path,
    judge: Verdict | None = None,
    prepare: Callable[[list[Case]], object] | None = None,
) -> list[CaseSuccess]:
    """Each case's verdicts, in case order (cases.json), one per case sampled: the report's
    (samples.parquet's `passed`, what metrics.json counts), or with `judge` each sample of the
    log (samples.jsonl) judged now, so no report need exist (lab retry: its checks re-run with
    the modules the user allows; `prepare` readies the cases first, resolving those checks)."""
    root = Path(root)
    if judge is None:
        return _reported(root)
    if not (root / log_file(SAMPLES)).is_file():
        raise LabError(f"{root}: no {log_file(SAMPLES)}; not a lab sample run directory")
    cases = read_cases(root)
    if prepare is not None:
        prepare(cases)
    return _judged(root, cases, judge)


def _reported(root: Path) -> list[CaseSuccess]:
    """The report's verdicts (samples.parquet), read before the cases: a run without a report
    is told which command writes it."""
    columns = ["case_id", "sample_index", "passed", "prompt_tokens", "output_tokens"]
    rows = read_samples(root, columns)
    cases = read_cases(root)
    by_case: dict[str, list[dict[str, Any]]] = {c.id: [] for c in cases}
    for row in rows:
        if row["case_id"] not in by_case:
            raise LabError(f"{root}/{PARQUET}: case {row['case_id']!r} not in {CASES}")
        by_case[row["case_id"]].append(row)
    out = []
    for case in cases:
        found = sorted(by_case[case.id], key=lambda r: r["sample_index"])
        if found:
            passed = [bool(r["passed"]) for r in found]
            tokens = [int(r["prompt_tokens"] or 0) + int(r["output_tokens"] or 0) for r in found]
            out.append(CaseSuccess(case.id, passed, tokens))
    return out


def _judged(root: Path, cases: list[Case], judge: Verdict) -> list[CaseSuccess]:
    """Each logged sample (samples.jsonl) judged now, in case order."""
    known = {c.id: c for c in cases}
    order = {c.id: i for i, c in enumerate(cases)}
    out = []
    # in case order, not log order (a run on Ray appends cases as its calls finish)
    for entry in sorted(read_entries(root), key=lambda e: order.get(e["case_id"], len(order))):
        case = known.get(entry["case_id"])
        if case is None:
            raise LabError(f"{root}/{log_file(SAMPLES)}: case {entry['case_id']!r} not in {CASES}")
        gens = sorted(entry["generations"], key=lambda g: g["sample_index"])
        passed = [bool(judge(case, g)) for g in gens]
        tokens = [len(g["prompt_token_ids"]) + len(g["output_token_ids"]) for g in gens]
        out.append(CaseSuccess(case.id, passed, tokens))
    if not out:
        raise LabError(f"{root}/{log_file(SAMPLES)}: no sampled cases")
    return out
