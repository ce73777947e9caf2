"""Run directories: append-only results that survive being killed at any moment.

A run directory holds `config.json` (what was asked), `environment.json` (where it ran) and
one or more append-only JSONL logs. Each unit of work (a sweep cell, a case's k samples) is
appended as ONE line, written with a single write, flushed and fsynced. A process killed
mid-write leaves at most a partial last line; opening the log again drops it (truncating the
file back to the last complete line), so a resumed run redoes that unit and every unit appears
exactly once.

    store = RunStore.open("runs/x", config, fresh=False)
    done = store.done_keys("cells")          # keys already finished
    store.append("cells", key, payload)      # one unit, atomically
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lab.errors import LabError


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _repair_tail(path: Path) -> None:
    """Drop a partial last line left by a process killed mid-write."""
    if not path.exists():
        return
    with open(path, "rb+") as fh:
        data = fh.read()
        if not data or data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        fh.truncate(keep)


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
    ) -> RunStore:
        """Create or resume a run. Resuming checks that the config is the same one."""
        root = Path(path)
        if fresh and root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        config_path = root / "config.json"
        canonical = json.loads(json.dumps(config, sort_keys=True, default=str))
        if config_path.exists():
            try:
                previous = json.loads(config_path.read_text())
            except json.JSONDecodeError as exc:
                raise LabError(f"{config_path}: unreadable run config ({exc})") from exc
            if previous != canonical:
                raise LabError(
                    f"{root} holds a run with a different config; pass --fresh to start over "
                    "or choose another output directory"
                )
        else:
            _write_atomic(config_path, json.dumps(canonical, indent=2, sort_keys=True))
        store = cls(root)
        if environment is not None:
            store.write_json("environment.json", environment)
        return store

    def log_path(self, name: str) -> Path:
        return self.path / f"{name}.jsonl"

    def append(self, name: str, key: str, payload: dict[str, Any]) -> None:
        """Append one finished unit of work as one line (one write, fsynced)."""
        line = json.dumps({"key": key} | payload, default=str) + "\n"
        with open(self.log_path(name), "a") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def entries(self, name: str) -> Iterator[dict[str, Any]]:
        """Every complete entry of a log, in order, first occurrence of each key only."""
        path = self.log_path(name)
        _repair_tail(path)
        if not path.exists():
            return
        seen: set[str] = set()
        with open(path) as fh:
            for number, line in enumerate(fh, 1):
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LabError(f"{path}:{number}: corrupt record ({exc})") from exc
                if entry["key"] in seen:
                    continue
                seen.add(entry["key"])
                yield entry

    def done_keys(self, name: str) -> set[str]:
        return {entry["key"] for entry in self.entries(name)}

    def write_json(self, name: str, payload: Any) -> Path:
        path = self.path / name
        _write_atomic(path, json.dumps(payload, indent=2, default=str))
        return path

    def write_text(self, name: str, text: str) -> Path:
        path = self.path / name
        _write_atomic(path, text)
        return path
