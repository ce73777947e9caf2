"""Two real sweeps of SmolLM2 (hf fp32, three prompts alone and in a batch of 3, greedy, top-2
logprobs kept: one engine for every cell), read through the CLI: `lab fragility` on a sweep
and `lab compare` of two sweeps.

The second sweep is the same configuration run again into another directory: on the CPU the
hf engine is deterministic, so it must agree with the first token for token. The negative
control is a copy of the first sweep with one output's last token changed: the comparison
must find exactly that cell and prompt, and fragility must call that prompt diverged. The
expected labels and gaps are recomputed here from cells.jsonl.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from lab.determinism.config import parse_sweep_config
from lab.determinism.sweep import run_sweep
from tests.unit.test_cli import run_lab

pytestmark = pytest.mark.model

CONFIG: dict[str, Any] = {
    "name": "alone-and-batched",
    "mode": "single",
    "prompts": [
        {"id": pid, "messages": [{"role": "user", "content": text}]}
        for pid, text in (
            ("france", "What is the capital of France?"),
            ("feynman", "Tell me about Richard Feynman."),
            ("add", "What is 2 + 2?"),
        )
    ],
    "sampling": {"max_tokens": 8, "temperature": 0.0, "logprobs": 2},
    "axes": {"backend": ["hf"], "dtype": ["fp32"], "batch_size": [1, 3]},
}  # fmt: skip
PROMPTS = ["france", "feynman", "add"]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sweeps")
    for name in ("first", "again"):
        run_sweep(parse_sweep_config(CONFIG), root / name, progress=False)
    edited = root / "edited"
    shutil.copytree(root / "first", edited)
    cells = [json.loads(line) for line in (edited / "cells.jsonl").read_text().splitlines()]
    for entry in cells:
        if entry["cell"]["batch_size"] == 3:  # france's last token in the batch moved by one id
            tokens = entry["outputs"]["france"]["output_token_ids"]
            tokens[-1] = tokens[-1] + 1
    (edited / "cells.jsonl").write_text("".join(json.dumps(e) + "\n" for e in cells))
    return {"first": root / "first", "again": root / "again", "edited": edited}


def outputs(sweep: Path) -> dict[int, dict[str, Any]]:
    """batch size -> prompt id -> stored output record, from cells.jsonl (every cell ok)."""
    got = {}
    for line in (sweep / "cells.jsonl").read_text().splitlines():
        entry = json.loads(line)
        assert entry["status"] == "ok", entry.get("error")
        got[entry["cell"]["batch_size"]] = entry["outputs"]
    assert set(got) == {1, 3}
    return got


def fragility(sweep: Path, out: Path) -> dict[str, Any]:
    result = run_lab("fragility", str(sweep), "--thresholds", "0.5", "--json-out", str(out))
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(out.read_text())
    return report


@pytest.mark.parametrize("name", ["first", "edited"])
def test_fragility_on_a_sweep_labels_what_diverged(
    sweeps: dict[str, Path], tmp_path: Path, name: str
) -> None:
    stored = outputs(sweeps[name])
    report = fragility(sweeps[name], tmp_path / "f.json")
    assert report["kind"] == "sweep" and "batch_size=1" in report["scored"]
    by_prompt = {p["prompt"]: p for p in report["prompts"]}
    assert set(by_prompt) == set(PROMPTS)
    for pid in PROMPTS:
        ref, other = stored[1][pid], stored[3][pid]
        gaps = [top[0]["logprob"] - top[1]["logprob"] for top in ref["top_logprobs"]]
        p = by_prompt[pid]
        assert p["min_gap"] == pytest.approx(min(gaps))  # the reference (alone) path scored
        assert p["outputs_compared"] == 1
        assert p["diverged"] is (ref["output_token_ids"] != other["output_token_ids"])
    if name == "edited":  # the changed token is the one fragility finds
        france = by_prompt["france"]
        assert france["diverged"] is True
        assert france["first_divergence"] <= len(stored[1]["france"]["output_token_ids"]) - 1


def compare(a: Path, b: Path, out: Path) -> dict[str, Any]:
    result = run_lab("compare", str(a), str(b), "--out", str(out))
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads((out / "comparison.json").read_text())
    assert report["kind"] == "sweep"
    return report


def test_a_sweep_run_again_agrees_with_itself(sweeps: dict[str, Path], tmp_path: Path) -> None:
    first, again = outputs(sweeps["first"]), outputs(sweeps["again"])
    for size in first:  # the CPU hf engine is deterministic: the same tokens, the same numbers
        for pid in PROMPTS:
            a, b = first[size][pid], again[size][pid]
            assert a["output_token_ids"] == b["output_token_ids"], (size, pid)
            assert a["token_logprobs"] == b["token_logprobs"], (size, pid)
    report = compare(sweeps["first"], sweeps["again"], tmp_path / "cmp")
    summary = report["summary"]
    assert summary["cells_shared"] == 2 and summary["targets_compared"] == len(PROMPTS)
    assert summary["targets_changed"] == 0 and summary["cells_agreement_changed"] == 0
    assert summary["cell_targets_different_tokens"] == 0 and report["cells"] == []
    assert report["verdict"].startswith("again agrees with itself exactly as first does")


def test_negative_control_one_changed_token_is_found(
    sweeps: dict[str, Path], tmp_path: Path
) -> None:
    report = compare(sweeps["first"], sweeps["edited"], tmp_path / "cmp")
    assert report["summary"]["cell_targets_different_tokens"] == 1
    [cell] = report["cells"]
    assert cell["target"] == "france" and "batch_size=3" in cell["cell"]
    assert cell["same_tokens_across_sweeps"] is False
    tokens = outputs(sweeps["first"])[3]["france"]["output_token_ids"]
    assert cell["first_divergence_across_sweeps"] == len(tokens) - 1
    # a sweep and a sample run do not compare: one line, exit 2
    bad = run_lab("compare", str(sweeps["first"]), str(tmp_path), "--out", str(tmp_path / "x"))
    assert bad.returncode == 2
    [line] = bad.stderr.strip().splitlines()
    assert line.startswith(f"error: {tmp_path}: ")
