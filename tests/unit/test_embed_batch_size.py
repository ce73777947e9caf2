"""The diversity embedder's batch size: chosen per device (small on the CPU, large on a GPU)
and part of the embeddings cache key, so a run's stored embeddings are never reused for
another batch size (padding per batch moves an embedding's last bits). No model loaded.

    .venv/bin/python -m pytest -q tests/unit/test_embed_batch_size.py
"""

from __future__ import annotations

from pathlib import Path

import torch

import lab.variance.embedcache as embedcache
from lab.variance.config import SampleConfig
from lab.variance.diversity import BATCH_SIZES, default_batch_size
from tests.unit.test_variance_embedcache import CountingStub


def test_batch_size_per_device() -> None:
    assert default_batch_size("cpu") == BATCH_SIZES["cpu"]
    assert default_batch_size("cuda") == default_batch_size("cuda:1") == BATCH_SIZES["cuda"]
    assert default_batch_size("mps") == BATCH_SIZES["cpu"]  # another kind: the CPU's
    assert BATCH_SIZES["cpu"] < BATCH_SIZES["cuda"]


def test_the_cache_key_holds_the_batch_size() -> None:
    texts = [["a", "b"], ["c", "d"]]
    cpu = embedcache.cache_key(texts, "m", "cpu")
    assert cpu["batch_size"] == default_batch_size("cpu")
    assert embedcache.cache_key(texts, "m", "cuda")["batch_size"] == default_batch_size("cuda")
    assert embedcache.cache_key(texts, "m", "cpu", 128) != cpu


class SizedStub(CountingStub):
    """The stub embedder with a batch size, as Embedder has."""

    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self.batch_size = batch_size


def test_embeddings_of_another_batch_size_are_not_reused(tmp_path: Path) -> None:
    config = SampleConfig(cases="unused.jsonl", k=2, backend="hf")
    texts = [["a", "b"], ["c", "d"]]
    cache = tmp_path / "embeddings.npz"
    small, large = SizedStub(32), SizedStub(128)
    first = embedcache.embed_with_cache(cache, texts, config, small)[0]
    embedcache.embed_with_cache(cache, texts, config, small)
    assert small.calls == 1  # same batch size: reused
    again = embedcache.embed_with_cache(cache, texts, config, large)[0]
    assert large.calls == 1  # another batch size: embedded again
    assert torch.equal(first, again)  # (the stub's vectors do not depend on it)
