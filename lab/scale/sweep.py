"""`lab sweep CONFIG --ray [ADDRESS]`: the driver. Each engine configuration of the grid is one
Ray actor (lab.scale.worker) that owns its engine and runs that configuration's cells in the
order a local run does; Ray places the actors where their resources are free (CPUs on a CPU
node, GPUs = tensor-parallel x pipeline-parallel on CUDA) and holds them back while the cluster
is full. Nothing here schedules: the driver submits every cell at once and appends results as
they come back.

- One writer: only this process writes the run directory, each cell once (lab.store), so
  killing the driver and running the same command again resumes it (open_sweep, as locally).
- A lost actor (its worker or node died): the cells it still held are sent to a fresh actor
  of the same configuration, up to `retries` times each, then recorded as failed with why.
- Each cell records its placement (node id, host, device name, CPU threads); `nodes.jsonl`
  holds one environment record per node the run used.
- What each actor asks for (lab.scale.resources): CPUs = the cell's `num_threads` axis (else
  --cpus-per-replica), GPUs = TP x PP (vLLM's own Ray executor when no node has that many), and
  the node kind of its `node_kind` axis (a custom resource or a node label).
- An actor whose cells are all done is ended at once, so the configurations still waiting for
  resources get them (more configurations than the cluster holds run in turn).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.backends.base import EngineConfig
from lab.determinism.config import SweepConfig
from lab.determinism.grid import Cell, group_by_engine
from lab.determinism.sweep import failed, open_sweep, progress_bar
from lab.devices import resolve_device
from lab.rundir import CELLS, NODES
from lab.scale.cluster import connect, disconnect
from lab.scale.resources import ActorPlan, check_node_kind, plan_actor
from lab.scale.worker import ENVIRONMENT, SweepWorker
from lab.store import RunStore, raise_if_interrupted

#: how often a cell lost with its actor is sent to a fresh one before it is recorded failed
RETRIES = 2


def actor_plan(
    cell: Cell, engine: EngineConfig, cpus: int, nodes: list[dict[str, Any]]
) -> ActorPlan:
    """What the actor of `cell`'s engine asks Ray for (lab.scale.resources): CPUs = the cell's
    num_threads (else `cpus`) on a CPU, GPUs = TP x PP on CUDA (vLLM's own Ray executor past
    the largest node), pinned to its node_kind."""
    on_gpu = engine.backend in ("hf", "vllm") and resolve_device(engine.device).startswith("cuda")
    kind = cell.axes.get("node_kind")
    if kind is not None:
        check_node_kind(kind, nodes)
    return plan_actor(engine, on_gpu, cpus, nodes, kind)


def run_sweep_on_ray(
    config: SweepConfig,
    out_dir: str | Path,
    address: str,
    fresh: bool = False,
    cache_dir: str | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    cpus_per_actor: int = 1,
    retries: int = RETRIES,
    on_cell: Callable[[Cell, dict[str, Any]], None] | None = None,
    local_cpus: int | None = None,
) -> RunStore:
    """Run (or resume) a sweep on a Ray cluster into out_dir; returns the store.
    `local_cpus`: the CPUs a `local` instance offers (default: all)."""
    opened = open_sweep(config, out_dir, fresh, retry_failed)
    store = opened.store
    ray = connect(address, local_cpus)
    from ray.exceptions import RayActorError

    remote = ray.remote(SweepWorker)
    groups = group_by_engine(opened.remaining)
    order = {cell.key(): i for i, cell in enumerate(opened.remaining)}
    known_nodes = store.done_keys(NODES)
    lost: Counter[str] = Counter()
    actors: dict[int, Any] = {}
    pending: dict[Any, tuple[int, Cell]] = {}

    plans: dict[int, tuple[EngineConfig, ActorPlan]] = {}

    def launch(index: int, cells: list[Cell]) -> None:
        engine, plan = plans[index]
        # torch threads = the CPUs the actor holds, said outright: Ray only sets
        # OMP_NUM_THREADS where the driver's environment has none (vLLM's import sets one)
        actor = remote.options(**plan.options, max_restarts=0, max_task_retries=0).remote(
            engine, config, opened.context, cache_dir, plan.threads
        )
        actors[index] = actor
        for cell in cells:
            pending[actor.run.remote(cell)] = (index, cell)

    bar = progress_bar(opened.total, opened.total - len(opened.remaining), progress)
    try:
        nodes = ray.nodes()
        for index, group in enumerate(groups):  # every configuration checked before any starts
            engine = group[0].engine_config(config.device, config.base_url, config.engine_args)
            plan = actor_plan(group[0], engine, cpus_per_actor, nodes)
            engine.engine_args |= plan.engine_args
            plans[index] = (engine, plan)
        for index, group in enumerate(groups):
            launch(index, group)
        while pending:
            raise_if_interrupted()
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            if not ready:
                continue
            index, cell = pending.pop(ready[0])
            try:
                payload = ray.get(ready[0])
            except RayActorError as exc:
                _lose(ray, index, cell, exc, actors, pending, lost, retries, store, bar, order,
                      launch)  # fmt: skip
                continue
            environment = payload.pop(ENVIRONMENT, None)
            node = payload["placement"]["node"]
            if environment is not None and node not in known_nodes:
                store.append(NODES, node, {"environment": environment})
                known_nodes.add(node)
            if lost[cell.key()]:
                payload["placement"]["attempt"] = lost[cell.key()] + 1
            store.append(CELLS, cell.key(), payload)
            if on_cell is not None:
                on_cell(cell, payload)
            bar.update(1)
            if index in actors and not any(i == index for i, _ in pending.values()):
                _kill(ray, actors.pop(index))  # its engine's work is done: free its resources
    finally:
        bar.close()
        for actor in actors.values():
            _kill(ray, actor)
        if address == "local":
            disconnect()
    return store


def _lose(
    ray: Any,
    index: int,
    cell: Cell,
    exc: BaseException,
    actors: dict[int, Any],
    pending: dict[Any, tuple[int, Cell]],
    lost: Counter[str],
    retries: int,
    store: RunStore,
    bar: Any,
    order: dict[str, int],
    launch: Callable[[int, list[Cell]], None],
) -> None:
    """The actor of configuration `index` is gone: every cell it still held goes to a fresh
    actor of the same configuration (in grid order), or is recorded failed after `retries`."""
    held = [cell] + [c for ref, (i, c) in list(pending.items()) if i == index]
    for ref in [ref for ref, (i, _) in pending.items() if i == index]:
        del pending[ref]
    _kill(ray, actors.pop(index))
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    again = []
    for c in sorted(held, key=lambda c: order[c.key()]):
        lost[c.key()] += 1
        if lost[c.key()] > retries:
            message = f"lost with its Ray actor {lost[c.key()]} times; last: {reason}"
            store.append(CELLS, c.key(), failed(c, message))
            bar.update(1)
        else:
            again.append(c)
    if again:
        launch(index, again)


def _kill(ray: Any, actor: Any) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # noqa: BLE001 - already gone with its node
        pass
