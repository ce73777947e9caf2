"""The backend protocol and the records every backend writes.

A backend turns `Request`s plus one `SamplingConfig` into `Generation` records. Both real
backends (transformers in hf.py, vLLM in vllm.py) write exactly this schema, so every
downstream metric works on either, and records from two engines can be compared token by token.

Seeds: sample i of a request sampled with base seed s uses seed s + i (vLLM's own convention for
n > 1); s is the request's own seed when it has one (Request.seed), else the call's. Each
record stores its own seed, so any one sample can be regenerated with n=1.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.backends import registry
from lab.errors import ConfigError, LabError
from lab.models import DEFAULT_MODEL

DTYPES = ("float32", "bfloat16", "float16", "layercast")
#: hf backend only: weights stored in bf16, every layer computed in fp32 (lab.backends.layercast)
LAYERCAST = "layercast"
DTYPE_ALIASES = {
    "fp32": "float32",
    "float32": "float32",
    "float": "float32",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "layercast": LAYERCAST,
}


def canonical_dtype(name: str) -> str:
    """'fp32' / 'bf16' / 'fp16' (or torch spellings) -> 'float32' / 'bfloat16' / 'float16';
    'layercast' stays 'layercast' (hf backend only)."""
    try:
        return DTYPE_ALIASES[name.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown dtype {name!r}; use one of fp32, bf16, fp16, layercast"
        ) from None


def check_backend_supports(
    backend: str, dtype: str, tensor_parallel_size: int, field_prefix: str = ""
) -> None:
    """The engine settings only one backend can run, refused before anything starts (a
    sweep config, `lab sample` and EngineConfig all call this, naming their own field):
    tensor parallelism needs vLLM (transformers runs on one device), and LayerCast is the hf
    backend's (vLLM's dtypes are its own)."""
    if backend == "hf" and tensor_parallel_size > 1:
        raise ConfigError(
            f"{field_prefix}tensor_parallel_size {tensor_parallel_size} needs the vllm backend; "
            "the hf backend (transformers) runs on one device"
        )
    if dtype == LAYERCAST and backend != "hf":
        raise ConfigError(
            f"{field_prefix}dtype layercast (bf16 weights, fp32 compute) is for the hf backend "
            f"only, not {backend}"
        )


@dataclass
class Request:
    """One prompt: a raw text prompt or a list of chat messages ({"role", "content"}; an agent's
    history also holds assistant `tool_calls` and `tool` results, as the OpenAI API does)."""

    id: str
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    #: this request's base seed, replacing SamplingConfig.seed (sample i uses seed + i), so
    #: requests in one call need not share random numbers. None: the call's seed.
    seed: int | None = None
    #: tool definitions (OpenAI function shape) rendered through the model's chat template
    #: (`apply_chat_template(tools=...)`) or sent to a server; chat messages only
    tools: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise LabError(f"request {self.id!r}: give exactly one of prompt or messages")
        if self.tools is not None and self.messages is None:
            raise LabError(f"request {self.id!r}: tools need chat messages, not a raw prompt")


@dataclass
class SamplingConfig:
    """How to sample. temperature 0 means greedy (argmax), whatever the other fields say."""

    temperature: float = 0.0
    #: nucleus sampling mass; 1.0 disables it
    top_p: float = 1.0
    #: keep only the k most likely tokens; 0 disables it
    top_k: int = 0
    #: new tokens at most per sample
    max_tokens: int = 64
    #: base seed; sample i uses seed + i. None: the backend draws one and records it (T > 0)
    seed: int | None = None
    #: samples per request
    n: int = 1
    #: how many top alternatives (token, logprob) to keep at each step
    logprobs: int = 5

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise LabError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise LabError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise LabError(f"top_k must be >= 0 (0 disables), got {self.top_k}")
        if self.max_tokens < 1:
            raise LabError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.n < 1:
            raise LabError(f"n must be >= 1, got {self.n}")
        if self.logprobs < 0:
            raise LabError(f"logprobs must be >= 0, got {self.logprobs}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def sample_seed(self, index: int, request: Request | None = None) -> int | None:
        """Seed of sample `index` of `request`: its own base seed when it has one."""
        base = request.seed if request is not None and request.seed is not None else self.seed
        return None if base is None else base + index

    def request_seed(self, request: Request) -> int | None:
        """The base seed `request` is sampled with."""
        return self.sample_seed(0, request)


@dataclass
class EngineConfig:
    """Everything that defines a running engine; records carry it so a result names its cause.

    Two configs that compare equal can share one running engine.
    """

    #: "hf" (transformers), "vllm" or "openai" (lab.backends.registry)
    backend: str = "hf"
    #: bundled model name, local checkpoint directory, or Hugging Face hub id
    model: str = DEFAULT_MODEL
    #: fp32 / bf16 / fp16 (stored canonically as float32 / bfloat16 / float16), or layercast
    #: (hf only: weights stored in bf16, every layer computed in fp32)
    dtype: str = "float32"
    #: "cpu", "cuda", "cuda:N", or "auto" (cuda when available)
    device: str = "auto"
    #: tensor-parallel degree (vLLM only; must divide the model's attention heads; on the CPU
    #: the ranks run unbound, VLLM_CPU_OMP_THREADS_BIND=nobind)
    tensor_parallel_size: int = 1
    #: run with batch-invariant kernels (hf: the lab's kernels; vllm: VLLM_BATCH_INVARIANT=1)
    batch_invariant: bool = False
    #: vLLM automatic prefix caching
    prefix_caching: bool = False
    #: vLLM: largest number of sequences scheduled together; hf: rows per forward pass
    max_num_seqs: int = 64
    #: vLLM: skip graph capture / compilation (much faster start on CPU)
    enforce_eager: bool = True
    #: vLLM: attention backend name (None: vLLM's choice)
    attention_backend: str | None = None
    #: context length cap (None: the model's own)
    max_model_len: int | None = None
    #: vLLM's gpu_memory_utilization; on CPU the share of node memory for KV cache (None: default)
    memory_fraction: float | None = None
    #: any other vLLM engine argument, passed through as is
    engine_args: dict[str, Any] = field(default_factory=dict)
    #: torch (OpenMP) threads the engine computes with in this process (None: the process's
    #: own); CPU matmul results can depend on it (lab.devices.torch_threads)
    num_threads: int | None = None
    #: "openai" backend: the server's OpenAI-compatible base URL (None: start a managed vLLM
    #: server on 127.0.0.1 from this config)
    base_url: str | None = None

    def __post_init__(self) -> None:
        self.dtype = canonical_dtype(self.dtype)
        registry.check_name(self.backend)
        if self.base_url is not None and self.backend != "openai":
            raise ConfigError("base_url is for the openai backend only")
        if self.engine_args and self.backend == "hf":  # else silently ignored
            raise ConfigError(
                f"engine_args ({', '.join(sorted(self.engine_args))}) are vLLM engine arguments; "
                "the hf backend takes none"
            )
        if self.tensor_parallel_size < 1:
            raise ConfigError(f"tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        check_backend_supports(self.backend, self.dtype, self.tensor_parallel_size)
        if self.max_num_seqs < 1:
            raise ConfigError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ConfigError(f"max_model_len must be >= 1, got {self.max_model_len}")
        if self.num_threads is not None:
            if self.num_threads < 1:
                raise ConfigError(f"num_threads must be >= 1, got {self.num_threads}")
            if not registry.BACKENDS[self.backend].in_process:
                raise ConfigError(
                    f"num_threads sets the threads of an engine in this process (hf, vllm); "
                    f"the {self.backend} backend's server runs with its own"
                )

    @classmethod
    def from_values(cls, values: Mapping[str, Any], **fixed: Any) -> EngineConfig:
        """THE builder of an engine configuration, shared by a sweep cell (its axes), `lab
        generate` / `lab serve` (their engine options) and an n-of-k run (its settings): the
        EngineConfig fields found in `values` (everything else ignored), `fixed` on top.
        `engine_args` must already be a mapping (lab.cli_options.parse_engine_args parses
        `--engine-arg KEY=VALUE`)."""
        names = {f.name for f in dataclasses.fields(cls)}
        chosen = {k: v for k, v in values.items() if k in names} | fixed
        args = chosen.get("engine_args")
        if args is None:
            chosen.pop("engine_args", None)
        elif not (isinstance(args, Mapping) and all(isinstance(k, str) for k in args)):
            raise ConfigError(f"engine_args must be a mapping NAME: VALUE, got {args!r}")
        else:
            chosen["engine_args"] = dict(args)
        return cls(**chosen)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> tuple[Any, ...]:
        """Hashable identity, used to reuse a running engine."""
        d = self.to_dict()
        d["engine_args"] = tuple(sorted((k, repr(v)) for k, v in self.engine_args.items()))
        return tuple(sorted(d.items()))


@dataclass
class TopLogprob:
    """One alternative at one step."""

    token_id: int
    logprob: float
    token: str


@dataclass
class Generation:
    """One sample of one request, with the token-level detail the determinism metrics need."""

    request_id: str
    #: which of the n samples this is (0-based)
    sample_index: int
    #: the seed this sample was drawn with (None only for greedy runs without a seed)
    seed: int | None
    backend: str
    prompt_token_ids: list[int]
    output_token_ids: list[int]
    #: logprob of each chosen token, from the distribution actually sampled from
    token_logprobs: list[float]
    #: at each step, the top alternatives sorted by logprob (descending); -inf entries dropped
    top_logprobs: list[list[TopLogprob]]
    text: str
    #: "stop" (end-of-sequence token), "length" (max_tokens or context), or "error"
    finish_reason: str
    #: seconds: "prefill" (batch prefill or time to first token), "total" (the whole call)
    timings: dict[str, float]
    engine: dict[str, Any]
    sampling: dict[str, Any]
    error: str | None = None
    #: tool calls a server's own parser found (openai backend with tools; OpenAI shape
    #: {"id", "type", "function": {"name", "arguments"}}); None: not parsed by the engine
    tool_calls: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Generation:
        d = dict(d)
        d["top_logprobs"] = [[TopLogprob(**alt) for alt in step] for step in d["top_logprobs"]]
        return cls(**d)


def error_generation(
    request: Request,
    sample_index: int,
    seed: int | None,
    message: str,
    engine: EngineConfig,
    sampling: SamplingConfig,
    prompt_token_ids: list[int] | None = None,
) -> Generation:
    """A record for a request that could not run (e.g. a prompt longer than the context)."""
    return Generation(
        request_id=request.id,
        sample_index=sample_index,
        seed=seed,
        backend=engine.backend,
        prompt_token_ids=prompt_token_ids or [],
        output_token_ids=[],
        token_logprobs=[],
        top_logprobs=[],
        text="",
        finish_reason="error",
        timings={},
        engine=engine.to_dict(),
        sampling=dataclasses.asdict(sampling),
        error=message,
    )


def context_overflow(
    request: Request,
    prompt_token_ids: list[int],
    context_length: int,
    engine: EngineConfig,
    sampling: SamplingConfig,
) -> list[Generation] | None:
    """Error records for every sample of a request whose prompt leaves no room to generate
    (the engines would reject the whole call; only this request fails), else None."""
    if len(prompt_token_ids) < context_length:
        return None
    message = (
        f"request {request.id!r}: prompt has {len(prompt_token_ids)} tokens, the context is "
        f"{context_length}"
    )
    return [
        error_generation(
            request, i, sampling.sample_seed(i, request), message, engine, sampling,
            prompt_token_ids,
        )
        for i in range(sampling.n)
    ]  # fmt: skip


def finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


class Backend(ABC):
    """One engine configuration, loaded once, generating many times."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config

    @abstractmethod
    def generate(self, requests: list[Request], sampling: SamplingConfig) -> list[Generation]:
        """Records for every request x sample, ordered by request then sample index.

        A request that cannot run yields error records; the others still complete.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine (memory, worker processes)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
