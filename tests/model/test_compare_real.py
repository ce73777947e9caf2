"""`lab compare` and `lab plan` on two real tiny runs of SmolLM2 (hf, 3 cases, k=4, two seeds).

The runs go through run_sample (what `lab sample` calls) on the session's hf engine, so the
model loads once; the comparison runs through the CLI in a subprocess, as a user would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.backends import Backend
from lab.variance.config import SampleConfig
from lab.variance.diversity import Embedder
from lab.variance.runner import run_sample
from tests.unit.test_cli import run_lab

pytestmark = pytest.mark.model

CASES = [
    {
        "id": "france",
        "prompt": "What is the capital of France? Answer in one word.",
        "checks": [{"contains": "Paris"}],
        "tags": ["facts"],
    },
    {
        "id": "add",
        "prompt": "What is 2 + 2? Answer with just the number.",
        "checks": [{"numeric": 4}],
        "tags": ["arithmetic"],
    },
    {
        "id": "sentiment",
        "prompt": "Is this review positive or negative? Answer with one word.\n"
        "Review: I loved it, <b>wonderful</b> film.",
        "checks": [{"one_of": ["positive", "negative"], "answer": "positive"}],
        "tags": ["cls"],
    },
]


def test_two_seeds_compared_through_the_cli(
    hf_backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lab.variance.embedcache as embedcache  # where the report builds its embedder

    embedder = Embedder(device="cpu")  # one load for both reports
    monkeypatch.setattr(embedcache, "Embedder", lambda *a, **kw: embedder)
    cases = tmp_path / "cases.jsonl"
    cases.write_text("\n".join(json.dumps(c) for c in CASES) + "\n")
    runs = []
    for seed in (1, 2):
        config = SampleConfig(
            cases=str(cases),
            k=4,
            backend="hf",
            device="cpu",
            max_tokens=12,
            temperature=0.7,
            seed=seed,
            out=str(tmp_path / f"seed{seed}"),
            bootstrap_samples=50,
            embed_device="cpu",
        )
        outcome = run_sample(config, backend=hf_backend, emit=lambda m: None)
        assert outcome.complete
        runs.append(outcome.path)

    out = tmp_path / "cmp"
    result = run_lab("compare", str(runs[0]), str(runs[1]), "--out", str(out), "--bootstrap", "300")
    assert result.returncode == 0, result.stderr
    for name in ("comparison.json", "comparison.md", "comparison.html"):
        assert (out / name).is_file(), name
    report = json.loads((out / "comparison.json").read_text())
    comparison = report["comparisons"][0]
    assert comparison["same_config"] is True  # only the seed differs: a drift check
    assert comparison["config_differences"] == ["seed: 1 -> 2"]
    mean = comparison["metrics"]["mean"]
    # 3 cases: the exact sign-flip test cannot reach p < 0.05 (its smallest p is 2/8).
    assert "no detectable difference at this sample size" in mean["verdict"]
    assert mean["test_method"] == "exact" and mean["p"] >= 0.25
    assert -1 <= mean["ci"][0] <= mean["delta"] <= mean["ci"][1] <= 1
    assert set(comparison["diversity"]) >= {"mean_distance", "vendi", "semantic_entropy"}
    assert "mean success: no detectable difference" in result.stdout
    assert "<b>wonderful</b>" not in (out / "comparison.html").read_text()

    plan = run_lab("plan", "--baseline", str(runs[0]), "--delta", "0.1")
    assert plan.returncode in (0, 2), plan.stderr
    if plan.returncode == 0:
        assert "cases needed" in plan.stdout
    else:  # a baseline already at 100% cannot move up by 0.1
        assert "outside [0, 1]" in plan.stderr
