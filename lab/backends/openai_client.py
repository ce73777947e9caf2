"""An OpenAI-compatible HTTP client: bounded concurrency, deadlines, retries, one result per call.

    client = OpenAIClient("http://127.0.0.1:8000/v1")
    stats = asyncio.run(client.run(calls, concurrency=8, on_result=record))

`OpenAIClient.run(calls, concurrency, on_result)` sends HTTP calls with asyncio + httpx under a
semaphore (at most `concurrency` in flight), a per-call deadline, retries with exponential
backoff for transport errors only (connection refused or reset, a connection dropped before
the answer). An HTTP error status (4xx / 5xx) is an answer: recorded, never retried. A
timeout is recorded, not retried (the server may still be working on it). Every call ends
as exactly one `CallResult`, handed to `on_result` once: ok, http_error, bad_response
(malformed JSON, no choices), timeout or transport_error. When the server is unreachable
(connection refused after the retries), calls not yet started are skipped - left unrecorded
so a resumed run sends them - instead of each waiting through its own retries.

The wire format lives here too: `request_body` (a Request and SamplingConfig -> the JSON body of
/chat/completions or /completions) and `parse_choice` (one choice of an answer -> text, token
ids, logprobs and alternatives). Used by the `openai` backend (lab/backends/openai_compat.py)
and by the load test (lab/serving/loadtest.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from lab.backends.base import Request, SamplingConfig
from lab.errors import ConfigError, LabError
from lab.safetext import terminal

STATUSES = ("ok", "http_error", "bad_response", "timeout", "transport_error")
# Connection refused / reset / dropped before an answer: nothing was answered, safe to resend.
RETRYABLE = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)
_ERROR_BODY_CHARS = 500


@dataclass
class Call:
    """One HTTP call: POST `path` (relative to the base URL) with a JSON body."""

    key: str
    path: str
    body: dict[str, Any]


@dataclass
class CallResult:
    """How one call ended. `response` is the parsed JSON answer (status ok only)."""

    key: str
    status: str
    http_status: int | None
    attempts: int
    #: seconds from the first send to the end (retries and backoff included)
    latency_s: float
    error: str | None = None
    response: dict[str, Any] | None = None
    #: wall-clock time.time() of the first send and of the end
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class RunStats:
    """What one `OpenAIClient.run` did: results by key, skipped keys, the peak in flight."""

    results: dict[str, CallResult] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    max_in_flight: int = 0


class OpenAIClient:
    """Bounded-concurrency OpenAI-compatible HTTP client (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        timeout_s: float = 120.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        api_key: str | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url {base_url!r} must start with http:// or https://")
        if timeout_s <= 0 or retries < 0 or backoff_s < 0:
            raise ConfigError("client timeout must be > 0, retries and backoff >= 0")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def _client(self, concurrency: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url + "/",
            headers=self.headers,
            # The whole-call deadline is asyncio.timeout below; httpx's own is a backstop.
            timeout=httpx.Timeout(self.timeout_s + 5, connect=min(10.0, self.timeout_s)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            trust_env=False,  # no proxy from the environment: loopback stays loopback
        )

    def get_json(self, path: str) -> Any:
        """A synchronous GET (model discovery); LabError when the server does not answer."""
        try:
            with httpx.Client(timeout=min(30.0, self.timeout_s), trust_env=False) as client:
                response = client.get(f"{self.base_url}/{path}", headers=self.headers)
                response.raise_for_status()
                return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            # httpx's text holds the server's reason phrase and a line break: printed as is.
            detail = terminal(f"{type(exc).__name__}: {exc}")
            raise LabError(f"{self.base_url}/{path}: {detail}") from exc

    async def run(
        self,
        calls: list[Call],
        concurrency: int,
        on_result: Callable[[CallResult], None] | None = None,
        stats: RunStats | None = None,
    ) -> RunStats:
        """Send every call, at most `concurrency` at once; each started call ends as exactly
        one result (passed to on_result as it ends). Skipped calls (server unreachable) are
        listed in `skipped` and have no result. `stats`: filled as the calls run, so a caller
        whose run was cancelled (Ctrl-C) still has the peak in flight."""
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        keys = [c.key for c in calls]
        if len(set(keys)) != len(keys):
            raise LabError("call keys must be unique")
        stats = RunStats() if stats is None else stats
        semaphore = asyncio.Semaphore(concurrency)
        in_flight = 0
        server_down = asyncio.Event()

        async def one(client: httpx.AsyncClient, call: Call) -> None:
            nonlocal in_flight
            async with semaphore:
                if server_down.is_set():
                    stats.skipped.append(call.key)
                    return
                in_flight += 1
                stats.max_in_flight = max(stats.max_in_flight, in_flight)
                try:
                    result = await self._send(client, call, server_down)
                finally:
                    in_flight -= 1
                stats.results[call.key] = result
                if on_result is not None:
                    on_result(result)

        async with self._client(concurrency) as client:
            await asyncio.gather(*(one(client, call) for call in calls))
        return stats

    async def _send(
        self, client: httpx.AsyncClient, call: Call, server_down: asyncio.Event
    ) -> CallResult:
        started_at = time.time()
        started = time.perf_counter()
        attempts = 0

        def done(status: str, http_status: int | None = None, **kw: Any) -> CallResult:
            return CallResult(
                key=call.key,
                status=status,
                http_status=http_status,
                attempts=attempts,
                latency_s=time.perf_counter() - started,
                started_at=started_at,
                finished_at=time.time(),
                **kw,
            )

        while True:
            attempts += 1
            try:
                async with asyncio.timeout(self.timeout_s):
                    response = await client.post(call.path, json=call.body)
            except RETRYABLE as exc:
                message = f"{type(exc).__name__}: {exc}".rstrip(": ")
                refused = isinstance(exc, httpx.ConnectError)
                if attempts > self.retries or server_down.is_set():
                    if refused:
                        server_down.set()  # nobody answers: do not start the remaining calls
                    return done("transport_error", error=f"{message} (after {attempts} tries)")
                await asyncio.sleep(self.backoff_s * 2 ** (attempts - 1))
                continue
            except (TimeoutError, httpx.TimeoutException):
                return done("timeout", error=f"no answer within {self.timeout_s:g} s")
            except httpx.TransportError as exc:  # anything else on the wire: recorded
                return done("transport_error", error=f"{type(exc).__name__}: {exc}")
            if response.status_code >= 400:
                return done(
                    "http_error",
                    response.status_code,
                    error=f"HTTP {response.status_code}: {response.text[:_ERROR_BODY_CHARS]}",
                )
            try:
                payload = response.json()
            except ValueError:
                return done(
                    "bad_response",
                    response.status_code,
                    error=f"malformed JSON: {response.text[:_ERROR_BODY_CHARS]!r}",
                )
            if not (
                isinstance(payload, dict)
                and isinstance(payload.get("choices"), list)
                and payload["choices"]
            ):
                return done(
                    "bad_response",
                    response.status_code,
                    error=f"no choices in the answer: {str(payload)[:_ERROR_BODY_CHARS]}",
                )
            return done("ok", response.status_code, response=payload)


def request_body(
    request: Request,
    sampling: SamplingConfig,
    model: str,
    seed: int | None,
    vllm_extras: bool,
    n: int = 1,
) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) for one call: chat messages -> chat/completions, prompt -> completions."""
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "n": n,
    }
    if seed is not None:
        body["seed"] = seed
    if sampling.top_k:
        if not vllm_extras:
            raise ConfigError("top_k is not an OpenAI API parameter; this server may ignore it")
        body["top_k"] = sampling.top_k
    if vllm_extras:
        body["return_token_ids"] = True
        body["return_tokens_as_token_ids"] = True
    if request.messages is not None:
        body["messages"] = request.messages
        if request.tools:
            body["tools"] = request.tools
        body["logprobs"] = True
        body["top_logprobs"] = sampling.logprobs
        return "chat/completions", body
    body["prompt"] = request.prompt
    body["logprobs"] = sampling.logprobs
    return "completions", body


def _token_id(token: Any) -> int | None:
    """vLLM's `return_tokens_as_token_ids` spelling "token_id:N" -> N."""
    if isinstance(token, str) and token.startswith("token_id:"):
        try:
            return int(token[len("token_id:") :])
        except ValueError:
            return None
    return None


def _finite_logprob(x: Any) -> float | None:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None


@dataclass
class ParsedChoice:
    """The parts of one answer choice a Generation needs."""

    text: str
    finish_reason: str
    output_token_ids: list[int]
    token_logprobs: list[float]
    #: per step: (token id or -1, token text or "", logprob), unsorted
    alternatives: list[list[tuple[int, str, float]]]
    prompt_token_ids: list[int]
    #: the server's parsed tool calls (chat with tools), None when it gave none
    tool_calls: list[dict[str, Any]] | None = None


def parse_choice(response: dict[str, Any], index: int = 0) -> ParsedChoice:
    """One choice of a chat or completions answer; KeyError / TypeError on a malformed one."""
    choice = next(c for c in response["choices"] if int(c.get("index", 0)) == index)
    steps: list[tuple[Any, Any, list[tuple[Any, Any]]]] = []  # (token, logprob, [(tok, lp)])
    logprobs = choice.get("logprobs") or {}
    tool_calls = None
    if "message" in choice:  # chat
        text = choice["message"].get("content") or ""
        tool_calls = choice["message"].get("tool_calls") or None
        for step in logprobs.get("content") or []:
            alts = [(a["token"], a["logprob"]) for a in step.get("top_logprobs") or []]
            steps.append((step["token"], step["logprob"], alts))
        prompt_ids = response.get("prompt_token_ids") or choice.get("prompt_token_ids") or []
    else:  # completions
        text = choice.get("text") or ""
        tokens = logprobs.get("tokens") or []
        chosen = logprobs.get("token_logprobs") or []
        tops = logprobs.get("top_logprobs") or [None] * len(tokens)
        for token, lp, top in zip(tokens, chosen, tops, strict=False):
            steps.append((token, lp, list((top or {}).items())))
        prompt_ids = choice.get("prompt_token_ids") or response.get("prompt_token_ids") or []
    ids = choice.get("token_ids")
    if ids is None:
        parsed = [_token_id(token) for token, _, _ in steps]
        ids = [] if None in parsed or not parsed else parsed
    alternatives = []
    for _, _, alts in steps:
        row = []
        for token, lp in alts:
            value = _finite_logprob(lp)
            if value is None:
                continue
            tid = _token_id(token)
            row.append((-1 if tid is None else tid, "" if tid is not None else str(token), value))
        alternatives.append(row)
    return ParsedChoice(
        text=text,
        finish_reason=choice.get("finish_reason") or "length",
        output_token_ids=[int(t) for t in ids],
        token_logprobs=[float(lp) if lp is not None else float("nan") for _, lp, _ in steps],
        alternatives=alternatives,
        prompt_token_ids=[int(t) for t in prompt_ids],
        tool_calls=tool_calls,
    )
