"""`lab sample` / `lab sample-report` input errors: exit 2 with one line, before any engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_cli import run_lab


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sample", "--cases", "missing.jsonl"], "missing.jsonl: no such case file"),
        (["sample", "--cases", "bundled:nope"], "no bundled case set 'nope'"),
        (["sample", "--gate", "min_median=1"], "unknown threshold 'min_median'"),
        (["sample", "--gate", "min_p5"], "expected NAME=VALUE"),
        (["sample", "--k", "0"], "k must be >= 1"),
        (["sample", "missing-config.yaml"], "cannot read"),
    ],
)
def test_bad_sample_input_exits_2(args: list[str], message: str) -> None:
    out = run_lab(*args)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], out.stderr


def test_bad_case_file_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text('{"id": "a", "prompt": "hi", "checks": [{"regex": "("}]}\n')
    out = run_lab("sample", "--cases", str(path), "--out", str(tmp_path / "run"))
    assert out.returncode == 2
    assert f"error: {path}:1: field 'checks[0].pattern': invalid regex" in out.stderr


def test_sample_report_needs_a_run_directory(tmp_path: Path) -> None:
    out = run_lab("sample-report", str(tmp_path))
    assert out.returncode == 2
    assert "not a sample run directory" in out.stderr
