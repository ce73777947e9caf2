"""The lab's own progress lines, kept apart from the engines' chatter.

vLLM, torch and transformers write warnings and weight-loading bars to stderr, from Python and
from C++ alike, and drown the lab's lines (the quickstart's console was mostly theirs). While
an engine loads and runs, `engine_output(LOG)` points file descriptor 2 at LOG (RUN_DIR/
engine.log), so everything written to stderr by anyone goes there, and `echo` writes the lab's
lines to the terminal through a copy of the original descriptor. `lab --verbose` (or
LAB_VERBOSE=1) leaves stderr alone: the chatter shows as before.

    with engine_output(run_dir / ENGINE_LOG):   # lab.rundir.ENGINE_LOG, engine.log
        backend = load_backend(...)        # its bars and warnings: engine.log
        echo("call 1/3 ...")               # the terminal
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from lab.errors import LabError
from lab.settings import env_value

_verbose = False
#: the terminal's stderr while fd 2 points at an engine log; None otherwise
_console: IO[str] | None = None


def set_verbose(on: bool) -> None:
    global _verbose
    _verbose = on


def verbose() -> bool:
    return _verbose or (env_value("LAB_VERBOSE") or "0") != "0"


def stream() -> IO[str]:
    """Where the lab's own lines go: the terminal's stderr, even while fd 2 is an engine log."""
    return _console if _console is not None else sys.stderr


#: a status line is on the terminal (status()); the next line replaces it
_status_shown = False


def echo(line: Any) -> None:
    """One line of the lab's own to stderr (the terminal's, see the module docstring)."""
    global _status_shown
    out = stream()
    if _status_shown:
        out.write("\r\x1b[K")  # the status line gives way
        _status_shown = False
    out.write(f"{line}\n")
    out.flush()


def status(line: Any) -> None:
    """A line that the next one replaces, on a terminal (a step's elapsed time, rewritten in
    place); elsewhere (a log, a pipe) an ordinary line, so a file keeps every beat."""
    global _status_shown
    out = stream()
    if not out.isatty():
        echo(line)
        return
    out.write(f"\r\x1b[K{line}")
    out.flush()
    _status_shown = True


@contextlib.contextmanager
def engine_output(log_path: str | Path) -> Iterator[Path | None]:
    """Send everything written to stderr (fd 2) to `log_path` while the block runs; yields the
    log's path (None when nothing was redirected: --verbose, already redirected, or no real
    fd 2). On a crash (not a LabError or Ctrl-C) the terminal is told where the engine's
    output went."""
    global _console
    if verbose() or _console is not None:
        yield None
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (embedded, closed)
        yield None
        return
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    console = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
    os.dup2(log, 2)
    os.close(log)
    _console = console
    failed = False
    try:
        yield path
    except (LabError, KeyboardInterrupt, SystemExit):
        raise  # one line of their own (exit 2, 130): the engine's output is no part of it
    except BaseException:
        failed = True  # a crash: its cause may be in the engine's own output
        raise
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        _console = None
        if failed:
            with contextlib.suppress(OSError, ValueError):
                console.write(f"(the engine's own output is in {path})\n")
        console.close()
