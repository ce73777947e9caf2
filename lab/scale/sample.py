"""`lab sample --ray [ADDRESS] --replicas R` (and `lab library run --ray`): the driver of an
n-of-k run on Ray. R replicas of the run's one engine configuration (lab.scale.replica, data
parallel) share the engine calls a local run would make, from a queue.

- Same work as a local run: the unit is one planned engine call (lab.variance.runner
  pending_calls: the same grouping of cases, batching.json, the same per-case seeds), so
  batch composition and random numbers do not depend on R, and with the same thread count
  (a 1-CPU replica runs torch on 1 thread) every sample equals the local run's bitwise.
- Balance: a replica gets work only once its engine has started, and holds at most `depth`
  calls (one running, one waiting), so a fast replica takes more calls than a slow one. The
  replicas start together: the first calls go out once every replica has loaded its engine,
  or `start_wait_s` after the first one did (a replica the cluster cannot place yet is not
  waited for longer), so the calls spread over every replica from the start.
- One writer: only this process writes the run directory, a samples line per case as each
  call comes back (lab.variance.runner.record_call, the local path's), in whatever order the
  calls finish; the report reads cases in case order, so it does not depend on that order.
  Killing the driver and running the same command again (with or without --ray, with any R)
  resumes at the unfinished cases.
- A lost replica (its worker or node died): the calls it held go back to the queue, to any
  replica, and a fresh replica is asked for in its place; a call lost more than `retries`
  times is recorded failed: its cases get NO samples line (never half a case) but a line
  each in failures.jsonl (the reason, the attempts), the report is not written, the command
  exits non-zero saying so, and the same command samples them again.
- Placement: every samples line says where its call ran (node, host, device name, CPU
  threads, replica, and attempt when it ran again); nodes.jsonl holds one environment record
  per node (environment.json stays the driver's).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.cases.model import Case
from lab.devices import resolve_device
from lab.errors import LabError
from lab.rundir import FAILURES, NODES
from lab.scale.cluster import connect, disconnect
from lab.scale.replica import SampleReplica
from lab.scale.resources import plan_actor
from lab.scale.sweep import RETRIES
from lab.store import RunStore, raise_if_interrupted
from lab.variance.config import SampleConfig
from lab.variance.runner import Progress, Sampler, call_requests, pending_calls, record_call

# FAILURES: cases whose call was lost with its replica more than `retries` times (one line
# per case per time; the case has no samples line until a later run samples it)
#: engine calls a replica holds at most: one running, one waiting behind it
DEPTH = 2
#: seconds the first replica to start waits for the others before calls go out
START_WAIT_S = 60.0
#: while calls wait and no replica runs any, a line this often (the cluster may be full)
WAIT_NOTICE_S = 60.0


@dataclass
class RayOptions:
    """How an n-of-k run uses Ray. `address`: local, auto, ray://host:port. `on_call`: called
    with (call index, its placement) after each call is recorded and the replicas were given
    more work (tests remove a node there, mid-run)."""

    address: str = "auto"
    replicas: int = 1
    cpus_per_replica: int = 1
    depth: int = DEPTH
    retries: int = RETRIES
    start_wait_s: float = START_WAIT_S
    cache_dir: str | None = None
    local_cpus: int | None = None
    on_call: Callable[[int, dict[str, Any]], None] | None = None


def ray_sampler(options: RayOptions) -> Sampler:
    """A lab.variance.runner Sampler that samples the unfinished cases on Ray replicas."""

    def sample(
        config: SampleConfig,
        store: RunStore,
        cases: list[Case],
        emit: Callable[[str], None],
        positions: dict[str, int],
    ) -> tuple[int, bool]:
        return sample_on_ray(config, store, cases, emit, positions, options)

    return sample


def sample_on_ray(
    config: SampleConfig,
    store: RunStore,
    cases: list[Case],
    emit: Callable[[str], None],
    positions: dict[str, int] | None,
    options: RayOptions,
    ray: Any = None,
) -> tuple[int, bool]:
    """Sample the unfinished cases of an open run on Ray; (cases sampled now, True). LabError
    when cases failed (recorded in failures.jsonl) or an engine raised. `ray`: the connected
    `ray` module (default: connect to options.address; unit tests pass a stand-in)."""
    if options.replicas < 1:
        raise LabError(f"--replicas must be at least 1, got {options.replicas}")
    calls, done = pending_calls(config, store, cases, positions)
    if done:
        emit(f"resuming: {len(done)} of {len(cases)} cases already sampled in {store.path}")
    if not calls:
        return 0, True
    ray = ray or connect(options.address, options.local_cpus)
    progress = Progress(len(cases) * config.k, len(done) * config.k, emit)
    driver = _Driver(ray, config, store, calls, emit, options, progress)
    try:
        driver.run()
    finally:
        driver.close()
        if options.address == "local" and ray.is_initialized():
            disconnect()
    if driver.failed:
        first = driver.failed[0]
        raise LabError(
            f"{len(driver.failed)} of {len(cases)} cases failed ({first[0]!r}: {first[1]}); "
            f"recorded in {store.log_path(FAILURES)}; run the same command again to sample them"
        )
    return driver.sampled, True


@dataclass
class _Replica:
    actor: Any
    #: where it runs (from its start); None while it waits for resources or loads its engine
    placement: dict[str, Any] | None = None
    #: the calls (indices) sent to it and not yet back
    held: list[int] = field(default_factory=list)


class _Driver:
    """The dispatch loop: start replicas, feed them calls, record results, replace losses."""

    def __init__(
        self,
        ray: Any,
        config: SampleConfig,
        store: RunStore,
        calls: list[list[tuple[int, Case]]],
        emit: Callable[[str], None],
        options: RayOptions,
        progress: Progress,
    ) -> None:
        exceptions = ray.exceptions
        #: what means the replica (its process or node) is gone, not that its engine raised
        self.gone = (exceptions.RayActorError, exceptions.WorkerCrashedError,
                     exceptions.NodeDiedError, exceptions.ObjectLostError)  # fmt: skip
        self.ray, self.config, self.store, self.calls = ray, config, store, calls
        self.emit, self.options, self.progress = emit, options, progress
        self.engine = config.engine_config()
        # what a replica asks Ray for, as a sweep's actors (lab.scale.resources): CPUs on a
        # CPU node, GPUs = TP x PP on CUDA, vLLM's own Ray executor past the largest node
        on_gpu = self.engine.backend in ("hf", "vllm") and resolve_device(
            self.engine.device
        ).startswith("cuda")
        plan = plan_actor(self.engine, on_gpu, options.cpus_per_replica, ray.nodes())
        self.engine.engine_args |= plan.engine_args
        self.resources = plan.options
        # torch threads = the CPUs the replica holds (as lab.scale.sweep's actors)
        self.threads = plan.threads
        self.remote = ray.remote(SampleReplica)
        self.queue: deque[int] = deque(range(len(calls)))
        self.lost: Counter[int] = Counter()
        self.replicas: dict[int, _Replica] = {}
        #: object ref -> (replica slot, call index; None for the replica's start)
        self.refs: dict[Any, tuple[int, int | None]] = {}
        self.starts = 0
        #: calls go out (see start_wait_s); when the first replica started
        self.open = False
        self.first_started: float | None = None
        self.known_nodes = store.done_keys(NODES)
        self.failed: list[tuple[str, str]] = []
        self.last_loss = ""
        self.waiting_since: float | None = None
        self.sampled = 0

    def launch(self, slot: int) -> None:
        actor = self.remote.options(**self.resources, max_restarts=0, max_task_retries=0).remote(
            self.engine, self.config, self.options.cache_dir, self.threads
        )
        self.replicas[slot] = _Replica(actor)
        self.refs[actor.start.remote()] = (slot, None)
        self.starts += 1

    def run(self) -> None:
        # no more replicas than calls: one call is one replica's work (rows_per_call decides)
        for slot in range(min(self.options.replicas, len(self.calls))):
            self.launch(slot)
        while self.queue or any(r.held for r in self.replicas.values()):
            raise_if_interrupted()
            if not self.refs:  # every replica lost and no new one may start
                self.fail(list(self.queue), f"no Ray replica left to run it ({self.last_loss})")
                self.queue.clear()
                break
            ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=1.0)
            if not ready:
                self.fill()  # the start wait may be over
                self.notice_waiting()
                continue
            slot, index = self.refs.pop(ready[0])
            try:
                value = self.ray.get(ready[0])
            except self.gone as exc:
                self.lose(slot, index, exc)
                continue
            except Exception as exc:  # noqa: BLE001 - the engine raised: stop, as locally
                what = "start its engine" if index is None else f"run call {index + 1}"
                raise LabError(f"Ray replica {slot + 1} could not {what}: {_reason(exc)}") from None
            if index is None:
                self.started(slot, value)
                self.fill()
                continue
            where = self.finished(slot, index, value)
            self.fill()
            if self.options.on_call is not None:
                self.options.on_call(index, where)

    def notice_waiting(self) -> None:
        """A line every WAIT_NOTICE_S while calls are queued and no started replica holds
        any (Ray is waiting for resources, or for an engine to load)."""
        if any(r.held for r in self.replicas.values()) or not self.queue:
            self.waiting_since = None
            return
        now = time.monotonic()
        if self.waiting_since is None:
            self.waiting_since = now
        elif now - self.waiting_since >= WAIT_NOTICE_S:
            self.waiting_since = now
            asked = ", ".join(f"{k} {v}" for k, v in self.resources.items() if v)
            self.emit(
                f"{len(self.queue)} calls wait for a replica: {len(self.replicas)} asked of Ray "
                f"({asked} each) are not placed or still loading their engine"
            )

    def started(self, slot: int, value: dict[str, Any]) -> None:
        where = value["placement"]
        self.replicas[slot].placement = where
        self.first_started = self.first_started or time.monotonic()
        if where["node"] not in self.known_nodes:
            self.store.append(NODES, where["node"], {"environment": value["environment"]})
            self.known_nodes.add(where["node"])
        threads = f", {where['threads']} threads" if where.get("threads") else ""
        self.emit(
            f"replica {slot + 1} started on {where['host']} (node {where['node'][:8]}, "
            f"{where['device_name']}{threads}) in {value['start_s']:.1f}s"
        )

    def fill(self) -> None:
        """Give every started replica calls from the queue, up to `depth` each (once every
        replica has started, or start_wait_s after the first did)."""
        if not self.open:
            waiting = any(r.placement is None for r in self.replicas.values())
            since = time.monotonic() - (self.first_started or time.monotonic())
            self.open = not waiting or since >= self.options.start_wait_s
            if not self.open:
                return
        for slot in sorted(self.replicas):
            replica = self.replicas[slot]
            while replica.placement is not None and self.queue:
                if len(replica.held) >= self.options.depth:
                    break
                index = self.queue.popleft()
                ref = replica.actor.run.remote(call_requests(self.config, self.calls[index]))
                self.refs[ref] = (slot, index)
                replica.held.append(index)

    def finished(self, slot: int, index: int, value: tuple[list[Any], float]) -> dict[str, Any]:
        records, wall = value
        replica = self.replicas[slot]
        replica.held.remove(index)
        assert replica.placement is not None
        where = dict(replica.placement) | {"replica": slot + 1}
        if self.lost[index]:
            where["attempt"] = self.lost[index] + 1
        call = self.calls[index]
        rows = record_call(self.store, self.config, call, records, wall, where)
        self.sampled += len(call)
        self.emit(
            f"call {index + 1}/{len(self.calls)} ({len(call)} cases x k={self.config.k}) done "
            f"on {where['host']} (replica {slot + 1}) in {wall:.1f}s"
        )
        self.progress.update(rows, sum(len(g.output_token_ids) for g in records))
        return where

    def lose(self, slot: int, index: int | None, exc: BaseException) -> None:
        """Replica `slot` is gone: the calls it held go back to the queue (in plan order, in
        front), or are recorded failed after `retries` losses; a fresh replica is asked for."""
        replica = self.replicas.pop(slot, None)
        if replica is None:
            return
        for ref in [ref for ref, (s, _) in self.refs.items() if s == slot]:
            del self.refs[ref]
        _kill(self.ray, replica.actor)
        reason = self.last_loss = _reason(exc)
        again = []
        for held in sorted(replica.held):
            self.lost[held] += 1
            if self.lost[held] > self.options.retries:
                message = f"lost with its Ray replica {self.lost[held]} times; last: {reason}"
                self.fail([held], message)
            else:
                again.append(held)
        self.queue.extendleft(reversed(again))
        dropped = len(replica.held) - len(again)
        self.emit(
            f"replica {slot + 1} lost ({reason}): {len(again)} calls go back to the queue"
            + (f", {dropped} failed" if dropped else "")
        )
        if self.starts < self.options.replicas * (self.options.retries + 1):
            self.launch(slot)  # placed when the cluster has room; given work once started

    def fail(self, indices: list[int], reason: str) -> None:
        for index in indices:
            for _, case in self.calls[index]:
                record = {"case_id": case.id, "reason": reason, "attempts": self.lost[index]}
                self.store.append(FAILURES, case.id, record)
                self.failed.append((case.id, reason))

    def close(self) -> None:
        for replica in self.replicas.values():
            _kill(self.ray, replica.actor)
        self.replicas.clear()


def _reason(exc: BaseException) -> str:
    """The first line of what went wrong (the engine's own exception for a task error)."""
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


def _kill(ray: Any, actor: Any) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # noqa: BLE001 - already gone with its node
        pass
