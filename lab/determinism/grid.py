"""The sweep grid: cells, their keys, the reference cell, and grouping by engine.

A cell is one value per axis plus a repeat index. Cells that share every engine axis share one
running engine: batch size, seed, order and repeats never restart it.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

from lab.backends.base import EngineConfig
from lab.determinism.config import AXES, ENGINE_AXES, OPTIONAL_AXES, SweepConfig


@dataclass(frozen=True)
class Cell:
    values: tuple[tuple[str, Any], ...]
    repeat: int

    @property
    def axes(self) -> dict[str, Any]:
        return dict(self.values)

    def key(self) -> str:
        axes = self.axes
        for name in OPTIONAL_AXES:  # unused: keys stay those of runs made before them
            if axes.get(name) is None:
                axes.pop(name, None)
        return json.dumps({"axes": axes, "repeat": self.repeat}, sort_keys=True)

    def engine_values(self) -> tuple[tuple[str, Any], ...]:
        return tuple((k, v) for k, v in self.values if k in ENGINE_AXES)

    def engine_config(
        self, device: str, base_url: str | None = None, engine_args: dict[str, Any] | None = None
    ) -> EngineConfig:
        """The engine of this cell: its engine axes (EngineConfig.from_values, the builder
        `lab generate` and n-of-k runs use too) on `device`, with the sweep's `engine_args`.
        (node_kind is no engine setting: it says where the engine runs, lab.scale.) The
        engine_args are vLLM's: an hf cell of a mixed sweep runs without them."""
        a = self.axes
        return EngineConfig.from_values(
            a,
            device=device,
            base_url=base_url if a["backend"] == "openai" else None,
            engine_args=dict(engine_args or {}) if a["backend"] != "hf" else {},
        )

    def label(self, varying: list[str]) -> str:
        a = self.axes
        parts = [f"{k}={a[k]}" for k in varying]
        if self.repeat:
            parts.append(f"repeat={self.repeat}")
        return ", ".join(parts) or "reference"


def expand(config: SweepConfig) -> list[Cell]:
    """Every cell of the grid, reference first (the first value of every axis, repeat 0)."""
    names = list(AXES)
    cells = []
    for combo in itertools.product(*(config.axes[name] for name in names)):
        for repeat in range(config.repeats):
            cells.append(Cell(tuple(zip(names, combo, strict=True)), repeat))
    return cells


def reference_cell(config: SweepConfig) -> Cell:
    return Cell(tuple((name, config.axes[name][0]) for name in AXES), 0)


def varying_axes(config: SweepConfig) -> list[str]:
    return [name for name in AXES if len(config.axes[name]) > 1]


def group_by_engine(cells: list[Cell]) -> list[list[Cell]]:
    """Cells grouped by engine, in grid order, engines without batch-invariant mode first
    (vLLM's batch-invariant kernels cannot be unloaded from a process on the GPU)."""
    groups: dict[tuple[tuple[str, Any], ...], list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.engine_values(), []).append(cell)
    return sorted(groups.values(), key=lambda g: bool(g[0].axes["batch_invariant"]))


def differs_only_in(cell: Cell, reference: Cell, axis: str) -> bool:
    """True when `cell` equals the reference except on `axis` (repeat 0 both)."""
    if cell.repeat != 0:
        return False
    a, r = cell.axes, reference.axes
    return a[axis] != r[axis] and all(a[k] == r[k] for k in a if k != axis)
