"""Adversarial text in every field of every HTML / Markdown report (no model).

Each report is rendered from hand-built records (or a synthetic run in the real layout,
tests/unit/comparison_runs.py) whose model outputs, prompts, case ids, tags, run names,
config values, error messages and cell labels are hostile strings. The HTML is parsed with
html.parser and must hold no element or attribute beyond the page's own (no <script>, <img>,
on* handlers, javascript: links); the Markdown is rendered with a CommonMark parser
(markdown-it-py) and must hold no raw HTML, no injected heading, and table rows with as many
cells as their header. Lone surrogates must not stop a report from being written.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from markdown_it import MarkdownIt

from tests.unit.comparison_runs import make_run

PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(3)>",
    "</script><script>alert(2)</script>",
    "]]><!-- {{7*7}} -->",
    "a\x00b\x01c\x1b[31mred\x7f",
    "\u202eevil\u2066",
    "x|y\n# injected heading\n`tick` \\| \r\r<i>cr</i>",
    "\ud800 lone \udcff",
    "[click](javascript:alert(4)) ![px](http://example.invalid/p.png)",
    "> quote\n- item",
]
EVIL = " ".join(PAYLOADS)
LONG = "W" * 100_000  # one 100 kB line without a space

#: every element the lab's pages use; anything else was injected
PAGE_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "table",
    "thead", "tbody", "tr", "th", "td", "pre", "div", "ul", "li", "b", "i", "small", "br",
    "code", "a", "bdi", "svg", "text", "rect", "line", "circle", "polyline", "span",
}  # fmt: skip
#: every attribute they use
PAGE_ATTRS = {
    "charset", "xmlns", "width", "height", "viewbox", "font-family", "font-size",
    "font-weight", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "fill", "fill-opacity",
    "stroke", "stroke-width", "stroke-dasharray", "points", "text-anchor", "transform",
    "class", "style", "href", "title",
}  # fmt: skip


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, attrs))

    handle_startendtag = handle_starttag


def assert_clean_html(
    page: str, hrefs: set[str] | None = None, more_tags: frozenset[str] = frozenset()
) -> None:
    """No element, attribute or link that the page's own markup does not use."""
    parser = _Elements()
    parser.feed(page)
    parser.close()
    assert parser.elements, "no elements parsed"
    for tag, attrs in parser.elements:
        assert tag in PAGE_TAGS | more_tags, f"injected element <{tag}>"
        for name, value in attrs:
            assert name in PAGE_ATTRS, f"injected attribute {name}={value!r} on <{tag}>"
            if name == "href":
                assert value in (hrefs or set()), f"injected link {value!r}"
            if name == "class":
                assert value is not None and re.fullmatch(r"[a-z ]+", value), value
    for raw in ("<script", "<img", "<iframe", "<svg onload", '<a href="javascript'):
        assert raw not in page.lower()


def assert_no_long_unbreakable_layout(page: str) -> None:
    """A 100 kB word must wrap: <pre> and table cells break anywhere."""
    style = "".join(re.findall(r"<style>(.*?)</style>", page, re.S))
    assert "overflow-wrap:anywhere" in style.replace(" ", "")


def _cells(line: str) -> int:
    """Cells of a Markdown table row: '|' not escaped by an odd run of backslashes."""
    count, backslashes = 0, 0
    for ch in line.strip():
        if ch == "\\":
            backslashes += 1
            continue
        if ch == "|" and backslashes % 2 == 0:
            count += 1
        backslashes = 0
    return count


def assert_clean_markdown(text: str) -> None:
    """Rendered as CommonMark + tables: only our headings, no raw HTML, aligned tables."""
    rendered = MarkdownIt("commonmark").enable("table").render(text)
    assert_clean_html("<html>" + rendered + "</html>", more_tags=frozenset({"strong", "em"}))
    for level in ("h1", "h2", "h3", "h4", "h5", "h6"):
        for heading in re.findall(rf"<{level}>(.*?)</{level}>", rendered, re.S):
            assert not heading.startswith("injected"), f"injected heading {heading!r}"
    assert "<blockquote>" not in rendered, "injected block quote"
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            width = _cells(line)
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                assert _cells(row) == width, f"table row broken: {row[:200]!r}"
            for row in lines[i + 2 :]:
                if not row.strip():
                    break
                assert row.startswith("|"), f"a table row spilled onto its own line: {row!r}"


