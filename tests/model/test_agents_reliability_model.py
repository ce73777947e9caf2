"""hal-harness reliability on a real agent run: `lab sample` in a subprocess, the bundled SmolLM2
through transformers, two agent cases with the bundled tools, k=3, 2 turns of 16 tokens.
metrics.json carries every consistency value per case and per run; each is recomputed here
from the stored trajectories (trajectories.jsonl) and the per-trajectory verdicts
(samples.parquet) with the definitions written out in this file; the report shows them, each
labelled with its form."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

import lab.cases

pytestmark = pytest.mark.model

K = 3
KEYS = (
    "outcome", "trajectory_distribution", "trajectory_sequence", "trajectory_distribution_all",
    "trajectory_sequence_all", "resource",
)  # fmt: skip
# "yes" passes on any final answer (its successes make the success-conditioned forms
# defined); "add" is the bundled calculator task, which the model mostly fails
CASES = """
tools:
  - &calculator
    type: function
    function:
      name: calculator
      description: Evaluate an arithmetic expression.
      parameters:
        type: object
        properties: {expression: {type: string, examples: ["6 * 7"]}}
        required: [expression]
environment: &env {module: agenttools.py}
cases:
  - id: "yes"
    prompt: "Is water wet? Reply with ANSWER: yes or ANSWER: no."
    tools: [*calculator]
    environment: *env
    checks: [{regex: "."}]
  - id: add
    prompt: What is 1234 + 4321? Use the calculator.
    tools: [*calculator]
    environment: *env
    checks: [{numeric: 5555}, {called: calculator}]
"""


def names_of(traj: dict[str, Any]) -> list[str]:
    """One name per tool call, else the step's kind."""
    out: list[str] = []
    for s in traj["steps"]:
        out += [c["name"] for c in s["calls"]] if s["calls"] else [s["kind"]]
    return out


def js_divergence(a: list[str], b: list[str]) -> float:
    keys = sorted(set(a) | set(b))
    p = np.array([a.count(x) / len(a) for x in keys])
    q = np.array([b.count(x) / len(b) for x in keys])
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        return float(sum(xi * math.log2(xi / mi) for xi, mi in zip(x, m, strict=True) if xi))

    return (kl(p) + kl(q)) / 2


def edit(a: list[str], b: list[str]) -> int:
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(
                d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])
            )
    return d[-1][-1]


def pairwise(trajs: list[list[str]], f: Any) -> float | None:
    kept = [t for t in trajs if t]
    return float(np.mean([f(a, b) for a, b in combinations(kept, 2)])) if len(kept) > 1 else None


def similarity(a: list[str], b: list[str]) -> float:
    return 1 - edit(a, b) / max(len(a), len(b))


def one_minus(x: float | None) -> float | None:
    return None if x is None else 1 - x


def cv_positive(values: list[int]) -> float | None:
    kept = [v for v in values if v > 0]
    return float(np.std(kept, ddof=1) / np.mean(kept)) if len(kept) > 1 else None


def expected(trajs: list[dict[str, Any]], passed: list[bool]) -> dict[str, Any]:
    names = [names_of(t) for t in trajs]
    wins = [n for n, ok in zip(names, passed, strict=True) if ok]
    p = sum(passed) / len(passed)
    cvs = {
        "tokens": cv_positive([sum(len(s["output_token_ids"]) for s in t["steps"]) for t in trajs]),
        "calls": cv_positive([sum(len(s["calls"]) for s in t["steps"]) for t in trajs]),
        "turns": cv_positive([len(t["steps"]) for t in trajs]),
    }
    defined = [v for v in cvs.values() if v is not None]
    return {
        "outcome": (2 * p - 1) ** 2,
        "trajectory_distribution": one_minus(pairwise(wins, js_divergence)),
        "trajectory_sequence": pairwise(wins, similarity),
        "trajectory_distribution_all": one_minus(pairwise(names, js_divergence)),
        "trajectory_sequence_all": pairwise(names, similarity),
        "resource": math.exp(-float(np.mean(defined))) if defined else None,
        "cv": cvs,
    }


def close(got: float | None, want: float | None) -> bool:
    return (got is None) == (want is None) and (got is None or got == pytest.approx(want))


def test_hal_reliability_in_metrics_and_report(tmp_path: Path) -> None:
    shutil.copy(Path(lab.cases.__file__).parent / "agenttools.py", tmp_path / "agenttools.py")
    (tmp_path / "cases.yaml").write_text(CASES)
    out = tmp_path / "run"
    args = [
        "sample", "--cases", str(tmp_path / "cases.yaml"), "--backend", "hf", "--device", "cpu",
        "--k", str(K), "--max-tokens", "16", "--max-turns", "2", "--tool-protocol", "text",
        "--seed", "1", "--out", str(out),
    ]  # fmt: skip
    # lab sample in a subprocess, as a user runs it (on shared CPUs: more than run_lab's 120 s)
    result = subprocess.run(
        [sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    trajs: dict[str, list[dict[str, Any]]] = {}
    for line in (out / "trajectories.jsonl").read_text().splitlines():
        entry = json.loads(line)
        trajs.setdefault(entry["case_id"], []).append(entry)
    verdicts = pq.read_table(out / "samples.parquet").to_pylist()
    assert len(verdicts) == 2 * K
    successes = 0
    for case in metrics["cases"]:
        ts = sorted(trajs[case["id"]], key=lambda t: t["sample_index"])
        passed = [
            r["passed"]
            for r in sorted(verdicts, key=lambda r: r["sample_index"])
            if r["case_id"] == case["id"]
        ]
        successes += sum(passed)
        rel, want = case["agent"]["reliability"], expected(ts, passed)
        for key in KEYS:
            assert close(rel[key], want[key]), (case["id"], key, rel[key], want[key])
            assert rel[key] is None or 0.0 <= rel[key] <= 1.0
            assert (rel[key] is None) == (key in rel["undefined"])  # undefined: said why
        assert all(close(rel["cv"][k], want["cv"][k]) for k in ("tokens", "calls", "turns"))
        # the unanimity form beside it: 1 iff all k agree
        assert case["agent"]["outcome_consistency"] == float(len(set(passed)) == 1)
    defined = [
        c for c in metrics["cases"] if c["agent"]["reliability"]["trajectory_sequence"] is not None
    ]
    assert defined, f"{successes} passed, no case twice: the success-conditioned forms untested"
    run = metrics["agent"]["reliability"]
    for key in ("outcome", "trajectory_distribution", "trajectory_sequence", "resource"):
        values = [c["agent"]["reliability"][key] for c in metrics["cases"]]
        kept = [v for v in values if v is not None]
        assert close(run[key]["value"], float(np.mean(kept)) if kept else None)
        assert (run[key]["cases"], run[key]["undefined"]) == (len(kept), len(values) - len(kept))
    parts = [run["outcome"]["value"], run["resource"]["value"]]
    forms = [v for v in (run["trajectory_distribution"]["value"],
                         run["trajectory_sequence"]["value"]) if v is not None]  # fmt: skip
    parts += [float(np.mean(forms))] if forms else []
    assert run["r_con"]["value"] == pytest.approx(np.mean([v for v in parts if v is not None]))
    for page in ((out / "summary.md").read_text(), (out / "report.html").read_text()):
        assert "Reliability (hal-harness consistency)" in page
        assert "(2p-1)^2, hal-harness code form" in page
        assert "unanimity form" in page and "R_con" in page
        assert "trajectory consistency, sequence (their order)" in page
