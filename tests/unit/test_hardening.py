"""Hardening found by a bug bash of the `lab` CLI, one regression test (or a few) per defect:

1. `lab compare` of sweeps whose sweep_config.json is not a mapping: one error line, no crash.
2. `lab compare RUN RUN` (any spelling of one directory twice) is refused.
3. `lab quickstart --fresh` refuses a --out that is not a quickstart output (it deletes dirs).
4. A sweep `name` with a path in it (runs/<name> would leave runs/) is refused at load.
5. `lab load` shows a server's error text with its control characters made visible.
6. Untrusted values inline in HTML running text sit in <bdi> (a U+202E cannot reorder the line).
7. `lab compare` and `lab fragility` refuse an agent sweep in one line (compare said "no shared
   prompt").

Pure logic, no model: `lab.cli.main` in process (argv patched), a stdlib HTTP server on
127.0.0.1 for `lab load`, the real renderers on small synthetic inputs.
"""

from __future__ import annotations

import html
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lab.determinism.config import parse_sweep_config
from lab.errors import LabError
from lab.safetext import inline, terminal
from tests.unit.comparison_runs import case_specs, make_run
from tests.unit.test_bad_input_bash import lab, one_error
from tests.unit.test_comparison_sweeps import SAME, make_sweep

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: reverses what follows it on the line

# --- 1. lab compare: a sweep config that is not a mapping ---------------------------------------


@pytest.mark.parametrize("config_text", ["[1, 2]", '"sweep"', "3", "null"])
def test_compare_sweep_config_not_a_mapping_is_one_error_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    config_text: str,
) -> None:
    a = make_sweep(tmp_path / "a", {1: SAME})
    b = make_sweep(tmp_path / "b", {1: SAME})
    (b / "sweep_config.json").write_text(config_text)  # was AttributeError: no attribute 'get'
    code, err = lab(monkeypatch, capsys, "compare", str(a), str(b), "--out", str(tmp_path / "o"))
    assert code == 2
    one_error(err, str(b / "sweep_config.json"), "must be a JSON object")
    assert not (tmp_path / "o").exists()


# --- 2. lab compare: one run directory twice ----------------------------------------------------


