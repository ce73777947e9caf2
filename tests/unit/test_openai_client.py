"""The OpenAI-compatible client's error paths against a small local stub server.

The stub (http.server on 127.0.0.1, a free port, one thread per connection) answers by the
content of the chat message: "ok", "500", "malformed" (not JSON), "nochoices", "slow" (sleeps
past the client's deadline), "drop" (closes the connection without an answer, every time) and
"drop-once" (drops the first time, answers after). It logs every request it receives and the
peak number handled at once, so the tests count what the client really sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lab.backends.base import EngineConfig, Request, SamplingConfig
from lab.backends.openai_client import Call, OpenAIClient
from lab.backends.openai_compat import OpenAIBackend
from lab.determinism.modes import filler_requests
from lab.serving.loadtest import latest_outcomes, run_load
from lab.store import RunStore


class Stub:
    def __init__(self) -> None:
        self.received: list[str] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.dropped: set[str] = set()
        #: behaviour override by request key (load tests: message text is a prompt)
        self.behaviour: dict[str, str] = {}
        self.delay_s = 0.0
        #: answer like vLLM: owned_by "vllm", token ids, and tokens that depend on how many
        #: requests the stub is handling at once (a stand-in for batch-dependent numerics)
        self.vllm = False
        self.connections: list[socket.socket] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with server.lock:
                    server.connections.append(self.connection)

            def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
                owner = "vllm" if server.vllm else "stub"
                self._json(200, {"data": [{"id": "stub-model", "owned_by": owner}]})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
                with server.lock:
                    server.received.append(text)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    alone = server.in_flight == 1
                try:
                    if server.vllm:
                        time.sleep(server.delay_s)
                        self._json(200, vllm_answer(alone))
                        return
                    self._answer(server.behaviour.get(text, text), text, body)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _answer(self, how: str, text: str, body: dict[str, Any]) -> None:
                time.sleep(server.delay_s)
                if how == "slow":
                    time.sleep(1.5)
                if how == "500":
                    self._json(500, {"error": {"message": "boom"}})
                elif how == "malformed":
                    self._raw(200, b'{"choices": [')
                elif how == "nochoices":
                    self._json(200, {"object": "chat.completion"})
                elif how == "drop" or (how == "drop-once" and text not in server.dropped):
                    server.dropped.add(text)
                    self.close_connection = True  # no status line: the client sees a drop
                else:
                    self._json(200, chat_answer(text, body))

            def _json(self, code: int, payload: Any) -> None:
                self._raw(code, json.dumps(payload).encode())

            def _raw(self, code: int, data: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        """Stop like a killed process: stop listening and reset every open connection."""
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


def chat_answer(text: str, body: dict[str, Any]) -> dict[str, Any]:
    """An answer shaped like OpenAI's, echoing the seed so tests can see it."""
    return {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"echo {text} seed={body.get('seed')}"},
                "finish_reason": "length",
                "logprobs": {
                    "content": [
                        {
                            "token": "echo",
                            "logprob": -0.5,
                            "top_logprobs": [
                                {"token": "x", "logprob": -2.0},
                                {"token": "echo", "logprob": -0.5},
                            ],
                        }
                    ]
                },
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }


def vllm_answer(alone: bool) -> dict[str, Any]:
    """Tokens 5, 6, 7 when the request had the server to itself, else 5, 6, 8."""
    ids = [5, 6, 7] if alone else [5, 6, 8]
    steps = [
        {
            "token": f"token_id:{t}",
            "logprob": -0.25,
            "top_logprobs": [
                {"token": f"token_id:{t}", "logprob": -0.25},
                {"token": "token_id:9", "logprob": -1.75},
            ],
        }
        for t in ids
    ]
    return {
        "prompt_token_ids": [1, 2],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": " ".join(map(str, ids))},
                "finish_reason": "length",
                "token_ids": ids,
                "logprobs": {"content": steps},
            }
        ],
        "usage": {"prompt_tokens": 2, "completion_tokens": 3},
    }


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub()
    yield server
    server.close()


