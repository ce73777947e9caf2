"""An agent sweep for real: the bundled SmolLM2 through transformers, two bundled agent cases,
two cells (batch size 1 and 2), 12 tokens a turn, 2 turns. Every cell holds both trajectories
with their tokens, logprobs and top-2 alternatives; the report's verdict (identical, or where
they part) agrees with the recorded tokens, checked here independently."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lab.agents.sweep import run_agent_sweep
from lab.agents.sweepreport import write_agent_sweep_report
from lab.determinism.config import load_sweep_config

pytestmark = pytest.mark.model

CONFIG = """
name: agent-sweep-model
cases: bundled:agents
agent: {case_ids: [calc-add, kv-read-city], max_turns: 2, tool_protocol: text}
sampling: {max_tokens: 12, logprobs: 2}
axes: {backend: [hf], batch_size: [1, 2]}
device: cpu
"""


def test_a_real_agent_sweep_of_two_cells(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(CONFIG)
    out = tmp_path / "run"
    run_agent_sweep(load_sweep_config(path), out, progress=False)
    entries = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    assert [e["status"] for e in entries] == ["ok", "ok"], [e.get("error") for e in entries]
    assert [e["cell"]["batch_size"] for e in entries] == [1, 2]
    for entry in entries:
        assert entry["protocol"] == "text" and entry["engine"]["backend"] == "hf"
        assert set(entry["trajectories"]) == {"calc-add", "kv-read-city"}
        for traj in entry["trajectories"].values():
            assert 1 <= len(traj["steps"]) <= 2
            for step in traj["steps"]:
                n = len(step["output_token_ids"])
                assert 1 <= n <= 12 and len(step["token_logprobs"]) == n
                assert all(math.isfinite(x) and x <= 0 for x in step["token_logprobs"])
                assert all(len(top) == 2 for top in step["top_logprobs"])
                assert step["seed"] is not None and step["prompt_tokens"] > 50
    metrics = write_agent_sweep_report(out).metrics
    other = next(c for c in metrics["cells"] if not c["reference"])
    assert other["compared"] == 2
    alone, batched = (e["trajectories"] for e in entries)
    for case, row in other["cases"].items():
        a = [s["output_token_ids"] for s in alone[case]["steps"]]
        b = [s["output_token_ids"] for s in batched[case]["steps"]]
        assert row["same"] == (a == b)
        if not row["same"]:  # the report names the first token where they differ
            step, token = row["step"] - 1, row["token"]
            assert a[:step] == b[:step]
            if step < min(len(a), len(b)):
                assert a[step][:token] == b[step][:token] and a[step] != b[step]
    assert (out / "report.html").is_file()