@pytest.mark.parametrize("spelling", ["{a}", "{a}/", "./a", "./a/../a", "link"])
def test_compare_refuses_the_same_run_twice(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    spelling: str,
) -> None:
    a = make_sweep(tmp_path / "a", {1: SAME})
    (tmp_path / "link").symlink_to(a, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    second = spelling.format(a=a)
    code, err = lab(monkeypatch, capsys, "compare", str(a), second, "--out", "o")
    assert code == 2
    one_error(err, second, "same run directory")
    assert not (tmp_path / "o").exists()


def test_compare_refuses_a_repeat_among_several_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = make_sweep(tmp_path / "a", {1: SAME}), make_sweep(tmp_path / "b", {1: SAME})
    code, err = lab(monkeypatch, capsys, "compare", str(a), str(b), f"{a}/", "--out", "o")
    assert code == 2
    one_error(err, f"{a}/", "same run directory")


# --- 3. lab quickstart --fresh on a directory that is not a quickstart output --------------------


@pytest.fixture
def no_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A quickstart step that starts fails the test (and loads no model)."""

    def started(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a quickstart step started (--fresh deletes its directory)")

    monkeypatch.setattr("lab.determinism.sweep.run_sweep", started)


def test_quickstart_fresh_refuses_a_foreign_directory(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_steps: None,
) -> None:
    user = tmp_path / "mine"
    (user / "sweep").mkdir(parents=True)
    (user / "sweep" / "notes.txt").write_text("my own sweep notes")
    code, err = lab(monkeypatch, capsys, "quickstart", "--out", str(user), "--fresh")
    assert code == 2
    one_error(err, str(user), "not a quickstart output", "sweep")
    assert (user / "sweep" / "notes.txt").read_text() == "my own sweep notes"


def quickstart_like(root: Path, steps: tuple[str, ...], index: bool) -> Path:
    root.mkdir(parents=True)
    for step in steps:
        (root / step).mkdir(parents=True)
        (root / step / "config.json").write_text('{"kind": "sweep"}')
        (root / step / "cells.jsonl").write_text("")
    if index:
        (root / "index.html").write_text("<!doctype html>")
    return root


def test_quickstart_fresh_target_markers(tmp_path: Path) -> None:
    from lab.quickstart import STEP_DIRS, check_fresh_target

    # Accepted: missing, empty, a finished quickstart (plus a file of the user's beside its
    # index), one killed before its index (only its step dirs), an empty step dir.
    check_fresh_target(tmp_path / "missing")
    check_fresh_target(quickstart_like(tmp_path / "empty", (), False))
    done = quickstart_like(tmp_path / "done", STEP_DIRS, True)
    (done / "notes.txt").write_text("kept: --fresh only rewrites the step dirs")
    check_fresh_target(done)
    check_fresh_target(quickstart_like(tmp_path / "killed", ("sweep", "kernels-off"), False))
    (tmp_path / "killed" / "kernels-on").mkdir()
    check_fresh_target(tmp_path / "killed")
    # Refused: other files and no index; a step dir that is not a lab run, even with an index.
    other = quickstart_like(tmp_path / "other", ("sweep",), False)
    (other / "thesis.tex").write_text("x")
    with pytest.raises(LabError, match="thesis.tex"):
        check_fresh_target(other)
    foreign = quickstart_like(tmp_path / "foreign", ("sweep",), True)
    (foreign / "variance").mkdir()
    (foreign / "variance" / "data.csv").write_text("1,2")
    with pytest.raises(LabError, match="variance"):
        check_fresh_target(foreign)
    (foreign / "variance" / "config.json").write_text("[1]")  # not a lab run's config
    with pytest.raises(LabError, match="variance"):
        check_fresh_target(foreign)
    file_step = quickstart_like(tmp_path / "file-step", (), True)
    (file_step / "sweep").write_text("a file named like a step")
    with pytest.raises(LabError, match="sweep"):
        check_fresh_target(file_step)


# --- 4. a sweep name that is a path --------------------------------------------------------------

PROMPTS = [{"id": "p", "prompt": "x"}]


@pytest.mark.parametrize("name", ["../x", "/abs/x", "a/b", "a\\b", "..\\x", ".", "..", "", " "])
def test_sweep_name_with_a_path_is_refused(name: str) -> None:
    with pytest.raises(LabError) as error:
        parse_sweep_config({"name": name, "prompts": PROMPTS}, "cfg.yaml")
    assert str(error.value).startswith("cfg.yaml: name: ")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["feynman-cpu", "a.b", "..x", "tar at 10"])
def test_plain_sweep_names_still_load(name: str) -> None:
    assert parse_sweep_config({"name": name, "prompts": PROMPTS}, "cfg.yaml").name == name


# --- 5. lab load: a server's error text on the terminal ------------------------------------------

HOSTILE_BODY = "\x1b[2J\x1b]0;pwned\x07boom\nforged: line\x9b31m\ttab"


class HostileServer:
    """127.0.0.1: every POST answers 500 with HOSTILE_BODY; every GET answers 404."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's spelling
                self.rfile.read(int(self.headers.get("content-length", 0)))
                body = HOSTILE_BODY.encode()
                self.send_response(500)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    yield server
    server.close()


def test_terminal_shows_controls_but_tab_by_hand() -> None:
    assert terminal("a\x1b[31mb\x07\tc\r\nd\x7f\x85\x9b\x00") == (
        "a\\x1b[31mb\\x07\tc\\x0d\\x0ad\\x7f\\x85\\x9b\\x00"
    )
    assert terminal("plain: é 中 \u202e ok") == "plain: é 中 \u202e ok"  # printable kept
    assert terminal("\ud800") == "\ufffd"  # a lone surrogate cannot be written to stdout


def test_load_prints_server_errors_inert_and_records_them_raw(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    hostile: HostileServer,
) -> None:
    out = tmp_path / "load"
    monkeypatch.setattr(
        sys,
        "argv",
        ["lab", "load", "--base-url", hostile.base_url, "--model", "m", "--requests", "2",
         "--max-tokens", "4", "--out", str(out)],
    )  # fmt: skip
    from lab.cli import main

    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 1  # incomplete: both requests ended http_error
    printed = capsys.readouterr()
    shown = printed.out + printed.err
    assert "http_error 2" in shown
    error_lines = [line for line in shown.splitlines() if line.startswith("  error:")]
    assert error_lines, shown
    for line in error_lines:
        assert line.endswith(terminal(HOSTILE_BODY)), line
    for control in ("\x1b", "\x07", "\x9b"):
        assert control not in shown
    assert "forged: line" not in [line.strip() for line in shown.splitlines()]
    # The records keep the server's text as it was (JSON escapes it).
    records = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert records and all(HOSTILE_BODY in r["error"] for r in records)


def test_load_model_discovery_error_is_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    hostile: HostileServer,
) -> None:
    # No --model: GET /models answers 404; httpx's message spans two lines.
    code, err = lab(
        monkeypatch, capsys, "load", "--base-url", hostile.base_url, "--requests", "1",
        "--out", str(tmp_path / "load"),
    )  # fmt: skip
    assert code == 2
    one_error(err, f"{hostile.base_url}/models", "404")
    assert len(err.strip().splitlines()) == 1, err