def call(text: str, key: str | None = None) -> Call:
    return Call(key or text, "chat/completions", {"messages": [{"role": "user", "content": text}]})


def run(client: OpenAIClient, calls: list[Call], concurrency: int = 4) -> Any:
    recorded: list[Any] = []
    stats = asyncio.run(client.run(calls, concurrency, recorded.append))
    return stats, recorded


def test_each_error_kind_is_recorded_once_and_only_transport_errors_are_retried(
    stub: Stub,
) -> None:
    client = OpenAIClient(stub.base_url, timeout_s=0.5, retries=2, backoff_s=0.01)
    texts = ["ok", "500", "malformed", "nochoices", "slow", "drop", "drop-once"]
    stats, recorded = run(client, [call(t) for t in texts])
    assert sorted(r.key for r in recorded) == sorted(texts)  # each exactly once
    by_key = {r.key: r for r in recorded}
    assert by_key["ok"].status == "ok" and by_key["ok"].http_status == 200
    assert by_key["500"].status == "http_error" and by_key["500"].http_status == 500
    assert "boom" in (by_key["500"].error or "")
    assert by_key["malformed"].status == "bad_response"
    assert by_key["nochoices"].status == "bad_response"
    assert by_key["slow"].status == "timeout"
    assert by_key["drop"].status == "transport_error" and by_key["drop"].attempts == 3
    assert by_key["drop-once"].status == "ok" and by_key["drop-once"].attempts == 2
    sent = Counter(stub.received)
    # 500s, bad answers and timeouts are answers or possibly in progress: sent once.
    assert {t: sent[t] for t in ["500", "malformed", "nochoices", "slow", "ok"]} == dict.fromkeys(
        ["500", "malformed", "nochoices", "slow", "ok"], 1
    )
    assert sent["drop"] == 3 and sent["drop-once"] == 2
    assert stats.skipped == []


def test_concurrency_bound_is_respected(stub: Stub) -> None:
    stub.delay_s = 0.05
    client = OpenAIClient(stub.base_url, timeout_s=5)
    stats, recorded = run(client, [call(f"ok-{i}") for i in range(24)], concurrency=3)
    assert len(recorded) == 24 and all(r.ok for r in recorded)
    assert stub.max_in_flight == 3  # reached, never exceeded (24 calls, 50 ms each)
    assert stats.max_in_flight == 3


def test_server_gone_records_in_flight_and_skips_the_rest(stub: Stub) -> None:
    base_url = stub.base_url
    stub.close()  # nothing listens: connection refused
    client = OpenAIClient(base_url, timeout_s=2, retries=1, backoff_s=0.01)
    started = time.perf_counter()
    stats, recorded = run(client, [call(f"ok-{i}") for i in range(10)], concurrency=2)
    assert time.perf_counter() - started < 5  # no hang
    assert recorded and all(r.status == "transport_error" for r in recorded)
    assert len(recorded) + len(stats.skipped) == 10  # every call: one result or skipped
    assert len(stats.skipped) >= 7


def test_backend_maps_answers_and_errors_into_generations(stub: Stub) -> None:
    backend = OpenAIBackend(
        EngineConfig(backend="openai", model="x", base_url=stub.base_url)
    )  # the stub lists one model: the backend uses it
    assert backend.model_name == "stub-model"
    assert backend.engine_record["token_ids"] == "none (text only)"
    requests = [
        Request(id="a", messages=[{"role": "user", "content": "ok"}], seed=100),
        Request(id="b", messages=[{"role": "user", "content": "500"}]),
    ]
    gens = backend.generate(requests, SamplingConfig(temperature=0.5, seed=7, n=2), concurrency=2)
    assert [(g.request_id, g.sample_index) for g in gens] == [
        ("a", 0),
        ("a", 1),
        ("b", 0),
        ("b", 1),
    ]
    assert [g.seed for g in gens] == [100, 101, 7, 8]  # the request's seed replaces the call's
    assert gens[0].text == "echo ok seed=100" and gens[1].text == "echo ok seed=101"
    assert gens[0].token_logprobs == [-0.5] and gens[0].output_token_ids == []
    assert [(t.token, t.logprob, t.token_id) for t in gens[0].top_logprobs[0]] == [
        ("echo", -0.5, -1),
        ("x", -2.0, -1),
    ]
    assert gens[2].finish_reason == "error" and "http_error" in (gens[2].error or "")
    assert "500" in (gens[2].error or "")


