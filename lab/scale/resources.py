"""What one engine configuration asks Ray for, decided from the engine and the cluster's node
table (`ray.nodes()`), without Ray itself, so the decision is tested on made-up clusters.

- CPU engines: `num_threads` CPUs when the cell sets the axis, else `--cpus-per-replica`; the
  actor's torch then runs with exactly that many threads.
- GPU engines: GPUs = tensor_parallel_size x pipeline_parallel_size (engine_args) on one node.
  A vLLM engine that needs more GPUs than the largest node has is handed to vLLM's own Ray
  executor: the actor asks for no GPU (1 CPU) and the engine gets
  `distributed_executor_backend: ray`, so vLLM places its ranks across nodes in a placement
  group of its own. A `distributed_executor_backend` the user set (sweep `engine_args`) is
  passed through as is: `ray` also makes the actor ask for no GPU; another one (`mp`) must fit
  one node.
- `node_kind` (axis): a bare NAME is a Ray custom resource the actor asks a token amount of
  (`ray start --resources '{"A100": 1}'`); KEY=VALUE is a node label the actor's node must
  carry (`ray start --labels kind=a100`, or Ray's own `ray.io/accelerator-type=H100`).

    plan = plan_actor(engine, on_gpu=False, cpus=1, nodes=ray.nodes(), node_kind="A100")
    remote.options(**plan.options)   # engine_args gain plan.engine_args
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lab.backends.base import EngineConfig
from lab.errors import ConfigError

#: how much of a node-kind custom resource one actor asks for: a token, so any number of
#: actors fit on a node of that kind (the CPUs / GPUs they ask for still limit them)
KIND_AMOUNT = 0.001


@dataclass
class ActorPlan:
    #: keyword arguments for the actor's `.options()` (num_cpus, num_gpus, resources, ...)
    options: dict[str, Any]
    #: engine arguments added to the engine's own (distributed_executor_backend)
    engine_args: dict[str, Any] = field(default_factory=dict)

    @property
    def threads(self) -> int | None:
        """torch threads of the actor: the CPUs it holds (None on a GPU)."""
        return None if self.options.get("num_gpus") else int(self.options["num_cpus"])


def _live(nodes: list[dict[str, Any]], resource: str) -> list[float]:
    """How much of `resource` each live node of a `ray.nodes()` table has."""
    return [float(n.get("Resources", {}).get(resource, 0)) for n in nodes if n.get("Alive", True)]


def kind_options(node_kind: str | None) -> dict[str, Any]:
    """The .options() that pin an actor to nodes of `node_kind` ({} for None)."""
    if node_kind is None:
        return {}
    key, sep, value = node_kind.partition("=")
    if sep:
        return {"label_selector": {key.strip(): value.strip()}}
    return {"resources": {node_kind: KIND_AMOUNT}}


def check_node_kind(node_kind: str, nodes: list[dict[str, Any]]) -> None:
    """ConfigError when no live node is of that kind (Ray would hold the actor forever)."""
    live = [n for n in nodes if n.get("Alive", True)]
    key, sep, value = node_kind.partition("=")
    if sep:
        if any(n.get("Labels", {}).get(key.strip()) == value.strip() for n in live):
            return
        seen = sorted({f"{k}={v}" for n in live for k, v in n.get("Labels", {}).items()})
        what = f"label {node_kind}"
    else:
        if any(n.get("Resources", {}).get(node_kind, 0) > 0 for n in live):
            return
        seen = sorted({r for n in live for r in n.get("Resources", {})})
        what = f"custom resource {node_kind!r}"
    raise ConfigError(
        f"axes.node_kind: no live node of the cluster has the {what} (they have: "
        f"{', '.join(seen) or 'none'})"
    )


def plan_actor(
    engine: EngineConfig,
    on_gpu: bool,
    cpus: int,
    nodes: list[dict[str, Any]],
    node_kind: str | None = None,
) -> ActorPlan:
    """What the actor of `engine` asks for (see the module docstring). `on_gpu`: the engine
    runs on CUDA; `cpus`: --cpus-per-replica; `nodes`: ray.nodes()."""
    kind = kind_options(node_kind)
    threads = engine.num_threads
    if not on_gpu:
        wanted = threads or cpus
        most = max(_live(nodes, "CPU"), default=0.0)
        if nodes and wanted > most:  # Ray would hold the actor forever
            where = "axes.num_threads" if threads else "--cpus-per-replica"
            raise ConfigError(
                f"{where}: {wanted} threads need {wanted} CPUs on one node, and the largest "
                f"node has {most:g}"
            )
        return ActorPlan({"num_cpus": wanted, "num_gpus": 0} | kind)
    pp = int(engine.engine_args.get("pipeline_parallel_size", 1) or 1)
    gpus = engine.tensor_parallel_size * pp
    largest = max(_live(nodes, "GPU"), default=0.0)
    chosen = engine.engine_args.get("distributed_executor_backend")
    if engine.backend == "vllm" and (chosen == "ray" or (chosen is None and gpus > largest)):
        added = {} if chosen is not None else {"distributed_executor_backend": "ray"}
        return ActorPlan({"num_cpus": threads or 1, "num_gpus": 0} | kind, added)
    if gpus > largest:
        how = f"distributed_executor_backend {chosen}" if chosen else f"{engine.backend}"
        raise ConfigError(
            f"{engine.backend} engine needs {gpus} GPUs (tensor x pipeline parallel) on one node "
            f"with {how}, and the largest node has {largest:g}"
        )
    return ActorPlan({"num_cpus": threads or 1, "num_gpus": gpus} | kind)
