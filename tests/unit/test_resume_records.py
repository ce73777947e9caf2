"""What a resume keeps: failed sweep cells retried on request (their new records replace the
failed ones), the environment a run started in beside the ones it was resumed in, and no temp
files of killed writers. Fake engine and hand-made logs, no model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab.backends import Backend
from lab.determinism.sweep import run_sweep
from lab.rundir import CELLS
from lab.store import ENVIRONMENTS, RunStore
from tests.unit.test_resume_interrupts import SeededBackend, sweep_config

ENV = {"lab_commit": "abc", "packages": {"torch": "2.13.0+cpu", "vllm": None}, "cpu_count": 2}


def test_entries_yield_the_first_record_of_a_key_or_with_latest_the_last(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path / "run", {"x": 1})
    store.append("log", "a", {"status": "failed", "try": 1})
    store.append("log", "b", {"status": "ok", "try": 1})
    store.append("log", "a", {"status": "ok", "try": 2})
    first = [(e["key"], e["try"]) for e in store.entries("log")]
    latest = [(e["key"], e["try"]) for e in store.entries("log", latest=True)]
    assert first == [("a", 1), ("b", 1)]
    assert latest == [("a", 2), ("b", 1)]  # in the order keys first appeared


def test_failed_sweep_cells_are_kept_on_resume_and_rerun_with_retry_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lab.determinism.sweep

    loads: list[str] = []

    def flaky_load(*args: Any) -> Backend:
        loads.append("load")
        if len(loads) == 1:  # the server went away the first time
            raise RuntimeError("connection refused")
        return SeededBackend()

    monkeypatch.setattr(lab.determinism.sweep, "load_backend", flaky_load)
    config, out = sweep_config(tmp_path), tmp_path / "run"
    run_sweep(config, out, progress=False)
    statuses = [e["status"] for e in RunStore(out).entries(CELLS, latest=True)]
    assert statuses == ["failed", "failed"]

    run_sweep(config, out, progress=False)  # a plain resume: nothing left to do
    assert loads == ["load"]

    run_sweep(config, out, progress=False, retry_failed=True)
    assert loads == ["load", "load"]
    latest = list(RunStore(out).entries(CELLS, latest=True))
    assert [e["status"] for e in latest] == ["ok", "ok"]
    assert len(RunStore(out).log_path(CELLS).read_text().splitlines()) == 4  # append-only

    run_sweep(config, out, progress=False, retry_failed=True)  # nothing failed: no engine
    assert loads == ["load", "load"]


def test_the_sweep_report_counts_a_retried_cell_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lab.determinism.sweep
    from lab.determinism.report import write_sweep_report

    attempts: list[int] = []

    def flaky_load(*args: Any) -> Backend:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("out of memory")
        return SeededBackend()

    monkeypatch.setattr(lab.determinism.sweep, "load_backend", flaky_load)
    config, out = sweep_config(tmp_path), tmp_path / "run"
    run_sweep(config, out, progress=False)
    run_sweep(config, out, progress=False, retry_failed=True)
    summary = write_sweep_report(out).summary
    assert summary["cells_ok"] == 2 and summary["cells_failed"] == 0


def test_a_resume_in_another_environment_is_recorded_and_announced(tmp_path: Path) -> None:
    said: list[str] = []
    RunStore.open(tmp_path / "run", {"x": 1}, environment=ENV, notify=said.append)
    RunStore.open(tmp_path / "run", {"x": 1}, environment=ENV, notify=said.append)
    assert said == [] and not (tmp_path / "run" / f"{ENVIRONMENTS}.jsonl").exists()

    upgraded = ENV | {"packages": {"torch": "2.14.0+cpu", "vllm": None}}
    store = RunStore.open(tmp_path / "run", {"x": 1}, environment=upgraded, notify=said.append)
    assert json.loads((store.path / "environment.json").read_text()) == ENV  # where it started
    sessions = list(store.entries(ENVIRONMENTS))
    assert [s["environment"]["packages"]["torch"] for s in sessions] == ["2.14.0+cpu"]
    assert len(said) == 1 and 'packages.torch: "2.13.0+cpu" -> "2.14.0+cpu"' in said[0]

    moved = upgraded | {"cpu_count": 16}
    RunStore.open(tmp_path / "run", {"x": 1}, environment=moved, notify=said.append)
    assert [s["key"] for s in store.entries(ENVIRONMENTS)] == ["resume-1", "resume-2"]
    assert "cpu_count: 2 -> 16" in said[1]


def test_temp_files_of_dead_writers_are_removed_on_open(tmp_path: Path) -> None:
    run = tmp_path / "run"
    RunStore.open(run, {"x": 1})
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    dead = int(finished.stdout)  # that process has exited: its pid names no live writer
    stale = [f".metrics.json.tmp-{dead}", ".samples.parquet.tmp", f".library.tmp-{dead}.yaml"]
    kept = [f".report.html.tmp-{os.getpid()}", ".keep", "notes.tmp"]
    for name in stale + kept:
        (run / name).write_text("partial")
    RunStore.open(run, {"x": 1})
    left = sorted(p.name for p in run.iterdir())
    assert not set(stale) & set(left)
    assert set(kept) <= set(left)  # a live writer's file and files that are not ours stay


def test_a_refused_resume_names_the_nested_setting_that_changed(tmp_path: Path) -> None:
    from lab.errors import LabError

    engine = {"backend": "vllm", "dtype": "float32", "max_num_seqs": 64, "prefix_caching": True}
    RunStore.open(tmp_path / "run", {"engine": engine, "k": 8})
    changed = {"engine": engine | {"max_num_seqs": 32}, "k": 8}
    with pytest.raises(LabError, match=r"\(engine\.max_num_seqs: 64 -> 32\); pass --fresh"):
        RunStore.open(tmp_path / "run", changed)
    # A setting the lab gained after the run began: at its null default the run resumes,
    # set to something it does not.
    RunStore.open(tmp_path / "run", {"engine": engine | {"base_url": None}, "k": 8})
    added = {"engine": engine | {"base_url": "http://127.0.0.1:8000"}, "k": 8}
    with pytest.raises(LabError, match=r"engine\.base_url: \(unset\) -> \"http"):
        RunStore.open(tmp_path / "run", added)


def test_the_environment_record_keeps_the_variables_the_process_started_with() -> None:
    # vLLM sets VLLM_* variables of its own on import (one differs in every process): taken
    # after an engine ran, the record would differ from one taken before, and every resume
    # would warn about an environment change that is no change.
    script = (
        "import os, json; import lab.envinfo as e; os.environ['VLLM_DIST_IDENT'] = 'x'; "
        "print(json.dumps(e.environment_record()['env']))"
    )
    env = dict(os.environ, VLLM_USER_CHOICE="1")
    env.pop("VLLM_DIST_IDENT", None)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, check=True).stdout  # fmt: skip
    recorded = json.loads(out)
    assert recorded.get("VLLM_USER_CHOICE") == "1" and "VLLM_DIST_IDENT" not in recorded
