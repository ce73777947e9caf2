"""`lab quickstart` reads its case source once (no model): it parses and checks the cases
before step 1 (a refused python check fails in seconds, not after two sweeps) and hands the
parsed cases to step 3, whose run_sample then samples them without reading the file again
(run_sample's `cases`: tests/model/test_sample_parse_once.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import lab.cases.loaders
import lab.quickstart
from lab.cli import cli
from lab.errors import LabError


def test_quickstart_parses_its_cases_once_and_hands_them_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text("- id: sum\n  prompt: What is 2 + 2?\n  checks: [{numeric: 4}]\n")
    parses: list[str] = []
    load = lab.cases.loaders.load_cases

    def counted(source: Any, *args: Any, **kwargs: Any) -> Any:
        parses.append(str(source))
        return load(source, *args, **kwargs)

    monkeypatch.setattr(lab.cases.loaders, "load_cases", counted)
    given: dict[str, Any] = {}

    def fake_quickstart(**kwargs: Any) -> Any:  # the steps need engines: only what it is given
        given.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(lab.quickstart, "run_quickstart", fake_quickstart)
    args = ["quickstart", "--cases", str(cases), "--out", str(tmp_path / "qs"), "--backend", "hf"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (result.exception, result.output)
    assert parses == [str(cases)]
    assert [c.id for c in given["parsed_cases"]] == ["sum"] and given["cases"] == str(cases)


def test_a_refused_check_stops_the_quickstart_before_step_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control: the parse before step 1 is the one that checks (a LabError: `lab` exits 2 with
    its line; nothing started)."""
    cases = tmp_path / "cases.yaml"
    cases.write_text("- id: x\n  prompt: hi\n  checks: [{python: 'os:getcwd'}]\n")
    started: list[bool] = []
    monkeypatch.setattr(lab.quickstart, "run_quickstart", lambda **kw: started.append(True))
    args = ["quickstart", "--cases", str(cases), "--out", str(tmp_path / "qs"), "--backend", "hf"]
    result = CliRunner().invoke(cli, args)
    assert isinstance(result.exception, LabError) and started == []
    assert "field 'checks[0].function'" in str(result.exception)
