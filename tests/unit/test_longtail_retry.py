"""Retry-policy estimates against hand-computed cases and brute-force enumeration (no model).

Runs are synthetic run directories in the layout lab sample writes (cases.json and
samples.jsonl through RunStore), so the real reader and the real checks decide pass / fail.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from lab.errors import LabError
from lab.longtail.retry import (
    CaseOutcomes,
    load_outcomes,
    retry_case,
    retry_report,
    run_retry,
)
from lab.rundir import SAMPLES
from lab.store import RunStore
from tests.unit.test_cli import run_lab

K = 4
PROMPT = [1, 2, 3]  # 3 prompt tokens
PASS_OUT, FAIL_OUT = [7, 7], [8, 8, 8, 8, 8, 8]  # 2 / 6 output tokens: 5 / 9 tokens in all


def make_run(root: Path, successes: dict[str, int], k: int = K) -> Path:
    """Case id -> number of passing samples (the first c samples pass)."""
    root.mkdir(parents=True)
    cases = [{"id": cid, "prompt": "Say yes", "checks": [{"exact": "yes"}]} for cid in successes]
    (root / "cases.json").write_text(json.dumps(cases))
    store = RunStore(root)
    for cid, c in successes.items():
        gens = [
            {
                "request_id": cid,
                "sample_index": i,
                "seed": i,
                "prompt_token_ids": PROMPT,
                "output_token_ids": PASS_OUT if i < c else FAIL_OUT,
                "token_logprobs": [],
                "text": "yes" if i < c else "no",
                "finish_reason": "stop",
            }
            for i in range(k)
        ]
        store.append(SAMPLES, cid, {"case_id": cid, "wall_s": 1.0, "generations": gens})
    return root


def _policies(report: dict) -> dict[str, dict]:
    return {p["policy"]: p for p in report["policies"]}


def test_perfectly_correlated_failures_gain_nothing(tmp_path: Path) -> None:
    run = load_outcomes(make_run(tmp_path / "a", {"p1": 4, "p2": 4, "f1": 0, "f2": 0}))
    assert [c.successes for c in run] == [4, 4, 0, 0]
    report = retry_report(run, max_attempts=3)
    pol = _policies(report)
    one, three = pol["one attempt"], pol["same config, up to 3 attempts"]
    assert one["success"] == 0.5 and three["success"] == 0.5  # retrying never helps
    assert three["independence_prediction"] == pytest.approx(1 - 0.5**3)  # 0.875
    assert three["independence_overestimate"] == pytest.approx(0.375)
    assert three["expected_attempts"] == pytest.approx((1 + 1 + 3 + 3) / 4)
    assert three["expected_tokens"] == pytest.approx((5 + 5 + 27 + 27) / 4)
    assert three["cases_never_solved"] == 2
    assert report["per_case"]["f1"]["up_to_3"] == 0.0


def test_mixed_case_by_hand(tmp_path: Path) -> None:
    run = load_outcomes(make_run(tmp_path / "a", {"zero": 0, "half": 2}))
    pol = _policies(retry_report(run, max_attempts=3))
    # half: 1 - C(2,2)/C(4,2) = 5/6 within 2 attempts; 1 within 3 (only 2 failures exist)
    two, three = pol["same config, up to 2 attempts"], pol["same config, up to 3 attempts"]
    assert two["success"] == pytest.approx((0 + 5 / 6) / 2)
    assert two["independence_prediction"] == pytest.approx(1 - 0.75**2)
    assert three["success"] == pytest.approx(0.5)
    assert three["independence_overestimate"] == pytest.approx(1 - 0.75**3 - 0.5)
    # attempts: zero 3; half 1 + P(1st fails)=1/2 + P(1st, 2nd fail)=1/6
    assert three["expected_attempts"] == pytest.approx((3 + 1 + 1 / 2 + 1 / 6) / 2)
    # tokens of half: first pass at attempt 1 (1/2): 5; at 2 (1/3): 14; at 3 (1/6): 23 -> 11
    assert three["expected_tokens"] == pytest.approx((27 + 11) / 2)


def test_fallback_by_hand(tmp_path: Path) -> None:
    a = load_outcomes(make_run(tmp_path / "a", {"zero": 0, "half": 2}))
    b = load_outcomes(make_run(tmp_path / "b", {"zero": 4, "half": 0}))
    fb = retry_report(a, 2, b, "a", "b")["policies"][-1]
    assert fb["policy"] == "fallback a -> b"
    assert fb["success"] == pytest.approx((1.0 + 0.5) / 2)  # p_A + (1 - p_A) p_B per case
    assert fb["independence_prediction"] == pytest.approx(1 - 0.75 * 0.5)
    assert fb["expected_attempts"] == pytest.approx((2 + 1.5) / 2)
    # zero: 9 (A fails) + 5 (B passes); half: mean A tokens 7 + 0.5 x 9 (B fails)
    assert fb["expected_tokens"] == pytest.approx((14 + 7 + 4.5) / 2)


@pytest.mark.parametrize(("k", "c", "r"), [(5, 2, 3), (6, 1, 4), (4, 3, 2), (5, 0, 5)])
def test_retry_case_equals_enumeration_of_orders(k: int, c: int, r: int) -> None:
    passed = [True] * c + [False] * (k - c)
    tokens = [4 + i for i in range(k)]  # every sample a different cost
    case = CaseOutcomes("x", passed, tokens)
    wins, attempts, cost = [], [], []
    for order in itertools.permutations(range(k)):
        tried = order[:r]
        first = next((n for n, i in enumerate(tried) if passed[i]), None)
        used = tried if first is None else tried[: first + 1]
        wins.append(first is not None)
        attempts.append(len(used))
        cost.append(sum(tokens[i] for i in used))
    got = retry_case(case, r)
    assert got["success"] == pytest.approx(np.mean(wins))
    assert got["attempts"] == pytest.approx(np.mean(attempts))
    assert got["tokens"] == pytest.approx(np.mean(cost))


def test_bad_input(tmp_path: Path) -> None:
    run = load_outcomes(make_run(tmp_path / "a", {"x": 1, "y": 2}))
    with pytest.raises(LabError, match="needs at least 5 samples per case"):
        retry_report(run, max_attempts=5)
    other = load_outcomes(make_run(tmp_path / "b", {"x": 1}))
    with pytest.raises(LabError, match="fallback run lacks 1 of the run's cases"):
        retry_report(run, 2, other)
    with pytest.raises(LabError, match="not a lab sample run directory"):
        load_outcomes(tmp_path)


def test_cli_writes_markdown_and_json(tmp_path: Path) -> None:
    root = make_run(tmp_path / "a", {"p": 4, "f": 0})
    out = run_lab("retry", str(root), "--max-attempts", "2", "--out", str(tmp_path / "r.md"))
    assert out.returncode == 0, out.stderr
    assert "| same config, up to 2 attempts | 0.500 | 0.750 | +0.250 |" in out.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["policies"][1]["independence_overestimate"] == pytest.approx(0.25)
    assert (tmp_path / "r.md").read_text() == out.stdout.rstrip("\n") + "\n"
    bad = run_lab("retry", str(root), "--max-attempts", "9")
    assert bad.returncode == 2 and "error: --max-attempts 9 needs" in bad.stderr


def test_run_retry_default_path(tmp_path: Path) -> None:
    root = make_run(tmp_path / "a", {"p": 3})
    report, text, path = run_retry(str(root), 2, None, None)
    assert path == root / "retry.md" and (root / "retry.json").exists()
    assert report["per_case"]["p"]["up_to_2"] == 1.0 and "one attempt" in text
