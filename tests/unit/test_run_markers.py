"""Data that must never be lost: every run directory carries one marker (`.lab-run.json`)
naming its kind; `--fresh` deletes only what that kind of run writes and refuses another kind;
an unknown model fails before any directory is touched (no model loads here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.cases.loaders import load_cases
from lab.errors import LabError
from lab.rundir import MARKER, RUN_FILES, SAMPLES, run_kind_of
from lab.runkinds import check_run_dir
from lab.store import RunStore
from lab.variance.config import SampleConfig
from lab.variance.runner import open_run
from tests.unit.test_bad_input_bash import CASE, lab, one_error


@pytest.fixture
def cases(tmp_path: Path) -> Path:
    path = tmp_path / "cases.jsonl"
    path.write_text(CASE)
    return path


def sample_run(path: Path, cases: Path, fresh: bool = False) -> RunStore:
    config = SampleConfig(cases=str(cases), k=2, backend="hf", out=str(path))
    return open_run(config, load_cases(str(cases)), config.engine_config(), fresh)


def sweep_run(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"axes": {}, "mode": "single"}))
    (path / "cells.jsonl").write_text('{"key": "cell-1"}\n')
    (path / "report.html").write_text("<html>the sweep</html>")
    return path


def test_a_run_directory_carries_its_kind(tmp_path: Path, cases: Path) -> None:
    store = sample_run(tmp_path / "run", cases)
    marker = json.loads((store.path / MARKER).read_text())
    assert marker["kind"] == "sample" and marker["command"] == "lab sample"
    assert "samples.jsonl" in marker["writes"] and "report.html" in marker["writes"]
    assert run_kind_of(store.path) == "sample"


def test_fresh_deletes_only_what_the_lab_wrote(tmp_path: Path, cases: Path) -> None:
    run = tmp_path / "run"
    store = sample_run(run, cases)
    store.append(SAMPLES, "a", {"case_id": "a", "generations": []})
    (run / "report.html").write_text("old report")
    (run / "notes.txt").write_text("my notes on the earlier run")
    (run / "analysis").mkdir()
    (run / "analysis" / "plot.py").write_text("print(1)")
    sample_run(run, cases, fresh=True)
    assert (run / "notes.txt").read_text() == "my notes on the earlier run"
    assert (run / "analysis" / "plot.py").read_text() == "print(1)"
    assert not (run / "samples.jsonl").exists() and not (run / "report.html").exists()
    assert (run / MARKER).is_file() and (run / "config.json").is_file()


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "--cases", "{cases}", "--backend", "hf", "--out", "{dir}", "--fresh"],
        ["sample", "--cases", "{cases}", "--backend", "hf", "--out", "{dir}"],
        ["library", "run", "--library", "{library}", "--backend", "hf", "--out", "{dir}",
         "--fresh"],
        ["load", "--base-url", "http://127.0.0.1:9/v1", "--out", "{dir}", "--fresh"],
        ["quickstart", "--out", "{dir}", "--fresh"],
    ],
)  # fmt: skip
def test_another_kind_of_run_is_refused_and_kept(
    tmp_path: Path,
    cases: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    """`lab sample --fresh --out <a sweep run>` wiped the sweep."""
    sweep = sweep_run(tmp_path / "sweep")  # written before the marker existed: by its files
    library = tmp_path / "lib.yaml"
    library.write_text("floor: {}\ncases:\n- id: a\n  prompt: hi\n  checks: [{contains: x}]\n")
    names = {"cases": cases, "dir": sweep, "library": library}
    code, err = lab(monkeypatch, capsys, *[a.format(**names) for a in args])
    assert code == 2
    one_error(err, str(sweep), "holds a sweep run")
    assert (sweep / "cells.jsonl").read_text() == '{"key": "cell-1"}\n'
    assert (sweep / "report.html").read_text() == "<html>the sweep</html>"


def test_a_sweep_is_refused_a_sample_run_too(
    tmp_path: Path, cases: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sample_run(tmp_path / "run", cases)
    config = tmp_path / "sweep.yaml"
    config.write_text("prompts: [hi]\n")
    code, err = lab(monkeypatch, capsys, "sweep", str(config), "--out", str(tmp_path / "run"),
                    "--fresh")  # fmt: skip
    assert code == 2
    one_error(err, "holds a sample run", "lab sample")
    assert (tmp_path / "run" / "cases.json").is_file()


def test_runs_from_before_the_marker_resume_and_get_one(tmp_path: Path, cases: Path) -> None:
    run = tmp_path / "old"
    sample_run(run, cases).append(SAMPLES, "a", {"case_id": "a", "generations": []})
    (run / MARKER).unlink()  # as a run directory written before this version
    assert run_kind_of(run) == "sample"
    store = sample_run(run, cases)  # resumes
    assert store.done_keys(SAMPLES) == {"a"}
    assert json.loads((run / MARKER).read_text())["kind"] == "sample"
    load = tmp_path / "load"
    load.mkdir()
    (load / "config.json").write_text(json.dumps({"kind": "load", "requests": 3}))
    assert run_kind_of(load) == "load"
    killed = tmp_path / "killed-sample"  # killed before its cases.json: its config says
    killed.mkdir()
    (killed / "config.json").write_text(json.dumps({"cases_fingerprint": "x", "k": 2}))
    assert run_kind_of(killed) == "sample"


def test_a_directory_without_a_run(tmp_path: Path) -> None:
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "thesis.txt").write_text("years of work")
    check_run_dir(documents, "sample")  # new files beside the user's: nothing is lost
    (documents / "report.html").write_text("my own report")
    with pytest.raises(LabError, match="would overwrite report.html"):
        check_run_dir(documents, "sample")
    with pytest.raises(LabError, match="holds files but no lab run"):
        check_run_dir(documents, "sample", fresh=True)
    assert (documents / "report.html").read_text() == "my own report"


def test_every_kind_lists_its_marker_and_config() -> None:
    for kind, names in RUN_FILES.items():
        assert MARKER in names, kind
    from lab.quickstart import STEP_DIRS

    assert set(STEP_DIRS) <= set(RUN_FILES["quickstart"])


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "--cases", "{cases}", "--backend", "hf", "--model", "no-such-model",
         "--out", "{dir}"],
        ["sweep", "{sweep}", "--out", "{dir}"],
        ["library", "run", "--library", "{library}", "--model", "no-such-model", "--out",
         "{dir}"],
        ["load", "--serve", "--model", "no-such-model", "--out", "{dir}"],
    ],
)  # fmt: skip
def test_an_unknown_model_touches_nothing(
    tmp_path: Path,
    cases: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    """`lab sample --model no-such-model --out DIR` created DIR before failing."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("model: no-such-model\nprompts: [hi]\n")
    library = tmp_path / "lib.yaml"
    library.write_text("floor: {}\ncases:\n- id: a\n  prompt: hi\n  checks: [{contains: x}]\n")
    out = tmp_path / "out"
    names = {"cases": cases, "dir": out, "sweep": sweep, "library": library}
    code, err = lab(monkeypatch, capsys, *[a.format(**names) for a in args])
    assert code == 2
    one_error(err, "unknown model 'no-such-model'")
    assert not out.exists()
