"""The managed vLLM server on the bundled SmolLM2 on the CPU: one server start for the file.

start + health, a greedy chat answer through the openai backend (token ids and logprobs as the
offline records have them), a small concurrent load all accounted for, and last, a clean stop
while a load is in flight: the requests in flight are recorded as errors, the load returns
(no hang), and no process of the server is left, its port free.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab.backends.base import EngineConfig, SamplingConfig
from lab.backends.openai_compat import OpenAIBackend
from lab.backends.prompts import chat, render_token_ids
from lab.backends.server import ManagedServer, group_members, port_is_free
from lab.serving.loadtest import format_summary, run_load
from lab.store import RunStore

pytestmark = [pytest.mark.model, pytest.mark.vllm]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedServer]:
    log = tmp_path_factory.mktemp("serve") / "server.log"
    managed = ManagedServer(EngineConfig(backend="vllm", device="cpu", dtype="fp32"), log_path=log)
    with managed:
        yield managed


def test_health_and_a_greedy_answer(server: ManagedServer) -> None:
    assert httpx.get(f"{server.root_url}/health", trust_env=False).status_code == 200
    assert server.log_path.stat().st_size > 0  # the server's log streams to the file
    backend = OpenAIBackend(EngineConfig(backend="openai", base_url=server.base_url))
    request = chat("france", "What is the capital of France? Answer in one word.")
    (gen,) = backend.generate([request], SamplingConfig(max_tokens=8, logprobs=2))
    assert gen.error is None and "Paris" in gen.text
    assert backend.engine_record["token_ids"] == "server"
    # The server renders the chat template as the lab does (same prompt token ids).
    tokenizer = backend.token_text.tokenizer  # type: ignore[union-attr]
    assert gen.prompt_token_ids == render_token_ids(tokenizer, request)
    assert len(gen.output_token_ids) == len(gen.token_logprobs) == len(gen.top_logprobs) > 0
    assert tokenizer.decode(gen.output_token_ids, skip_special_tokens=True) == gen.text
    for token, logprob, top in zip(
        gen.output_token_ids, gen.token_logprobs, gen.top_logprobs, strict=True
    ):
        # greedy: the chosen token is the most likely alternative, with the same logprob
        assert top[0].token_id == token and top[0].logprob == logprob
        assert len(top) == 2 and top[0].logprob >= top[1].logprob


def test_concurrent_requests_are_all_accounted_for(server: ManagedServer, tmp_path: Path) -> None:
    summary = run_load(server.base_url, tmp_path, requests=16, concurrency=8, max_tokens=8)
    assert summary.outcomes == {"ok": 16} and summary.complete
    assert summary.max_in_flight == 8
    entries = list(RunStore(tmp_path).entries("requests"))
    assert sorted(e["request_id"] for e in entries) == sorted({e["request_id"] for e in entries})
    assert len(entries) == 16 and all(e["completion_tokens"] == 8 for e in entries)


def test_sample_and_agent_runs_through_the_server(server: ManagedServer, tmp_path: Path) -> None:
    """`lab sample --backend openai --base-url URL`: an n-of-k run and an agent run (the text
    protocol: vLLM's server has no tool parser for SmolLM2) through the server."""
    from lab.agents.runner import run_agents
    from lab.variance.config import SampleConfig
    from lab.variance.runner import run_sample

    common = {"backend": "openai", "base_url": server.base_url, "k": 3, "limit": 2}
    plain = SampleConfig(cases="bundled:basic", max_tokens=8, out=str(tmp_path / "plain"), **common)
    outcome = run_sample(plain, emit=lambda _: None)
    assert outcome.complete and outcome.report is not None
    lines = list(RunStore(tmp_path / "plain").entries("samples"))
    assert len(lines) == 2
    for j, line in enumerate(lines):  # case j's seeds: seed + j * k + i, as in-process
        gens = line["generations"]
        assert [g["seed"] for g in gens] == [j * 3 + i for i in range(3)]
        assert all(g["backend"] == "openai" and g["output_token_ids"] for g in gens)
    assert (tmp_path / "plain" / "report.html").exists()

    agent = SampleConfig(
        cases="bundled:agents", max_tokens=24, max_turns=2, out=str(tmp_path / "agent"), **common
    )
    outcome = run_agents(agent, emit=lambda _: None)
    assert outcome.complete
    trajectories = list(RunStore(tmp_path / "agent").entries("trajectories"))
    assert len(trajectories) == 6
    assert all(t["steps"] and t["outcome"] in ("answer", "max_turns") for t in trajectories)
    assert (tmp_path / "agent" / "report.html").exists()


def test_stopping_the_server_mid_load(server: ManagedServer, tmp_path: Path) -> None:
    """Last test of the file: it stops the shared server."""
    pgid = server.pid
    assert pgid is not None and len(group_members(pgid)) >= 2  # API server + engine core
    stopper: list[threading.Thread] = []

    def stop_after_three(result: Any) -> None:
        if len(stopper) == 0 and result.ok:
            # From another thread: stop() waits, and the event loop must keep running.
            stopper.append(threading.Thread(target=server.stop))
            stopper[0].start()

    started = time.monotonic()
    summary = run_load(
        server.base_url,
        tmp_path,
        requests=48,
        concurrency=8,
        max_tokens=32,
        retries=2,
        on_result=stop_after_three,
    )
    assert time.monotonic() - started < 120  # no hang
    stopper[0].join(timeout=60)
    assert sum(summary.outcomes.values()) == 48
    assert not summary.complete and summary.outcomes.get("ok", 0) >= 1
    recorded = list(RunStore(tmp_path).entries("requests"))
    assert len(recorded) == 48 - summary.outcomes.get("not_sent", 0)
    assert any(e["status"] != "ok" for e in recorded)
    assert "incomplete" in format_summary(summary)
    assert group_members(pgid) == []
    assert port_is_free(server.port)
