"""`lab compare` over two determinism sweeps written in the real layout (cells.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.commands.comparison import run_compare
from lab.comparison.sweeps import compare_sweeps
from lab.determinism.config import AXES, DEFAULT_AXES
from lab.determinism.grid import Cell
from lab.store import RunStore

BASE_AXES: dict[str, Any] = {
    "backend": "vllm",
    "model": "smollm2-135m-instruct",
    "dtype": "float32",
    "tensor_parallel_size": 1,
    "batch_invariant": False,
    "prefix_caching": False,
    "enforce_eager": True,
    "attention_backend": None,
    "max_num_seqs": 256,
    "batch_size": 1,
    "seed": 0,
    "order": "fixed",
}
SAME = {"p1": [5, 6, 7, 8, 9], "p2": [10, 11, 12, 13, 14]}


def generation(target: str, tokens: list[int], text: str) -> dict[str, Any]:
    return {
        "request_id": target,
        "sample_index": 0,
        "seed": 0,
        "backend": "vllm",
        "prompt_token_ids": [1, 2],
        "output_token_ids": tokens,
        "token_logprobs": [-0.1] * len(tokens),
        "top_logprobs": [[] for _ in tokens],
        "text": text,
        "finish_reason": "stop",
        "timings": {},
        "error": None,
    }


def make_sweep(root: Path, outputs_by_batch: dict[int, dict[str, list[int]]]) -> Path:
    # Axes this test does not name (added to the lab later) keep their defaults.
    axes = {name: [BASE_AXES.get(name, DEFAULT_AXES.get(name, [None])[0])] for name in AXES}
    axes["batch_size"] = sorted(outputs_by_batch)
    config = {
        "axes": axes,
        "mode": "single",
        "prompts": [{"id": "p1", "prompt": "x"}, {"id": "p2", "prompt": "y"}],
        "answer_regex": None,
    }
    store = RunStore.open(root, {"axes": axes})
    store.write_json("sweep_config.json", config)
    for batch, outputs in outputs_by_batch.items():
        cell_axes = {name: values[0] for name, values in axes.items()} | {"batch_size": batch}
        cell = Cell(tuple((k, cell_axes[k]) for k in AXES), 0)
        store.append(
            "cells",
            cell.key(),
            {
                "status": "ok",
                "error": None,
                "cell": cell_axes,
                "repeat": 0,
                "engine": {},
                "sampling": {},
                "timings": {},
                "outputs": {
                    t: generation(t, toks, "answer " + " ".join(map(str, toks)))
                    for t, toks in outputs.items()
                },
            },
        )
    return root


def test_changed_cell_agreement_is_reported(tmp_path: Path) -> None:
    before = make_sweep(tmp_path / "before", {1: SAME, 8: SAME})
    changed = {"p1": SAME["p1"], "p2": [10, 11, 12, 99, 98]}  # diverges at token 3
    after = make_sweep(tmp_path / "after", {1: SAME, 8: changed})
    result = compare_sweeps(before, after)
    summary = result["summary"]
    assert summary["a_TARr"] == 1.0 and summary["b_TARr"] == 0.5
    assert summary["targets_changed"] == 1 and summary["cells_agreement_changed"] == 1
    (cell,) = result["cells"]
    assert cell["cell"] == "batch_size=8" and cell["target"] == "p2"
    assert cell["a"]["differs_from_reference"] == 0 and cell["b"]["differs_from_reference"] == 1
    assert cell["b"]["first_divergence"] == 3
    assert cell["same_tokens_across_sweeps"] is False
    assert cell["first_divergence_across_sweeps"] == 3
    targets = {t["target"]: t for t in result["targets"]}
    assert targets["p2"]["a_unique"] == 1 and targets["p2"]["b_unique"] == 2
    assert targets["p1"]["changed"] is False
    assert "agreement changed in 1 cell(s)" in result["verdict"]


def test_identical_sweeps_and_cli_artifacts(tmp_path: Path) -> None:
    a = make_sweep(tmp_path / "a", {1: SAME, 4: SAME})
    b = make_sweep(tmp_path / "b", {1: SAME, 4: SAME, 16: SAME})
    written, markdown = run_compare([str(a), str(b)], tmp_path / "cmp", False, 0.05, 0, 10)
    result = json.loads(written["json"].read_text())
    assert result["kind"] == "sweep" and result["cells"] == []
    assert result["cells_only_in_b"] == ["batch_size=16"]
    assert "agrees with itself exactly as a does" in markdown
    assert written["html"].read_text().startswith("<!doctype html>")
