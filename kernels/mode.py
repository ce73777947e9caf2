"""The batch-invariant switch: route aten operators through the lab's kernels, and back.

    from lab.kernels import set_batch_invariant_mode
    with set_batch_invariant_mode():  # CPU kernels, plus Triton ones when CUDA is up
        logits = model(input_ids)     # mm, addmm, bmm, mean.dim, (log_)softmax and
                                      # scaled_dot_product_attention (CPU: also silu,
                                      # sigmoid, gelu, rsqrt) run batch-invariant kernels

Overrides are registered with `torch.library.Library("aten", "IMPL")` for the CPU and/or CUDA
dispatch keys, so every caller (transformers included) gets them without code changes.
Registration is global to the process (not per thread). The context manager restores the
exact previous state on exit, exception or not, nested or not: on inside on, off inside on,
on inside off.
"""

from __future__ import annotations

import contextlib
import importlib.util
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

#: devices the mode can cover, with the name recorded for each
KERNEL_NAMES = {"cpu": "lab.kernels/cpu", "cuda": "lab.kernels/triton"}


@dataclass(frozen=True)
class _State:
    devices: tuple[str, ...] = ()  # empty: the mode is off


_state = _State()
_library: Any = None  # the live torch.library.Library while the mode is on


def is_batch_invariant_mode() -> bool:
    """Whether aten operators are routed through the batch-invariant kernels right now."""
    return bool(_state.devices)


def active_devices() -> tuple[str, ...]:
    """The device types ("cpu", "cuda") whose operators are overridden right now."""
    return _state.devices


def kernel_name(device: str) -> str:
    """What a record names as the kernels used on `device` ("cpu", "cuda", "cuda:1"); raises
    ConfigError when the device has none (CUDA without triton, or an unknown device)."""
    from lab.errors import ConfigError

    kind = "cuda" if device.startswith("cuda") else device
    if kind not in KERNEL_NAMES:
        raise ConfigError(f"no batch-invariant kernels for device {device!r}; use cpu or cuda")
    if kind == "cuda" and importlib.util.find_spec("triton") is None:
        raise ConfigError("batch-invariant kernels on CUDA need triton, which is not installed")
    return KERNEL_NAMES[kind]


def _overrides(device: str) -> dict[str, Any]:
    if device == "cpu":
        from lab.kernels import cpu

        return cpu.OVERRIDES
    from lab.kernels import triton_ops  # imports triton: only when CUDA is asked for

    return triton_ops.OVERRIDES


def _apply(state: _State) -> None:
    """Make `state` the live one: drop the current registrations, register the new ones."""
    global _state, _library
    if _library is not None:
        _library._destroy()
        _library = None
    _state = _State()
    if not state.devices:
        return
    library = torch.library.Library("aten", "IMPL")
    try:
        with warnings.catch_warnings():
            # torch warns once that an existing kernel is being overridden: that is the point.
            warnings.filterwarnings("ignore", message=".*[Oo]verrid.*")
            for device in state.devices:
                for op, fn in _overrides(device).items():
                    library.impl(op, fn, device.upper())
    except BaseException:
        library._destroy()
        raise
    _library, _state = library, state


def _devices_for(device: str | None) -> tuple[str, ...]:
    if device is None:
        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    kind = "cuda" if device.startswith("cuda") else device
    if kind not in KERNEL_NAMES:
        raise ValueError(f"no batch-invariant kernels for device {device!r}; use cpu or cuda")
    return (kind,)


@contextlib.contextmanager
def set_batch_invariant_mode(enabled: bool = True, device: str | None = None) -> Iterator[None]:
    """Within the block, the relevant aten operators run batch-invariant kernels (or, with
    enabled=False, their stock kernels). device: "cpu", "cuda", or None for the CPU plus CUDA
    when a GPU is present. The previous state comes back on exit."""
    previous = _state
    try:
        _apply(_State(_devices_for(device)) if enabled else _State())
    except BaseException:  # e.g. triton missing for CUDA: leave things as they were
        _apply(previous)
        raise
    try:
        yield
    finally:
        _apply(previous)
