"""Run directories by kind: which kind of run a directory holds, the names each kind writes,
and what `--out DIR` / `--fresh` may do with a directory (lab.store writes the marker).

Every run directory carries one marker, `.lab-run.json`, naming the kind of run that wrote it
(sample, sweep, load, quickstart, explain) and the names that kind writes (RUN_FILES). A
command opens only a directory that holds nothing, its own kind of run, or (without --fresh)
files that are no run's and that it would not overwrite; `--fresh` deletes the names its kind
writes and nothing else: a user's notes.txt beside a run stays, another kind of run is refused,
and a directory of other files with no run is refused. A directory written before the marker
existed is recognized by its files (`run_kind_of`: a sweep's cells.jsonl, a sample run's
samples.jsonl or cases.json (an agent run's trajectories.jsonl), a load test's requests.jsonl,
a quickstart's step directories; else its config.json) and gets its marker when it is resumed.

    check_run_dir("runs/x", "sample", fresh=True)   # before anything: LabError, one line
    kept = start_over("runs/x", "sample")           # --fresh: the sample run's files only
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path
from typing import Any

from lab.errors import LabError

#: the marker file of a run directory (see the module docstring)
MARKER = ".lab-run.json"
#: what every kind of run writes beside its own files (temp files of atomic writes included)
_COMMON = (MARKER, "config.json", "environment.json", "environments.jsonl", "engine.log")
_TEMPS = (".*.tmp", ".*.tmp-*")
#: the names (glob patterns) each kind of run writes into its directory: --fresh deletes these
#: and nothing else. A quickstart's step directories are runs of their own kinds.
RUN_FILES: dict[str, tuple[str, ...]] = {
    "sample": _COMMON
    + _TEMPS
    + (
        "settings.json", "batching.json", "cases.json", "samples.jsonl", "samples.parquet",
        "metrics.json", "summary.md", "report.html", "embeddings.npz", "retry.md", "retry.json",
        "trajectories.jsonl", "steps.jsonl",  # an agent run's (lab.agents)
        "server-*.log",  # the managed server's (openai backend without a base_url)
        "nodes.jsonl", "failures.jsonl",  # a run on Ray's (lab.scale.sample)
    ),
    "sweep": _COMMON
    + _TEMPS
    + ("sweep_config.json", "cells.jsonl", "nodes.jsonl", "metrics.json", "report.md",
       "report.html", "server-*.log"),
    "load": _COMMON + _TEMPS + ("requests.jsonl", "passes.jsonl", "summary.json", "server.log"),
    # lab explain (lab.determinism.explain): one line per replayed toggle, then the result
    "explain": _COMMON + _TEMPS + ("toggles.jsonl", "explain.json"),
    "quickstart": (MARKER, "index.html") + _TEMPS + ("sweep", "kernels-off", "kernels-on",
                                                     "variance"),
}  # fmt: skip
#: what the run commands are called, for messages
COMMAND = {
    "sample": "lab sample",
    "sweep": "lab sweep",
    "load": "lab load",
    "explain": "lab explain",
    "quickstart": "lab quickstart",
}


def written_by(kind: str, name: str) -> bool:
    """Whether a run of `kind` writes an entry called `name` into its directory."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_FILES[kind])


def json_object(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def run_kind_of(path: str | os.PathLike[str]) -> str | None:
    """The kind of run a directory holds: its marker's, else (a directory written before the
    marker existed) the kind its files show; None when it holds no lab run."""
    root = Path(path)
    if not root.is_dir():
        return None
    marker = json_object(root / MARKER)
    if marker is not None and marker.get("kind") in RUN_FILES:
        return str(marker["kind"])
    names = {p.name for p in root.iterdir()}
    config = json_object(root / "config.json")
    if "toggles.jsonl" in names or "explain.json" in names:
        return "explain"
    if "cells.jsonl" in names or (config is not None and "axes" in config):
        return "sweep"
    if names & {"requests.jsonl", "passes.jsonl"} or (config or {}).get("kind") == "load":
        return "load"
    sample_files = {"samples.jsonl", "cases.json", "trajectories.jsonl"}
    if names & sample_files or (config or {}).get("cases_fingerprint"):
        return "sample"
    steps = [n for n in ("sweep", "kernels-off", "kernels-on", "variance") if n in names]
    if "index.html" in names and steps or any(run_kind_of(root / n) for n in steps):
        return "quickstart"
    return None


def check_run_dir(
    path: str | os.PathLike[str], kind: str, fresh: bool = False, option: str = "--out"
) -> None:
    """Refuse (LabError, one line, before anything is touched) a directory a `kind` run must
    not write into: a file; another kind of run; with --fresh, files but no `kind` run (it
    would start over on someone else's files); without, a file of a non-run directory that
    the run would overwrite (its report.html, say)."""
    root = Path(path)
    if not root.exists():
        return
    if not root.is_dir():
        raise LabError(f"{option} {root}: is a file, not a directory; choose a directory")
    entries = sorted(p.name for p in root.iterdir())
    if not entries:
        return
    found = run_kind_of(root)
    if found is not None and found != kind:
        raise LabError(
            f"{option} {root}: holds a {found} run ({COMMAND[found]}), not a {kind} run; "
            f"{'--fresh deletes only a ' + kind + ' run' if fresh else 'it would mix them'}, "
            "so choose another directory"
        )
    if found is None:
        own = [n for n in entries if written_by(kind, n)]
        if fresh and [n for n in entries if not written_by(kind, n)]:
            raise LabError(
                f"{option} {root}: holds files but no lab run ({shown(entries)}); --fresh "
                "would delete them, so choose another directory"
            )
        if own and not fresh:
            raise LabError(
                f"{option} {root}: holds files but no lab run, and the run would overwrite "
                f"{shown(own)}; choose another directory"
            )


def shown(names: list[str], limit: int = 3) -> str:
    return ", ".join(names[:limit]) + (
        f" and {len(names) - limit} more" if len(names) > limit else ""
    )


def start_over(path: str | os.PathLike[str], kind: str) -> list[str]:
    """--fresh: delete the files a `kind` run writes in `path` (check_run_dir first) and
    nothing else; returns the names kept (files the lab did not write)."""
    root = Path(path)
    check_run_dir(root, kind, fresh=True)
    if not root.is_dir():
        return []
    kept = []
    for entry in sorted(root.iterdir()):
        if not written_by(kind, entry.name):
            kept.append(entry.name)
        elif not entry.is_dir() or entry.is_symlink():
            entry.unlink()
        # a directory of the kind's (a quickstart's step) is a run of its own: its own
        # --fresh starts it over
    return kept
