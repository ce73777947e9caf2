"""Agent trajectories for real: the bundled SmolLM2 (no tool template: the lab's text protocol)
through hf and vLLM on three bundled agent cases with k=4. Every step carries its tokens and
logprobs and the seed its turn gets; the tools answered from the bundled environment; the
report shows every case; a run stopped after its first engine call and resumed equals the
uninterrupted one, step for step (the continued turns go out in the same batch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lab import rundir
from lab.agents.runner import run_agents
from lab.agents.trajectory import turn_seed
from lab.backends import Backend
from lab.cases.agenttools import calculator
from lab.variance.config import SampleConfig

pytestmark = pytest.mark.model

K = 4
ORDER = ["calc-mul", "calc-add", "calc-sub"]  # the first three bundled agent cases
CASES = len(ORDER)


def config_for(out: Path, backend: str) -> SampleConfig:
    return SampleConfig(
        cases="bundled:agents", limit=CASES, k=K, backend=backend, max_tokens=40,
        max_turns=3, temperature=0.7, seed=3, out=str(out), bootstrap_samples=100,
    )  # fmt: skip


def trajectories(out: Path) -> dict[str, dict[str, Any]]:
    """Finished trajectories by key, timings dropped (wall clock differs between runs)."""
    got = {}
    for entry in rundir.read_trajectories(out):
        for step in entry["steps"]:
            step.pop("timings")
        got[entry["key"]] = entry
    return got


def test_agent_run_then_a_stopped_and_resumed_run(backend: Backend, tmp_path: Path) -> None:
    name = backend.config.backend
    whole = run_agents(config_for(tmp_path / "whole", name), backend=backend, emit=lambda m: None)
    assert whole.complete and whole.sampled_cases == CASES
    got = trajectories(whole.path)
    assert len(got) == CASES * K
    lines = (whole.path / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == CASES * K  # exactly once each
    case_ids = sorted({key.split("/")[0] for key in got})
    assert case_ids == sorted(ORDER)
    calls = 0
    for key, entry in got.items():
        case_id, sample = key.split("/")
        steps = entry["steps"]
        assert 1 <= len(steps) <= 3 and entry["protocol"] == "text"
        assert entry["outcome"] in ("answer", "max_turns")
        for turn, step in enumerate(steps):
            assert step["turn"] == turn and step["kind"] in ("call", "answer", "malformed")
            assert step["seed"] == turn_seed(3, ORDER.index(case_id), K, int(sample), turn)
            assert len(step["output_token_ids"]) == len(step["token_logprobs"]) > 0
            assert all(lp <= 0 for lp in step["token_logprobs"])
            for call in step["calls"]:  # answered by the bundled environment, not by the model
                calls += 1
                if call["name"] == "calculator" and call["error"] is None:
                    assert call["result"] == calculator(**call["arguments"])
        if entry["outcome"] == "answer":
            assert steps[-1]["kind"] == "answer" and entry["final_answer"] is not None
    metrics = json.loads((whole.path / "metrics.json").read_text())
    agent = metrics["agent"]
    assert sum(agent["outcomes"].values()) == CASES * K
    for case in metrics["cases"]:
        assert 1 <= case["agent"]["distinct_sequences"] <= K
    page = (whole.path / "report.html").read_text()
    assert all(case_id in page for case_id in case_ids)
    assert calls > 0, "the model never called a tool: the text protocol reached it not at all"

    cut = config_for(tmp_path / "cut", name)
    first = run_agents(cut, backend=backend, emit=lambda m: None, stop_after_calls=1)
    assert not first.complete
    assert run_agents(cut, backend=backend, emit=lambda m: None).complete
    assert trajectories(tmp_path / "cut") == got
