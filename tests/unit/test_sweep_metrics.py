"""Sweep config validation and metric functions on hand-computed examples (no model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lab.determinism.cells import cell_of
from lab.determinism.config import load_sweep_config, parse_sweep_config
from lab.determinism.divergence import compare
from lab.determinism.grid import expand, group_by_engine, reference_cell
from lab.determinism.metrics import compute_metrics, parse_answer, tar
from lab.errors import LabError
from tests.unit.test_base import make_generation


def test_compare_edge_cases() -> None:
    same = compare(make_generation([1, 2], [-1, -2]), make_generation([1, 2], [-1, -2]))
    assert same.tokens_equal and same.first_divergence is None
    at0 = compare(make_generation([1, 2], [-1, -2]), make_generation([3, 2], [-1, -2]))
    assert at0.first_divergence == 0 and at0.common_prefix == 0
    assert at0.max_abs_logprob_delta == 0.0  # no common prefix: nothing to compare
    last = compare(
        make_generation([1, 2, 3], [-1, -2, -3]), make_generation([1, 2, 4], [-1, -2, -5])
    )
    assert last.first_divergence == 2 and (last.reference_token, last.other_token) == (3, 4)
    unequal = compare(make_generation([1], [-1]), make_generation([1, 2, 3], [-1.5, -2, -3]))
    assert unequal.first_divergence == 1 and unequal.length_other == 3
    assert unequal.max_abs_logprob_delta == 0.5
    empty = compare(make_generation([], []), make_generation([], []))
    assert empty.tokens_equal and empty.common_prefix == 0
    empty_vs = compare(make_generation([], []), make_generation([7], [-0.1]))
    assert empty_vs.first_divergence == 0 and empty_vs.other_token == 7


def test_tar_counts_parse_failures_as_disagreement() -> None:
    assert tar([["a", "a"], ["a", "b"], [None, None]]) == pytest.approx(1 / 3)
    assert tar([]) is None
    assert parse_answer("The answer is 42.", r"(\d+)") == "42"
    assert parse_answer("no digits", r"(\d+)") is None
    assert parse_answer("  Paris.  ", None) == "paris"


def config(**over: Any) -> Any:
    data = {
        "name": "t",
        "mode": "single",
        "prompts": [{"id": "a", "prompt": "x", "expected": "yes"}, {"id": "b", "prompt": "y"}],
        "axes": {"batch_size": [1, 4], "dtype": ["fp32", "bf16"]},
    } | over
    return parse_sweep_config(data)


def entry(
    batch: int, dtype: str, outputs: dict[str, tuple[list[int], list[float], str]], repeat: int = 0
) -> dict[str, Any]:
    cfg = config()
    axes = {k: v[0] for k, v in cfg.axes.items()} | {"batch_size": batch, "dtype": dtype}
    outs = {}
    for tid, (tokens, lps, text) in outputs.items():
        g = make_generation(tokens, lps)
        g.text = text
        record = g.to_dict()
        record.pop("engine")
        record.pop("sampling")
        outs[tid] = record
    return {
        "status": "ok",
        "error": None,
        "cell": axes,
        "repeat": repeat,
        "engine": {},
        "sampling": {},
        "timings": {},
        "outputs": outs,
    }


def test_metrics_on_a_hand_made_sweep() -> None:
    cfg = config()
    a_ref = ([1, 2, 3], [-0.1, -0.2, -0.3], "yes")
    entries = [
        entry(1, "float32", {"a": a_ref, "b": ([5, 6], [-1.0, -1.0], "b")}),
        # batch 4: same tokens, logprobs moved a little for a
        entry(
            4,
            "float32",
            {"a": ([1, 2, 3], [-0.1, -0.25, -0.3], "yes"), "b": ([5, 6], [-1.0, -1.0], "b")},
        ),
        # bf16: a diverges at token 1 and answers wrong; b unchanged
        entry(1, "bfloat16", {"a": ([1, 9], [-0.1, -0.7], "no"), "b": ([5, 6], [-1.0, -1.0], "b")}),
        {"status": "failed", "error": "boom", "cell": {}, "repeat": 0, "outputs": {}},
    ]
    m = compute_metrics(cfg, entries, context=8192)
    s = m.summary
    assert (s["cells_ok"], s["cells_failed"], s["targets"]) == (3, 1, 2)
    assert s["TARr@N"] == 0.5  # a has 2 distinct outputs, b one
    assert s["accuracy_mean"] == pytest.approx(2 / 3)
    assert s["std_at_acc"] == pytest.approx(0.5773502691896257)
    assert (s["best_possible_accuracy"], s["worst_possible_accuracy"]) == (1.0, 0.0)
    by_axis = {r["axis"]: r for r in m.attribution}
    assert by_axis["batch_size"]["tokens_change_share"] == 0.0
    assert by_axis["batch_size"]["logprobs_change_share"] == 0.5
    assert by_axis["dtype"]["tokens_change_share"] == 0.5
    [div] = m.divergences
    assert div["target"] == "a" and div["first_divergence"] == 1
    assert div["reference_continuation"] == [2, 3] and div["other_continuation"] == [9]
    assert m.failed_cells == [{"cell": {}, "repeat": 0, "error": "boom"}]
    per_target = {t["target"]: t for t in m.per_target}
    assert per_target["a"]["unique_completions"] == 2
    assert per_target["a"]["length_std"] == pytest.approx(0.4714045207910317)


def test_grid_reference_first_and_engines_grouped() -> None:
    cfg = config(repeats=2)
    cells = expand(cfg)
    assert len(cells) == 2 * 2 * 2
    assert cells[0] == reference_cell(cfg)
    groups = group_by_engine(cells)
    assert len(groups) == 2  # one engine per dtype; batch size and repeats reuse it
    assert all(len(g) == 4 for g in groups)


@pytest.mark.parametrize(
    "over,message",
    [
        ({"axes": {"colour": [1]}}, "axes.colour: unknown axis"),
        ({"axes": {"batch_size": ["big"]}}, "axes.batch_size: value 'big' is not int"),
        ({"axes": {"batch_invariant": [1]}}, "axes.batch_invariant"),
        ({"axes": {"dtype": ["fp8"]}}, "axes.dtype"),
        ({"mode": "chaos"}, "mode"),
        ({"prompts": []}, "prompts"),
        ({"prompts_file": "/no/such/file.jsonl"}, "prompts_file"),
        ({"temperature": 0}, "unknown key"),
        ({"sampling": {"temp": 0}}, "sampling"),
        ({"repeats": 0}, "repeats"),
    ],
)
def test_bad_config_names_the_field(over: dict[str, Any], message: str) -> None:
    with pytest.raises(LabError, match=message):
        config(**over)


def test_missing_config_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="no such config file"):
        load_sweep_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: single\nprompts: [unclosed\n")
    with pytest.raises(LabError, match="bad.yaml: line"):
        load_sweep_config(bad)


def test_html_report_escapes_model_text() -> None:
    from lab.determinism.metrics import SweepMetrics
    from lab.determinism.report import render_html, render_markdown

    cfg = config()
    evil = "<script>alert(1)</script>"
    metrics = SweepMetrics(
        summary={"mode": "single"},
        per_target=[],
        per_cell=[{"cell": evil, "tokens_differ": 1, "targets": 1}],
        attribution=[],
        divergences=[
            {
                "target": "a",
                "cell": evil,
                "first_divergence": 3,
                "reference_top_gap": 0.01,
                "reference_logprob": -0.1,
                "other_logprob": -0.2,
                "context": evil,
                "reference_continuation": evil,
                "other_continuation": "<img src=x onerror=alert(1)>",
            }
        ],
        failed_cells=[{"cell": {"x": evil}, "repeat": 0, "error": evil}],
        within_cell=[],
    )
    grid = (["1"], ["float32"], [[1.0]])
    html = render_html(cfg, metrics, "dtype", "batch_size", grid)
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in html
    assert "Divergent continuations" in render_markdown(cfg, metrics, "dtype", "batch_size", grid)


def test_identical_mode_pools_every_copy_of_a_prompt() -> None:
    cfg = parse_sweep_config(
        {
            "mode": "identical",
            "prompts": [{"id": "f", "prompt": "x"}],
            "axes": {"batch_size": [1, 3]},
        }
    )
    axes1 = {k: v[0] for k, v in cfg.axes.items()}
    axes3 = axes1 | {"batch_size": 3}

    def cell(axes: dict[str, Any], outs: list[list[int]]) -> dict[str, Any]:
        outputs = {}
        for i, tokens in enumerate(outs):
            record = make_generation(tokens, [-0.5] * len(tokens)).to_dict()
            record.pop("engine"), record.pop("sampling")
            outputs[f"f#{i}"] = record
        return {
            "status": "ok",
            "error": None,
            "cell": axes,
            "repeat": 0,
            "engine": {},
            "sampling": {},
            "timings": {},
            "outputs": outputs,
        }

    entries = [cell(axes1, [[1, 2, 3]]), cell(axes3, [[1, 2, 3], [1, 2, 4], [1, 2, 3]])]
    m = compute_metrics(cfg, entries, context=8192)
    [target] = m.per_target
    assert (target["outputs"], target["unique_completions"]) == (4, 2)
    assert target["mode_share"] == 0.75
    assert m.summary["TARr@N"] == 0.0 and m.summary["divergent_outputs"] == 1
    batch3 = m.per_cell[1]
    assert (batch3["outputs_compared"], batch3["tokens_differ"]) == (3, 1)
    assert batch3["first_divergences"] == [2]
    within = {r["cell"]: r for r in m.within_cell}
    assert within["batch_size=3"]["unique_completions"] == 2
    assert within["batch_size=3"]["mode_count"] == 2
    assert within["batch_size=3"]["first_divergences"] == [2]


def test_scoring_fields_do_not_change_the_generation_identity() -> None:
    a = config(answer_regex="(\\d+)")
    b = config(answer_regex="(-?\\d+)(?!.*\\d)")
    b.prompts[0].expected = "no"
    assert a.generation_identity() == b.generation_identity()
    assert a.generation_identity() != config(sampling={"max_tokens": 9}).generation_identity()


def test_cells_stored_before_the_concurrency_axis_still_load() -> None:
    config = parse_sweep_config({"prompts": ["hi"], "axes": {"batch_size": [1, 2]}})
    cell = expand(config)[1]
    old_entry = {"cell": {k: v for k, v in cell.axes.items() if k != "concurrency"}, "repeat": 0}
    assert cell_of(old_entry) == cell
    assert "concurrency" not in cell.key()  # an unused axis keeps the old cell keys


def test_unparsable_answers_are_explained_where_tara_is_shown() -> None:
    """Every cell gave identical tokens, but b's answer has no digit for answer_regex: TARa@N
    0.5 beside TARr@N 1.0, with a note in the terminal lines and the report, which also has a
    definitions section."""
    from lab.determinism.report import render_html, render_markdown
    from lab.determinism.summary import DEFINITIONS, summary_lines

    cfg = config(answer_regex=r"(\d+)")
    outs = {"a": ([1, 2], [-0.1, -0.2], "it is 4"), "b": ([5, 6], [-1.0, -1.0], "four")}
    entries = [entry(b, d, outs) for b in (1, 4) for d in ("float32", "bfloat16")]
    m = compute_metrics(cfg, entries, context=8192)
    s = m.summary
    assert (s["TARr@N"], s["TARa@N"], s["targets_with_unparsed_answers"]) == (1.0, 0.5, 1)
    lines = summary_lines(m.to_dict())
    assert lines[1] == (
        "note: TARa@N counts an answer the answer_regex cannot parse as disagreement: 1 of 2 "
        "prompts have one, so TARa@N 0.500 can be below TARr@N 1.000 although the tokens agree"
    )
    assert "axis batch_size: tokens change in 0.000 of prompts, logprobs in 0.000" in lines
    grid = (["1"], ["fp32"], [[1.0]])
    md = render_markdown(cfg, m, "dtype", "batch_size", grid)
    assert "Note: TARa@N counts an answer the answer_regex cannot parse" in md
    assert "## Definitions" in md and "- **TARa@N**: the same on parsed answers" in md
    html = render_html(cfg, m, "dtype", "batch_size", grid)
    assert "<h2>Definitions</h2>" in html and "<p>Note: TARa@N counts" in html
    assert all(name in md for name in DEFINITIONS)
    # parsable everywhere: no note
    clean = compute_metrics(config(), entries, context=8192)
    assert clean.summary["targets_with_unparsed_answers"] == 0
    assert not any(line.startswith("note:") for line in summary_lines(clean.to_dict()))
