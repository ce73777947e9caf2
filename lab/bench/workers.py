"""A backend in a child process, so that two engines a process could not hold together (two
vLLM engines with different settings) can be timed call by call, alternating, from one script.

The child (spawned, so it imports nothing of the parent's state) starts the backend once, then
serves generate calls over a pipe: it times each call itself (the pipe and pickling stay out
of the figure) and returns the seconds with the records as dicts. The parent waits for each
answer, so only one engine computes at a time.

    from lab.bench.workers import EngineWorker
    with EngineWorker(EngineConfig(backend="vllm", engine_args={"block_size": 128})) as w:
        seconds, records = w.generate(requests, sampling)

Scripts that use it need an `if __name__ == "__main__":` guard (the child is spawned).
"""

from __future__ import annotations

import multiprocessing
import traceback
from typing import Any

from lab.backends.base import EngineConfig, Request, SamplingConfig
from lab.errors import LabError


def _serve(config: EngineConfig, cache_dir: str | None, conn: Any) -> None:
    """The child: start the backend, then answer (requests, sampling) with (seconds, dicts)."""
    import time

    from lab.backends import close_all, load_backend

    try:
        backend = load_backend(config, cache_dir)
        conn.send(("ready", getattr(backend, "engine_record", {})))
        while True:
            message = conn.recv()
            if message is None:
                break
            if message[0] == "call":  # ("call", fn, args): fn(backend, *args), fn importable
                _, fn, args = message
                conn.send(("ok", fn(backend, *args)))
                continue
            _, requests, sampling = message
            started = time.perf_counter()
            records = backend.generate(requests, sampling)
            seconds = time.perf_counter() - started
            conn.send(("ok", (seconds, [g.to_dict() for g in records])))
    except Exception:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", traceback.format_exc()))
    finally:
        close_all()
        conn.close()


class EngineWorker:
    """One backend in a spawned child process."""

    def __init__(self, config: EngineConfig, cache_dir: str | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(config, cache_dir, child))
        self._process.start()
        child.close()
        #: the engine record the child's backend reports (vLLM: kv_block_size, ...)
        self.engine_record: dict[str, Any] = self._answer()

    def _answer(self) -> Any:
        try:
            status, payload = self._conn.recv()
        except EOFError:
            raise LabError("the engine worker died (see its output above)") from None
        if status == "error":
            raise LabError(f"the engine worker failed:\n{payload}")
        return payload

    def generate(
        self, requests: list[Request], sampling: SamplingConfig
    ) -> tuple[float, list[dict[str, Any]]]:
        """(seconds inside backend.generate, the records as dicts)."""
        self._conn.send(("generate", requests, sampling))
        seconds, records = self._answer()
        return float(seconds), records

    def call(self, fn: Any, *args: Any) -> Any:
        """fn(the child's backend, *args), run in the child; fn must be a module-level
        function (it is pickled by name) and its result picklable (e.g. a profile of a call)."""
        self._conn.send(("call", fn, args))
        return self._answer()

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=60)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=10)
        self._conn.close()

    def __enter__(self) -> EngineWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
