"""A bounded, resumable load test against an OpenAI-compatible server.

    summary = run_load("http://127.0.0.1:8000/v1", "runs/load", requests=500, concurrency=32,
                       max_tokens=16)
    print(format_summary(summary))

The requests are N distinct greedy chat prompts (the sweep's filler prompts), fired through
`OpenAIClient` at most `concurrency` at a time. Every request that is sent is appended to
`RUN_DIR/requests.jsonl` exactly once per pass as one fsynced line (lab.store.RunStore) with
its outcome: ok, http_error (with the status), bad_response, timeout or transport_error. When
the server dies mid-run, the requests in flight end as transport errors and the ones not yet
sent are left unsent (no hang); the summary counts every outcome. Running the same command on
the same directory again is the next pass: it sends only the requests that were never sent
and, unless `retry_errors=False`, those whose latest outcome was an error. The run's identity
(request count, max_tokens, model) must match; concurrency, timeout and retries may change
between passes. `RUN_DIR/passes.jsonl` keeps each pass's summary, `summary.json` the latest.

Latency percentiles use linear interpolation between order statistics (numpy's default).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.backends.base import SamplingConfig
from lab.backends.openai_client import Call, CallResult, OpenAIClient, RunStats, request_body
from lab.determinism.modes import filler_requests
from lab.envinfo import environment_record
from lab.errors import LabError
from lab.rundir import LOAD_SUMMARY, PASSES, REQUESTS
from lab.safetext import terminal
from lab.store import RunStore

NOT_SENT = "not_sent"


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear interpolation between order statistics."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class LoadSummary:
    """Outcome counts over every request (latest outcome each) and this pass's numbers."""

    run_dir: str
    requests: int
    #: latest outcome of every request: ok / http_error / ... / not_sent
    outcomes: dict[str, int]
    #: this pass
    pass_index: int
    sent: int
    pass_outcomes: dict[str, int]
    wall_s: float
    requests_per_s: float
    output_tokens_per_s: float
    latency_s: dict[str, float | None]
    max_in_flight: int
    concurrency: int
    interrupted: bool = False
    #: a few error messages from this pass, for the eye
    sample_errors: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.outcomes.get("ok", 0) == self.requests

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def latest_outcomes(store: RunStore) -> dict[str, dict[str, Any]]:
    """request id -> its latest recorded entry (passes are appended in order)."""
    latest: dict[str, dict[str, Any]] = {}
    for entry in store.entries(REQUESTS):
        latest[entry["request_id"]] = entry
    return latest


def _record(result: CallResult, request_id: str, pass_index: int) -> dict[str, Any]:
    answer = result.response or {}
    usage = answer.get("usage") or {}
    choice = (answer.get("choices") or [{}])[0]
    return {
        "request_id": request_id,
        "pass": pass_index,
        "status": result.status,
        "http_status": result.http_status,
        "attempts": result.attempts,
        "latency_s": result.latency_s,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "error": result.error,
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "finish_reason": choice.get("finish_reason"),
        "text": (choice.get("message") or {}).get("content", choice.get("text")),
    }


def run_load(
    base_url: str,
    out_dir: str | Path,
    requests: int = 500,
    concurrency: int = 32,
    max_tokens: int = 16,
    model: str | None = None,
    retry_errors: bool = True,
    timeout_s: float = 120.0,
    retries: int = 3,
    fresh: bool = False,
    on_result: Callable[[CallResult], None] | None = None,
    server: dict[str, Any] | None = None,
) -> LoadSummary:
    """Run (or resume) a load test into out_dir; see the module docstring."""
    if requests < 1 or concurrency < 1 or max_tokens < 1:
        raise LabError("requests, concurrency and max_tokens must be >= 1")
    client = OpenAIClient(base_url, timeout_s=timeout_s, retries=retries)
    if model is None:
        listed = client.get_json("models").get("data") or []
        if not listed:
            raise LabError(f"{base_url}/models lists no model; pass --model")
        model = str(listed[0]["id"])
    identity = {"kind": "load", "requests": requests, "max_tokens": max_tokens, "model": model}
    store = RunStore.open(
        out_dir, identity, fresh=fresh, environment=environment_record(), kind="load"
    )
    latest = latest_outcomes(store)
    pass_index = 1 + max((e["pass"] for e in latest.values()), default=0)
    sampling = SamplingConfig(temperature=0.0, max_tokens=max_tokens, logprobs=0)
    todo = []
    for request in filler_requests(requests):
        previous = latest.get(request.id)
        if previous is None or (retry_errors and previous["status"] != "ok"):
            path, body = request_body(request, sampling, model, None, vllm_extras=False)
            body.pop("logprobs"), body.pop("top_logprobs")  # load, not numerics
            todo.append(Call(request.id, path, body))

    pass_results: list[CallResult] = []

    def record(result: CallResult) -> None:
        store.append(
            REQUESTS, f"{result.key}@{pass_index}", _record(result, result.key, pass_index)
        )
        pass_results.append(result)
        if on_result is not None:
            on_result(result)

    stats = RunStats()
    started = time.perf_counter()
    # what was recorded stays; the next pass sends the rest
    interrupted = bool(todo) and not send_all(client, todo, concurrency, record, stats)
    wall_s = time.perf_counter() - started
    summary = summarize(store, requests, pass_index, pass_results, wall_s, concurrency)
    summary.max_in_flight = stats.max_in_flight
    summary.interrupted = interrupted
    if todo:  # a pass that had nothing to send is not a pass
        store.append(PASSES, f"pass{pass_index}", summary.to_dict() | {"server": server})
    store.write_json(LOAD_SUMMARY, summary.to_dict())
    return summary


