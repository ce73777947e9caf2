"""The worst-case input library: a case file that lives beside the eval suite and grows.

The library is an ordinary case file (`lab sample --cases LIBRARY` runs it) with a header that
holds its floor, the launch thresholds it must stay above:

    # YAML (library.yaml)                          # JSONL (library.jsonl)
    library: 1                                     # lab-library: {"floor": {"min_mean": 0.5}}
    floor: {min_mean: 0.5, min_p5: 0.1}            {"id": "...", "prompt": "...", ...}
    cases: [...]

`add_from_run` takes an n-of-k run directory (`lab sample`: cases.json, config.json and the
report's verdicts, each case's success rate: lab.rundir.per_case_success) and appends the cases
whose success fell under a threshold, each with where it came from (run directory, the run's
config identity, success rate, date) in metadata["library"]. Duplicates are found by content
(normalized prompt or messages + the checks), not by id; a new case whose id is taken gets a
suffix. Adding the same run twice changes nothing. Every write goes to a temporary file in the
same directory, is loaded back as cases (so a library that `lab sample` would refuse is never
written), then replaces the library with os.replace.

`run_library` evaluates the library through lab.variance.runner.run_sample with the floor as
the gate (lab.variance.gate); `summarize` describes it for `lab library show`.

    from lab.longtail.library import add_from_run, run_library
    result = add_from_run("runs/basic", "evals/library.yaml", threshold=0.5)
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import json
import os
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lab.backends import Backend
from lab.cases.loaders import load_cases
from lab.cases.model import Case, cases_fingerprint
from lab.errors import LabError
from lab.rundir import per_case_success, read_cases, run_identity
from lab.variance.config import GateConfig, load_config, parse_gate
from lab.variance.result import RunReport
from lab.yamlio import yaml_error

if TYPE_CHECKING:
    from lab.variance.runner import Sampler

DEFAULT_LIBRARY = "library.yaml"
DEFAULT_FLOOR = {"min_mean": 0.5, "min_p5": 0.1}
JSONL_HEADER = "# lab-library: "
_FORMAT_VERSION = 1


# --- case files ------------------------------------------------------------------------------


def _jsonl_line(value: Any) -> str:
    # Raw U+0085 / U+2028 / U+2029 are legal inside JSON strings but are line breaks to
    # str.splitlines: escape them so one case stays one line for every reader.
    text = json.dumps(value, ensure_ascii=False)
    for ch in ("\u0085", "\u2028", "\u2029"):
        text = text.replace(ch, f"\\u{ord(ch):04x}")
    return text


def render_case_file(path: Path, specs: list[dict[str, Any]], header: dict[str, Any]) -> str:
    """The text of a case file (format from the suffix: .jsonl or .yaml / .yml)."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        lines = [JSONL_HEADER + json.dumps(header)] if header else []
        return "\n".join(lines + [_jsonl_line(s) for s in specs]) + "\n"
    if suffix in (".yaml", ".yml"):
        body = dict(header) | {"cases": specs}
        return yaml.safe_dump(body, allow_unicode=True, sort_keys=False, width=100)
    raise LabError(f"{path}: write cases as .jsonl or .yaml")


