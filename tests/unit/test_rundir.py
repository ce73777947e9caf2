"""The run directory (lab.rundir) is the one place that names a run's files and tells which kind
of run a directory holds (issue 25's done-when, made a test):

- no module of lab/ but lab/rundir.py spells a run file's name (samples.jsonl, metrics.json,
  cells.jsonl, ...) in a string literal, f-strings included (docstrings and comments may name
  them); the scan finds a literal planted in a temporary module (negative control);
- `run_kind_of` is defined once, and it tells each kind from a directory the real writers made
  (RunStore.open with the kind, the sampler's open_run), from the files of a directory written
  before the marker existed, and None for a directory that holds no run;
- the per-case success reader gives the report's verdicts, and judging the log gives the same.

    .venv/bin/python -m pytest -q tests/unit/test_rundir.py
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest

from lab import rundir
from lab.errors import LabError
from lab.rundir import REPORT_DIR_FILES, RUN_FILES, per_case_success, require_kind, run_kind_of
from lab.store import RunStore

ROOT = Path(__file__).resolve().parents[2]

#: the only literals of a run file's name allowed outside lab/rundir.py, with why
ALLOWED = {
    # a Hugging Face checkpoint's config.json (the model's, in a model directory), not a run's
    ("lab/models.py", "config.json"),
    # a managed server's log in its own temporary directory when it has no run directory (the
    # backends sit below lab.rundir and cannot import it)
    ("lab/backends/server.py", "server.log"),
}


def run_file_names() -> list[str]:
    """Every file name a kind of run writes (RUN_FILES, less globs and the quickstart's step
    directories, whose names are no file's), and those of the report directories (lab
    compare, lab shift: REPORT_DIR_FILES)."""
    kinds = {**RUN_FILES, **REPORT_DIR_FILES}
    names = {n for names in kinds.values() for n in names if "*" not in n and "." in n}
    return sorted(names)


PATTERN = re.compile(
    r"(?<![\w.-])(" + "|".join(re.escape(n) for n in run_file_names()) + r")(?![\w-])"
)


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings (module, class, function)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def literals_naming_run_files(root: Path, package: str = "lab") -> list[str]:
    """`path:line: name` for every string literal (f-string parts included, docstrings not)
    under root/package that spells a run file's name, outside lab/rundir.py and ALLOWED."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative == f"{package}/rundir.py":
            continue
        tree = ast.parse(path.read_text(), relative)
        skip = docstrings(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            if id(node) in skip:
                continue
            for match in PATTERN.finditer(node.value):
                if (relative, match.group(1)) not in ALLOWED:
                    found.append(f"{relative}:{node.lineno}: {match.group(1)}")
    return found


def test_the_names_cover_every_kind() -> None:
    names = run_file_names()
    for expected in ("samples.jsonl", "cases.json", "metrics.json", "summary.md", "report.html",
                     "cells.jsonl", "trajectories.jsonl", "requests.jsonl", "config.json",
                     "sweep_config.json", "index.html"):  # fmt: skip
        assert expected in names


def test_no_run_file_name_is_spelled_outside_the_run_directory_module() -> None:
    found = literals_naming_run_files(ROOT)
    assert not found, "use the names of lab.rundir:\n" + "\n".join(found)


def test_the_scan_finds_a_planted_literal(tmp_path: Path) -> None:
    """Negative control: literals as code writes them are found, a docstring and a comment
    are not, a longer name that merely contains one is not."""
    package = tmp_path / "lab"
    (package / "sub").mkdir(parents=True)
    (package / "rundir.py").write_text('METRICS = "metrics.json"\n')  # the module itself: allowed
    (package / "sub" / "planted.py").write_text(
        '"""Reads metrics.json (a docstring may say so)."""\n'
        "# and a comment: cells.jsonl\n"
        "from pathlib import Path\n"
        "\n"
        "def read(root: Path) -> str:\n"
        '    """Its cases.json."""\n'
        '    other = root / "cases.jsonl.gz"\n'
        '    name = "tokenizer_config.json"\n'
        '    return (root / "summary.md").read_text() + f"{root}/samples.jsonl: bad" + name\n'
    )
    found = literals_naming_run_files(tmp_path)
    planted = "lab/sub/planted.py:9: "
    assert sorted(found) == [planted + "samples.jsonl", planted + "summary.md"]
    assert literals_naming_run_files(tmp_path / "nothing-here") == []


def test_one_run_kind_detector() -> None:
    """`git grep` finds one definition of a detector of a run directory's kind."""
    hits = subprocess.run(
        ["git", "grep", "-n", "-E", r"^def (run_kind|run_kind_of|is_sweep_dir)\b", "--", "lab"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    ).stdout.splitlines()  # fmt: skip
    assert [h.split(":")[0] for h in hits] == ["lab/rundir.py"], hits


def test_the_detector_tells_each_kind_from_what_the_writers_made(tmp_path: Path) -> None:
    for kind in ("sample", "sweep", "load"):
        RunStore.open(tmp_path / kind, {"x": 1}, kind=kind)
        assert run_kind_of(tmp_path / kind) == kind
        assert require_kind(tmp_path / kind, (kind,), "lab x") == kind
    # a quickstart: its steps are runs of their own kinds, its directory has its own marker
    from lab.store import prepare_run_dir

    quick = prepare_run_dir(tmp_path / "qs", "quickstart")
    RunStore.open(quick / "sweep", {"axes": {}}, kind="sweep")
    assert run_kind_of(quick) == "quickstart" and run_kind_of(quick / "sweep") == "sweep"
    # nothing, a file, files of no run
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("mine")
    (tmp_path / "file").write_text("x")
    for path in ("empty", "notes", "file", "missing"):
        assert run_kind_of(tmp_path / path) is None


@pytest.mark.parametrize(
    ("files", "kind"),
    [
        ({"cells.jsonl": ""}, "sweep"),
        ({"config.json": json.dumps({"axes": {"dtype": ["fp32"]}})}, "sweep"),
        ({"requests.jsonl": ""}, "load"),
        ({"config.json": json.dumps({"kind": "load"})}, "load"),
        ({"samples.jsonl": ""}, "sample"),
        ({"cases.json": "[]"}, "sample"),
        ({"trajectories.jsonl": ""}, "sample"),  # an agent run
        ({"config.json": json.dumps({"cases_fingerprint": "abc"})}, "sample"),
        ({"index.html": "", "sweep/cells.jsonl": ""}, "quickstart"),
        ({"config.json": "{}"}, None),
        ({"notes.txt": ""}, None),
    ],
)
def test_the_detector_reads_a_directory_from_before_the_marker(
    tmp_path: Path, files: dict[str, str], kind: str | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert run_kind_of(tmp_path) == kind


def test_the_marker_decides_over_the_files(tmp_path: Path) -> None:
    (tmp_path / "cells.jsonl").write_text("")
    (tmp_path / rundir.MARKER).write_text(json.dumps({"kind": "load"}))
    assert run_kind_of(tmp_path) == "load"
    (tmp_path / rundir.MARKER).write_text(json.dumps({"kind": "unknown"}))
    assert run_kind_of(tmp_path) == "sweep"  # a marker of no known kind: the files decide


def test_require_kind_names_the_directory_and_what_it_holds(tmp_path: Path) -> None:
    RunStore.open(tmp_path / "load", {"x": 1}, kind="load")
    with pytest.raises(LabError, match=r"load: holds a load run \(lab load\); lab compare reads"):
        require_kind(tmp_path / "load", ("sample", "sweep"), "lab compare")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LabError, match="empty: holds no lab run; lab compare reads a sample"):
        require_kind(tmp_path / "empty", ("sample", "sweep"), "lab compare")
    with pytest.raises(LabError, match="missing: no such run directory"):
        require_kind(tmp_path / "missing", ("sample",), "lab compare")


def test_agent_runs_and_agent_sweeps_are_told_apart(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path / "a", {"x": 1}, kind="sample")
    assert not rundir.is_agent_run(store.path)
    store.append(rundir.JOURNAL, "call-0", {"steps": []})
    assert rundir.is_agent_run(store.path)
    sweep = RunStore.open(tmp_path / "s", {"axes": {}}, kind="sweep")
    assert not rundir.is_agent_sweep(sweep.path)
    sweep.write_json(rundir.SWEEP_CONFIG, {"agents": None})
    assert not rundir.is_agent_sweep(sweep.path)
    sweep.write_json(rundir.SWEEP_CONFIG, {"agents": {"source": "bundled:agents"}})
    assert rundir.is_agent_sweep(sweep.path)


def test_per_case_success_reads_the_reports_verdicts_and_judging_agrees(tmp_path: Path) -> None:
    """A run made by the real sampler and report (scripted engine): the report's verdicts,
    in case order, equal the log's judged again, and metrics.json counts the same."""
    import numpy as np

    from lab.variance.analyze import evaluate_sample
    from tests.unit.comparison_runs import make_run

    outcomes = np.array([[True, False, True], [False, False, False], [True, True, True]])
    root = make_run(tmp_path, "run", outcomes)
    report = per_case_success(root)
    assert [c.passed for c in report] == outcomes.tolist()
    assert [(c.successes, c.n) for c in report] == [(2, 3), (0, 3), (3, 3)]
    judged = per_case_success(root, judge=lambda case, g: evaluate_sample(case, g)["passed"])
    assert [(c.id, c.passed, c.tokens) for c in judged] == [
        (c.id, c.passed, c.tokens) for c in report
    ]
    metrics = json.loads((root / rundir.METRICS).read_text())
    assert [(c["id"], c["rate"]) for c in metrics["cases"]] == [(c.id, c.rate) for c in report]
    # a judge that fails everything: the reader reports what the judge says, not the report
    assert all(not any(c.passed) for c in per_case_success(root, judge=lambda c, g: False))
    (root / rundir.PARQUET).unlink()
    with pytest.raises(LabError, match=r"samples.parquet: missing; run `lab sample-report"):
        per_case_success(root)
