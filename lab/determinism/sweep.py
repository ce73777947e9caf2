"""`lab sweep CONFIG.yaml`: run a determinism grid, one finished cell at a time.

Every finished cell is appended to the run directory (`cells.jsonl`) as one line with its
engine record; killing the process at any moment and running the same command again finishes
the sweep with each cell present exactly once (`--fresh` starts over). A cell that fails (an
engine that cannot start, an out-of-memory batch, a crash inside generate) is recorded with
its error and the sweep goes on.

    lab sweep experiments/feynman/config.yaml --out runs/feynman
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab import models
from lab.backends import close_all, load_backend
from lab.backends.base import Backend, Generation, SamplingConfig
from lab.backends.openai_compat import OpenAIBackend
from lab.console import engine_output
from lab.console import stream as console_stream
from lab.determinism.config import SweepConfig
from lab.determinism.grid import Cell, expand, group_by_engine
from lab.determinism.modes import build_cell_batches
from lab.envinfo import environment_record, placement
from lab.errors import LabError
from lab.rundir import CELLS, ENGINE_LOG, SWEEP_CONFIG
from lab.store import RunStore, raise_if_interrupted

# Per-record fields that are the same for the whole cell; stored once per cell.
_CELL_LEVEL = ("engine", "sampling")
#: runs one cell on a running engine: (backend, config, cell, context) -> the payload to store
CellRunner = Callable[[Backend, SweepConfig, Cell, int], dict[str, Any]]


def context_length(config: SweepConfig) -> int:
    """The smallest context among the swept models (prefix lengths must fit all of them)."""
    lengths = []
    for model in config.axes["model"]:
        lengths.append(models.model_info(model).max_position_embeddings)
    return min(lengths)


def compact(generation: Generation) -> dict[str, Any]:
    record = generation.to_dict()
    for key in _CELL_LEVEL:
        record.pop(key, None)
    return record


def run_cell(backend: Backend, config: SweepConfig, cell: Cell, context: int) -> dict[str, Any]:
    """Generate one cell's batches; returns the payload to store."""
    axes = cell.axes
    seed = axes["seed"]
    sampling = SamplingConfig(seed=seed, **config.sampling)
    order_seed = (seed or 0) * 1000 + cell.repeat
    outputs: dict[str, dict[str, Any]] = {}
    engine: dict[str, Any] = {}
    generate_s = 0.0
    tokens = 0
    for batch in build_cell_batches(config, axes["batch_size"], axes["order"], order_seed, context):
        started = time.perf_counter()
        if isinstance(backend, OpenAIBackend):
            if not backend.vllm_extras:
                raise RuntimeError("the server returns no token ids; the metrics compare them")
            # A live server: the cell's requests go out `concurrency` at a time.
            gens = backend.generate(batch.requests, sampling, concurrency=axes["concurrency"])
            failures = [g for g in gens if g.error]
            if failures:  # a lost request is no measurement: fail the cell, rerun resumes it
                raise RuntimeError(
                    f"{len(failures)} of {len(gens)} requests failed, e.g. {failures[0].error}"
                )
        else:
            gens = backend.generate(batch.requests, sampling)
        generate_s += time.perf_counter() - started
        for g in gens:
            tokens += len(g.output_token_ids)
            if g.request_id in batch.targets:
                outputs[batch.targets[g.request_id]] = compact(g)
                engine = engine or g.engine
    return {
        "status": "ok",
        "error": None,
        "cell": axes,
        "repeat": cell.repeat,
        "engine": engine,
        "sampling": dataclasses.asdict(sampling),
        "timings": {"generate_s": generate_s, "output_tokens": tokens},
        "outputs": outputs,
    }


def failed(cell: Cell, error: BaseException | str) -> dict[str, Any]:
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return {
        "status": "failed",
        "error": message,
        "cell": cell.axes,
        "repeat": cell.repeat,
        "outputs": {},
    }


@dataclasses.dataclass
class OpenedSweep:
    """A sweep's run directory opened for work: what is left to run, and where it goes."""

    store: RunStore
    context: int
    total: int
    remaining: list[Cell]


