"""Run directories: append-only results that survive being killed at any moment.

A run directory holds `config.json` (what was asked), `environment.json` (where it ran) and
one or more append-only JSONL logs. Each unit of work (a sweep cell, a case's k samples) is
appended as ONE line, written with a single write, flushed and fsynced. A process killed
mid-write leaves at most a partial last line; opening the log again drops it (truncating the
file back to the last complete line; appending does the same first), so a resumed run redoes
that unit and every unit appears exactly once. Resuming with another config is refused with
the settings that differ. Ctrl-C: `lab.cli.main` installs `install_interrupt_handler`, the run
loops call `raise_if_interrupted` between units (a KeyboardInterrupt raised inside a finalizer
is swallowed by Python), and `interrupted_message` tells the user what a rerun resumes.

    store = RunStore.open("runs/x", config, fresh=False, kind="sweep")
    done = store.done_keys(CELLS)            # keys already finished
    store.append(CELLS, key, payload)        # one unit, atomically

`RunStore.open(..., kind=...)` checks the directory, starts over (--fresh) and writes the
marker `.lab-run.json` that says which kind of run it is: lab.runkinds has the rules, the
names of a run's files (CELLS, SAMPLES, ...) and their readers are lab.rundir's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.rundir import (
    COMMAND,
    CONFIG,
    ENVIRONMENT,
    ENVIRONMENTS,
    MARKER,
    RUN_FILES,
    json_object,
    log_file,
    read_log,
    repair_tail,
)
from lab.runkinds import check_run_dir, shown, start_over


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write a whole file so that a reader (or a kill) never sees half of it: a temp file
    beside it (`.NAME.tmp-PID`, which RunStore.open removes if its writer died), fsynced, then
    renamed over it. Text is UTF-8; permissions follow the umask, as for any new file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with open(tmp, "wb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def _config_differences(previous: Any, current: Any) -> str:
    """The settings that differ, as `k: 4 -> 8` or `engine.dtype: ... -> ...`, for a one-line
    refusal (nested settings are named by their path, long values cut)."""
    changed = _differences(previous, current)
    return "; ".join(changed[:4]) + (f" (+{len(changed) - 4} more)" if len(changed) > 4 else "")


#: run directories opened by this process, newest last: `lab.cli.main` names the latest when
#: Ctrl-C stops a command, so the user knows what a rerun resumes.
_opened: list[Path] = []


def opened_runs() -> list[Path]:
    return list(_opened)


#: Ctrl-C presses seen by the handler `install_interrupt_handler` puts in place.
_interrupts = 0


def _on_interrupt(signum: int, frame: object) -> None:
    global _interrupts
    _interrupts += 1
    raise KeyboardInterrupt


def install_interrupt_handler() -> None:
    """Count Ctrl-C presses, then raise KeyboardInterrupt as Python's own handler does.

    Python raises KeyboardInterrupt wherever the main thread happens to be; when that is a
    finalizer (`__del__`, run by the garbage collector, e.g. regex's while vLLM loads a
    model) the exception is printed as "Exception ignored" and swallowed, and the run goes on
    as if nothing had been pressed. The count survives that: the run loops call
    `raise_if_interrupted` between units of work (and the swallowed one is not printed as a
    traceback)."""
    import signal
    import sys

    signal.signal(signal.SIGINT, _on_interrupt)
    report_unraisable = sys.unraisablehook

    def quiet_interrupts(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            report_unraisable(unraisable)

    sys.unraisablehook = quiet_interrupts


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt when a Ctrl-C was pressed but swallowed (see above)."""
    if _interrupts:
        raise KeyboardInterrupt


def interrupted_message() -> str:
    """What Ctrl-C prints: where the finished work is and how to resume it (one line)."""
    if not _opened:
        return "interrupted"
    return (
        f"interrupted: finished work is saved in {_opened[-1]}; "
        "run the same command again to resume"
    )


_TEMP_NAME = re.compile(r"^\..+\.tmp(?:-(\d+))?(?:\.[A-Za-z0-9]+)?$")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr)


_UNSET = object()


def _without_new_unset(current: Any, previous: Any) -> Any:
    """`current` less the keys `previous` lacks whose value is null: a setting added to the
    lab after the run began, left at its default, is the run's own behaviour (a run made
    before `engine.base_url` existed resumes; one that now sets it does not)."""
    if not (isinstance(current, dict) and isinstance(previous, dict)):
        return current
    return {
        key: _without_new_unset(value, previous.get(key))
        for key, value in current.items()
        if key in previous or value is not None
    }


