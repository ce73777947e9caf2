"""The agent case format: tools, environment, max_turns and trajectory checks, validated with
one line naming the file, the line and the field (exit 2 from the CLI, nothing written); a case
round-trips through cases.json; the bundled agent cases load and their tools answer."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lab.cases import agenttools
from lab.cases.loaders import load_cases
from lab.cases.model import case_from_record, cases_fingerprint
from lab.errors import LabError
from tests.unit.agent_fakes import TOOLS_PY, tool

ADD = tool("add", a="number", b="number")
GOOD = {
    "id": "c", "prompt": "2+3?", "tools": [ADD], "environment": {"module": "tools.py"},
    "checks": [{"numeric": 5}, {"called": "add"}],
}  # fmt: skip


def write(tmp_path: Path, case: dict[str, object], extra_lines: int = 0) -> Path:
    (tmp_path / "tools.py").write_text(TOOLS_PY)
    path = tmp_path / "cases.yaml"
    path.write_text("\n" * extra_lines + yaml.safe_dump([case], sort_keys=False))
    return path


def field_line(path: Path, key: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if key in line)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"tools": 5}, "tools", "non-empty list"),
        ({"tools": [tool("bad name")]}, "tools[0].function.name", "letters, digits"),
        ({"tools": [ADD, ADD]}, "tools", "declared twice"),
        ({"environment": {"module": "../x.py"}}, "environment.module", "beside the case file"),
        ({"environment": {"module": "missing.py"}}, "environment.module", "no such file"),
        ({"environment": {"module": "tools.py", "responses": []}}, "environment", "exactly one"),
        ({"environment": {"responses": [{"call": {"name": "sub"}, "result": 1}]}},
         "environment.responses[0].call.name", "not a declared tool"),
        ({"max_turns": 0}, "max_turns", "from 1 to 64"),
        ({"checks": [{"called": "sub"}]}, "checks[0].called", "not a declared tool"),
        ({"checks": [{"max_calls": -1}]}, "checks[0].max_calls", ">= 0"),
        ({"checks": [{"state": {}}]}, "checks[0].state", "non-empty mapping"),
        ({"checks": [{"called": "add", "argumnets": {}}]}, "checks[0].argumnets", "no parameter"),
        ({"raw": True}, "raw", "agent case"),
    ],
)  # fmt: skip
def test_bad_agent_fields_name_file_line_and_field(
    tmp_path: Path, change: dict[str, object], field: str, message: str
) -> None:
    path = write(tmp_path, GOOD | change)
    top = field.split(".")[0].split("[")[0]
    line = field_line(path, top + ":")
    with pytest.raises(
        LabError, match=rf"cases.yaml:{line}: field '{re.escape(field)}': .*{message}"
    ):
        load_cases(path)


def test_trajectory_checks_need_tools(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="field 'checks\\[1\\]': belongs to an agent case"):
        load_cases(write(tmp_path, {"id": "c", "prompt": "x", "checks": [
            {"contains": "x"}, {"called": "add"}]}))  # fmt: skip


def test_round_trip_through_cases_json(tmp_path: Path) -> None:
    (case,) = load_cases(write(tmp_path, GOOD | {"checks": [{"called": "add"}, {"numeric": 5}]}))
    assert case.agent is not None and case.agent.environment.module_path == tmp_path / "tools.py"
    again = case_from_record(case.to_dict(), True, "cases.json[0]")
    assert again.to_dict() == case.to_dict()
    assert cases_fingerprint([again]) == cases_fingerprint([case])
    assert [c.type for c in again.checks] == ["numeric"] and again.agent is not None
    assert [c.type for c in again.agent.checks] == ["called"]


def test_cli_refuses_a_bad_agent_case_with_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD | {"checks": [{"not_called": "nope"}]})
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "lab.cli", "sample", "--cases", str(path), "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "field 'checks[0].not_called'" in lines[0]
    assert not out.exists()


def test_bundled_agent_cases_and_their_tools() -> None:
    cases = load_cases("bundled:agents")
    assert len(cases) >= 20 and all(c.agent is not None for c in cases)
    tags = {t for c in cases for t in c.tags}
    assert {"calculator", "units", "kv", "calendar", "catalogue"} <= tags
    assert agenttools.calculator("(15 + 27) * 3") == 126
    assert agenttools.convert_units(100, "C", "F") == 212
    assert agenttools.convert_units(3.5, "km", "m") == 3500
    state = {"kv": {"a": 1}}
    assert agenttools.kv_set("b", "x", state) == "ok" and state == {"kv": {"a": 1, "b": "x"}}
    with pytest.raises(KeyError):
        agenttools.kv_get("zzz", state)
    assert agenttools.calendar_find("dentist", {}) == ["2026-03-10: 10:00 dentist"]
    assert agenttools.catalogue_price("Office Chair", {}) == 149
    with pytest.raises(ValueError):
        agenttools.calculator("__import__('os')")