# --- 6. bidi controls inline in the HTML reports -------------------------------------------------

EVIL = f"p{RLO}<i>x"


def isolated(value: str) -> str:
    return f"<bdi>{html.escape(value)}</bdi>"


def test_inline_by_hand() -> None:
    assert inline(f"a{RLO}<b>&") == f"<bdi>a{RLO}&lt;b&gt;&amp;</bdi>"


def test_quickstart_index_bullets_isolate_prompt_ids_and_cells(tmp_path: Path) -> None:
    from lab.quickstart import sweep_lines, write_index

    sweep = {
        "summary": {"cells_ok": 1, "cells_total": 2, "targets": 1, "max_unique_completions": 2,
                    "TARr@N": 0.5, "TARa@N": 0.5, "max_abs_logprob_delta": 0.1},
        "attribution": [{"axis": "dtype", "tokens_change_share": 0.5,
                         "logprobs_change_share": 0.5}],
        "divergences": [{"target": EVIL, "cell": f"dtype={EVIL}", "first_divergence": 7,
                         "reference_top_gap": 0.1}],
    }  # fmt: skip
    kernel = {"outputs_with_logprob_differences": 1, "targets": 2, "max_abs_logprob_delta": 0.1,
              "divergent_outputs": 0}  # fmt: skip
    variance = {
        "run": {"cases": 3, "k": 3},
        "headline": {"mean": 0.5, "p5": 0.1, "p50": 0.5, "pass@k": 0.9, "pass^k": 0.1,
                     "high_variance": False},
    }  # fmt: skip
    page = write_index(tmp_path, sweep, {False: kernel, True: kernel}, variance).read_text()
    assert (
        f"<li>first divergence: {isolated(EVIL)} in [{isolated(f'dtype={EVIL}')}] at token 7 "
        in page
    )
    assert "<i>x" not in page
    # The terminal lines are unchanged plain text.
    assert f"first divergence: {EVIL} in [dtype={EVIL}] at token 7 " in sweep_lines(sweep)[-1]


