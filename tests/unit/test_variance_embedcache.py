"""The embeddings cache of a run directory: a rebuilt report reuses the first report's
embeddings (the model is not loaded) and every number stays the same; any change of texts,
embedder or a damaged file recomputes. Also: the HTML shows one output per case, not k."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import lab.variance.embedcache as embedcache
from lab.cases.loaders import load_cases
from lab.rundir import SAMPLES
from lab.store import RunStore
from lab.variance.analyze import analyze
from lab.variance.config import SampleConfig, read_settings
from lab.variance.report import build_report
from tests.unit.comparison_runs import draw, make_run
from tests.unit.test_variance_report import StubEmbedder


class CountingStub(StubEmbedder):
    """The hash-based stub embedder, counting the texts it embeds."""

    def __init__(self, name: str = "stub") -> None:
        self.name = name
        self.calls = 0

    def embed_cases(self, texts: list[list[str]]) -> torch.Tensor:
        self.calls += 1
        return super().embed_cases(texts)


def _no_model(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("the embedding model was loaded although the cache matched")


def _run(tmp_path: Path, cases: int = 12, k: int = 6) -> tuple[Path, SampleConfig]:
    """A finished synthetic run (report built once with the stub: the cache is written)."""
    rng = np.random.default_rng(5)
    outcomes = draw(rng.uniform(0.1, 0.9, cases), k, rng)
    path = make_run(tmp_path, "run", outcomes)
    return path, read_settings(path)


def test_rebuild_reuses_embeddings_and_every_number_is_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, config = _run(tmp_path)
    assert (path / "embeddings.npz").is_file()
    first = json.loads((path / "metrics.json").read_text())
    monkeypatch.setattr(embedcache, "Embedder", _no_model)
    stub = CountingStub()
    again = build_report(path, config, emit=lambda m: None, embedder=stub)  # type: ignore[arg-type]
    assert stub.calls == 0  # loaded from embeddings.npz
    assert json.loads((path / "metrics.json").read_text()) == first
    assert again.metrics == first


def test_cached_and_uncached_analysis_agree(tmp_path: Path) -> None:
    path, config = _run(tmp_path)
    cases = load_cases(str(tmp_path / "run-cases.jsonl"))
    entries = list(RunStore(path).entries(SAMPLES))
    plain, plain_rows = analyze(cases, entries, config, CountingStub(), None)  # type: ignore[arg-type]
    stub = CountingStub()
    cached, cached_rows = analyze(cases, entries, config, stub, path / "embeddings.npz")  # type: ignore[arg-type]
    assert stub.calls == 0
    assert cached == plain and cached_rows == plain_rows
    assert plain["run"]["embedder"] == "stub" and plain["run"]["embed_device"] == "cpu"


def test_default_embedder_hit_never_loads_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no embedder given, name and device come from the settings; a hit skips the load."""
    path, config = _run(tmp_path)
    texts = [[g["text"] for g in e["generations"]] for e in RunStore(path).entries(SAMPLES)]
    cache = tmp_path / "e.npz"
    stub = CountingStub(config.embedder)  # stands in for all-MiniLM-L6-v2 on the CPU
    emb, name, device = embedcache.embed_with_cache(cache, texts, config, stub)  # type: ignore[arg-type]
    monkeypatch.setattr(embedcache, "Embedder", _no_model)
    again, name2, device2 = embedcache.embed_with_cache(cache, texts, config, None)
    assert (name2, device2) == (name, device) == (config.embedder, "cpu")
    assert again.dtype == torch.float32 and torch.equal(again, emb)  # bit for bit


def test_a_changed_key_or_damaged_file_recomputes(tmp_path: Path) -> None:
    config = SampleConfig(cases="unused.jsonl", k=3, backend="hf")
    texts = [["a", "b", "c"], ["d", "e", "f"]]
    cache = tmp_path / "embeddings.npz"
    stub = CountingStub()

    def embed(t: list[list[str]], embedder: CountingStub = stub) -> torch.Tensor:
        return embedcache.embed_with_cache(cache, t, config, embedder)[0]  # type: ignore[arg-type]

    first = embed(texts)
    assert stub.calls == 1 and torch.equal(embed(texts), first) and stub.calls == 1
    changed = [["a", "b", "c"], ["d", "e", "g"]]
    assert not torch.equal(embed(changed), first) and stub.calls == 2  # a text changed
    embed(changed)
    assert stub.calls == 2  # the new texts are the cache's now
    other = CountingStub("another-model")
    embed(changed, other)
    assert other.calls == 1  # another embedder: its own embeddings
    cache.write_bytes(b"not an npz file")
    assert torch.equal(embed(texts), first) and stub.calls == 3  # damaged: recomputed, no error
    assert embedcache.load_cached(cache, embedcache.cache_key(texts, "stub", "cpu")) is not None
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, no temp file left


def test_html_shows_one_output_per_case_and_points_to_the_parquet(tmp_path: Path) -> None:
    cases, k = 6, 8
    outcomes = np.zeros((cases, k), dtype=bool)  # every sample fails: "no i j", all distinct
    path = make_run(tmp_path, "run", outcomes)
    page = (path / "report.html").read_text()
    metrics = json.loads((path / "metrics.json").read_text())
    worst = {c["id"]: c["worst"]["sample_index"] for c in metrics["cases"]}
    for i in range(cases):
        assert f"<pre>no {i} {worst[f'case-{i:03d}']}</pre>" in page
        shown = sum(f"no {i} {j}<" in page for j in range(k))
        assert 1 <= shown <= 2  # the worst output, and the majority answer when it differs
    assert f"All {cases * k} samples" in page and "samples.parquet" in page


def test_analysis_says_which_step_runs(tmp_path: Path) -> None:
    path, config = _run(tmp_path, cases=3, k=2)
    messages: list[str] = []
    build_report(path, config, emit=messages.append, embedder=CountingStub())  # type: ignore[arg-type]
    steps = [m for m in messages if m.startswith("analysis ")]
    assert steps == [
        "analysis 1/3: checks on 6 samples",
        f"analysis 2/3: embeddings of 6 outputs ({config.embedder})",
        "analysis 3/3: statistics, bootstrap intervals, cohorts",
    ]
