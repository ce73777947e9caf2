"""The Ray actor of an n-of-k run on Ray (lab.scale.sample): one replica of the run's engine
configuration. It runs one planned engine call at a time (the requests the driver built with
the local path's lab.variance.runner.call_requests, so the same cases, the same seeds) and
sends the generations back; it writes nothing (the driver is the only writer).

`start()` loads the engine and says where it runs (node, host, device, CPU threads, the
node's environment record): the driver gives a replica work only once it has started, so a
replica that waits for resources (the cluster is full, or its node is gone) holds none.
"""

from __future__ import annotations

import time
from typing import Any

from lab.backends import Backend, EngineConfig, Generation, Request, close_all, load_backend
from lab.devices import pin_torch_threads
from lab.envinfo import environment_record, placement
from lab.variance.config import SampleConfig
from lab.variance.runner import sampling_config


class SampleReplica:
    """Owns one engine (a copy of the run's engine configuration)."""

    def __init__(
        self,
        engine: EngineConfig,
        config: SampleConfig,
        cache_dir: str | None,
        threads: int | None = None,
    ) -> None:
        pin_torch_threads(threads)  # CPU matmul results can depend on the thread count
        self.engine = engine
        self.config = config
        self.cache_dir = cache_dir
        self.backend: Backend | None = None

    def start(self) -> dict[str, Any]:
        """Load the engine; where this replica runs and how long the load took. An engine
        that cannot load raises (the driver stops the run with the reason, as a local run)."""
        import ray

        started = time.perf_counter()
        self.backend = load_backend(self.engine, self.cache_dir)
        where = placement(self.backend.config)
        where["node"] = ray.get_runtime_context().get_node_id()
        return {
            "placement": where,
            "environment": environment_record(),
            "start_s": time.perf_counter() - started,
        }

    def run(self, requests: list[Request]) -> tuple[list[Generation], float]:
        """One engine call: (its generations, its wall time in seconds)."""
        assert self.backend is not None, "start() first"
        started = time.perf_counter()
        records = self.backend.generate(requests, sampling_config(self.config, self.config.seed))
        return records, time.perf_counter() - started

    def close(self) -> None:
        close_all()