def test_sweep_report_divergence_line_isolates_target_and_cell() -> None:
    from lab.determinism.metrics import SweepMetrics
    from lab.determinism.report import render_html

    cfg = parse_sweep_config(
        {"name": "s", "prompts": [{"id": "p1", "prompt": "x"}], "axes": {"dtype": ["fp32"]}}
    )
    divergence = {
        "target": EVIL,
        "cell": f"dtype={EVIL}",
        "first_divergence": 3,
        "reference_top_gap": 0.01,
        "reference_logprob": -0.1,
        "other_logprob": -0.2,
        "context": "c",
        "reference_continuation": "r",
        "other_continuation": "o",
    }
    metrics = SweepMetrics({}, [], [], [], [divergence], [], [])
    page = render_html(cfg, metrics, "dtype", "batch_size", ([], [], []))
    assert f"<p><b>{isolated(EVIL)}</b> in <i>{isolated(f'dtype={EVIL}')}</i> at token 3" in page


def test_sweep_comparison_heading_isolates_run_names(tmp_path: Path) -> None:
    from lab.commands.comparison import run_compare

    a = make_sweep(tmp_path / f"a{RLO}one", {1: SAME})
    b = make_sweep(tmp_path / "b", {1: SAME})
    written, _ = run_compare([str(a), str(b)], tmp_path / "cmp", False, 0.05, 0, 10)
    page = written["html"].read_text()
    assert f"<h1>Sweep comparison: {isolated('b')} vs {isolated(a.name)}</h1>" in page


def test_sample_comparison_and_variance_report_isolate_names_and_tags(tmp_path: Path) -> None:
    from lab.commands.comparison import run_compare

    specs = case_specs(4, {0: [f"t{RLO}ag", "plain"]})
    outcomes = np.ones((4, 2), dtype=bool)
    a = make_run(tmp_path, f"a{RLO}one", outcomes, specs=specs)
    b = make_run(tmp_path, "b", outcomes, seed=1, specs=specs)
    page = (a / "report.html").read_text()
    assert f"{isolated('case-000')}<br><small>{isolated(f't{RLO}ag')}, {isolated('plain')}" in page
    assert f" / {isolated('smollm2-135m-instruct')} / " in page  # the model, mid-sentence
    written, _ = run_compare([str(a), str(b)], tmp_path / "cmp", False, 0.05, 0, 20)
    page = written["html"].read_text()
    assert f"<h2>{isolated('b')} vs {isolated(a.name)}</h2>" in page


def test_shift_report_isolates_least_covered_inputs() -> None:
    from lab.longtail import shift
    from lab.longtail.shift_render import html_page

    report: dict[str, Any] = {
        "demo_cases": 1,
        "prod_cases": 1,
        "summary": {"high": 0, "medium": 0, "low": 1, "none": 0},
        "gaps": [
            {
                **shift.gap("embedding", "coverage", 0.2, "sim", "detail", None),
                "data": {"least_covered": [{"text": EVIL, "nearest_similarity": 0.25}]},
            }
        ],
        "method": {"seed": 0},
    }
    assert f"<li>(0.25) {isolated(EVIL)}</li>" in html_page(report)


# --- 7. lab compare / lab fragility: an agent sweep ---------------------------------------------


def test_compare_and_fragility_refuse_an_agent_sweep_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_sweep(tmp_path / "a", {1: SAME})
    b = make_sweep(tmp_path / "b", {1: SAME})
    config = json.loads((b / "sweep_config.json").read_text())
    config["agents"] = {"source": "bundled:agents"}  # what an agent sweep's config carries
    (b / "sweep_config.json").write_text(json.dumps(config))
    code, err = lab(monkeypatch, capsys, "compare", str(a), str(b), "--out", str(tmp_path / "o"))
    assert code == 2  # was: "no shared prompt", as if the sweeps had nothing in common
    one_error(err, str(b), "an agent sweep; lab compare works on single-turn sweeps")
    assert f"lab report {b}" in err and not (tmp_path / "o").exists()
    code, err = lab(monkeypatch, capsys, "fragility", str(b))
    assert code == 2
    one_error(err, str(b), "an agent sweep; lab fragility works on single-turn")
