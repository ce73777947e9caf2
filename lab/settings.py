"""The one place the lab reads os.environ.

Every environment variable the lab honours is read here, so the rest of the code takes
explicit arguments and stays testable. Variables:

- LAB_CACHE_DIR: where prepared models and other caches live (default ~/.cache/determinism-lab).
- LAB_VLLM_CPU_KV_CACHE_GIB: KV cache size for vLLM on CPU machines when the engine config gives
  no memory_fraction (default 2). An explicit size does not depend on what else the process
  holds (vLLM's fraction is of the NUMA node, minus this process's resident memory).
- LAB_PROGRESS_INTERVAL: seconds between two progress lines of a long step (default 30; 0
  turns the periodic lines off).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

# Prefixes of variables that change numerics or engine behaviour; the environment record keeps them.
RECORDED_ENV_PREFIXES = (
    "VLLM_",
    "CUDA_",
    "CUBLAS_",
    "NCCL_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "PYTORCH_",
    "TORCH_",
    "HF_",
    "TRANSFORMERS_",
    "LAB_",
)


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The lab's cache directory: the explicit override, else $LAB_CACHE_DIR, else ~/.cache."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("LAB_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "determinism-lab"


def vllm_cpu_kv_cache_bytes() -> int:
    """KV cache bytes for vLLM on CPU machines."""
    return int(float(os.environ.get("LAB_VLLM_CPU_KV_CACHE_GIB", "2")) * 2**30)


def _recorded(environ: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in sorted(environ.items()) if k.startswith(RECORDED_ENV_PREFIXES)}


# As the process started, before vLLM's import and the lab's engines set their own switches
# (VLLM_DIST_IDENT is new in every process, VLLM_BATCH_INVARIANT follows the engine config,
# which records it): the record then says what the user's environment was, the same whether
# or not an engine ran earlier in the process, so a resumed run compares like with like.
_AT_START = _recorded(dict(os.environ))


def recorded_environment() -> dict[str, str]:
    """Environment variables that can change numerics, as set when the process started."""
    return dict(_AT_START)


def progress_interval(default: float) -> float:
    """Seconds between two progress lines of a long step ($LAB_PROGRESS_INTERVAL)."""
    value = os.environ.get("LAB_PROGRESS_INTERVAL")
    try:
        return max(0.0, float(value)) if value else default
    except ValueError:
        return default


def hf_offline() -> bool:
    """Whether the user asked Hugging Face libraries to stay offline."""
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")


def set_env(name: str, value: str) -> None:
    """Set a variable that a third-party engine reads (vLLM reads its switches from the env)."""
    os.environ[name] = value


def env_value(name: str) -> str | None:
    """Read one variable (for engines whose state lives in env vars, e.g. vLLM switches)."""
    return os.environ.get(name)


@contextmanager
def temporary_env(values: Mapping[str, str]) -> Iterator[None]:
    """Set variables for the duration of a block (e.g. what spawned engine workers inherit),
    then restore each one as it was (unset when it was unset)."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