def open_sweep(
    config: SweepConfig,
    out_dir: str | Path,
    fresh: bool = False,
    retry_failed: bool = False,
    identity: dict[str, Any] | None = None,
) -> OpenedSweep:
    """Open (or resume) a sweep's run directory and list the cells left to run: every recorded
    cell is skipped, failed ones too unless `retry_failed`. Shared by the local loop below and
    the Ray driver (lab.scale), so both resume the same way. `identity`: more of what decides
    the outputs (an agent sweep's case and tool fingerprints)."""
    context = context_length(config)  # every model checked before the directory is touched
    store = RunStore.open(
        out_dir,
        config.generation_identity() | (identity or {}),
        fresh=fresh,
        environment=environment_record(),
        kind="sweep",
    )
    store.write_json(SWEEP_CONFIG, config.to_dict())  # the full config, scoring included
    done = {
        e["key"]
        for e in store.entries(CELLS, latest=True)
        if not (retry_failed and e.get("status") != "ok")
    }
    cells = expand(config)
    remaining = [c for c in cells if c.key() not in done]
    return OpenedSweep(store, context, len(cells), remaining)


def run_sweep(
    config: SweepConfig,
    out_dir: str | Path,
    fresh: bool = False,
    cache_dir: str | None = None,
    progress: bool = True,
    on_cell: Callable[[Cell, dict[str, Any]], None] | None = None,
    retry_failed: bool = False,
    runner: CellRunner | None = None,
    identity: dict[str, Any] | None = None,
) -> RunStore:
    """Run (or resume) a sweep into out_dir; returns the store.

    A resume skips every recorded cell, failed ones included (a config the engine refuses
    fails the same way again); `retry_failed` runs the failed ones again (a server that went
    away, an out-of-memory), appending their new records, which replace the failed ones.
    `runner` runs one cell (default run_cell: the prompts; lab.agents.sweep passes its own,
    with the `identity` it adds)."""
    if config.agents is not None and runner is None:
        raise LabError("an agent sweep's cells run through lab.agents.sweep (lab sweep does)")
    if config.axes["node_kind"] != [None]:  # before the run directory is touched
        raise LabError(
            "axes.node_kind pins cells to kinds of Ray nodes: run this sweep with --ray (a "
            "local sweep has one machine)"
        )
    opened = open_sweep(config, out_dir, fresh, retry_failed, identity)
    store = opened.store
    with engine_output(store.path / ENGINE_LOG):  # the engines' chatter: engine.log
        _run_groups(
            config, store, opened.total, opened.remaining, cache_dir, progress, on_cell,
            opened.context, runner or run_cell,
        )  # fmt: skip
    return store


def _run_groups(
    config: SweepConfig,
    store: RunStore,
    cells_total: int,
    remaining: list[Cell],
    cache_dir: str | None,
    progress: bool,
    on_cell: Callable[[Cell, dict[str, Any]], None] | None,
    context: int,
    runner: CellRunner = run_cell,
) -> None:
    bar = progress_bar(cells_total, cells_total - len(remaining), progress)
    try:
        for group in group_by_engine(remaining):
            raise_if_interrupted()  # before starting another engine
            engine_config = group[0].engine_config(
                config.device, config.base_url, config.engine_args
            )
            started = time.perf_counter()
            try:
                # A managed server (openai without base_url) logs into the run directory.
                backend = load_backend(engine_config, cache_dir, store.path)
            except Exception as exc:  # noqa: BLE001 - an engine that cannot start fails its cells
                raise_if_interrupted()  # a Ctrl-C that broke the load is not the engine's failure
                for cell in group:
                    store.append(CELLS, cell.key(), failed(cell, exc))
                    bar.update(1)
                continue
            start_s = time.perf_counter() - started
            where = placement(engine_config)
            for cell in group:
                raise_if_interrupted()  # a Ctrl-C swallowed during the engine load or a cell
                try:
                    payload = runner(backend, config, cell, context)
                    payload["timings"]["engine_start_s"] = start_s
                    payload["placement"] = where
                except Exception as exc:  # noqa: BLE001 - recorded; the sweep goes on
                    raise_if_interrupted()  # not a failure of the cell: rerun redoes it
                    payload = failed(cell, exc)
                store.append(CELLS, cell.key(), payload)
                if on_cell is not None:
                    on_cell(cell, payload)
                bar.update(1)
    finally:
        bar.close()
        close_all()


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, done: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="cell", desc="sweep", file=console_stream())
