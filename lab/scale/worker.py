"""The Ray actor of a sweep: one engine configuration, its cells run one at a time in the order
the driver sends them (a Ray actor runs its calls in order), each with the same code a local
sweep uses (lab.determinism.sweep.run_cell). The actor writes nothing: every payload goes back
to the driver, the only writer of the run directory.

The engine is loaded on the first call, not in the constructor, so an engine that cannot start
fails its cells (recorded as failed, as locally) instead of killing the actor.
"""

from __future__ import annotations

import time
from typing import Any

from lab.backends import close_all, load_backend
from lab.backends.base import EngineConfig
from lab.determinism.config import SweepConfig
from lab.determinism.grid import Cell
from lab.determinism.sweep import failed, run_cell
from lab.devices import pin_torch_threads
from lab.envinfo import environment_record, placement

#: the key of the first payload of an actor that carries its node's environment record
ENVIRONMENT = "_environment"


class SweepWorker:
    """Owns one engine (one engine configuration of the grid)."""

    def __init__(
        self,
        engine: EngineConfig,
        config: SweepConfig,
        context: int,
        cache_dir: str | None,
        threads: int | None = None,
    ) -> None:
        pin_torch_threads(threads)  # CPU matmul results can depend on the thread count
        self.engine = engine
        self.config = config
        self.context = context
        self.cache_dir = cache_dir
        self.backend: Any = None
        self.error: BaseException | None = None
        self.start_s = 0.0
        self.sent_environment = False

    def _load(self) -> None:
        if self.backend is not None or self.error is not None:
            return
        started = time.perf_counter()
        try:
            self.backend = load_backend(self.engine, self.cache_dir)
        except Exception as exc:  # noqa: BLE001 - an engine that cannot start fails its cells
            self.error = exc
        self.start_s = time.perf_counter() - started

    def run(self, cell: Cell) -> dict[str, Any]:
        """One cell's payload, as a local sweep stores it, with where it ran."""
        import ray

        self._load()
        if self.error is not None:
            payload = failed(cell, self.error)
        else:
            try:
                payload = run_cell(self.backend, self.config, cell, self.context)
                payload["timings"]["engine_start_s"] = self.start_s
            except Exception as exc:  # noqa: BLE001 - recorded; the sweep goes on
                payload = failed(cell, exc)
        context = ray.get_runtime_context()
        where = placement(self.engine)
        where["node"] = context.get_node_id()
        payload["placement"] = where
        if not self.sent_environment:
            payload[ENVIRONMENT] = environment_record()
            self.sent_environment = True
        return payload

    def close(self) -> None:
        close_all()
