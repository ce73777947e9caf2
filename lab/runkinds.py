"""What `--out DIR` / `--fresh` may do with a run directory (lab.store writes the marker; the
kinds, their files and the detector `run_kind_of` are lab.rundir's).

Every run directory carries one marker, `.lab-run.json`, naming the kind of run that wrote it
(sample, sweep, load, quickstart) and the names that kind writes (lab.rundir.RUN_FILES). A
command opens only a directory that holds nothing, its own kind of run, or (without --fresh)
files that are no run's and that it would not overwrite; `--fresh` deletes the names its kind
writes and nothing else: a user's notes.txt beside a run stays, another kind of run is refused,
and a directory of other files with no run is refused. A directory written before the marker
existed is recognized by its files (lab.rundir.run_kind_of) and gets its marker when it is
resumed.

    check_run_dir("runs/x", "sample", fresh=True)   # before anything: LabError, one line
    kept = start_over("runs/x", "sample")           # --fresh: the sample run's files only
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from lab.errors import LabError
from lab.rundir import COMMAND, RUN_FILES, run_kind_of


def written_by(kind: str, name: str) -> bool:
    """Whether a run of `kind` writes an entry called `name` into its directory."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_FILES[kind])


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