def send_all(
    client: OpenAIClient,
    calls: list[Call],
    concurrency: int,
    record: Callable[[CallResult], None],
    stats: RunStats,
) -> bool:
    """Send the calls; False when Ctrl-C stopped them. Ctrl-C cancels the event loop's main
    task (every request in flight is cancelled and none is recorded half-way), instead of
    raising KeyboardInterrupt inside whichever task runs, which left tasks whose exception
    was never retrieved and a traceback. `stats` holds the peak in flight either way."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        try:
            loop.add_signal_handler(signal.SIGINT, task.cancel)
            installed = True
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            installed = False
        try:
            await client.run(calls, concurrency, record, stats)
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGINT)

    previous = signal.getsignal(signal.SIGINT)
    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        return False
    finally:  # remove_signal_handler leaves Python's default handler, not the lab's
        if previous is not None and signal.getsignal(signal.SIGINT) is not previous:
            with contextlib.suppress(ValueError):  # not the main thread: nothing was changed
                signal.signal(signal.SIGINT, previous)
    return True


def interrupted_line(summary: LoadSummary) -> str:
    """What Ctrl-C prints (one line; the exit status is 130)."""
    done = summary.outcomes.get("ok", 0)
    return (
        f"interrupted: {done} of {summary.requests} requests ok, {summary.sent} this pass "
        f"(peak in flight {summary.max_in_flight}); finished work is saved in "
        f"{summary.run_dir}; run the same command again to send the rest"
    )


def summarize(
    store: RunStore,
    requests: int,
    pass_index: int,
    pass_results: list[CallResult],
    wall_s: float,
    concurrency: int,
) -> LoadSummary:
    latest = latest_outcomes(store)
    outcomes = Counter(e["status"] for e in latest.values())
    outcomes[NOT_SENT] = requests - len(latest)
    ok = [r for r in pass_results if r.ok]
    latencies = [r.latency_s for r in ok]
    tokens = sum(
        int(((r.response or {}).get("usage") or {}).get("completion_tokens") or 0) for r in ok
    )
    return LoadSummary(
        run_dir=str(store.path),
        requests=requests,
        outcomes={k: v for k, v in sorted(outcomes.items()) if v},
        pass_index=pass_index,
        sent=len(pass_results),
        pass_outcomes=dict(sorted(Counter(r.status for r in pass_results).items())),
        wall_s=wall_s,
        requests_per_s=len(ok) / wall_s if wall_s > 0 else 0.0,
        output_tokens_per_s=tokens / wall_s if wall_s > 0 else 0.0,
        latency_s={f"p{q}": percentile(latencies, q) for q in (50, 90, 99)}
        | {"max": max(latencies, default=None)},
        max_in_flight=0,
        concurrency=concurrency,
        sample_errors=[f"{r.key}: {r.error}" for r in pass_results if not r.ok][:3],
    )


def format_summary(summary: LoadSummary) -> str:
    def seconds(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}s"

    lines = [
        f"load test {summary.run_dir}: pass {summary.pass_index}, sent {summary.sent} "
        f"at concurrency {summary.concurrency} (peak in flight {summary.max_in_flight})"
        + (" - INTERRUPTED" if summary.interrupted else ""),
        "  this pass:  "
        + (", ".join(f"{k} {v}" for k, v in summary.pass_outcomes.items()) or "nothing to send"),
        f"  all {summary.requests} requests (latest outcome): "
        + ", ".join(f"{k} {v}" for k, v in summary.outcomes.items()),
        f"  wall {summary.wall_s:.1f}s, {summary.requests_per_s:.2f} req/s, "
        f"{summary.output_tokens_per_s:.1f} output tok/s",
        "  latency (ok): " + ", ".join(f"{k} {seconds(v)}" for k, v in summary.latency_s.items()),
    ]
    # The server's error text, verbatim in the records: an escape sequence in it must not act
    # on the terminal, nor a line break forge an output line.
    lines += [f"  error: {terminal(e)}" for e in summary.sample_errors]
    if not summary.complete:
        lines.append("  incomplete: run the same command again to send the missing requests")
    return "\n".join(lines)
