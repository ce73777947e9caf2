"""`lab report RUN_DIR` reports sweeps; on another kind of run it names the command that
reports that run (no model: synthetic runs in the real layout), and writes nothing there.

    .venv/bin/python -m pytest -q tests/unit/test_report_kinds.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from lab.cli import cli
from lab.errors import LabError
from lab.store import prepare_run_dir
from tests.unit.comparison_runs import make_run
from tests.unit.test_fragility import _sweep_dir


def report(run: Path) -> tuple[int, BaseException | None, str]:
    result = CliRunner().invoke(cli, ["report", str(run)])
    return result.exit_code, result.exception, result.output


def test_report_on_a_sample_run_points_to_sample_report(tmp_path: Path) -> None:
    run = make_run(tmp_path, "basic", np.array([[True, False], [True, True]]))
    before = sorted(p.name for p in run.iterdir())
    code, error, _ = report(run)
    assert code != 0 and isinstance(error, LabError)
    assert f"`lab sample-report {run}`" in str(error) and "not a sweep" in str(error)
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written or removed


def test_report_on_a_quickstart_or_load_run_names_their_commands(tmp_path: Path) -> None:
    prepare_run_dir(tmp_path / "qs", "quickstart", False)
    (tmp_path / "qs" / "index.html").write_text("<html></html>")
    _, error, _ = report(tmp_path / "qs")
    assert isinstance(error, LabError)
    assert f"lab report {tmp_path / 'qs'}/sweep" in str(error)
    assert f"lab sample-report {tmp_path / 'qs'}/variance" in str(error)
    prepare_run_dir(tmp_path / "load", "load", False)
    _, error, _ = report(tmp_path / "load")
    assert isinstance(error, LabError) and "a load test" in str(error)


def test_report_on_a_sweep_still_writes_its_report(tmp_path: Path) -> None:
    """Control: a sweep run is reported as before."""
    run = _sweep_dir(tmp_path)
    code, error, output = report(run)
    assert code == 0, (error, output)
    assert (run / "report.html").is_file() and f"report: {run / 'report.html'}" in output