# ---------------------------------------------------------------- sweep report


def _sweep_inputs() -> tuple[Any, Any, tuple[list[str], list[str], list[list[float | None]]]]:
    from lab.determinism.config import parse_sweep_config
    from lab.determinism.metrics import SweepMetrics

    cfg = parse_sweep_config(
        {
            "mode": "single",
            "model": "model " + EVIL,
            "prompts": [{"id": "p" + EVIL, "prompt": EVIL}],
            "axes": {"batch_size": [1, 4], "dtype": ["fp32", "bf16"]},
        }
    )
    # A name with / or \ is refused at load (runs/<name>); the renderer still escapes one.
    cfg.name = "sweep " + EVIL
    metrics = SweepMetrics(
        summary={"mode": EVIL, EVIL: 1.0},
        per_target=[],
        per_cell=[
            {
                "cell": EVIL,
                "tokens_differ": 1,
                "outputs_compared": 1,
                "axes": {},
                "first_divergences": [2],
            }
        ],
        attribution=[
            {
                "axis": EVIL,
                "values": [EVIL, "b"],
                "cells": 2,
                "tokens_change_share": 0.5,
                "logprobs_change_share": 0.5,
            }
        ],
        divergences=[
            {
                "target": EVIL,
                "cell": EVIL,
                "first_divergence": 3,
                "reference_top_gap": 0.01,
                "reference_logprob": -0.1,
                "other_logprob": -0.2,
                "context": EVIL,
                "reference_continuation": EVIL + LONG,
                "other_continuation": EVIL,
            }
        ],
        failed_cells=[{"cell": {EVIL: EVIL}, "repeat": 0, "error": "Traceback:\n" + EVIL}],
        within_cell=[
            {
                "cell": EVIL,
                "prompt": EVIL,
                "copies": 2,
                "unique_completions": 2,
                "mode_count": 1,
                "first_divergences": [None, 1],
            }
        ],
    )
    values: list[list[float | None]] = [[1.0], [None]]
    grid = ([EVIL, "b"], [EVIL], values)
    return cfg, metrics, grid


