"""`lab sample` for real: k=8 over a few cases on SmolLM2 through both engines, every artifact,
and a run that is stopped part-way and resumed without duplicates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lab.backends import Backend
from lab.rundir import SAMPLES
from lab.store import RunStore
from lab.variance.config import SampleConfig, parse_gate
from lab.variance.diversity import Embedder
from lab.variance.runner import run_sample

pytestmark = pytest.mark.model

K = 8
CASES = [
    {
        "id": "france",
        "prompt": "What is the capital of France? Answer in one word.",
        "checks": [{"contains": "Paris"}],
        "tags": ["facts"],
    },
    {
        "id": "mul",
        "prompt": "What is 17 times 23? Answer with just the number.",
        "checks": [{"numeric": 391}],
        "tags": ["arithmetic"],
    },
    {
        "id": "sentiment",
        "prompt": "Classify the sentiment as positive or negative. Answer with "
        "one word.\nReview: The food was cold and the service was terrible.",
        "checks": [{"one_of": ["positive", "negative"], "answer": "negative"}],
        "tags": ["cls"],
    },
]
ARTIFACTS = (
    "config.json",
    "environment.json",
    "settings.json",
    "cases.json",
    "samples.jsonl",
    "samples.parquet",
    "metrics.json",
    "summary.md",
    "report.html",
)


@pytest.fixture(scope="module")
def embedder() -> Iterator[Embedder]:
    yield Embedder(device="cpu")


@pytest.fixture
def cases_file(tmp_path: Path) -> Path:
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in CASES) + "\n")
    return path


def config_for(cases_file: Path, out: Path, backend: str, **kw: object) -> SampleConfig:
    settings: dict[str, object] = {
        "cases": str(cases_file),
        "k": K,
        "backend": backend,
        "max_tokens": 12,
        "temperature": 0.7,
        "seed": 11,
        "out": str(out),
        "bootstrap_samples": 200,
        "embed_device": "cpu",
    }
    return SampleConfig(**(settings | kw))  # type: ignore[arg-type]


@pytest.fixture
def patched_embedder(embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reuse one loaded embedding model across tests (the runner builds one per report)."""
    import lab.variance.embedcache as embedcache  # where the report builds its embedder

    monkeypatch.setattr(embedcache, "Embedder", lambda *a, **kw: embedder)


def numpy_vendi(embeddings: np.ndarray) -> float:
    """Vendi score of k outputs: exp of the Shannon entropy of the eigenvalues of K/k, K their
    cosine-similarity matrix (Friedman & Dieng 2023), in float64 numpy."""
    e = embeddings.astype(np.float64)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    sim = np.clip(e @ e.T, -1.0, 1.0)
    eig = np.clip(np.linalg.eigvalsh(sim / len(sim)), 0.0, None)
    eig = eig[eig > 0] / eig.sum()
    return float(np.exp(-(eig * np.log(eig)).sum()))


def test_numpy_vendi_bounds() -> None:
    """The recomputation's own controls: identical outputs -> 1, orthogonal ones -> k."""
    assert numpy_vendi(np.ones((K, 5), dtype=np.float32)) == pytest.approx(1.0, abs=1e-12)
    assert numpy_vendi(np.eye(K, dtype=np.float32)) == pytest.approx(K, abs=1e-9)


def outputs_by_case(run: Path) -> dict[str, list[str]]:
    """Each case's k output texts in sample order, cases in cases.json order (what the report
    embeds), read from samples.jsonl."""
    order = [c["id"] for c in json.loads((run / "cases.json").read_text())]
    texts: dict[str, list[str]] = {}
    for line in (run / "samples.jsonl").read_text().splitlines():
        entry = json.loads(line)
        gens = sorted(entry["generations"], key=lambda g: g["sample_index"])
        texts[entry["case_id"]] = [g["text"] for g in gens]
    return {case_id: texts[case_id] for case_id in order if case_id in texts}


def stored_vendi(run: Path) -> dict[str, float]:
    """Vendi per case from RUN/embeddings.npz ([C, k, d], cases in cases.json order)."""
    with np.load(run / "embeddings.npz") as data:
        embeddings = np.array(data["embeddings"])
    ids = list(outputs_by_case(run))
    assert embeddings.shape[:2] == (len(ids), K)
    return {case_id: numpy_vendi(embeddings[i]) for i, case_id in enumerate(ids)}


