"""The embeddings cache with the real all-MiniLM-L6-v2: what a rebuilt report loads is bit for
bit what the model computes, so the diversity numbers do not move (one model load)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import lab.variance.embedcache as embedcache
from lab.variance.config import SampleConfig
from lab.variance.diversity import Embedder, diversity


def test_cached_embeddings_equal_the_models_bit_for_bit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SampleConfig(cases="unused.jsonl", k=3, embed_device="cpu")
    texts = [
        ["Paris.", "The capital is Paris", "Lyon"],
        ["12", "7 + 5 = 12", '{"answer": 12}'],
    ]
    cache = tmp_path / "embeddings.npz"
    first, name, device = embedcache.embed_with_cache(cache, texts, config, None)  # loads MiniLM
    assert (name, device) == ("all-MiniLM-L6-v2", "cpu") and first.shape[:2] == (2, 3)

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("loaded the model although the cache matched")

    monkeypatch.setattr(embedcache, "Embedder", no_model)
    again, _, _ = embedcache.embed_with_cache(cache, texts, config, None)
    monkeypatch.undo()
    direct = Embedder(device="cpu").embed_cases(texts)  # what the report computed before
    assert torch.equal(again, first) and torch.equal(first, direct)
    a, b = diversity(first), diversity(again)
    assert torch.equal(a.vendi, b.vendi) and torch.equal(a.labels, b.labels)
    assert torch.equal(a.typicality, b.typicality)
