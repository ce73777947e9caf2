"""Fragility scores, their prediction of divergence, the per-axis pairs and the token view,
on hand-made records with known gaps (no model)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from lab.backends.base import Generation, TopLogprob
from lab.determinism.config import config_from_dict, parse_sweep_config
from lab.determinism.fragility import (
    analyze,
    auroc,
    format_report,
    gap_histogram,
    load_source,
    parse_thresholds,
    precision_at_top,
    rank,
    score_generation,
    step_gaps,
)
from lab.determinism.pairs import axis_pairs
from lab.errors import LabError
from tests.unit.test_cli import run_lab
from tests.unit.test_html_escaping_bash import EVIL, assert_clean_html


def record(
    request_id: str,
    tokens: list[int],
    gaps: list[float | None],
    temperature: float = 0.0,
    texts: list[str] | None = None,
) -> Generation:
    """A greedy record whose step i has top-1 logprob -0.1 and top-2 -0.1 - gaps[i] (None:
    only the chosen token kept)."""
    tops = []
    for i, (token, gap) in enumerate(zip(tokens, gaps, strict=True)):
        text = texts[i] if texts else f"t{token}"
        step = [TopLogprob(token, -0.1, text)]
        if gap is not None:
            step.append(TopLogprob(token + 1000, -0.1 - gap, f"alt{token}"))
        tops.append(step)
    return Generation(
        request_id=request_id,
        sample_index=0,
        seed=None,
        backend="vllm",
        prompt_token_ids=[1],
        output_token_ids=tokens,
        token_logprobs=[-0.1] * len(tokens),
        top_logprobs=tops,
        text="".join(texts or []),
        finish_reason="length",
        timings={},
        engine={},
        sampling={"temperature": temperature},
    )


def test_scores_on_known_gaps() -> None:
    g = record("p", [1, 2, 3, 4, 5], [0.8, 0.004, None, 0.07, 0.3])
    assert step_gaps(g) == pytest.approx([0.8, 0.004, None, 0.07, 0.3])
    s = score_generation("p", g, (0.01, 0.1, 0.5))
    assert s.min_gap == pytest.approx(0.004) and s.min_gap_step == 1
    assert s.steps == 4
    assert s.positions == {"0.01": [1], "0.1": [1, 3], "0.5": [1, 3, 4]}
    assert (s.under(0.01), s.under(0.1), s.under(0.5)) == (1, 2, 3)
    # A sampled record stores tempered logprobs: gaps are the logit gaps over T.
    hot = record("q", [1, 2], [0.2, 1.0], temperature=0.5)
    assert step_gaps(hot) == pytest.approx([0.1, 0.5])


def test_rank_puts_the_nearest_tie_first_and_unknown_last() -> None:
    a = score_generation("a", record("a", [1, 2], [0.3, 0.2]))
    b = score_generation("b", record("b", [1, 2], [0.001, 0.9]))
    c = score_generation("c", record("c", [1], [None]))
    d = score_generation("d", record("d", [1, 2, 3], [0.2, 0.005, 0.005]))
    assert [p.prompt for p in rank([a, b, c, d])] == ["b", "d", "a", "c"]
    assert c.min_gap is None and c.steps == 0


def test_auroc_matches_scikit_learn_and_scipy_with_ties() -> None:
    from scipy.stats import mannwhitneyu
    from sklearn.metrics import roc_auc_score

    scores = [0.9, 0.8, 0.8, 0.7, 0.4, 0.4, 0.4, 0.2, 0.1, -1.0]
    labels = [True, False, True, True, False, True, False, False, True, False]
    expected = roc_auc_score(labels, scores)
    assert auroc(scores, labels) == pytest.approx(expected, abs=1e-12)
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    u = mannwhitneyu(pos, neg, alternative="two-sided").statistic
    assert auroc(scores, labels) == pytest.approx(u / (len(pos) * len(neg)), abs=1e-12)
    assert auroc([1.0, 2.0], [True, True]) is None
    assert auroc([0.5, 0.5], [True, False]) == 0.5


def test_precision_at_the_top_decile_and_histogram() -> None:
    assert precision_at_top([True, False, True] + [False] * 17) == (0.5, 2)
    assert precision_at_top([False, True]) == (0.0, 1)
    assert precision_at_top([]) == (None, 0)
    assert gap_histogram([0.0, 0.05, 0.15, 0.999, 1.0]) == [2, 1, 0, 0, 0, 0, 0, 0, 0, 2]


def test_thresholds_are_checked() -> None:
    assert parse_thresholds("0.1,0.01,0.1") == (0.01, 0.1)
    for bad in ("", "a", "0", "-1", "nan"):
        with pytest.raises(LabError, match="--thresholds"):
            parse_thresholds(bad)


# -- a hand-made sweep run directory -------------------------------------------------------

PROMPTS = {
    # prompt: (reference tokens, reference gaps, batch-8 tokens)
    "tie": ([1, 2, 3, 4], [0.5, 0.3, 0.002, 0.4], [1, 2, 7, 8]),  # flips at its near tie
    "near": ([1, 2, 3], [0.6, 0.04, 0.9], [1, 2, 3]),
    "sure": ([5, 6, 7], [2.0, 1.5, 3.0], [5, 6, 7]),
    "mid": ([5, 6], [0.2, 0.7], [5, 6]),
}


def _sweep_dir(tmp_path: Path, texts: dict[str, list[str]] | None = None) -> Path:
    cfg = parse_sweep_config(
        {
            "name": "t",
            "mode": "single",
            "prompts": [{"id": p, "prompt": "x"} for p in PROMPTS],
            "axes": {"backend": ["vllm"], "batch_size": [1, 8], "dtype": ["fp32", "bf16"]},
        }
    )
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "sweep_config.json").write_text(json.dumps(cfg.to_dict()))
    lines = []
    for batch in (1, 8):
        for dtype in ("float32", "bfloat16"):
            axes = {k: v[0] for k, v in cfg.axes.items()} | {"batch_size": batch, "dtype": dtype}
            outputs = {}
            for pid, (ref, gaps, other) in PROMPTS.items():
                tokens = other if batch == 8 else ref
                # the logprobs move with the batch (1e-5), the dtype moves them more (1e-3)
                shift = (1e-5 if batch == 8 else 0.0) + (1e-3 if dtype == "bfloat16" else 0.0)
                g = record(pid, tokens, gaps[: len(tokens)], texts=(texts or {}).get(pid))
                g.token_logprobs = [lp - shift for lp in g.token_logprobs]
                d = g.to_dict()
                d.pop("engine")
                d.pop("sampling")
                outputs[pid] = d
            key = json.dumps({"axes": axes, "repeat": 0}, sort_keys=True)
            lines.append(
                json.dumps(
                    {
                        "key": key,
                        "status": "ok",
                        "error": None,
                        "cell": axes,
                        "repeat": 0,
                        "engine": {},
                        "sampling": {"temperature": 0.0},
                        "timings": {},
                        "outputs": outputs,
                    }
                )  # fmt: skip
            )
    (root / "cells.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_sweep_prediction_on_a_hand_made_run(tmp_path: Path) -> None:
    report = analyze(load_source(_sweep_dir(tmp_path)), (0.01, 0.05, 0.5))
    assert report.kind == "sweep" and "batch_size=1" in report.scored
    assert [p.prompt for p in report.prompts] == ["tie", "near", "mid", "sure"]
    tie = report.prompts[0]
    assert tie.diverged and tie.first_divergence == 2 and tie.min_gap_step == 2
    assert tie.gap_at_divergence == pytest.approx(0.002)
    assert (tie.outputs_diverged, tie.outputs_compared) == (2, 3)
    assert [p.diverged for p in report.prompts[1:]] == [False, False, False]
    pred = report.prediction
    assert pred is not None
    assert pred["auroc"] == 1.0 and pred["base_rate"] == 0.25
    assert (pred["precision_top_decile"], pred["top_decile_size"]) == (1.0, 1)
    assert pred["diverged_at_min_gap_step"] == 1
    by_t = {r["threshold"]: r for r in pred["thresholds"]}
    assert (by_t[0.01]["flagged"], by_t[0.01]["precision"], by_t[0.01]["recall"]) == (1, 1.0, 1.0)
    assert (by_t[0.05]["flagged"], by_t[0.05]["precision"]) == (2, 0.5)
    # both divergent outputs split at a step whose probability gap is under 0.1
    assert report.histograms["at_divergence"][0] == 2
    text = format_report(report)
    assert "AUROC: 1" in text and "precision at the top decile (1 prompt(s)): 1" in text


def test_each_axis_with_everything_else_fixed(tmp_path: Path) -> None:
    root = _sweep_dir(tmp_path)
    cfg = config_from_dict(json.loads((root / "sweep_config.json").read_text()))
    entries = [json.loads(line) for line in (root / "cells.jsonl").read_text().splitlines()]
    rows = axis_pairs(cfg, entries)
    batch = [r for r in rows if r["axis"] == "batch_size"]
    dtype = [r for r in rows if r["axis"] == "dtype"]
    assert {r["fixed"] for r in batch} == {"dtype=float32", "dtype=bfloat16"}
    for r in batch:  # batch 8 vs 1 at each dtype: one flip, every logprob moved by 1e-5
        assert (r["tokens_differ"], r["outputs_compared"], r["logprobs_differ"]) == (1, 4, 4)
        assert r["max_abs_logprob_delta"] == pytest.approx(1e-5)
        assert r["first_divergences"] == [2]
    for r in dtype:  # bf16 vs fp32 at the same batch: no flip, logprobs moved by 1e-3
        assert (r["tokens_differ"], r["logprobs_differ"]) == (0, 4)
        assert r["max_abs_logprob_delta"] == pytest.approx(1e-3)


def test_token_view_marks_the_flip_at_the_near_tie_and_escapes(tmp_path: Path) -> None:
    from lab.determinism.tokens import render_token_views, token_views

    hostile = {"tie": ["<b>", EVIL, "\n", "'\"&"]}
    root = _sweep_dir(tmp_path, hostile)
    cfg = config_from_dict(json.loads((root / "sweep_config.json").read_text()))
    entries = [json.loads(line) for line in (root / "cells.jsonl").read_text().splitlines()]
    views = token_views(cfg, entries)
    assert [v.prompt for v in views] == ["tie"]
    assert [t.gap for t in views[0].tokens] == pytest.approx([0.5, 0.3, 0.002, 0.4])
    # both batch-8 cells split at token 2 into the same continuation: one entry
    assert [(d.cells, d.index) for d in views[0].divergences] == [
        (["dtype=float32, batch_size=8", "dtype=bfloat16, batch_size=8"], 2)
    ]
    html = render_token_views(views)
    assert '<span class="tie flip" title="step 2: gap 0.002 nats' in html
    assert '<span class="close" title="step 0' not in html  # 0.5 is not under 0.5
    assert_clean_html(f"<html><body>{html}</body></html>")
    assert "&lt;b&gt;" in html and "<b>&lt;" not in html
    assert "\u23ce" in html  # the line break in a token is a visible mark
    assert "(2 cells) diverge at token 2" in html
    assert render_token_views([]) == ""


def test_sweep_report_html_holds_the_token_view(tmp_path: Path) -> None:
    from lab.determinism.report import write_sweep_report

    root = _sweep_dir(tmp_path)
    written = write_sweep_report(root, with_tokenizer=False)
    page = written.html.read_text()
    assert "Divergent prompts, token by token" in page and ".tie{" in page
    assert "Each axis, everything else fixed" in page
    assert "Each axis, everything else fixed" in written.markdown.read_text()
    metrics = written.metrics
    assert len(metrics["pairs"]) == 4


# -- other sources and bad input -----------------------------------------------------------


def test_records_file_from_lab_generate(tmp_path: Path) -> None:
    path = tmp_path / "gens.jsonl"
    rows = [record("a", [1, 2], [0.3, 0.02]), record("b", [1], [0.9])]
    path.write_text("".join(json.dumps(g.to_dict()) + "\n" for g in rows) + '{"partial": ')
    report = analyze(load_source(path))
    assert report.kind == "records" and report.prediction is None
    assert [(p.prompt, p.min_gap_step) for p in report.prompts] == [("a", 1), ("b", 0)]
    assert math.isclose(report.prompts[0].min_gap or 0, 0.02)


def test_sample_run_directory_scores_sample_zero(tmp_path: Path) -> None:
    root = tmp_path / "run"
    root.mkdir()
    (root / "cases.json").write_text("[]")
    gens = [record("c1", [1, 2], [0.4, 0.05], temperature=0.5).to_dict(), {"unused": 1}]
    (root / "samples.jsonl").write_text(
        json.dumps({"key": "c1", "case_id": "c1", "generations": gens}) + "\n"
    )
    report = analyze(load_source(root))
    assert report.kind == "sample" and report.prompts[0].min_gap == pytest.approx(0.025)
    assert any("temperature" in n for n in report.notes)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"request_id": "a"}\n', "gens.jsonl:1: not a generation record (missing field"),
        ("[1, 2]\n", "gens.jsonl:1: expected a JSON object"),
        ("{oops\n", "gens.jsonl:1: not JSON"),
        ("", "no generation records"),
    ],
)
def test_bad_records_name_file_line_and_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "gens.jsonl"
    path.write_text(content)
    with pytest.raises(LabError, match=re.escape(message)):
        load_source(path)


def test_records_without_top_two_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "gens.jsonl"
    path.write_text(json.dumps(record("a", [1, 2], [None, None]).to_dict()) + "\n")
    with pytest.raises(LabError, match="fewer than 2 top logprobs.*--logprobs 2"):
        load_source(path)


def test_cli_prints_auroc_and_bad_input_exits_2(tmp_path: Path) -> None:
    root = _sweep_dir(tmp_path)
    out = run_lab("fragility", str(root), "--json-out", str(tmp_path / "f.json"))
    assert out.returncode == 0, out.stderr
    assert "AUROC: 1" in out.stdout
    saved: dict[str, Any] = json.loads((tmp_path / "f.json").read_text())
    assert saved["prediction"]["auroc"] == 1.0
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, message in (
        ([str(empty)], "not a sweep run directory"),
        ([str(root), "--thresholds", "x"], "--thresholds"),
    ):
        bad = run_lab("fragility", *args)
        assert bad.returncode == 2
        errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], bad.stderr
