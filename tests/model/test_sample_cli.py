"""`lab sample` end to end in a subprocess: the summary on stdout, exit 1 on a gate miss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_cli import run_lab

pytestmark = pytest.mark.model


def test_sample_cli_gate_fails_with_exit_1(tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "- id: france\n"
        "  prompt: What is the capital of France? Answer in one word.\n"
        "  checks: [{contains: Paris}]\n"
        "  tags: [facts]\n"
    )
    config = tmp_path / "sample.yaml"
    config.write_text(
        "cases: cases.yaml\nbackend: hf\nk: 2\nmax_tokens: 6\ndevice: cpu\nembed_device: cpu\n"
        "bootstrap_samples: 50\n"
    )
    out = run_lab(
        "sample",
        str(config),
        "--out",
        str(tmp_path / "run"),
        "--gate",
        "min_mean=1.01",
        "--price-in",
        "0.1",
        "--price-out",
        "0.4",
    )
    assert out.returncode == 1, out.stderr
    assert "# n-of-k variance: 1 cases x k=2" in out.stdout
    assert "gate failed: mean success" in out.stderr
    assert "sampled 2/2" in out.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["cost"]["price"] > 0
    # The same run, re-gated without sampling: a reachable threshold passes.
    again = run_lab("sample-report", str(tmp_path / "run"), "--gate", "min_mean=0")
    assert again.returncode == 0, again.stderr
    assert "PASSED" in again.stdout
