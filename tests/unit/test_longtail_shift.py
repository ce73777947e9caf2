"""Distribution-shift statistics against hand values and independent definitions (no model).

The end-to-end planted-shift / same-distribution checks with the real embedding model and
tokenizer live in tests/model/test_longtail_shift_model.py.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lab.cases import textinfo
from lab.cases.loaders import load_cases
from lab.cases.model import Case
from lab.errors import LabError
from lab.longtail import shift
from lab.longtail.shift_render import html_page, markdown, write_outputs
from lab.longtail.twosample import (
    chi_square,
    fisher_2x2,
    ks_test,
    mmd2_from_indicators,
    mmd_test,
    rbf_kernel_matrix,
    total_variation,
)


def _case(i: int, prompt: str, tags: list[str] | None = None, **metadata: object) -> Case:
    return Case(id=f"c{i}", checks=[], prompt=prompt, tags=tags or [], metadata=dict(metadata))


# --- two-sample statistics ------------------------------------------------------------------


def test_ks_statistic_is_max_cdf_difference() -> None:
    a = [1, 2, 3, 4, 5]
    b = [3, 4, 5, 6, 7, 8]
    grid = sorted(set(a + b))
    d = max(abs(sum(x <= t for x in a) / 5 - sum(x <= t for x in b) / 6) for t in grid)
    result = ks_test(a, b)
    assert result.statistic == pytest.approx(d) == pytest.approx(0.5)
    assert result.p_value is not None and 0 < result.p_value < 1
    same = ks_test(a, a)
    assert same.statistic == 0 and same.p_value == pytest.approx(1.0)


def test_chi_square_matches_hand_computation() -> None:
    table = np.array([[10, 20, 30], [20, 20, 10]])
    rows, cols, total = table.sum(1), table.sum(0), table.sum()
    expected = np.outer(rows, cols) / total
    stat = float(((table - expected) ** 2 / expected).sum())
    result = chi_square(table)
    assert result is not None
    assert result.statistic == pytest.approx(stat)
    # dof 2: the chi-square survival function is exp(-x / 2)
    assert result.p_value == pytest.approx(math.exp(-stat / 2))
    # an all-zero column is dropped; one column left: no test
    assert chi_square(np.array([[3, 0], [4, 0]])) is None


def test_fisher_exact_against_hypergeometric_sum() -> None:
    a, n_a, b, n_b = 0, 10, 5, 10
    total_success = a + b

    def prob(x: int) -> float:
        return math.comb(n_a, x) * math.comb(n_b, total_success - x) / math.comb(20, 5)

    observed = prob(a)
    p = sum(prob(x) for x in range(0, 6) if prob(x) <= observed * (1 + 1e-7))
    assert fisher_2x2(a, n_a, b, n_b).p_value == pytest.approx(p)


def test_total_variation() -> None:
    assert total_variation({"en": 1.0}, {"en": 0.5, "de": 0.5}) == pytest.approx(0.5)
    assert total_variation({"a": 0.3, "b": 0.7}, {"a": 0.3, "b": 0.7}) == 0


def _mmd2_loop(x: torch.Tensor, y: torch.Tensor, sigma: float) -> float:
    """Unbiased MMD^2 straight from its definition, one pair at a time (Gretton eq. 3)."""

    def k(u: torch.Tensor, v: torch.Tensor) -> float:
        return math.exp(-float(((u - v) ** 2).sum()) / (2 * sigma * sigma))

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd_matches_pairwise_definition_and_median_heuristic() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = torch.randn(5, 3, generator=g, dtype=torch.float64) + 0.7
    z = torch.cat([x, y])
    dists = [float((z[i] - z[j]).norm()) for i, j in itertools.permutations(range(11), 2)]
    _, used = rbf_kernel_matrix(z)
    # the median of the 110 off-diagonal distances; torch takes the lower of the middle two
    assert used == pytest.approx(sorted(dists)[(len(dists) - 1) // 2], rel=1e-9)
    kernel, _ = rbf_kernel_matrix(z, sigma=1.3)
    s = torch.zeros(1, 11, dtype=torch.float64)
    s[0, :6] = 1
    assert float(mmd2_from_indicators(kernel, s)[0]) == pytest.approx(_mmd2_loop(x, y, 1.3))


def test_mmd_permutation_test_separates_shift_from_none() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 8, generator=g)
    same = torch.randn(40, 8, generator=g)
    moved = torch.randn(40, 8, generator=g) + 1.0
    quiet = mmd_test(x, same, permutations=500, seed=0)
    loud = mmd_test(x, moved, permutations=500, seed=0)
    assert quiet.p_value > 0.05 and abs(quiet.mmd2) < 0.02
    assert loud.p_value == pytest.approx(1 / 501) and loud.mmd2 > 0.1
    # the null distribution of the unbiased estimator is centred near 0
    assert abs(quiet.null_mean) < 0.01


# --- what an input looks like ---------------------------------------------------------------


def test_language_and_script_detection() -> None:
    texts = [
        "What is the capital of France and why is it famous?",
        "Wie spät ist es in Berlin, und wann fährt der nächste Zug?",
        "我的订单什么时候发货？",
        "12 + 30 = ?",
    ]
    langs = [lang for lang, _ in textinfo.languages(texts)]
    assert langs[:3] == ["en", "de", "zh"]
    assert langs[3] == "und"  # no letters
    scripts = [textinfo.dominant_script(t) for t in texts]
    assert scripts == ["LATIN", "LATIN", "CJK", "NONE"]
    assert textinfo.dominant_script("Привет, мир") == "CYRILLIC"
    assert textinfo.script_mix("Order the 拉面 please") == "CJK+LATIN"
    assert textinfo.script_mix("Ünïcode ok") == "LATIN" and textinfo.script_mix("42") == "NONE"


def test_structured_fields_and_emptiness() -> None:
    case = _case(0, 'Extract: {"name": "Ada", "city": ""}', customer="x", plan=None)
    fields = textinfo.structured_fields(case)
    assert fields == {
        "metadata.customer": "x",
        "metadata.plan": None,
        "json.name": "Ada",
        "json.city": "",
    }
    assert [textinfo.is_empty(v) for v in fields.values()] == [False, True, False, True]
    assert textinfo.structured_fields(_case(1, "no json here {")) == {}


def test_whitespace_token_counter() -> None:
    counter = textinfo.TokenCounter("whitespace")
    assert counter.kind == "whitespace"
    assert counter.count(["a b  c", ""]) == [3, 0]


# --- gaps -----------------------------------------------------------------------------------


def test_severity_rule() -> None:
    t = (0.1, 0.2, 0.3)
    assert shift.severity(0.05, t, None) == "none"
    assert shift.severity(0.35, t, 0.001) == "high"
    assert shift.severity(0.25, t, 0.01) == "medium"
    assert shift.severity(0.35, t, 0.2) == "low"  # large but not significant: capped


def test_categorical_gap_sizes_and_under_representation() -> None:
    demo = ["en"] * 10
    prod = ["en"] * 6 + ["de"] * 2 + ["zh"] * 2
    gap = shift.categorical_gap("language", demo, prod)
    assert gap["size"] == pytest.approx(0.4)
    assert gap["data"]["under_represented"] == ["de", "zh"]
    assert gap["test"]["name"].startswith("chi-square")


def test_schema_gap_counts_missing_or_empty() -> None:
    demo = [_case(i, "q", customer="a", plan="pro") for i in range(8)]
    prod = [_case(i, "q", customer="a") for i in range(4)] + [
        _case(i + 4, "q", customer="", plan="free") for i in range(4)
    ]
    gaps = {g["name"]: g for g in shift.schema_gaps(demo, prod)}
    customer, plan = gaps["field metadata.customer"], gaps["field metadata.plan"]
    assert customer["data"] == {"demo_missing": 0.0, "prod_missing": 0.5}
    assert plan["size"] == pytest.approx(0.5)
    assert customer["test"]["p_value"] == pytest.approx(fisher_2x2(0, 8, 4, 8).p_value)


def test_tag_gaps_call_out_absent_and_under_represented_tags() -> None:
    demo = [_case(i, "q", ["facts"]) for i in range(38)] + [_case(38, "q", ["refund"])]
    demo.append(_case(39, "q", ["facts"], intent="order"))
    prod = (
        [_case(i, "q", ["facts"]) for i in range(20)]
        + [_case(20 + i, "q", ["billing"]) for i in range(12)]
        + [_case(40 + i, "q", ["refund"]) for i in range(8)]
    )
    gaps = {g["name"]: g for g in shift.tag_gaps(demo, prod, "intent")}
    billing, refund = gaps["tag billing"], gaps["tag refund"]
    assert billing["severity"] == "high" and "absent from demo" in billing["detail"]
    assert billing["size"] == pytest.approx(0.3)
    assert refund["data"] == {"demo_share": 1 / 40, "prod_share": 0.2}
    assert "under-represented in demo 8.0x" in refund["detail"]
    assert refund["severity"] == "medium"  # Fisher p < 0.05 for 1/40 vs 8/40
    assert "tag facts" not in gaps  # over-represented in demo is no tail gap
    overall = gaps["tag / intent prevalence"]
    assert overall["data"]["demo"]["intent:order"] == pytest.approx(1 / 41)  # metadata intent


def test_tag_gap_quiet_for_the_same_mix() -> None:
    demo = [_case(i, "q", ["a" if i % 2 else "b"]) for i in range(40)]
    prod = [_case(i, "q", ["a" if i % 2 else "b"]) for i in range(40)]
    [overall] = shift.tag_gaps(demo, prod, "intent")
    assert overall["size"] == 0 and overall["severity"] == "none"


def test_length_gap_uses_ks() -> None:
    gap = shift.length_gap([5] * 10, [5] * 5 + [50] * 5, "whitespace")
    assert gap["size"] == pytest.approx(0.5)
    assert "median 5 -> 28" in gap["detail"] and "whitespace" in gap["detail"]


def test_outputs_are_written_and_escaped(tmp_path: Path) -> None:
    report: dict[str, Any] = {
        "demo_cases": 2,
        "prod_cases": 2,
        "summary": {"high": 1, "medium": 0, "low": 0, "none": 0},
        "gaps": [
            shift.gap("length", "input length", 0.5, "KS D", "<script>x</script>", None),
            {
                **shift.gap("embedding", "embedding", 0.2, "MMD", "d", None),
                "data": {"least_covered": [{"text": "<b>x</b>", "nearest_similarity": 0.1}]},
            },
        ],
        "method": {
            "tokens": "whitespace",
            "language_id": "langid",
            "embedder": "e",
            "permutations": 10,
            "seed": 0,
            "severity_rule": "r",
            "alpha": 0.05,
            "thresholds": {"length": [0.1, 0.2, 0.35]},
            "min_tag_share": 0.02,
            "under_factor": 2.0,
        },
    }
    report["gaps"][0]["data"] = {"tokens": "whitespace", "demo": [1, 2], "prod": [3, 4]}
    paths = write_outputs(report, tmp_path / "out")
    assert json.loads(paths["json"].read_text())["summary"]["high"] == 1
    page = html_page(report)
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page
    assert "<b>x</b>" not in page and "<svg" in page
    assert "input length" in markdown(report)
    assert not list((tmp_path / "out").glob(".*tmp*"))


def test_production_sample_needs_no_checks(tmp_path: Path) -> None:
    path = tmp_path / "prod.jsonl"
    path.write_text(json.dumps({"id": "p1", "prompt": "hallo"}) + "\n")
    assert shift.load_inputs(str(path), "production")[0].checks == []
    with pytest.raises(LabError, match="checks"):
        load_cases(path)  # a case set to run still needs checks
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "p1", "prompt": "caf\xe9"}\n')
    with pytest.raises(LabError, match=r"bad.jsonl:.* not valid UTF-8"):
        shift.load_inputs(str(bad), "production")
    bad_check = tmp_path / "badcheck.jsonl"
    bad_check.write_text(json.dumps({"id": "p1", "prompt": "x", "checks": [{"regex": "("}]}))
    with pytest.raises(LabError, match="checks"):
        shift.load_inputs(str(bad_check), "production")  # given checks are still validated


def test_cli_bad_input_exits_2_naming_the_file(tmp_path: Path) -> None:
    from tests.unit.test_cli import run_lab

    out = run_lab("shift", str(tmp_path / "demo.jsonl"), "bundled:basic")
    assert out.returncode == 2 and "demo.jsonl: no such case file" in out.stderr
    empty = tmp_path / "prod.jsonl"
    empty.write_text("")
    out = run_lab("shift", "bundled:basic", str(empty), "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "prod.jsonl" in out.stderr
    assert not (tmp_path / "o").exists()  # nothing written before the inputs are good
