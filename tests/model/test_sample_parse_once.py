"""`lab sample` (in process, the real model through hf) parses its case file once - the
agent-or-not test, the run and its report share the parsed cases - and prints the summary
from the metrics in memory: exactly the summary.md it wrote, nothing read back from disk."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import lab.agents.runner
import lab.cases.loaders
import lab.variance.report
import lab.variance.runner
from lab.cli import cli

pytestmark = pytest.mark.model


def count_calls(monkeypatch: pytest.MonkeyPatch, calls: Counter[str]) -> None:
    """Count the case parses (load_cases: the case file; read_cases: a run's cases.json)
    wherever they are called from."""
    load, read = lab.cases.loaders.load_cases, lab.variance.report.read_cases

    def counted_load(*args: Any, **kwargs: Any) -> Any:
        calls["load_cases"] += 1
        return load(*args, **kwargs)

    def counted_read(*args: Any, **kwargs: Any) -> Any:
        calls["read_cases"] += 1
        return read(*args, **kwargs)

    for module in (lab.cases.loaders, lab.variance.runner, lab.agents.runner):
        monkeypatch.setattr(module, "load_cases", counted_load)
    monkeypatch.setattr(lab.variance.report, "read_cases", counted_read)


def test_sample_parses_the_cases_once_and_prints_the_summary_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "- id: sum\n  prompt: What is 2 + 2? Reply with the number only.\n"
        "  checks: [{numeric: 4}]\n"
    )
    run = tmp_path / "run"
    calls: Counter[str] = Counter()
    count_calls(monkeypatch, calls)
    args = ["sample", "--cases", str(cases), "--backend", "hf", "--k", "2", "--max-tokens", "4",
            "--device", "cpu", "--out", str(run)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (result.exception, result.output)
    assert calls == {"load_cases": 1}
    summary = (run / "summary.md").read_text()
    assert summary.startswith("# n-of-k variance: 1 cases x k=2")
    assert result.stdout == summary + "\n"

    # control: sample-report holds no parsed cases, so it reads the run's cases.json, once
    calls.clear()
    again = CliRunner().invoke(cli, ["sample-report", str(run), "--gate", "min_mean=0"])
    assert again.exit_code == 0, (again.exception, again.output)
    assert calls == {"read_cases": 1}
    assert again.stdout == (run / "summary.md").read_text() + "\n"
