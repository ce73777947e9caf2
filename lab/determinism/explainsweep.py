"""A sweep pair for `lab explain`: two cells of one sweep, or the reference cells of two sweeps
of the same prompts, and the case (target prompt) whose tokens part between them.

Cells are named as the report labels them, `AXIS=VALUE[,AXIS=VALUE...]` (dtype aliases such as
bf16 accepted); without --cell-a / --cell-b the first pair of lab.determinism.pairs whose
tokens part on the case is taken. The batch of a replay is the cell's own (the run's mode,
fillers and order, lab.determinism.modes.build_cell_batches) at the replayed setting.

    pair = sweep_pair("runs/s", "runs/s", None, "dtype=fp32", "dtype=bf16")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.backends.base import Request, SamplingConfig, canonical_dtype
from lab.determinism.cells import base_id, cell_of, outputs_of
from lab.determinism.config import AXES, ENGINE_AXES, SweepConfig, read_run_config
from lab.determinism.explainpair import Pair, canonical_setting
from lab.determinism.grid import reference_cell, varying_axes
from lab.determinism.modes import build_cell_batches
from lab.determinism.pairs import partner_pairs
from lab.errors import LabError
from lab.rundir import CELLS, log_file
from lab.store import RunStore


def read_sweep(path: str) -> tuple[SweepConfig, list[dict[str, Any]]]:
    """A sweep's config and its finished cells (the latest entry of each)."""
    config = read_run_config(path, "a finished sweep run directory")
    stored = RunStore(Path(path)).entries(CELLS, latest=True)
    entries = [e for e in stored if e.get("status") == "ok"]
    if not entries:
        raise LabError(f"{path}: no finished cell in {log_file(CELLS)}")
    return config, entries


def parse_cell(text: str, option: str) -> dict[str, str]:
    """`dtype=bf16,batch_size=3` -> {"dtype": "bfloat16", "batch_size": "3"} (values as text)."""
    wanted: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name.strip() not in AXES:
            raise LabError(f"{option} {text!r}: expected AXIS=VALUE[,AXIS=VALUE] with an axis "
                           f"of {', '.join(AXES)}")  # fmt: skip
        name, value = name.strip(), value.strip()
        if name == "dtype":
            try:
                value = canonical_dtype(value)
            except LabError:
                pass  # then no cell matches: named below
        wanted[name] = value
    return wanted


def pick_cell(entries: list[dict[str, Any]], text: str, option: str, run: str) -> dict[str, Any]:
    wanted = parse_cell(text, option)
    found = [e for e in entries
             if all(str(e["cell"].get(k)) == v for k, v in wanted.items())]  # fmt: skip
    if not found:
        raise LabError(f"{option} {text!r}: no finished cell of {run} has these values")
    found.sort(key=lambda e: e.get("repeat", 0))
    return found[0]


def parts(a: dict[str, Any], b: dict[str, Any], case: str) -> bool:
    ra, rb = outputs_of(a, case), outputs_of(b, case)
    return bool(ra and rb) and ra[0].output_token_ids != rb[0].output_token_ids


def targets(entry: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(base_id(o) for o in entry["outputs"]))


