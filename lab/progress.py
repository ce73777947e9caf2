"""Progress of a long step that reports nothing itself (an engine call, an embedding pass).

`Heartbeat` runs a background thread that emits one line every `interval` seconds while the
step runs, so a run without a terminal (a CI log, `nohup`, a pipe) is never silent for
minutes: "call 2/5 (3 cases x k=8): running 60s". On a terminal, through the lab's console
(lab.console.echo), it is one status line rewritten in place. LAB_PROGRESS_INTERVAL sets the
period (lab.settings; 0: no lines).

    with Heartbeat(emit, "call 2/5 (3 cases x k=8)"):
        backend.generate(...)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

from lab import console
from lab.settings import progress_interval

#: seconds between two lines of a step that runs long (LAB_PROGRESS_INTERVAL overrides it)
DEFAULT_INTERVAL = 30.0


class Heartbeat:
    """Emit "LABEL: running Ns" every `interval` seconds until the block ends."""

    def __init__(
        self,
        emit: Callable[[str], None],
        label: str,
        interval: float | None = None,
    ) -> None:
        self.emit, self.label = emit, label
        # the lab's console: one line rewritten in place on a terminal, lines elsewhere
        self.beat = console.status if emit is console.echo else emit
        self.interval = progress_interval(DEFAULT_INTERVAL) if interval is None else interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = 0.0

    def __enter__(self) -> Heartbeat:
        self.started = time.perf_counter()
        if self.interval > 0:
            self._thread = threading.Thread(target=self._beat, name="lab-heartbeat", daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            elapsed = time.perf_counter() - self.started
            try:
                self.beat(f"{self.label}: running {elapsed:.0f}s")
            except Exception:  # noqa: BLE001 - a closed stream must not kill the step
                return

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started
