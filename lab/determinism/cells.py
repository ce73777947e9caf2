"""A sweep's stored cells read back: which cell an entry of cells.jsonl is, and the
Generation records it holds for a target (identical mode keeps copy i of prompt p as "p#i").
Shared by the metrics, the per-axis pairs, fragility and the comparison of two sweeps.
"""

from __future__ import annotations

from typing import Any

from lab.backends.base import Generation
from lab.determinism.config import AXES
from lab.determinism.grid import Cell


def cell_of(entry: dict[str, Any]) -> Cell:
    # .get: cells stored before an axis existed (concurrency) lack it; the axis default is None
    return Cell(tuple((k, entry["cell"].get(k)) for k in AXES), entry["repeat"])


def generation_of(entry: dict[str, Any], output_id: str) -> Generation:
    record = dict(entry["outputs"][output_id])
    return Generation.from_dict(record | {"engine": entry["engine"], "sampling": entry["sampling"]})


def base_id(output_id: str) -> str:
    """Identical mode stores copy i of prompt p as "p#i"; every copy measures prompt p."""
    return output_id.split("#")[0]


def outputs_of(entry: dict[str, Any], target: str) -> list[Generation]:
    """Every output a cell produced for a target (identical mode: all its copies, in order)."""
    ids = [o for o in entry["outputs"] if base_id(o) == target]
    ids.sort(key=lambda o: int(o.split("#")[1]) if "#" in o else 0)
    return [generation_of(entry, o) for o in ids]
