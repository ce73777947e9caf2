"""A real sweep on the default model on the CPU: completes and survives a kill. (Failed cells:
tests/unit/test_resume_records.py; an hf cell with TP > 1 is refused at load: test_tp_vllm.py.)"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.determinism.config import load_sweep_config
from lab.determinism.grid import expand
from lab.determinism.report import write_sweep_report
from lab.determinism.sweep import run_sweep
from lab.rundir import CELLS

pytestmark = pytest.mark.model

CONFIG = """
name: test-sweep
mode: single
prompts:
  - id: france
    messages: [{role: user, content: "What is the capital of France? Answer in one word."}]
    expected: paris
    answer_regex: "(Paris)"
  - id: feynman
    messages: [{role: user, content: "Tell me about Richard Feynman."}]
sampling: {max_tokens: 8, logprobs: 2}
axes:
  backend: [hf]
  dtype: [fp32, bf16]
  batch_size: [1, 3]
"""


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(CONFIG)
    return path


def test_sweep_resumes_after_kill_without_duplicates(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    out = tmp_path / "run"
    # Run the CLI in a child process and kill it hard once the first cell is on disk.
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab.cli",
            "sweep",
            str(config_path),
            "--out",
            str(out),
            "--no-progress",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = out / f"{CELLS}.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None:
        if log.exists() and log.read_text().count("\n") >= 1:
            break
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    before = log.read_text().count("\n")
    assert 1 <= before < 4, "the kill should land mid-sweep"

    config = load_sweep_config(config_path)
    store = run_sweep(config, out, progress=False)
    entries = list(store.entries(CELLS))
    keys = [json.loads(line)["key"] for line in log.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == len(expand(config)) == 4

    ok = [e for e in entries if e["status"] == "ok"]
    assert len(ok) == 4
    assert all(set(e["outputs"]) == {"france", "feynman"} for e in ok)
    assert all(e["engine"]["dtype"] in ("float32", "bfloat16") for e in ok)
    assert all("Paris" in e["outputs"]["france"]["text"] for e in ok)

    # Running again does nothing new.
    run_sweep(config, out, progress=False)
    assert log.read_text().count("\n") == 4

    written = write_sweep_report(out)
    metrics = json.loads(written.metrics_path.read_text())
    assert metrics == written.metrics  # the object holds what the file does
    assert metrics["summary"]["cells_failed"] == 0
    assert metrics["summary"]["accuracy_mean"] == 1.0
    axes = {row["axis"] for row in metrics["attribution"]}
    assert {"dtype", "batch_size"} <= axes
    html = written.html.read_text()
    assert "<script" not in html and "Attribution" in html
