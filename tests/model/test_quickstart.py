"""`lab quickstart` on the real model (hf, tiny settings): both steps, index.html, resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.quickstart import run_quickstart

pytestmark = pytest.mark.model


def test_quickstart_writes_both_reports_and_resumes(tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "- id: france\n"
        "  prompt: What is the capital of France? Answer in one word.\n"
        "  checks: [{contains: Paris}]\n"
        "- id: sum\n"
        "  prompt: What is 2 + 2? Reply with the number only.\n"
        "  checks: [{numeric: 4}]\n"
    )
    out = tmp_path / "qs"
    lines: list[str] = []
    result = run_quickstart(
        out, k=2, backend="hf", cases=str(cases), max_tokens=12, progress=False,
        emit=lines.append,
    )  # fmt: skip
    assert result.index == out / "index.html"
    assert result.sweep_summary["cells_total"] == 4  # fp32/bf16 x batch 8/16
    assert result.sweep_summary["cells_ok"] == 4
    assert result.sweep_summary["targets"] == 8
    import pyarrow.parquet as pq

    # the headline is the samples' own pass rate (a range check could never fail)
    passed = pq.read_table(out / "variance/samples.parquet").column("passed").to_pylist()
    assert len(passed) == 4 and result.headline["mean"] == pytest.approx(sum(passed) / 4)
    # step 2: with the batch-invariant kernels on, batch 16 vs 8 moves no logprob at all
    on = result.kernels[True]
    assert on["cells_ok"] == 2 and on["targets"] == 8
    assert on["outputs_with_logprob_differences"] == 0 and on["max_abs_logprob_delta"] == 0.0
    assert result.kernels[False]["cells_ok"] == 2
    for path in (result.sweep_report, result.sample_report, out / "variance/samples.parquet"):
        assert path.is_file(), path
    page = result.index.read_text()
    assert 'href="sweep/report.html"' in page and 'href="variance/report.html"' in page
    assert "2 cases x k=2" in page and "TARr@N" in page and "kernels on" in page
    # the variance decomposition (or why it is undefined) and the confidently-wrong counts
    assert "within-case (sampling) share" in page or "decomposition undefined" in page
    assert "consistent-wrong" in page
    assert any(line.startswith("axis dtype:") for line in lines)
    # lab fragility on the quickstart sweep: every prompt ranked, the prediction measured
    from lab.determinism.fragility import analyze, load_source

    fragility = analyze(load_source(out / "sweep"))
    assert fragility.kind == "sweep" and len(fragility.prompts) == 8
    assert fragility.prediction is not None and fragility.prediction["prompts"] == 8

    again: list[str] = []
    run_quickstart(
        out, k=2, backend="hf", cases=str(cases), max_tokens=12, progress=False,
        emit=again.append,
    )  # fmt: skip
    assert any("already sampled" in line for line in again)  # resumed, nothing regenerated
