"""What the vLLM backend hands vLLM, without starting an engine: the keyword arguments of
vllm.LLM (tensor_parallel_size, prefix caching, eager mode, engine_args) and the environment it
sees while it starts (VLLM_BATCH_INVARIANT; on the CPU, the tensor-parallel worker variables).

`vllm` is replaced by a stand-in module whose LLM records its arguments and the environment;
the rest (model info from the bundled checkpoint, its tokenizer, the config) is real.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

import pytest

from lab.backends import EngineConfig
from lab.backends.vllm import VLLMBackend
from lab.models import DEFAULT_MODEL


class Started:
    """What the stand-in vllm.LLM was given."""

    kwargs: dict[str, Any] = {}
    env: dict[str, str] = {}


def _fake_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    class LLM:
        def __init__(self, **kwargs: Any) -> None:
            Started.kwargs = kwargs
            Started.env = dict(os.environ)

    vllm = types.ModuleType("vllm")
    envs = types.ModuleType("vllm.envs")
    envs.disable_envs_cache = lambda: None  # type: ignore[attr-defined]
    vllm.LLM = LLM  # type: ignore[attr-defined]
    vllm.__version__ = "0.0.0-stand-in"  # type: ignore[attr-defined]
    vllm.envs = envs  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.envs", envs)


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_vllm(monkeypatch)
    # the backend sets these process-wide; the test restores them afterwards
    for name in ("VLLM_BATCH_INVARIANT", "VLLM_LOGGING_LEVEL", "VLLM_ENABLE_V1_MULTIPROCESSING"):
        monkeypatch.delenv(name, raising=False)
    for name in ("OMP_NUM_THREADS", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU"):
        monkeypatch.delenv(name, raising=False)


def start(**settings: Any) -> VLLMBackend:
    config = EngineConfig(backend="vllm", model=DEFAULT_MODEL, device="cpu", **settings)
    return VLLMBackend(config)


def test_defaults_reach_vllm(fake_vllm: None) -> None:
    backend = start()
    kw = Started.kwargs
    assert kw["tensor_parallel_size"] == 1
    assert kw["enable_prefix_caching"] is False
    assert kw["enforce_eager"] is True and kw["logprobs_mode"] == "processed_logprobs"
    assert kw["dtype"] == backend.config.dtype == "float32"
    assert kw["max_num_seqs"] == backend.config.max_num_seqs
    assert "kv_cache_memory_bytes" in kw and "gpu_memory_utilization" not in kw
    assert Started.env["VLLM_BATCH_INVARIANT"] == "0"
    assert backend.engine_record["VLLM_BATCH_INVARIANT"] == "0"
    assert backend.engine_record["vllm_version"] == "0.0.0-stand-in"


def test_batch_invariant_on_a_gpu_is_set_before_vllm_starts(
    fake_vllm: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU path (no vLLM on the GPU machine): the switch is in the environment vllm.LLM
    starts with. The device is the only stand-in here; the CPU refuses the mode (below)."""
    import lab.backends.vllm as vllm_backend

    monkeypatch.setattr(vllm_backend, "resolve_device", lambda device: "cuda:0")
    monkeypatch.setattr(vllm_backend, "_batch_invariant_kernels_loaded", False)  # restored
    off = start(batch_invariant=False)  # negative control first: the kernels cannot unload
    assert Started.env["VLLM_BATCH_INVARIANT"] == "0"
    assert off.engine_record["batch_invariant_kernels"] is False
    backend = start(batch_invariant=True)
    assert Started.env["VLLM_BATCH_INVARIANT"] == "1"  # set before vllm.LLM starts
    assert backend.engine_record["batch_invariant_kernels"] is True
    # once loaded, a later engine without them is refused before it starts
    Started.kwargs = {}
    with pytest.raises(vllm_backend.ConfigError, match="cannot be unloaded"):
        start(batch_invariant=False)
    assert Started.kwargs == {}


def test_batch_invariant_on_the_cpu_is_refused_before_vllm_starts(fake_vllm: None) -> None:
    from lab.errors import LabError

    Started.kwargs = {}
    with pytest.raises(LabError, match="^vLLM batch-invariant mode needs a CUDA GPU"):
        start(batch_invariant=True)
    assert Started.kwargs == {}  # vllm.LLM never called
    start(batch_invariant=False)  # negative control: the same engine without the mode starts
    assert Started.kwargs and Started.env["VLLM_BATCH_INVARIANT"] == "0"


def test_tp_prefix_caching_and_engine_args(fake_vllm: None) -> None:
    backend = start(
        tensor_parallel_size=3,
        prefix_caching=True,
        enforce_eager=False,
        attention_backend="TORCH_SDPA",
        memory_fraction=0.5,
        engine_args={"seed": 7, "max_num_batched_tokens": 512},
    )
    kw = Started.kwargs
    assert kw["tensor_parallel_size"] == 3
    assert kw["enable_prefix_caching"] is True and kw["enforce_eager"] is False
    assert kw["attention_backend"] == "TORCH_SDPA"
    assert kw["gpu_memory_utilization"] == 0.5 and "kv_cache_memory_bytes" not in kw
    assert kw["seed"] == 7 and kw["max_num_batched_tokens"] == 512  # engine_args win
    # CPU tensor parallelism: the worker variables are set while vLLM starts, then restored
    assert Started.env.get("VLLM_CPU_OMP_THREADS_BIND") == "nobind"
    assert "VLLM_CPU_OMP_THREADS_BIND" not in os.environ
    record = backend.engine_record
    assert record["tensor_parallel_size"] == 3 and record["prefix_caching"] is True
    assert record["cpu_tensor_parallel"]["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"


def test_a_tp_degree_that_does_not_divide_the_heads_never_starts_vllm(fake_vllm: None) -> None:
    from lab.errors import ConfigError

    Started.kwargs = {}
    with pytest.raises(ConfigError, match="does not divide"):
        start(tensor_parallel_size=2)  # 9 attention heads
    assert Started.kwargs == {}


def test_engine_args_on_the_hf_backend_are_refused_not_ignored() -> None:
    from lab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"engine_args \(block_size\) are vLLM engine arguments"):
        EngineConfig(backend="hf", engine_args={"block_size": 32})
    assert EngineConfig(backend="vllm", engine_args={"block_size": 32}).engine_args == {
        "block_size": 32
    }