def write_case_file(
    path: str | Path, specs: list[dict[str, Any]], header: dict[str, Any] | None = None
) -> Path:
    """Write cases atomically, after checking that they load back (lab.cases.load_cases)."""
    path = Path(path)
    text = render_case_file(path, specs, header or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if specs:
            loaded = load_cases(tmp)
            if len(loaded) != len(specs):  # pragma: no cover - a writer bug, not bad input
                raise LabError(f"{path}: wrote {len(specs)} cases but {len(loaded)} load back")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# --- the library -----------------------------------------------------------------------------


def canonical_text(text: str) -> str:
    """NFC, unified line ends, outer whitespace stripped: the same text typed twice. Inner
    whitespace and case are kept on purpose: a noise variant is a different input."""
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n")).strip()


def case_fingerprint(case: Case) -> str:
    """Identity of a case by content: its input and its checks, not its id."""
    if case.messages is not None:
        inputs: Any = [[m["role"], canonical_text(m["content"])] for m in case.messages]
    else:
        inputs = [case.system and canonical_text(case.system), canonical_text(case.prompt or "")]
    checks = sorted(json.dumps(c.spec, sort_keys=True, default=str) for c in case.checks)
    text = json.dumps({"input": inputs, "raw": case.raw, "checks": checks}, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Library:
    path: Path
    floor: dict[str, float]
    cases: list[Case] = field(default_factory=list)

    def gate(self) -> GateConfig:
        return parse_gate(self.floor)

    def save(self) -> Path:
        header = {"library": _FORMAT_VERSION, "floor": self.floor}
        if self.path.suffix.lower() in (".jsonl", ".ndjson"):
            header = {"floor": self.floor}
        return write_case_file(self.path, [c.to_dict() for c in self.cases], header)


def _check_floor(floor: Any, where: str) -> dict[str, float]:
    if not isinstance(floor, dict):
        raise LabError(f"{where}: field 'floor': must be a mapping, e.g. {{min_mean: 0.5}}")
    try:
        gate = parse_gate(floor)
    except LabError as exc:
        raise LabError(f"{where}: field 'floor': {exc}") from None
    return {k: v for k, v in vars(gate).items() if v is not None}


def read_library(path: str | Path, floor: dict[str, Any] | None = None) -> Library:
    """The library at `path`; a missing file is a new, empty library (with `floor`, else the
    default). `floor`, when given, replaces the file's."""
    path = Path(path)
    if path.suffix.lower() not in (".jsonl", ".ndjson", ".yaml", ".yml"):
        raise LabError(f"{path}: a library is a .yaml or .jsonl case file")
    if not path.exists():
        return Library(path, _check_floor(floor or DEFAULT_FLOOR, str(path)))
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LabError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise LabError(f"{path}: cannot read ({exc.strerror})") from None
    if not text.strip():
        raise LabError(f"{path}: empty file; delete it to start a new library")
    header: Any = {}
    has_cases = True
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise yaml_error(path, exc) from None
        if not isinstance(data, dict) or "cases" not in data:
            raise LabError(f"{path}:1: a library is a mapping with 'floor' and 'cases'")
        header = data
        has_cases = bool(data["cases"])
    else:
        first = text.splitlines()[0]
        if first.startswith(JSONL_HEADER):
            try:
                header = json.loads(first[len(JSONL_HEADER) :])
            except json.JSONDecodeError as exc:
                raise LabError(f"{path}:1: library header is not JSON ({exc.msg})") from None
        lines = text.split("\n")
        has_cases = any(ln.strip() and not ln.lstrip().startswith("#") for ln in lines)
    chosen = floor if floor is not None else header.get("floor", DEFAULT_FLOOR)
    cases = load_cases(path) if has_cases else []
    return Library(path, _check_floor(chosen, f"{path}:1"), cases)


# --- adding the failures of a run --------------------------------------------------------------


@dataclass
class AddResult:
    library: Path
    #: cases of the run under the threshold
    below: int
    added: list[str]
    #: already in the library (same content), from this run or another
    duplicates: list[str]
    total: int


def _unique_id(wanted: str, taken: set[str]) -> str:
    if wanted not in taken:
        return wanted
    n = 2
    while f"{wanted}-{n}" in taken:
        n += 1
    return f"{wanted}-{n}"


def add_from_run(
    run_dir: str | Path,
    library_path: str | Path = DEFAULT_LIBRARY,
    threshold: float = 0.5,
    floor: dict[str, Any] | None = None,
    today: dt.date | None = None,
) -> AddResult:
    """Append the run's cases with success rate < threshold (see the module docstring)."""
    if not 0 < threshold <= 1:
        raise LabError(f"--threshold must be in (0, 1], got {threshold}")
    run = Path(run_dir)
    if not run.is_dir():
        raise LabError(f"{run}: no such run directory")
    rates = per_case_success(run)
    identity = run_identity(run)
    cases = {c.id: c for c in read_cases(run)}
    library = read_library(library_path, floor)
    known = {case_fingerprint(c): c for c in library.cases}
    taken = {c.id for c in library.cases}
    below, added, duplicates = 0, [], []
    changed = floor is not None or not library.path.exists()
    provenance = {
        "run_dir": str(run.resolve()),
        "run": identity,
        "added": (today or dt.datetime.now(dt.UTC).date()).isoformat(),
        "threshold": threshold,
    }
    for row in rates:
        case = cases[row.id]
        rate = row.rate
        if not rate < threshold:
            continue
        below += 1
        seen = {"success_rate": rate, "successes": row.successes, "n": row.n}
        fingerprint = case_fingerprint(case)
        if fingerprint in known:
            duplicates.append(case.id)
            changed |= _add_sighting(known[fingerprint], provenance | seen)
            continue
        new = dataclasses.replace(
            case,
            id=_unique_id(case.id, taken),
            messages=copy.deepcopy(case.messages),
            tags=list(case.tags),
            metadata=dict(case.metadata),
        )
        new.metadata["library"] = provenance | seen | {"source_id": case.id}
        taken.add(new.id)
        known[fingerprint] = new
        library.cases.append(new)
        added.append(new.id)
    if added or changed:
        library.save()
    return AddResult(library.path, below, added, duplicates, len(library.cases))


def _add_sighting(case: Case, seen: dict[str, Any]) -> bool:
    """Record that another run also failed on a case already in the library (once per run);
    returns whether the case changed."""
    info = case.metadata.setdefault("library", {})
    runs = [info] + list(info.get("also_seen", []))
    key = (seen["run_dir"], seen["run"].get("config"))
    if any((r.get("run_dir"), (r.get("run") or {}).get("config")) == key for r in runs):
        return False
    info.setdefault("also_seen", []).append(
        {k: seen[k] for k in ("run_dir", "run", "added", "success_rate")}
    )
    return True


# --- running and showing -------------------------------------------------------------------


@dataclass
class LibraryRun:
    path: Path
    #: the run's report (None when stopped early)
    report: RunReport | None

    @property
    def reasons(self) -> list[str]:
        """Why the library fell under its floor (empty: it held, or no report yet)."""
        return list(self.report.gate.reasons) if self.report else []


def library_out_dir(library: Library, backend: str, k: int) -> Path:
    """Default run directory: one per library content, so a grown library starts a new run
    instead of clashing with the old one's identity."""
    fp = cases_fingerprint(library.cases)[:8]
    return Path("runs") / f"library-{library.path.stem}-{fp}-{backend}-k{k}"


def run_library(
    library_path: str | Path,
    overrides: dict[str, Any],
    backend: Backend | None = None,
    fresh: bool = False,
    emit: Callable[[str], None] = print,
    cache_dir: str | None = None,
    sampler: Sampler | None = None,
) -> LibraryRun:
    """Sample the library k times per case (lab.variance.runner) with its floor as the gate.
    `sampler`: another way to sample (lab.scale.sample on Ray replicas: `--ray`)."""
    # Imported here so that `lab --help` (which reads DEFAULT_LIBRARY) loads no sampler.
    from lab.variance.runner import run_sample

    library = read_library(library_path)
    if not library.cases:
        raise LabError(f"{library.path}: the library has no cases yet; lab library add RUN_DIR")
    config = load_config(None, overrides | {"cases": str(library.path), "gate": None})
    config.gate = library.gate()
    if config.out is None:
        config.out = str(library_out_dir(library, config.backend, config.k))
    outcome = run_sample(
        config, backend=backend, fresh=fresh, emit=emit, cache_dir=cache_dir, sampler=sampler
    )
    return LibraryRun(outcome.path, outcome.report)


def summarize(library: Library) -> dict[str, Any]:
    """Size, floor, where the cases came from, perturbation kinds, flagged variants."""
    sources: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    rates = []
    flagged = 0
    for case in library.cases:
        info = case.metadata.get("library", {})
        sources[str(info.get("run_dir", "(added by hand)"))] += 1
        if isinstance(info.get("success_rate"), int | float):
            rates.append(float(info["success_rate"]))
        pert = case.metadata.get("perturbation")
        kinds[pert.get("kind", "?") if isinstance(pert, dict) else "(none)"] += 1
        flagged += "answer-may-change" in case.tags
    return {
        "library": str(library.path),
        "cases": len(library.cases),
        "floor": library.floor,
        "sources": dict(sources.most_common()),
        "perturbation_kinds": dict(sorted(kinds.items())),
        "answer_may_change": flagged,
        "success_rate_when_added": (
            {"min": min(rates), "mean": sum(rates) / len(rates), "max": max(rates)}
            if rates
            else None
        ),
        "tags": dict(Counter(t for c in library.cases for t in c.tags).most_common()),
    }


def format_summary(summary: dict[str, Any]) -> str:
    floor = ", ".join(f"{k}={v:g}" for k, v in summary["floor"].items()) or "(none)"
    lines = [
        f"library {summary['library']}: {summary['cases']} cases, floor {floor}",
        f"answer may change (flagged perturbations): {summary['answer_may_change']}",
    ]
    rates = summary["success_rate_when_added"]
    if rates:
        lines.append(
            f"success rate when added: min {rates['min']:.2f}, mean {rates['mean']:.2f}, "
            f"max {rates['max']:.2f}"
        )
    lines.append("sources:")
    lines += [f"  {n:4d}  {src}" for src, n in summary["sources"].items()]
    lines.append("perturbation kinds:")
    lines += [f"  {n:4d}  {kind}" for kind, n in summary["perturbation_kinds"].items()]
    return "\n".join(lines)
