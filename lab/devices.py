"""Device and dtype resolution, and the checks that run before any engine starts."""

from __future__ import annotations

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
