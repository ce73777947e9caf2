"""The runs a comparison reads, and whether they can be compared.

A sample run (`lab sample`) is read from its directory through lab.rundir: config.json
(identity: engine, sampling, case fingerprint), cases.json (the case specs as run),
metrics.json (per-case diversity, read as lab.variance.result.RunReport), the report's verdicts
(per_case_success) and samples.parquet (one row per sample: text, seed, reasons). Which kind
a directory holds is lab.rundir.run_kind_of's.

Runs are comparable when they hold the same cases with the same specs (prompt, checks, tags):
`align_cases` refuses anything else with one line naming the cases, or, with
`intersection=True`, keeps the cases present with identical specs in every run and says how
many were dropped.

    run = load_sample_run("runs/a")
    ids, note = align_cases([run_a, run_b], intersection=False)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lab import rundir
from lab.errors import LabError
from lab.rundir import per_case_success, read_json, read_samples, require_kind
from lab.variance.result import RunReport

# Identity fields a re-run of the same configuration may change (where the case file lives
# does not matter: cases_fingerprint and cases.json carry what the cases are).
RERUN_FIELDS = ("seed", "cases_source")
#: the columns of samples.parquet a comparison reads
SAMPLE_COLUMNS = ["case_id", "sample_index", "seed", "text", "reasons"]


@dataclass
class CaseData:
    id: str
    spec: dict[str, Any]
    tags: list[str]
    #: outcome of each sample, in sample_index order
    passed: np.ndarray
    seeds: list[int | None]
    texts: list[str]
    reasons: list[str]
    #: semantic diversity of the case's k outputs (metrics.json): mean_distance, vendi, ...
    diversity: dict[str, float] = field(default_factory=dict)
    #: an agent run's action sequence of each trajectory (None: not an agent run)
    actions: list[str] | None = None

    @property
    def k(self) -> int:
        return len(self.passed)

    @property
    def successes(self) -> int:
        return int(self.passed.sum())

    @property
    def rate(self) -> float:
        return float(self.passed.mean()) if len(self.passed) else float("nan")


@dataclass
class SampleRun:
    path: Path
    name: str
    identity: dict[str, Any]
    environment: dict[str, Any]
    cases: dict[str, CaseData]
    #: the engine record the run's report keeps (metrics.json run.engine: device, versions,
    #: what TP ran with), else the engine its identity asked for
    engine: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return max((c.k for c in self.cases.values()), default=0)


def load_sample_run(path: str | Path) -> SampleRun:
    """Everything a comparison needs from a finished sample run directory."""
    root = Path(path)
    require_kind(root, ("sample",), "lab compare")
    identity = read_json(root / rundir.CONFIG, "the run's config")
    specs = read_json(root / rundir.CASES, "the run's cases")
    report = RunReport.read(root)
    env_path = root / rundir.ENVIRONMENT
    environment = read_json(env_path, "the run's environment") if env_path.is_file() else {}
    agents = rundir.is_agent_run(root)
    passed = {c.id: c.passed for c in per_case_success(root)}
    by_case: dict[str, list[dict[str, Any]]] = {}
    for row in read_samples(root, SAMPLE_COLUMNS + (["actions"] if agents else [])):
        by_case.setdefault(row["case_id"], []).append(row)
    diversity = {
        c["id"]: {
            key: c[key]
            for key in ("mean_distance", "vendi", "semantic_entropy", "clusters")
            if isinstance(c.get(key), int | float)
        }
        for c in report.cases
    }
    cases: dict[str, CaseData] = {}
    for index, spec in enumerate(specs):
        case_id = spec.get("id") if isinstance(spec, dict) else None
        if not isinstance(case_id, str):
            raise LabError(f"{root}/{rundir.CASES}[{index}]: a case without an id")
        rows = sorted(by_case.get(case_id, []), key=lambda r: r["sample_index"])
        if not rows:
            raise LabError(f"{root}/{rundir.PARQUET}: no samples for case {case_id!r}")
        cases[case_id] = CaseData(
            id=case_id,
            spec=spec,
            tags=list(spec.get("tags", [])),
            passed=np.array(passed[case_id], dtype=bool),
            seeds=[r["seed"] for r in rows],
            texts=[r["text"] or "" for r in rows],
            reasons=[r["reasons"] or "" for r in rows],
            diversity=diversity.get(case_id, {}),
            actions=[r["actions"] for r in rows] if agents else None,
        )
    recorded = report.run.get("engine")
    engine = recorded if isinstance(recorded, dict) else identity.get("engine") or {}
    return SampleRun(
        path=root,
        name=root.name,
        identity=identity,
        environment=environment,
        cases=cases,
        engine=engine if isinstance(engine, dict) else {},
    )


def _canonical(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True, default=str)


def _names(ids: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def align_cases(runs: list[SampleRun], intersection: bool) -> tuple[list[str], str | None]:
    """The case ids to compare (baseline order) and a note on dropped cases.

    Refuses (LabError, one line) when case sets or specs differ, unless `intersection`."""
    base = runs[0]
    keep = list(base.cases)
    problems: list[str] = []
    for other in runs[1:]:
        only_base = [i for i in base.cases if i not in other.cases]
        only_other = [i for i in other.cases if i not in base.cases]
        changed = [
            i
            for i in base.cases
            if i in other.cases
            and _canonical(base.cases[i].spec) != _canonical(other.cases[i].spec)
        ]
        if only_base:
            problems.append(f"{len(only_base)} only in {base.name} ({_names(only_base)})")
        if only_other:
            problems.append(f"{len(only_other)} only in {other.name} ({_names(only_other)})")
        if changed:
            problems.append(
                f"{len(changed)} with different prompts/checks/tags in {other.name} "
                f"({_names(changed)})"
            )
        bad = set(only_base) | set(changed)
        keep = [i for i in keep if i not in bad]
    if not problems:
        return keep, None
    reason = "cases differ: " + "; ".join(problems)
    if not intersection:
        raise LabError(f"{reason}; pass --intersection to compare the cases they share")
    if not keep:
        raise LabError(f"{reason}; no case is shared with identical specs")
    dropped = len(set().union(*(set(r.cases) for r in runs))) - len(keep)
    note = f"compared on the intersection: {len(keep)} cases kept, {dropped} dropped ({reason})"
    return keep, note


def identity_differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """'field: A -> B' for every leaf of the run identities that differs."""
    out: list[str] = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += identity_differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return out


def configuration_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """identity_differences, each setting named once: a run's identity keeps backend, model,
    dtype, ... both at the top and inside `engine`; where the engine's differs, only
    `engine.NAME` is listed (engine settings first)."""
    diffs = identity_differences(a, b)
    engine = [d for d in diffs if d.startswith("engine.")]
    named = {d.split(":")[0].removeprefix("engine.") for d in engine}
    rest = [d for d in diffs if not d.startswith("engine.") and d.split(":")[0] not in named]
    return engine + rest


def same_config(a: SampleRun, b: SampleRun) -> tuple[bool, list[str]]:
    """(same configuration apart from the seed, the identity fields that differ)."""
    diffs = configuration_differences(a.identity, b.identity)
    significant = [d for d in diffs if d.split(":")[0] not in RERUN_FIELDS]
    # where the case file lives says nothing (cases.json and the fingerprint say what ran)
    return not significant, [d for d in diffs if d.split(":")[0] != "cases_source"]


def environment_differences(a: SampleRun, b: SampleRun) -> list[str]:
    """Package versions, device and lab commit that changed between the two runs."""
    keep = ("packages", "lab_commit", "lab_version", "gpu", "cpu", "python", "platform")
    ea = {k: v for k, v in a.environment.items() if k in keep}
    eb = {k: v for k, v in b.environment.items() if k in keep}
    return identity_differences(ea, eb)
