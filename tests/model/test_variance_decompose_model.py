"""The variance decomposition, the confidently-wrong classes and the weighted semantic entropy on
a real run (SmolLM2 through transformers, the real embedder), recomputed from the run's own
samples.parquet; and the gate's consistent-wrong ceiling failing with exit code 1.

    .venv/bin/python -m pytest -q tests/model/test_variance_decompose_model.py
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lab.variance.config import SampleConfig
from lab.variance.runner import run_sample

pytestmark = pytest.mark.model

K = 4
CASES = [
    # the model answers Paris every time: with a check for Berlin, the samples agree and fail
    {"id": "sure-wrong", "prompt": "What is the capital of France? Answer in one word.",
     "checks": [{"contains": "Berlin"}]},
    {"id": "sure-right", "prompt": "What is the capital of France? Answer in one word.",
     "checks": [{"contains": "Paris"}]},
    {"id": "mul", "prompt": "What is 17 times 23? Answer with just the number.",
     "checks": [{"numeric": 391}]},
]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("decompose")
    cases = root / "cases.jsonl"
    cases.write_text("\n".join(json.dumps(c) for c in CASES) + "\n")
    config = SampleConfig(
        cases=str(cases), k=K, backend="hf", max_tokens=12, temperature=0.1, seed=5,
        out=str(root / "run"), bootstrap_samples=200, embed_device="cpu",
    )  # fmt: skip
    outcome = run_sample(config, emit=lambda line: None)
    assert outcome.complete
    return outcome.path


def test_decomposition_and_classes_recomputed_from_the_samples(run_dir: Path) -> None:
    import pyarrow.parquet as pq

    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = pq.read_table(run_dir / "samples.parquet").to_pylist()
    ids = [c["id"] for c in metrics["cases"]]
    passed = np.array(
        [[r["passed"] for r in rows if r["case_id"] == i] for i in ids], dtype=float
    )  # [C, k]
    rates = passed.mean(axis=1)
    dec = metrics["variance_decomposition"]
    # independent: the one-way ANOVA mean squares of the 0/1 outcomes
    c = len(ids)
    msw = ((passed - rates[:, None]) ** 2).sum() / (c * (K - 1))
    msb = K * ((rates - rates.mean()) ** 2).sum() / (c - 1)
    assert dec["within"] == pytest.approx(msw, abs=1e-12)
    assert dec["between"] == pytest.approx(max(0.0, (msb - msw) / K), abs=1e-12)
    assert dec["between_share"] == pytest.approx(dec["between"] / (dec["between"] + msw))
    by_id = {x["id"]: x for x in metrics["cases"]}
    assert by_id["sure-wrong"]["successes"] == 0 and by_id["sure-right"]["successes"] == K
    # Paris every time: one cluster; both cases agree, one with its checks, one against them
    assert by_id["sure-wrong"]["consistency"] == "consistent-wrong"
    assert by_id["sure-right"]["consistency"] == "consistent-correct"
    head = metrics["headline"]
    counted = sum(x["consistency"] == "consistent-wrong" for x in metrics["cases"])
    assert head["consistent_wrong"] == counted >= 1
    assert head["consistent_wrong_share"] == pytest.approx(counted / c)
    # weighted semantic entropy from the stored clusters and token logprobs, by hand
    for case_id in ids:
        mine = [r for r in rows if r["case_id"] == case_id]
        weights: dict[int, float] = {}
        for r in mine:
            lps = r["token_logprobs"]
            w = math.exp(sum(lps) / len(lps))
            weights[r["cluster"]] = weights.get(r["cluster"], 0.0) + w
        total = sum(weights.values())
        expect = -sum(w / total * math.log(w / total) for w in weights.values())
        assert by_id[case_id]["semantic_entropy_weighted"] == pytest.approx(expect, abs=1e-9)
    summary = (run_dir / "summary.md").read_text()
    report = (run_dir / "report.html").read_text()
    for text in (summary, report):
        assert "within-case (sampling) share" in text
        assert f"consistent-wrong {counted}" in text
        assert "sure-wrong" in text


def test_gate_ceiling_fails_a_real_run(run_dir: Path) -> None:
    head = json.loads((run_dir / "metrics.json").read_text())["headline"]
    share, count = head["consistent_wrong_share"], head["consistent_wrong"]
    assert count >= 1  # sure-wrong at least
    command = [sys.executable, "-m", "lab.cli", "sample-report", str(run_dir)]
    failed = subprocess.run(
        [*command, "--gate", "max_consistent_wrong=0.2"], capture_output=True, text=True
    )
    assert failed.returncode == 1, failed.stderr
    assert f"consistent-wrong share {share:.3f} ({count} cases) > max_consistent_wrong 0.2" in (
        failed.stdout + failed.stderr
    )
    passed = subprocess.run(
        [*command, "--gate", f"max_consistent_wrong={share}"], capture_output=True, text=True
    )
    assert passed.returncode == 0, passed.stderr
    bad = subprocess.run(
        [*command, "--gate", "max_consistent_wrong=x"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "max_consistent_wrong must be a number" in bad.stderr
