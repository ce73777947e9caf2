"""Where `lab fragility` reads its greedy records from: a sweep run directory (its reference
cell, and every other ok cell's outputs for the divergence labels), a sample run directory
(sample 0 of each case) or a JSONL file of Generation records. Read only: nothing is repaired
or written; bad input is one LabError line naming the file and line or field.

    from lab.determinism.fragility_sources import load_source
    source = load_source("runs/quickstart/sweep")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.backends.base import Generation
from lab.determinism.agentsource import refuse_agent_sweep
from lab.determinism.cells import base_id, cell_of, outputs_of
from lab.determinism.config import SweepConfig, read_run_config
from lab.determinism.grid import reference_cell, varying_axes
from lab.errors import LabError
from lab.rundir import CASES, CELLS, SAMPLES, SWEEP_CONFIG, log_file, read_log_lines, run_kind_of


@dataclass
class FragilitySource:
    path: str
    kind: str
    scored: str
    #: prompt id -> the greedy (or sampled) record scored
    records: dict[str, Generation]
    #: sweep only: prompt id -> every other ok cell's outputs of it
    others: dict[str, list[Generation]] | None = None
    notes: list[str] = field(default_factory=list)


def load_source(path: str | Path) -> FragilitySource:
    """A sweep directory, a sample run directory, or a JSONL file of Generation records.
    LabError (one line, naming the file and line or field) for anything else."""
    root = Path(path)
    if root.is_dir():
        kind = run_kind_of(root)
        if kind == "sweep":
            refuse_agent_sweep(root, "lab fragility", "single-turn sweeps, runs and records")
            source = _sweep_source(root)
        elif kind == "sample":
            source = _sample_source(root)
        else:
            raise LabError(
                f"{root}: not a sweep run directory (no {SWEEP_CONFIG}) nor a sample run "
                f"directory (no {CASES})"
            )
    elif root.is_file():
        source = _records_source(root)
    else:
        raise LabError(f"{root}: no such run directory or records file")
    _require_top2(source)
    return source


def _require_top2(source: FragilitySource) -> None:
    if not source.records:
        raise LabError(f"{source.path}: no generation records to score")
    if not any(len(step) >= 2 for g in source.records.values() for step in g.top_logprobs):
        raise LabError(
            f"{source.path}: the records keep fewer than 2 top logprobs per step, so there is no "
            "top-1/top-2 gap to score; run with logprobs >= 2 (sweep: sampling.logprobs; "
            "lab generate / lab sample: --logprobs 2)"
        )


def _generation(record: dict[str, Any], where: str) -> Generation:
    missing = [
        name
        for name in ("request_id", "output_token_ids", "token_logprobs", "top_logprobs")
        if name not in record
    ]
    if missing:
        raise LabError(f"{where}: not a generation record (missing field '{missing[0]}')")
    defaults: dict[str, Any] = {
        "sample_index": 0,
        "seed": None,
        "backend": "",
        "prompt_token_ids": [],
        "text": "",
        "finish_reason": "",
        "timings": {},
        "engine": {},
        "sampling": {},
        "error": None,
    }
    known = set(Generation.__dataclass_fields__)
    values = defaults | {k: v for k, v in record.items() if k in known}
    try:
        generation = Generation.from_dict(values)
    except (TypeError, KeyError, AttributeError) as exc:
        raise LabError(f"{where}: field 'top_logprobs': not a list of steps ({exc})") from None
    for step, alternatives in enumerate(generation.top_logprobs):
        for alt in alternatives:
            if not isinstance(alt.logprob, int | float) or isinstance(alt.logprob, bool):
                raise LabError(f"{where}: field 'top_logprobs[{step}]': logprob is not a number")
    return generation


def _records_source(path: Path) -> FragilitySource:
    records: dict[str, Generation] = {}
    notes = []
    for number, record in read_log_lines(path):
        g = _generation(record, f"{path}:{number}")
        if g.error:
            continue
        key = g.request_id if g.sample_index == 0 else f"{g.request_id}#{g.sample_index}"
        if key in records:
            raise LabError(f"{path}:{number}: field 'request_id': {key!r} appears twice")
        records[key] = g
    if any(float(g.sampling.get("temperature") or 0) > 0 for g in records.values()):
        notes.append("sampled records (T > 0): gaps scaled back by the temperature")
    return FragilitySource(str(path), "records", "every record", records, notes=notes)


def _sample_source(root: Path) -> FragilitySource:
    log = root / log_file(SAMPLES)
    if not log.is_file():
        raise LabError(f"{root}: a sample run directory without {log.name} (nothing sampled)")
    records: dict[str, Generation] = {}
    for number, entry in read_log_lines(log):
        generations = entry.get("generations")
        if not isinstance(generations, list) or not generations:
            raise LabError(f"{log}:{number}: field 'generations': expected a list of records")
        g = _generation(generations[0], f"{log}:{number}")
        if not g.error:
            records[str(entry.get("case_id", g.request_id))] = g
    notes = []
    if any(float(g.sampling.get("temperature") or 0) > 0 for g in records.values()):
        notes.append(
            "a sampled run: sample 0 of each case is scored, its gaps scaled back by the "
            "temperature; a greedy run (--temperature 0) scores the path a sweep would compare"
        )
    return FragilitySource(str(root), "sample", "sample 0 of each case", records, notes=notes)


def sweep_reference(
    config: SweepConfig, entries: list[dict[str, Any]]
) -> tuple[str, dict[str, Generation], dict[str, list[tuple[str, Generation]]], list[str]]:
    """From a sweep's latest cell entries: (label of the cell scored, target id -> its
    reference output, target id -> [(cell label, output)] of every other ok output, notes).

    The reference is the reference cell's first output of each target (the first ok cell when
    the reference failed), as in lab.determinism.metrics; in identical mode the reference
    cell's other copies count as other outputs."""
    ok = [e for e in entries if e.get("status") == "ok"]
    if not ok:
        return "", {}, {}, ["no cell finished ok"]
    varying = varying_axes(config)
    ref_key = reference_cell(config).key()
    reference = next((e for e in ok if cell_of(e).key() == ref_key), None)
    notes = []
    if reference is None:
        reference = ok[0]
        notes.append("the reference cell failed or is missing: the first ok cell is scored")
    label = cell_of(reference).label(varying)
    records: dict[str, Generation] = {}
    others: dict[str, list[tuple[str, Generation]]] = {}
    for tid in dict.fromkeys(base_id(o) for o in reference["outputs"]):
        gens = outputs_of(reference, tid)
        records[tid] = gens[0]
        others[tid] = [(label, g) for g in gens[1:]] + [
            (cell_of(e).label(varying), g) for e in ok if e is not reference
            for g in outputs_of(e, tid)
        ]  # fmt: skip
    return label, records, others, notes


def _sweep_source(root: Path) -> FragilitySource:
    config = read_run_config(root)
    log = root / log_file(CELLS)
    if not log.is_file():
        raise LabError(f"{root}: no {log.name} (the sweep has not finished a cell)")
    latest: dict[str, dict[str, Any]] = {}
    for number, entry in read_log_lines(log):
        if "key" not in entry or "status" not in entry:
            raise LabError(f"{log}:{number}: not a sweep cell (missing field 'key' or 'status')")
        latest[entry["key"]] = entry
    label, records, others, notes = sweep_reference(config, list(latest.values()))
    if not records:
        raise LabError(f"{root}: no cell finished ok; nothing to score")
    if config.sampling.get("temperature", 0.0):
        notes.append("the sweep samples at T > 0: gaps scaled back by the temperature")
    return FragilitySource(
        str(root),
        "sweep",
        f"reference cell ({label})",
        records,
        others={tid: [g for _, g in outs] for tid, outs in others.items()},
        notes=notes,
    )
