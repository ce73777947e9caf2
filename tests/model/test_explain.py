"""`lab explain` on the bundled model (hf backend, CPU): a 2-cell sweep made by `lab sweep`
(fp32 vs bf16, where SmolLM2's Feynman answer parts at a near-tie), explained: the dtype toggle
is the one that moves the token and the one labelled, the batch and batch-invariant toggles
replay without moving it; the prompt that does not part is "no divergence" (the negative
control); two `lab sample` runs are paired by sample index. In-process (click's runner), so
the engines load once for the sweep and the replays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lab.cli import cli

pytestmark = pytest.mark.model

FEYNMAN = "Tell me about Richard Feynman."
SWEEP = f"""
name: explain-test
mode: single
prompts:
  - id: france
    messages: [{{role: user, content: "What is the capital of France? Answer in one word."}}]
  - id: feynman
    messages: [{{role: user, content: "{FEYNMAN}"}}]
sampling: {{max_tokens: 12, logprobs: 2}}
axes:
  backend: [hf]
  dtype: [fp32, bf16]
device: cpu
"""


def lab(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("explain")
    (root / "sweep.yaml").write_text(SWEEP)
    lab("sweep", str(root / "sweep.yaml"), "--out", str(root / "run"), "--no-progress")
    return root / "run"


def test_the_dtype_toggle_moves_the_token_and_is_labelled(sweep: Path) -> None:
    out = lab("explain", str(sweep))
    result = json.loads((sweep / "explain-feynman" / "explain.json").read_text())
    assert result["case"] == "feynman" and result["label"] == "dtype", out
    assert "label: dtype" in out
    at = result["recorded"]["first_divergence"]
    assert result["noise"]["moved"] is False  # A replayed in its batch: the record again
    rows = {t["axis"]: t for t in result["toggles"]}
    assert rows["dtype"]["moved"] and rows["dtype"]["first_divergence"] == at
    assert rows["dtype"]["tokens"][1] == result["recorded"]["tokens"][1]  # B's token again
    for axis in ("batch_size", "batch_invariant"):  # replayed, and they move nothing here
        assert rows[axis]["skipped"] is None and rows[axis]["moved"] is False, rows[axis]
    assert rows["prefix_caching"]["skipped"].startswith("the hf backend has no prefix cache")
    # explain rewrote the sweep's report: the table beside the attribution table
    assert "Explained divergences" in (sweep / "report.md").read_text()
    html = (sweep / "report.html").read_text()
    assert "Explained divergences" in html and "<td>dtype</td>" in html


def test_a_prompt_that_does_not_part_is_no_divergence(sweep: Path) -> None:
    out = lab("explain", str(sweep), "france", "--cell-a", "dtype=fp32", "--cell-b", "dtype=bf16")
    assert out.startswith("no divergence:"), out
    assert not (sweep / "explain-france").exists()


CASES = f"- id: feynman\n  prompt: {FEYNMAN}\n  checks: [{{contains: physicist}}]\n"


def test_two_sample_runs_are_explained_sample_by_sample(tmp_path: Path) -> None:
    (tmp_path / "cases.yaml").write_text(CASES)
    runs = []
    for dtype in ("fp32", "bf16"):
        config = tmp_path / f"{dtype}.yaml"
        config.write_text(
            "cases: cases.yaml\nbackend: hf\nk: 1\nmax_tokens: 12\ntemperature: 0\ndevice: cpu\n"
            f"dtype: {dtype}\nlogprobs: 2\nembed_device: cpu\nbootstrap_samples: 20\n"
        )
        lab("sample", str(config), "--out", str(tmp_path / dtype))
        runs.append(str(tmp_path / dtype))
    out = lab("explain", *runs, "feynman")
    result = json.loads((tmp_path / "fp32" / "explain-feynman" / "explain.json").read_text())
    assert result["kind"] == "sample" and result["names"][0].endswith("sample 0")
    assert result["label"] == "dtype", out
