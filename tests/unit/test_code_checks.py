"""Code named in a case file runs only from modules the user allowed (lab.cases.codechecks).

The attacks are the real ones: `os:system` called with the model's output, `shutil:rmtree`
with a directory the output names. Each test would run them without the policy (the marker
file appears, the directory goes), so each fails without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.cases.codechecks import CodePolicy, resolve_checks
from lab.cases.loaders import load_cases
from lab.cases.model import case_from_record
from lab.errors import LabError
from lab.longtail.retry import load_outcomes, run_retry
from lab.rundir import SAMPLES
from lab.store import RunStore
from tests.unit.test_cli import run_lab


def attack_run(root: Path, check: str, output: str) -> Path:
    """A finished sample run directory (the layout lab sample writes) whose stored case runs
    `check` on `output`: what `lab retry` and `lab sample-report` re-run."""
    root.mkdir(parents=True)
    cases = [{"id": "c", "prompt": "hi", "checks": [{"python": check}]}]
    (root / "cases.json").write_text(json.dumps(cases))
    gens = [
        {
            "request_id": "c",
            "sample_index": i,
            "seed": i,
            "prompt_token_ids": [1],
            "output_token_ids": [2],
            "token_logprobs": [],
            "text": output,
            "finish_reason": "stop",
        }
        for i in range(2)
    ]
    RunStore(root).append(SAMPLES, "c", {"case_id": "c", "wall_s": 1.0, "generations": gens})
    return root


@pytest.fixture
def victims(tmp_path: Path) -> tuple[Path, Path]:
    """A directory rmtree would delete, and the file `os.system('touch ...')` would create."""
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "data.txt").write_text("years of work")
    return keep, tmp_path / "pwned"


def _attacks(victims: tuple[Path, Path]) -> list[tuple[str, str]]:
    keep, marker = victims
    return [("os:system", f"touch {marker}"), ("shutil:rmtree", str(keep))]


def _untouched(victims: tuple[Path, Path]) -> bool:
    keep, marker = victims
    return (keep / "data.txt").is_file() and not marker.exists()


def test_retry_refuses_stored_code_with_one_line(
    tmp_path: Path, victims: tuple[Path, Path]
) -> None:
    for n, (check, output) in enumerate(_attacks(victims)):
        root = attack_run(tmp_path / f"run{n}", check, output)
        (root / f"{check.split(':')[0]}.py").write_text("")  # beside cases.json: not allowed
        out = run_lab("retry", str(root), "--max-attempts", "2")
        assert out.returncode == 2, out.stderr
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, out.stderr
        module = check.split(":")[0]
        assert f"{check}: module {module!r} is code named by the case file" in lines[0]
        assert f"--allow-module {module}" in lines[0]
        assert _untouched(victims)


def test_sample_report_refuses_stored_code(tmp_path: Path, victims: tuple[Path, Path]) -> None:
    root = attack_run(tmp_path / "run", "shutil:rmtree", str(victims[0]))
    with pytest.raises(LabError, match="'shutil' is code named by the case file"):
        load_outcomes(root)  # lab.variance.report.build_report resolves the same way
    out = run_lab("sample-report", str(root))
    assert out.returncode != 0 and _untouched(victims)


def test_sample_refuses_before_the_run_directory(
    tmp_path: Path, victims: tuple[Path, Path]
) -> None:
    keep, marker = victims
    cases = tmp_path / "cases.jsonl"
    rows = [{"id": "a", "prompt": f"Say: touch {marker}", "checks": [{"python": "os:system"}]}]
    cases.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out_dir = tmp_path / "out"
    out = run_lab("sample", "--cases", str(cases), "--out", str(out_dir), "--k", "2")
    assert out.returncode == 2, out.stderr
    error = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and f"{cases}:1: field 'checks[0].function'" in error[0]
    assert "--allow-module os (or allow_modules: [os] in the config)" in error[0]
    assert not out_dir.exists() and _untouched(victims)


def test_loading_a_case_file_imports_nothing(tmp_path: Path) -> None:
    cases = tmp_path / "c.yaml"
    cases.write_text('- {id: a, prompt: hi, checks: [{python: "no_such_module_xyz:f"}]}\n')
    (case,) = load_cases(cases)  # no import at load time: the shape only
    with pytest.raises(LabError, match="'no_such_module_xyz' is code named by the case file"):
        resolve_checks([case], CodePolicy())
    with pytest.raises(LabError, match="cannot import 'no_such_module_xyz'"):
        resolve_checks([case], CodePolicy.from_settings(["no_such_module_xyz"]))


def test_allowed_modules_run(tmp_path: Path) -> None:
    folder = tmp_path / "evals"
    folder.mkdir()
    (folder / "mychecks.py").write_text(
        "def short(output, case=None, limit=3):\n    return len(output) <= limit, 'length'\n"
    )
    # a file beside the case file named like a standard module is that file, not the stdlib's
    (folder / "os.py").write_text("def system(output, case=None):\n    return True\n")
    (folder / "cases.yaml").write_text(
        "- {id: a, prompt: hi, checks: [{python: 'mychecks:short', args: {limit: 2}}]}\n"
        "- {id: b, prompt: hi, checks: [{python: 'os:system'}]}\n"
        "- {id: c, prompt: hi, checks: [{python: 'lab.variance.examples:no_letter'}]}\n"
        "- {id: d, prompt: hi, checks: [{python: 'operator:truediv'}]}\n"
    )
    path = folder / "cases.yaml"
    beside = CodePolicy.from_settings([], case_file=path)
    cases = load_cases(path)
    with pytest.raises(LabError, match="'operator' is code named by the case file"):
        resolve_checks(cases, beside)
    resolve_checks(cases, CodePolicy.from_settings(["operator"], case_file=path))
    a, b, c, d = cases
    assert a.checks[0].run("ok").passed and not a.checks[0].run("long").passed
    assert b.checks[0].run(f"rm -rf {tmp_path}").passed and folder.is_dir()
    assert c.checks[0].run("sky").passed  # the lab's own examples need no flag
    assert d.checks[0].run("x").reason.startswith("check raised TypeError")


def test_allow_module_reaches_retry_and_the_config(tmp_path: Path) -> None:
    mod = tmp_path / "lenchecks.py"
    mod.write_text("def nonempty(output, case=None):\n    return bool(output.strip())\n")
    root = attack_run(tmp_path / "run", "lenchecks:nonempty", "text")
    with pytest.raises(LabError, match=r"pass --allow-module lenchecks"):
        run_retry(str(root), 2, None, None)
    report, _, _ = run_retry(str(root), 2, None, None, (str(mod),))
    assert report["per_case"]["c"]["up_to_2"] == 1.0
    with pytest.raises(LabError, match="--allow-module nowhere.py: no such file"):
        CodePolicy.from_settings(["nowhere.py"])
    with pytest.raises(LabError, match="expected a module name"):
        CodePolicy.from_settings(["os; rm"])

    from lab.variance.config import load_config

    config = load_config(None, {"cases": str(tmp_path / "c.yaml"), "allow_modules": ("a",)})
    assert config.allow_modules == ["a"] and config.code_policy().allows("a")
    assert config.code_policy().allows("lenchecks")  # beside the case file
    assert not config.code_policy().allows("os")
    case = case_from_record(
        {"id": "x", "prompt": "p", "checks": [{"python": "os:system"}]}, True, "x"
    )
    with pytest.raises(LabError, match=r"allow_modules: \[os\] in the config"):
        resolve_checks([case], config.code_policy())


def test_check_modules_is_another_name_for_allow_modules(tmp_path: Path) -> None:
    """One key for the code a case file may run; the old one still reads (configs, and the
    settings.json of runs made before the merge)."""
    import json

    from lab.variance.config import load_config, read_settings

    path = tmp_path / "run.yaml"
    path.write_text("cases: bundled:basic\ncheck_modules: [a]\nallow_modules: b, c\n")
    config = load_config(path, {"allow_modules": ("d",)})
    assert config.allow_modules == ["b", "c", "a", "d"]
    assert not hasattr(config, "check_modules") and "check_modules" not in config.to_dict()
    assert all(config.code_policy().allows(m) for m in "abcd")
    old = config.to_dict()
    old.pop("allow_modules")
    (tmp_path / "settings.json").write_text(json.dumps(old | {"check_modules": ["x"]}))
    assert read_settings(tmp_path).allow_modules == ["x"]
    path.write_text("cases: bundled:basic\ncheck_modules: 5\n")
    with pytest.raises(LabError, match="allow_modules must be a list"):
        load_config(path, {})
