"""The one answer normalization (lab.cases.checks.normalize_answer) leaves the quickstart
sweep's results as they were under the sweep's former rule (whitespace collapsed, lower-case,
trailing punctuation stripped): metrics.json byte for byte, on the real model's outputs of the
quickstart prompts (hf, fp32 vs bf16, one batch size, 8 tokens)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

import lab.determinism.metrics as metrics
from lab.determinism.config import parse_sweep_config
from lab.determinism.report import write_sweep_report
from lab.determinism.sweep import run_sweep
from lab.quickstart import sweep_spec

pytestmark = pytest.mark.model


def former_rule(text: str) -> str:
    """lab.determinism.metrics's own normalize_answer before there was one rule."""
    return re.sub(r"\s+", " ", text).strip().lower().rstrip(".!?;:, ")


def test_quickstart_sweep_metrics_unchanged_by_the_one_answer_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = sweep_spec("hf", 8)
    spec["axes"] = {"backend": ["hf"], "dtype": ["fp32", "bf16"], "batch_size": [8]}
    out = tmp_path / "sweep"
    run_sweep(parse_sweep_config(spec, "quickstart"), out, progress=False)

    def metrics_bytes() -> bytes:
        return write_sweep_report(out, with_tokenizer=False).metrics_path.read_bytes()

    now = metrics_bytes()
    summary = json.loads(now)["summary"]
    assert summary["cells_ok"] == 2 and summary["targets"] == 8
    monkeypatch.setattr(metrics, "normalize_answer", former_rule)
    assert metrics_bytes() == now
    # negative control: a rule that does change the answers changes the bytes
    counter = itertools.count()
    monkeypatch.setattr(metrics, "normalize_answer", lambda text: str(next(counter)))
    assert metrics_bytes() != now