def test_load_resume_sends_only_the_missing_requests(stub: Stub, tmp_path: Path) -> None:
    out = tmp_path / "load"
    # The load test's prompts are the sweep fillers; fail two of them on the first pass.
    first = run_load(stub.base_url, out, requests=12, concurrency=4, max_tokens=4, retries=1)
    assert first.outcomes == {"ok": 12} and first.complete
    stub.received.clear()
    again = run_load(stub.base_url, out, requests=12, concurrency=4, max_tokens=4)
    assert again.sent == 0 and stub.received == []  # nothing missing: nothing sent

    out2 = tmp_path / "load2"
    prompts = [r.messages[-1]["content"] for r in filler_requests(12)]  # type: ignore[index]
    stub.behaviour = {prompts[3]: "500", prompts[5]: "drop"}
    stub.received.clear()
    broken = run_load(stub.base_url, out2, requests=12, concurrency=4, max_tokens=4, retries=1)
    assert broken.outcomes == {"ok": 10, "http_error": 1, "transport_error": 1}
    assert not broken.complete
    assert Counter(stub.received)[prompts[3]] == 1 and Counter(stub.received)[prompts[5]] == 2

    stub.behaviour = {}
    stub.received.clear()
    kept = run_load(
        stub.base_url, out2, requests=12, concurrency=4, max_tokens=4, retry_errors=False
    )
    assert kept.sent == 0 and stub.received == []  # errors kept, nothing never-sent
    resumed = run_load(stub.base_url, out2, requests=12, concurrency=4, max_tokens=4)
    assert sorted(stub.received) == sorted([prompts[3], prompts[5]])
    assert resumed.outcomes == {"ok": 12} and resumed.pass_index == 2
    store = RunStore(out2)
    entries = list(store.entries("requests"))
    assert len(entries) == 14  # 12 on pass 1, 2 on pass 2: each sent request once per pass
    assert {e["pass"] for e in latest_outcomes(store).values()} == {1, 2}


def test_load_with_the_server_gone_mid_run_then_resume(stub: Stub, tmp_path: Path) -> None:
    out = tmp_path / "load"
    stub.delay_s = 0.02
    seen = 0

    def stop_after_three(result: Any) -> None:
        nonlocal seen
        seen += 1
        if seen == 3:
            threading.Thread(target=stub.close).start()  # the server goes away mid-run

    started = time.perf_counter()
    broken = run_load(
        stub.base_url,
        out,
        requests=40,
        concurrency=2,
        max_tokens=4,
        retries=1,
        on_result=stop_after_three,
    )
    assert time.perf_counter() - started < 10
    assert broken.outcomes.get("not_sent", 0) > 0 and not broken.complete
    assert sum(broken.outcomes.values()) == 40
    recorded = list(RunStore(out).entries("requests"))
    assert len(recorded) == 40 - broken.outcomes["not_sent"]

    fresh_stub = Stub()
    try:
        resumed = run_load(fresh_stub.base_url, out, requests=40, concurrency=8, max_tokens=4)
        assert resumed.outcomes == {"ok": 40}
        ok_before = broken.outcomes.get("ok", 0)
        assert len(fresh_stub.received) == 40 - ok_before  # only the missing ones
    finally:
        fresh_stub.close()