def test_sweep_report_html_and_markdown() -> None:
    from lab.determinism.report import render_html, render_markdown

    cfg, metrics, grid = _sweep_inputs()
    page = render_html(cfg, metrics, "dtype", "batch_size", grid)
    assert_clean_html(page)
    assert_no_long_unbreakable_layout(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    md = render_markdown(cfg, metrics, "dtype", "batch_size", grid)
    assert_clean_markdown(md)


def test_sweep_report_is_written_despite_lone_surrogates(tmp_path: Path) -> None:
    from lab.determinism.report import render_html, render_markdown
    from lab.store import RunStore

    cfg, metrics, grid = _sweep_inputs()
    store = RunStore(tmp_path)
    html_path = store.write_text(
        "report.html", render_html(cfg, metrics, "dtype", "batch_size", grid)
    )
    md_path = store.write_text(
        "report.md", render_markdown(cfg, metrics, "dtype", "batch_size", grid)
    )
    assert "\ufffd lone \ufffd" in html_path.read_text(encoding="utf-8")
    assert "\ufffd lone \ufffd" in md_path.read_text(encoding="utf-8")


# ---------------------------------------------------------------- variance and comparison


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two synthetic n-of-k runs named, tagged, prompted and answered with the payloads."""
    root = tmp_path_factory.mktemp("runs")
    specs = [
        {
            "id": f"case-{i}",  # ids are validated (letters, digits, _ . : / -)
            "prompt": f"Q{i} {EVIL}",
            "checks": [{"exact": "yes"}],
            "tags": [PAYLOADS[i % len(PAYLOADS)], PAYLOADS[(i + 1) % len(PAYLOADS)]],
        }
        for i in range(len(PAYLOADS))
    ]
    count = len(specs)
    # Not the lone surrogates: the test's stub embedder (like a real tokenizer) cannot take them.
    outputs = [p for p in PAYLOADS if "\ud800" not in p]
    texts = {(i, j): f"{outputs[(i + j) % len(outputs)]} {LONG if j == 0 else ''}"
             for i in range(count) for j in range(3)}  # fmt: skip
    a_out = np.zeros((count, 3), dtype=bool)
    b_out = np.zeros((count, 3), dtype=bool)
    b_out[: count // 2] = True
    b_texts = {key: value for key, value in texts.items() if not b_out[key]}
    a = make_run(root, "a " + PAYLOADS[1], a_out, specs=specs, texts=texts)
    b = make_run(root, "b " + PAYLOADS[2], b_out, seed=9, specs=specs, texts=b_texts)
    return a, b


def test_variance_report_html_and_markdown(hostile_runs: tuple[Path, Path]) -> None:
    run, _ = hostile_runs
    page = (run / "report.html").read_text(encoding="utf-8")
    assert_clean_html(page)
    assert_no_long_unbreakable_layout(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert_clean_markdown((run / "summary.md").read_text(encoding="utf-8"))


def test_comparison_report_html_and_markdown(
    hostile_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    from lab.commands.comparison import run_compare

    a, b = hostile_runs
    written, md = run_compare([str(a), str(b)], tmp_path / "cmp", False, 0.05, 0, 50)
    page = written["html"].read_text(encoding="utf-8")
    assert_clean_html(page)
    assert_no_long_unbreakable_layout(page)
    markdown = written["markdown"].read_text(encoding="utf-8")
    assert_clean_markdown(markdown)
    # What lab compare prints: the same lines for a terminal, no Markdown escapes (it is not
    # rendered), no control character (ESC would act on the terminal), no forged line.
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f]", md)
    assert md.count("\n") == markdown.count("\n")


def test_retry_markdown(hostile_runs: tuple[Path, Path], tmp_path: Path) -> None:
    from lab.longtail.retry import run_retry

    a, b = hostile_runs
    _, text, path = run_retry(str(a), 2, str(b), str(tmp_path / "retry.md"))
    assert_clean_markdown(text)
    assert path.read_text(encoding="utf-8") == text


# ---------------------------------------------------------------- shift


def test_shift_report_html_and_markdown(tmp_path: Path) -> None:
    from lab.longtail import shift
    from lab.longtail.shift_render import write_outputs

    report: dict[str, Any] = {
        "demo_cases": 2,
        "prod_cases": 2,
        "summary": {"high": 1, "medium": 0, "low": 0, "none": 0},
        "gaps": [
            shift.gap("length", "length " + EVIL, 0.5, "KS " + EVIL, EVIL, None),
            {
                **shift.gap("embedding", EVIL, 0.2, EVIL, EVIL, None),
                "data": {
                    "least_covered": [
                        {"text": EVIL + LONG, "nearest_similarity": 0.1},
                        {"text": EVIL, "nearest_similarity": 0.2},
                    ]
                },
            },
        ],
        "method": {
            "tokens": EVIL,
            "language_id": EVIL,
            "embedder": EVIL,
            "permutations": 10,
            "seed": 0,
            "severity_rule": EVIL,
            "alpha": 0.05,
            "thresholds": {EVIL: [0.1, 0.2, 0.35]},
            "min_tag_share": 0.02,
            "under_factor": 2.0,
        },
    }
    report["gaps"][0]["data"] = {"tokens": EVIL, "demo": [1, 2], "prod": [3, 4]}
    paths = write_outputs(report, tmp_path / "out")
    page = paths["html"].read_text(encoding="utf-8")
    assert_clean_html(page)
    assert_clean_markdown(paths["md"].read_text(encoding="utf-8"))
    # gaps.json: JSON stays JSON (nothing neutralised there: it is not HTML)
    assert json.loads(paths["json"].read_text())["demo_cases"] == 2


# ---------------------------------------------------------------- quickstart index


def test_quickstart_index(tmp_path: Path) -> None:
    from lab.quickstart import write_index

    sweep = {
        "summary": {
            "cells_ok": 1,
            "cells_total": 2,
            "targets": 1,
            "max_unique_completions": 2,
            "TARr@N": 0.5,
            "TARa@N": 0.5,
            "max_abs_logprob_delta": 0.1,
        },
        "attribution": [{"axis": EVIL, "tokens_change_share": 0.5, "logprobs_change_share": 0.5}],
        "divergences": [
            {"target": EVIL, "cell": EVIL, "first_divergence": 1, "reference_top_gap": 0.1}
        ],
    }
    kernel = {
        "outputs_with_logprob_differences": 1,
        "targets": 2,
        "max_abs_logprob_delta": 0.1,
        "divergent_outputs": EVIL,
    }
    variance = {
        "run": {"cases": EVIL, "k": 3},
        "headline": {
            "mean": 0.5, "p5": 0.1, "p50": 0.5, "pass@k": 0.9, "pass^k": 0.1,
            "high_variance": True,
        },
    }  # fmt: skip
    page = write_index(tmp_path, sweep, {False: kernel, True: kernel}, variance).read_text(
        encoding="utf-8"
    )
    own_links = {
        "sweep/report.html",
        "kernels-off/report.html",
        "kernels-on/report.html",
        "variance/report.html",
    }
    assert_clean_html(page, own_links)


# ---------------------------------------------------------------- SVG helpers


def test_svg_labels_titles_and_tooltips() -> None:
    from lab.report import svg

    charts = [
        svg.heatmap([EVIL], [EVIL], [[1.0]], EVIL),
        svg.histogram([1.0, 2.0], 5, EVIL, EVIL),
        svg.sorted_bars([0.5], [EVIL], {EVIL: 0.5}),
        svg.success_histogram([1, 2], 3),
        svg.scatter([0.5], [0.5], [EVIL], EVIL, EVIL),
        svg.curves([1, 2], {EVIL: [0.5, 0.6]}),
    ]
    for chart in charts:
        assert_clean_html("<html><body>" + chart + "</body></html>")


# ---------------------------------------------------------------- the Markdown helpers


def test_md_cell_and_md_code_by_hand() -> None:
    from lab.safetext import md_cell, md_code, scrub_all

    assert md_cell("a|b\\|c") == "a\\|b\\\\\\|c"  # both pipes stay escaped: 3 cells -> 1
    assert md_cell("x\n# h\r\n<b>`t`</b> [l](u)") == "x # h \\<b>'t'\\</b> \\[l\\](u)"
    assert md_cell("# h") == "\\# h" and md_cell("> q") == "\\> q" and md_cell("- i") == "\\- i"
    assert md_cell("-0.5") == "-0.5"  # a negative number is not a list marker
    assert md_cell("\x00\x1b[31m\ud800") == "\ufffd\ufffd[31m\ufffd".replace("[", "\\[")
    assert md_cell("abcdefghij", 8) == "abcde..."
    assert md_code("a\r\nb\rc\nd`e") == "a\\nb\\nc\\nd'e"
    assert scrub_all({"k\udc80": ["v\ud800", ("t",)]}) == {"k\ufffd": ["v\ufffd", ("t",)]}


# ---------------------------------------------------------------- loopback only


@pytest.mark.parametrize("key", ["host", "hos", "--host", "port"])
def test_engine_args_cannot_move_the_server_off_loopback(key: str) -> None:
    from lab.backends.base import EngineConfig
    from lab.backends.server import server_command
    from lab.errors import LabError

    config = EngineConfig(backend="vllm", engine_args={key: "0.0.0.0"})
    with pytest.raises(LabError, match=f"engine arg '{key}'.*127.0.0.1"):
        server_command(config, "/models/x", "x", 4321, on_gpu=False)
    fine = EngineConfig(backend="vllm", engine_args={"max_num_seqs": 4})
    cmd = server_command(fine, "/models/x", "x", 4321, on_gpu=False)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd.count("--host") == 1


def test_serve_and_load_have_no_host_option() -> None:
    from lab.commands.serving import load_cmd, serve_cmd

    for command in (serve_cmd, load_cmd):
        flags = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert "--host" not in flags