def _differences(before: Any, after: Any, prefix: str = "") -> list[str]:
    """`packages.torch: "2.13.0" -> "2.14.0"` for each leaf that differs (JSON values, cut
    at 40 characters; a key on one side only is `(unset)` on the other)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        for key in sorted(set(before) | set(after), key=str):
            out += _differences(before.get(key, _UNSET), after.get(key, _UNSET), f"{prefix}{key}.")
        return out
    if before == after:
        return []

    def short(value: Any) -> str:
        if value is _UNSET:
            return "(unset)"
        text = json.dumps(value, sort_keys=True, default=str)
        return text if len(text) <= 40 else text[:37] + "..."

    return [f"{prefix.rstrip('.') or 'value'}: {short(before)} -> {short(after)}"]


def prepare_run_dir(
    path: str | os.PathLike[str],
    kind: str,
    fresh: bool = False,
    notify: Callable[[str], None] | None = None,
) -> Path:
    """Make `path` a `kind` run directory: check it (lab.runkinds.check_run_dir), start over
    when `fresh` (only what that kind writes is deleted; the rest is named as kept), create it
    and write its marker `.lab-run.json` (a directory from before the marker gets it now)."""
    root = Path(path)
    check_run_dir(root, kind, fresh)
    if fresh:
        kept = start_over(root, kind)
        if kept:
            (notify or _stderr)(f"--fresh: kept {shown(kept)} in {root} (not written by the lab)")
    root.mkdir(parents=True, exist_ok=True)
    marker = root / MARKER
    if json_object(marker) is None:
        payload = {"kind": kind, "command": COMMAND[kind], "writes": list(RUN_FILES[kind])}
        write_atomic(marker, json.dumps(payload, indent=2))
    return root


class RunStore:
    """One run directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        config: dict[str, Any],
        fresh: bool = False,
        environment: dict[str, Any] | None = None,
        notify: Callable[[str], None] | None = None,
        kind: str | None = None,
    ) -> RunStore:
        """Create or resume a run. Resuming checks that the config is the same one, and
        `notify`s (default: stderr) when the environment is not the one the run started in.
        `kind` (sample, sweep, load): the directory must hold nothing or that kind of run
        (check_run_dir), `fresh` deletes only what that kind writes (start_over), and the
        marker is written. None: a scratch store (benchmarks, tests), no marker."""
        root = Path(path)
        if kind is not None:
            prepare_run_dir(root, kind, fresh, notify)
        elif fresh and root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        config_path = root / CONFIG
        canonical = json.loads(json.dumps(config, sort_keys=True, default=str))
        if config_path.exists():
            try:
                previous = json.loads(config_path.read_text())
            except json.JSONDecodeError as exc:
                raise LabError(f"{config_path}: unreadable run config ({exc})") from exc
            if previous != _without_new_unset(canonical, previous):
                raise LabError(
                    f"{root} holds a run with a different config "
                    f"({_config_differences(previous, canonical)}); pass --fresh to start over "
                    "or choose another output directory"
                )
        else:
            write_atomic(config_path, json.dumps(canonical, indent=2, sort_keys=True))
        store = cls(root)
        _opened.append(root)
        store.remove_stale_temp_files()
        if environment is not None:
            store.record_environment(environment, notify)
        return store

    def remove_stale_temp_files(self) -> None:
        """Delete the temp files of atomic writes that a killed process left behind
        (`.name.tmp-PID` whose process is gone, `.name.tmp`): they would pile up."""
        for path in self.path.glob(".*.tmp*"):
            match = _TEMP_NAME.match(path.name)
            if match is None or not path.is_file():
                continue
            pid = match.group(1)
            if pid is not None and _process_alive(int(pid)):
                continue  # another process is writing it right now
            path.unlink(missing_ok=True)

    def record_environment(
        self, environment: dict[str, Any], notify: Callable[[str], None] | None = None
    ) -> None:
        """environment.json keeps the environment the run STARTED in. A resume in another
        environment (packages upgraded, another machine, other lab code) is appended to
        environments.jsonl and announced: the run's outputs then come from more than one
        environment, which a determinism study must know."""
        first = self.path / ENVIRONMENT
        current = json.loads(json.dumps(environment, default=str))
        if not first.is_file():
            self.write_json(ENVIRONMENT, current)
            return
        try:
            original = json.loads(first.read_text())
        except (OSError, json.JSONDecodeError):
            self.write_json(ENVIRONMENT, current)  # damaged: the best record we have
            return
        changes = _differences(original, current)
        if not changes:
            return
        sessions = sum(1 for _ in self.entries(ENVIRONMENTS))
        self.append(ENVIRONMENTS, f"resume-{sessions + 1}", {"environment": current})
        (notify or _stderr)(
            f"warning: resuming {self.path} in another environment than it started in "
            f"({'; '.join(changes[:3])}{'; ...' if len(changes) > 3 else ''}); "
            f"recorded in {self.log_path(ENVIRONMENTS).name}"
        )

    def log_path(self, name: str) -> Path:
        return self.path / log_file(name)

    def append(self, name: str, key: str, payload: dict[str, Any]) -> None:
        """Append one finished unit of work as one line (one write, fsynced)."""
        line = json.dumps({"key": key} | payload, default=str) + "\n"
        # A log this process has not read yet (load's passes.jsonl) may end in a partial line
        # from a kill: appending after it would glue two records into one corrupt line.
        repair_tail(self.log_path(name))
        with open(self.log_path(name), "a") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def entries(self, name: str, latest: bool = False) -> Iterator[dict[str, Any]]:
        """Every complete entry of a log, one per key, in the order keys first appear: its
        first entry (streamed), or with `latest` its last one (a failed sweep cell retried
        with --retry-failed is appended again; held in memory, so for small logs)."""
        yield from read_log(self.log_path(name), latest)

    def done_keys(self, name: str) -> set[str]:
        return {entry["key"] for entry in self.entries(name)}

    def write_json(self, name: str, payload: Any) -> Path:
        path = self.path / name
        write_atomic(path, json.dumps(payload, indent=2, default=str))
        return path

    def write_text(self, name: str, text: str) -> Path:
        path = self.path / name
        write_atomic(path, text)
        return path
