"""Append-only run logs: resume after a kill, no duplicates, config mismatch refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import LabError
from lab.store import RunStore


def test_append_and_resume(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path / "run", {"a": 1})
    store.append("cells", "c1", {"value": 1})
    store.append("cells", "c2", {"value": 2})
    again = RunStore.open(tmp_path / "run", {"a": 1})
    assert again.done_keys("cells") == {"c1", "c2"}
    assert [e["value"] for e in again.entries("cells")] == [1, 2]


def test_partial_last_line_is_dropped_and_redone(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path / "run", {"a": 1})
    store.append("cells", "c1", {"value": 1})
    with open(store.log_path("cells"), "a") as fh:
        fh.write('{"key": "c2", "val')  # killed mid-write
    assert store.done_keys("cells") == {"c1"}
    store.append("cells", "c2", {"value": 2})
    assert [e["key"] for e in store.entries("cells")] == ["c1", "c2"]
    assert store.log_path("cells").read_text().count("\n") == 2


def test_duplicate_keys_count_once(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path / "run", {})
    store.append("cells", "c1", {"value": 1})
    store.append("cells", "c1", {"value": 9})
    assert [e["value"] for e in store.entries("cells")] == [1]


def test_other_config_is_refused_unless_fresh(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path / "run", {"a": 1})
    store.append("cells", "c1", {})
    with pytest.raises(LabError, match="different config"):
        RunStore.open(tmp_path / "run", {"a": 2})
    fresh = RunStore.open(tmp_path / "run", {"a": 2}, fresh=True)
    assert fresh.done_keys("cells") == set()


def test_corrupt_middle_line_names_file_and_line(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path / "run", {})
    store.append("cells", "c1", {})
    with open(store.log_path("cells"), "a") as fh:
        fh.write("garbage\n")
    with pytest.raises(LabError, match=r"cells.jsonl:2"):
        list(store.entries("cells"))
