"""lab bench agents' bookkeeping against the scripted fake (no timing is asserted): the batched
pass makes one engine call per turn, the alone pass one per trajectory per turn."""

from __future__ import annotations

from lab.bench.agents import bench_agents, format_agents
from tests.unit.agent_fakes import ScriptedBackend


def test_batched_and_alone_passes_count_their_engine_calls() -> None:
    # bundled case ids are not in the fake's script: every reply is one final answer
    result = bench_agents("hf", cases=3, k=2, max_tokens=8, max_turns=2, engine=ScriptedBackend())
    assert result["batched"]["engine_calls"] == 1 and result["batched"]["steps"] == 6
    assert result["alone"]["engine_calls"] == 6 and result["alone"]["steps"] == 6
    assert result["same_trajectories"] == result["trajectories"] == 6
    assert "ratio (alone / batched wall time)" in format_agents(result)