def test_sample_run_writes_every_artifact(
    backend: Backend, cases_file: Path, tmp_path: Path, embedder: Embedder, patched_embedder: None
) -> None:
    config = config_for(
        cases_file, tmp_path / "run", backend.config.backend, gate=parse_gate(["min_mean=1.01"])
    )
    messages: list[str] = []
    outcome = run_sample(config, backend=backend, emit=messages.append)
    assert outcome.complete and outcome.sampled_cases == len(CASES)
    for name in ARTIFACTS:
        assert (outcome.path / name).is_file(), name
    assert any(m.startswith(f"sampled {len(CASES) * K}/{len(CASES) * K}") for m in messages)
    metrics = json.loads((outcome.path / "metrics.json").read_text())
    assert metrics["run"]["cases"] == len(CASES) and metrics["run"]["k"] == K
    by_id = {c["id"]: c for c in metrics["cases"]}
    # The model knows this one better than it multiplies (exact counts depend on the engine).
    assert by_id["france"]["successes"] >= 1
    assert by_id["mul"]["successes"] <= by_id["france"]["successes"]
    assert metrics["gate"]["passed"] is False  # min_mean > 1 cannot pass
    assert metrics["cost"]["inferences"] == len(CASES) * K
    assert metrics["cost"]["tokens_out"] > 0 and metrics["cost"]["wall_s"] > 0
    # Vendi recomputed here from the stored embeddings (numpy, not the lab's torch code)
    recomputed = stored_vendi(outcome.path)
    assert set(recomputed) == set(by_id)
    for case_id, vendi in recomputed.items():
        assert by_id[case_id]["vendi"] == pytest.approx(vendi, abs=1e-6), case_id
    assert max(recomputed.values()) > 1.05  # sampled at T=0.7: not k copies (control below)
    assert metrics["headline"]["mean_vendi"] == pytest.approx(
        float(np.mean(list(recomputed.values()))), abs=1e-6
    )
    # ... and the stored embeddings are these outputs' (a stale cache would not be)
    texts = outputs_by_case(outcome.path)
    with np.load(outcome.path / "embeddings.npz") as data:
        stored = np.array(data["embeddings"])
    again = embedder.embed(texts["france"]).cpu().numpy()
    assert np.abs(stored[list(texts).index("france")] - again).max() < 1e-4
    entries = list(RunStore(outcome.path).entries(SAMPLES))
    case_index = {c["id"]: j for j, c in enumerate(CASES)}
    for entry in entries:
        seeds = [g["seed"] for g in entry["generations"]]
        j = case_index[entry["case_id"]]
        assert seeds == [11 + j * K + i for i in range(K)]  # case j, sample i: seed + j*k + i
        assert {g["backend"] for g in entry["generations"]} == {backend.config.backend}
    import pyarrow.parquet as pq

    assert pq.read_metadata(outcome.path / "samples.parquet").num_rows == len(CASES) * K


def test_stopped_run_resumes_without_duplicates(
    hf_backend: Backend, cases_file: Path, tmp_path: Path, patched_embedder: None
) -> None:
    out = tmp_path / "run"
    # One case per engine call, so the run can stop between cases.
    config = config_for(cases_file, out, "hf", rows_per_call=K)
    first = run_sample(config, backend=hf_backend, emit=lambda m: None, stop_after_cases=2)
    assert not first.complete and first.sampled_cases == 2
    assert not (out / "metrics.json").exists()
    log = RunStore(out).log_path(SAMPLES)
    before = log.read_text()
    assert before.count("\n") == 2
    # A kill in the middle of the next write leaves a partial line; resume must drop it.
    with open(log, "a") as fh:
        fh.write('{"key": "mul", "case_id": "mul", "generations": [{"te')
    messages: list[str] = []
    second = run_sample(config, backend=hf_backend, emit=messages.append)
    assert second.complete and second.sampled_cases == len(CASES) - 2
    assert any(f"resuming: 2 of {len(CASES)}" in m for m in messages)
    text = log.read_text()
    assert text.startswith(before)  # finished cases untouched
    keys = [json.loads(line)["key"] for line in text.splitlines()]
    assert sorted(keys) == sorted(str(c["id"]) for c in CASES)  # each case exactly once
    # Once more: nothing left to sample, the report is rebuilt, nothing is appended.
    third = run_sample(config, backend=hf_backend, emit=lambda m: None)
    assert third.sampled_cases == 0 and log.read_text() == text
    assert (out / "report.html").is_file()


def test_changed_settings_refuse_to_resume(
    hf_backend: Backend, cases_file: Path, tmp_path: Path, patched_embedder: None
) -> None:
    out = tmp_path / "run"
    config = config_for(cases_file, out, "hf", rows_per_call=K)
    run_sample(config, backend=hf_backend, emit=lambda m: None, stop_after_cases=0)
    changed = config_for(cases_file, out, "hf", rows_per_call=K, temperature=1.0)
    with pytest.raises(Exception, match="different config"):
        run_sample(changed, backend=hf_backend, emit=lambda m: None)


def test_identical_outputs_have_vendi_one(
    hf_backend: Backend, cases_file: Path, tmp_path: Path, patched_embedder: None
) -> None:
    """Negative control for the diversity numbers: greedy decoding gives k identical outputs
    per case, so every case's Vendi is 1 (the T=0.7 run above must, and does, exceed it)."""
    config = config_for(cases_file, tmp_path / "greedy", "hf", temperature=0.0, max_tokens=6)
    outcome = run_sample(config, backend=hf_backend, emit=lambda m: None)
    metrics = json.loads((outcome.path / "metrics.json").read_text())
    texts = outputs_by_case(outcome.path)
    assert all(len(set(t)) == 1 for t in texts.values())  # k identical outputs per case
    recomputed = stored_vendi(outcome.path)
    for case in metrics["cases"]:
        assert case["vendi"] == pytest.approx(1.0, abs=1e-6), case["id"]
        assert recomputed[case["id"]] == pytest.approx(1.0, abs=1e-6)
        assert case["clusters"] == 1 and case["semantic_entropy"] == 0.0