def sweep_pair(
    run_a: str, run_b: str, case: str | None, cell_a: str | None, cell_b: str | None
) -> Pair | None:
    config_a, entries_a = read_sweep(run_a)
    same_run = Path(run_a).resolve() == Path(run_b).resolve()
    config_b, entries_b = (config_a, entries_a) if same_run else read_sweep(run_b)
    prompts_a = [(p.id, p.prompt, p.messages) for p in config_a.prompts]
    prompts_b = [(p.id, p.prompt, p.messages) for p in config_b.prompts]
    if prompts_a != prompts_b or config_a.mode != config_b.mode:
        raise LabError(f"{run_a} and {run_b} are sweeps of other prompts or modes; "
                       "lab explain pairs one prompt under two settings")  # fmt: skip
    if config_a.sampling != config_b.sampling:
        raise LabError(f"{run_a} and {run_b} sample differently ({config_a.sampling} vs "
                       f"{config_b.sampling})")  # fmt: skip
    known = targets(entries_a[0])
    if case is not None and case not in known:
        raise LabError(f"{run_a}: no prompt {case!r} (prompts: {', '.join(known[:6])})")
    cases = [case] if case is not None else known
    a = b = None
    if cell_a or cell_b or not same_run:
        ref_a = reference_cell(config_a).key()
        ref_b = reference_cell(config_b).key()
        a = (
            pick_cell(entries_a, cell_a, "--cell-a", run_a)
            if cell_a
            else next((e for e in entries_a if cell_of(e).key() == ref_a), entries_a[0])
        )
        b = (
            pick_cell(entries_b, cell_b, "--cell-b", run_b)
            if cell_b
            else next((e for e in entries_b if cell_of(e).key() == ref_b), entries_b[0])
        )
        if a is b:
            raise LabError(f"--cell-a and --cell-b pick the same cell of {run_a}")
        chosen = next((c for c in cases if parts(a, b, c)), None)
    else:  # the first per-axis pair whose tokens part on a case
        if not varying_axes(config_a):
            raise LabError(f"{run_a}: a sweep of one cell; give a second run or --cell-a/--cell-b")
        chosen = None
        for _, partner, entry in partner_pairs(config_a, entries_a):
            chosen = next((c for c in cases if parts(partner, entry, c)), None)
            if chosen is not None:
                a, b = partner, entry
                break
        if a is None:  # nothing parts: report the first pair, undivided
            _, a, b = next(iter(partner_pairs(config_a, entries_a)))
    assert a is not None and b is not None
    if chosen is None:
        return None
    return _pair(config_a, run_a, run_b, a, b, chosen)


def _label(entry: dict[str, Any], config: SweepConfig) -> str:
    return "cell " + cell_of(entry).label(varying_axes(config) or ["dtype"])


def _pair(
    config: SweepConfig, run_a: str, run_b: str, a: dict[str, Any], b: dict[str, Any], case: str
) -> Pair:
    context = _context(config)
    sampling = SamplingConfig(**config.sampling)

    def batch(setting: dict[str, Any]) -> tuple[list[Request], str]:
        order_seed = (setting.get("seed") or 0) * 1000 + int(setting.get("repeat") or 0)
        size, order = int(setting["batch_size"]), setting["order"]
        for cb in build_cell_batches(config, size, order, order_seed, context):
            # identical mode: copy 0 ("p#0") is the one measured, as outputs_of()[0] is
            measured = sorted((t for t in cb.targets.values() if base_id(t) == case), key=_copy)
            if measured:
                return list(cb.requests), next(r for r, t in cb.targets.items() if t == measured[0])
        raise LabError(f"prompt {case!r}: not in any batch of the sweep")

    def setting(entry: dict[str, Any]) -> dict[str, Any]:
        values = {k: entry["cell"].get(k) for k in AXES if k != "node_kind"}
        return canonical_setting(values | {"repeat": entry.get("repeat", 0)})

    fixed = {"device": config.device, "engine_args": dict(config.engine_args)}
    fixed = {k: v for k, v in fixed.items() if k not in ENGINE_AXES}
    return Pair(
        kind="sweep", case=case, runs=(run_a, run_b),
        names=(_label(a, config), _label(b, config)),
        setting_a=setting(a), setting_b=setting(b),
        record_a=outputs_of(a, case)[0], record_b=outputs_of(b, case)[0],
        sampling=sampling, engine_fixed=fixed, batch=batch,
        cells=(cell_of(a).key(), cell_of(b).key()),
    )  # fmt: skip


def _copy(target: str) -> int:
    return int(target.split("#")[1]) if "#" in target else 0


def _context(config: SweepConfig) -> int:
    from lab.determinism.sweep import context_length

    return context_length(config)
