"""Variance decomposition, consistency classes, weighted semantic entropy and the gate ceiling,
each checked against an independent computation (no model).

    .venv/bin/python -m pytest -q tests/unit/test_variance_decompose.py
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from lab.comparison import plan
from lab.errors import LabError
from lab.variance import decompose
from lab.variance.config import parse_gate
from lab.variance.diversity import weighted_semantic_entropy
from lab.variance.gate import evaluate_gate


def _passed(rates: list[float], k: int) -> np.ndarray:
    return np.array([[j < round(r * k) for j in range(k)] for r in rates], dtype=bool)


def test_decomposition_matches_a_direct_anova_estimate() -> None:
    k = 8
    passed = _passed([0.0, 0.25, 0.5, 0.875, 1.0, 0.5], k)
    out = decompose.decomposition(passed, np.random.default_rng(0), samples=200)
    # independent: one-way ANOVA on the 0/1 outcomes. MSW = within-case mean square (ddof 1
    # per case), MSB = between mean square; var(p) = (MSB - MSW) / k, E[p(1-p)] = MSW.
    c = len(passed)
    y = passed.astype(float)
    means = y.mean(axis=1)
    msw = ((y - means[:, None]) ** 2).sum() / (c * (k - 1))
    msb = k * ((means - y.mean()) ** 2).sum() / (c - 1)
    assert out["within"] == pytest.approx(msw, abs=1e-12)
    assert out["between"] == pytest.approx(max(0.0, (msb - msw) / k), abs=1e-12)
    assert out["between_share"] + out["within_share"] == pytest.approx(1.0)
    lo, hi = out["intervals_95"]["between_share"]
    assert 0 <= lo <= hi <= 1
    # the run mean's variance from the same two parts
    assert out["run_mean_variance"] == pytest.approx(out["between"] / c + out["within"] / (c * k))
    z = NormalDist().inv_cdf(0.975)
    need = math.ceil(z * z * (out["between"] + out["within"] / k) / 0.05**2)
    assert out["cases_needed_at_k"] == need
    assert out["k_star"] == math.ceil(out["within"] / out["between"])
    # the planner reads the same estimator (one implementation)
    base = plan.Baseline(passed.mean(axis=1), k)
    assert (base.within, base.between) == (out["within"], out["between"])


def test_pure_input_and_pure_sampling_variance() -> None:
    # every case always or never passes: all variance is between cases
    inputs = decompose.decomposition(_passed([0, 1, 0, 1], 4), np.random.default_rng(0), 50)
    assert inputs["between_share"] == 1.0 and inputs["within_share"] == 0.0
    assert inputs["k_star"] == 1
    # identical cases at p = 0.5: within dominates, between is estimated at 0
    sampling = decompose.decomposition(_passed([0.5] * 6, 8), np.random.default_rng(0), 50)
    assert sampling["between"] == 0.0 and sampling["within_share"] == 1.0
    assert sampling["k_star"] is None and sampling["cases_needed_at_k"] >= 1


@pytest.mark.parametrize(
    ("passed", "reason"),
    [
        (np.ones((5, 1), dtype=bool), "k = 1"),
        (np.ones((1, 4), dtype=bool), "one case"),
        (np.ones((3, 4), dtype=bool), "no variance"),
    ],
)
def test_undefined_decompositions_say_why(passed: np.ndarray, reason: str) -> None:
    out = decompose.decomposition(passed, np.random.default_rng(0), 20)
    assert out["between_share"] is None and reason in out["undefined"]


def test_consistency_classes() -> None:
    k = 5
    labels = np.array(
        [
            [0, 0, 0, 0, 0],  # one cluster, all pass -> consistent-correct
            [0, 0, 0, 0, 0],  # one cluster, all fail -> consistent-wrong
            [0, 0, 0, 0, 4],  # 4/5 agree, those fail -> consistent-wrong (0.8 >= 0.8)
            [0, 0, 0, 3, 4],  # 3/5 agree -> flaky
            [0, 0, 0, 0, 0],  # agree, 3/5 pass -> flaky
        ]
    )
    passed = np.array([[1] * k, [0] * k, [0, 0, 0, 0, 1], [0] * k, [1, 1, 1, 0, 0]], dtype=bool)
    got = [c["class"] for c in decompose.consistency_classes(passed, labels, 0.8)]
    assert got == [
        "consistent-correct",
        "consistent-wrong",
        "consistent-wrong",
        "flaky",
        "flaky",
    ]
    counts = decompose.class_counts(decompose.consistency_classes(passed, labels, 0.8))
    assert counts == {
        "consistent_correct": 1,
        "consistent_wrong": 2,
        "flaky": 2,
        "consistent_wrong_share": 0.4,
    }


def test_weighted_semantic_entropy_by_hand() -> None:
    # two clusters; sample weights exp(mean logprob): e^-1, e^-1 (cluster 0), e^-2 (cluster 2)
    labels = np.array([0, 0, 2])
    lps = [[-1.0, -1.0], [-0.5, -1.5], [-2.0]]
    w0, w2 = 2 * math.exp(-1), math.exp(-2)
    p0, p2 = w0 / (w0 + w2), w2 / (w0 + w2)
    expect = -(p0 * math.log(p0) + p2 * math.log(p2))
    assert weighted_semantic_entropy(labels, lps) == pytest.approx(expect, abs=1e-12)
    # equal weights give the discrete estimator: entropy of the shares 2/3, 1/3
    flat = weighted_semantic_entropy(labels, [[-1.0]] * 3)
    assert flat == pytest.approx(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))
    assert weighted_semantic_entropy(np.array([0, 0]), [[-1.0], []]) is None
    assert weighted_semantic_entropy(np.array([0, 0]), [[-3.0], [-0.1]]) == 0.0


def test_gate_ceiling_on_consistent_wrong() -> None:
    gate = parse_gate(["consistent_wrong=0.1"])
    assert gate.max_consistent_wrong == 0.1
    head = {"consistent_wrong_share": 0.25, "consistent_wrong": 2}
    (reason,) = evaluate_gate(head, gate)
    assert "consistent-wrong share 0.250 (2 cases) > max_consistent_wrong 0.1" in reason
    assert evaluate_gate({"consistent_wrong_share": 0.1}, gate) == []
    # an older run without the figure fails the threshold rather than passing silently
    assert evaluate_gate({}, gate)
    with pytest.raises(LabError, match="max_consistent_wrong must be a finite number"):
        parse_gate(["max_consistent_wrong=-1"])
