"""`openai` backend: any OpenAI-compatible server (vLLM, SGLang, llama.cpp server, Ollama).

    backend = load_backend(EngineConfig(backend="openai", base_url="http://127.0.0.1:8000/v1"))
    gens = backend.generate(requests, SamplingConfig(max_tokens=16), concurrency=8)

Without a base_url the backend starts a managed vLLM server (lab.backends.server) from the same
engine config (dtype, batch-invariant mode, prefix caching, ...) and stops it on close(). No
traffic leaves loopback unless the user gives another base URL.

`OpenAIBackend.generate`: Requests -> calls (chat messages -> /chat/completions, raw prompts
-> /completions), one call per sample with seed s + i (the lab's convention; greedy n > 1 is
refused by vLLM anyway), answers -> `Generation` records. A call that failed yields an error
record with its status. The calls go through `OpenAIClient` (lab/backends/openai_client.py:
bounded concurrency, deadlines, retries for transport errors only, one result per call).

Token ids: from a vLLM server the backend asks for `return_token_ids` (prompt and output ids)
and `return_tokens_as_token_ids` (alternatives as "token_id:N"); their text comes from the
model's local tokenizer when the model resolves here. Other servers give tokens as text only:
records then have empty token id lists, alternatives carry token_id -1, and the engine record
says `"token_ids": "none (text only)"`.

Client options ride in engine_args with a `client_` prefix (the rest go to `vllm serve` for a
managed server): client_timeout_s (120), client_retries (3), client_backoff_s (0.5),
client_concurrency (all calls at once), client_vllm_extras (auto: when /v1/models says vLLM).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from lab import models
from lab.backends.base import (
    Backend,
    EngineConfig,
    Generation,
    Request,
    SamplingConfig,
    TopLogprob,
    error_generation,
)
from lab.backends.hf import draw_seed_if_needed
from lab.backends.openai_client import Call, CallResult, OpenAIClient, parse_choice, request_body
from lab.backends.prompts import TokenTexts
from lab.backends.server import ManagedServer
from lab.errors import ConfigError

CLIENT_OPTIONS = {
    "client_timeout_s": float,
    "client_retries": int,
    "client_backoff_s": float,
    "client_concurrency": int,
    "client_vllm_extras": bool,
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def client_options(engine_args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """engine_args -> (client options, the rest: `vllm serve` arguments)."""
    client: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in engine_args.items():
        if key.startswith("client_"):
            kind = CLIENT_OPTIONS.get(key)
            if kind is None:
                raise ConfigError(f"unknown client option {key!r}; known: {sorted(CLIENT_OPTIONS)}")
            if kind is bool and isinstance(value, str):
                value = value.lower() in ("1", "true", "yes")
            try:
                client[key] = kind(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{key}: {value!r} is not {kind.__name__}") from None
        else:
            rest[key] = value
    return client, rest


class OpenAIBackend(Backend):
    """An OpenAI-compatible server, given by base_url or started here (managed vLLM)."""

    def __init__(
        self, config: EngineConfig, cache_dir: str | None = None, log_dir: str | None = None
    ) -> None:
        """`log_dir`: where a managed server writes its log (None: a temporary directory)."""
        super().__init__(config)
        self.options, server_args = client_options(config.engine_args)
        self.server: Any = None
        if config.base_url is None:
            self.server = ManagedServer(
                dataclasses.replace(config, engine_args=server_args),
                cache_dir=cache_dir,
                log_dir=log_dir,
            )
            base_url = self.server.start()
        else:
            base_url = config.base_url
        try:
            self._connect(base_url, cache_dir)
        except BaseException:
            self.close()  # a server started here must not outlive a failed setup
            raise

    def _connect(self, base_url: str, cache_dir: str | None) -> None:
        config = self.config
        self.client = OpenAIClient(
            base_url,
            timeout_s=self.options.get("client_timeout_s", 120.0),
            retries=self.options.get("client_retries", 3),
            backoff_s=self.options.get("client_backoff_s", 0.5),
        )
        listed = self.client.get_json("models").get("data") or []
        names = [m.get("id") for m in listed]
        if config.model in names:
            self.model_name = config.model
        elif len(names) == 1:
            self.model_name = str(names[0])
        else:
            raise ConfigError(
                f"{base_url} serves {names}; set model to one of them (asked: {config.model!r})"
            )
        owner = next((m.get("owned_by") for m in listed if m.get("id") == self.model_name), None)
        self.vllm_extras = bool(self.options.get("client_vllm_extras", owner == "vllm"))
        self.token_text = self._token_texts(cache_dir)
        self.engine_record = config.to_dict() | {
            "base_url": base_url,
            "server_model": self.model_name,
            "server_owned_by": owner,
            "server": self.server.record() if self.server else {"managed": False},
            # Known for a server started here; for a given URL only the user knows.
            "server_batch_invariant": config.batch_invariant if self.server else "unknown",
            "token_ids": "server" if self.vllm_extras else "none (text only)",
        }

    def _token_texts(self, cache_dir: str | None) -> Callable[[int], str] | None:
        try:
            info = models.model_info(self.config.model, cache_dir)
            if not any((info.path / name).is_file() for name in TOKENIZER_FILES):
                return None
            from transformers import AutoTokenizer

            return TokenTexts(AutoTokenizer.from_pretrained(str(info.path)))
        except Exception:  # noqa: BLE001 - a remote model with no local copy: ids only
            return None

    def calls(self, requests: list[Request], sampling: SamplingConfig) -> list[Call]:
        """One call per request and sample, keyed "request_id/sample_index"."""
        out = []
        for request in requests:
            for i in range(sampling.n):
                path, body = request_body(
                    request,
                    sampling,
                    self.model_name,
                    sampling.sample_seed(i, request),
                    self.vllm_extras,
                )
                out.append(Call(f"{request.id}/{i}", path, body))
        return out

    def generate(
        self,
        requests: list[Request],
        sampling: SamplingConfig,
        concurrency: int | None = None,
    ) -> list[Generation]:
        """Records for every request x sample; `concurrency` calls in flight at most
        (default: client_concurrency, else every call at once)."""
        sampling = draw_seed_if_needed(sampling)
        calls = self.calls(requests, sampling)
        limit = concurrency or self.options.get("client_concurrency") or max(1, len(calls))
        stats = asyncio.run(self.client.run(calls, limit))
        out = []
        for request in requests:
            for i in range(sampling.n):
                result = stats.results.get(f"{request.id}/{i}")
                out.append(self._record(request, i, sampling, result))
        return out

    def _record(
        self, request: Request, index: int, sampling: SamplingConfig, result: CallResult | None
    ) -> Generation:
        seed = sampling.sample_seed(index, request)
        if result is None or not result.ok:
            message = "not sent: the server was unreachable" if result is None else result.error
            gen = error_generation(request, index, seed, f"{message}", self.config, sampling)
            gen.engine = self.engine_record
            if result is not None:
                gen.timings = {"total_s": result.latency_s, "attempts": float(result.attempts)}
                gen.error = f"{result.status}: {result.error}"
            return gen
        assert result.response is not None
        try:
            parsed = parse_choice(result.response)
        except (KeyError, TypeError, ValueError, StopIteration) as exc:
            gen = error_generation(
                request, index, seed, f"bad_response: {exc!r}", self.config, sampling
            )
            gen.engine = self.engine_record
            return gen
        tops = []
        for row in parsed.alternatives:
            row.sort(key=lambda alt: -alt[2])
            tops.append(
                [
                    TopLogprob(tid, lp, text or self._text(tid))
                    for tid, text, lp in row[: sampling.logprobs]
                ]
            )
        finish = parsed.finish_reason
        return Generation(
            request_id=request.id,
            sample_index=index,
            seed=seed,
            backend="openai",
            prompt_token_ids=parsed.prompt_token_ids,
            output_token_ids=parsed.output_token_ids,
            token_logprobs=parsed.token_logprobs,
            top_logprobs=tops,
            text=parsed.text,
            finish_reason="stop" if finish == "stop" else finish,
            timings={"total_s": result.latency_s, "attempts": float(result.attempts)},
            engine=self.engine_record,
            sampling=dataclasses.asdict(sampling),
            tool_calls=parsed.tool_calls,
        )

    def _text(self, token_id: int) -> str:
        if token_id < 0 or self.token_text is None:
            return ""
        return self.token_text(token_id)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
