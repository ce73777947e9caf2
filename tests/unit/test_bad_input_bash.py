"""Bad input across the `lab` CLI, found by a bug bash: each gets exit 2 and one `error:` line
naming the file, line or field, before any engine starts, and nothing already written is lost.

Runs `lab.cli.main` in process (argv patched) so the suite stays fast; no model loads.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import pytest

from lab.cases.cohorts import load_cohorts_file
from lab.cases.loaders import load_cases
from lab.cli import cli, main
from lab.cli_options import parse_engine_args
from lab.determinism.config import parse_sweep_config
from lab.determinism.report import choose_axes
from lab.devices import check_device_name
from lab.errors import LabError

CASE = '{"id": "a", "prompt": "hi", "checks": [{"contains": "x"}]}\n'


def lab(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    """Run `lab ARGS` in this process: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["lab", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    code = stop.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


def one_error(err: str, *parts: str) -> str:
    """The single `error:` line of stderr, checked to contain every part; no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(("error:", "Error:"))]
    assert len(lines) == 1, err
    for part in parts:
        assert part in lines[0], err
    return lines[0]


@pytest.fixture
def cases(tmp_path: Path) -> Path:
    path = tmp_path / "cases.jsonl"
    path.write_text(CASE)
    return path


# --- lab sample: the config file ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "parts"),
    [
        ("k: [1\n", ("cfg.yaml:2: not valid YAML",)),  # was a multi-line PyYAML dump
        ("gate: [1, 2]\n", ("gate must be a mapping",)),  # was silently accepted
        ("prices: 3\n", ("prices must be a mapping",)),  # was "'int' object is not iterable"
        ("prices: {input: abc}\n", ("prices.input must be a number",)),  # was a traceback
        ("bootstrap_samples: 0\n", ("bootstrap_samples must be >= 1",)),
        ("temperature: -0.5\n", ("temperature must be >= 0",)),
        ("max_tokens: 0\n", ("max_tokens must be >= 1",)),
        ("device: gpu\n", ("unknown device 'gpu'",)),
        ("embed_device: tpu\n", ("unknown device 'tpu'",)),
        ("max_num_seqs: 0\n", ("max_num_seqs must be >= 1",)),
    ],
)
def test_sample_config_errors_come_before_the_run_directory(
    tmp_path: Path,
    cases: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    yaml_text: str,
    parts: tuple[str, ...],
) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml_text)
    run = tmp_path / "run"
    code, err = lab(monkeypatch, capsys, "sample", str(config), "--cases", str(cases),
                    "--backend", "hf", "--out", str(run))  # fmt: skip
    assert code == 2
    one_error(err, *parts)
    assert not run.exists()  # a bad setting used to leave a half-made run directory


def test_a_bad_setting_with_fresh_keeps_the_existing_run(
    tmp_path: Path, cases: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "samples.jsonl").write_text('{"key": "a"}\n')
    code, err = lab(monkeypatch, capsys, "sample", "--cases", str(cases), "--backend", "hf",
                    "--temperature", "-1", "--fresh", "--out", str(run))  # fmt: skip
    assert code == 2
    one_error(err, "temperature must be >= 0")
    assert (run / "samples.jsonl").read_text() == '{"key": "a"}\n'


# --- lab sweep: the config file -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "parts"),
    [
        ("prompts: [hi]\nsampling: {temperature: -1}\n", ("sampling", "temperature must be >= 0")),
        ("prompts: [hi]\nsampling: {max_tokens: 0}\n", ("sampling", "max_tokens must be >= 1")),
        ("prompts: [hi]\nsampling: {max_tokens: '8'}\n", ("sampling.max_tokens", "integer")),
        ("prompts: [{prompt: ''}]\n", ("prompts[0].prompt", "non-empty text")),
        ("prompts: [{prompt: 5}]\n", ("prompts[0].prompt", "non-empty text")),
        ("prompts: [hi]\nanswer_regex: '(['\n", ("answer_regex: invalid regex",)),
        ("prompts: [{prompt: hi, answer_regex: '(['}]\n", ("prompts[0].answer_regex",)),
        ("prompts: [hi]\nmodel: 5\n", ("model: must be a model name",)),
        ("prompts: [hi]\ndevice: gpu\n", ("device: unknown device 'gpu'",)),
        ("prompts: [hi]\nmode: prefix\nprefix_lengths: []\n", ("prefix_lengths",)),
        ("prompts_file: broken.yaml\n", ("broken.yaml:2: not valid YAML",)),
    ],
)
def test_sweep_config_errors_name_the_field(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    yaml_text: str,
    parts: tuple[str, ...],
) -> None:
    (tmp_path / "broken.yaml").write_text("- a: [\n")
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml_text)
    run = tmp_path / "run"
    code, err = lab(monkeypatch, capsys, "sweep", str(config), "--out", str(run))
    assert code == 2
    one_error(err, *parts)
    assert not run.exists()  # these used to run every cell and "succeed" with failed cells


def test_sweep_config_that_is_not_utf8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sweep.yaml"
    config.write_bytes(b"\xff\xfeprompts: [hi]\n")
    code, err = lab(monkeypatch, capsys, "sweep", str(config))
    assert code == 2
    one_error(err, "sweep.yaml:1: not valid UTF-8")


def test_report_axis_must_exist() -> None:
    config = parse_sweep_config({"prompts": ["hi"], "axes": {"batch_size": [1, 2]}})
    assert choose_axes(config, None, None)[0] == "batch_size"
    assert choose_axes(config, "repeat", "dtype") == ("repeat", "dtype")
    with pytest.raises(LabError, match="--x: unknown axis 'bogus'"):  # was a KeyError traceback
        choose_axes(config, "bogus", None)


# --- output paths: a file where a directory goes, and the other way round -----------------------


@pytest.mark.parametrize(
    "command",
    [
        ["sweep", "{sweep}", "--out", "{file}"],
        ["sample", "--cases", "{cases}", "--backend", "hf", "--out", "{file}"],
        ["compare", "{dir}", "{dir}", "--out", "{file}"],
        ["shift", "{cases}", "{cases}", "--tokenizer", "whitespace", "--out", "{file}"],
        ["quickstart", "--cases", "{cases}", "--out", "{file}"],
    ],
)
def test_out_directory_that_is_a_file(
    tmp_path: Path,
    cases: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("prompts: [hi]\n")
    names = {"file": existing, "cases": cases, "sweep": sweep, "dir": tmp_path}
    args = [part.format(**names) for part in command]
    code, err = lab(monkeypatch, capsys, *args)
    assert code == 2
    one_error(err, "is a file, not a directory")
    assert existing.read_text() == "keep me\n"


def test_retry_out_that_is_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "reports"
    target.mkdir()
    code, err = lab(monkeypatch, capsys, "retry", str(tmp_path), "--out", str(target))
    assert code == 2
    one_error(err, "is a directory")
    assert list(target.iterdir()) == [] and not list(tmp_path.glob(".*tmp*"))


def test_perturb_refuses_to_overwrite_its_own_cases(
    cases: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = lab(monkeypatch, capsys, "perturb", str(cases), "--out", str(cases),
                    "--kinds", "typos")  # fmt: skip
    assert code == 2
    one_error(err, "is the CASES file itself")
    assert cases.read_text() == CASE  # it used to be replaced by its own variants


def test_perturb_kinds_that_name_nothing(
    cases: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = lab(monkeypatch, capsys, "perturb", str(cases), "--out",
                    str(tmp_path / "p.jsonl"), "--kinds", ",")  # fmt: skip
    assert code == 2
    one_error(err, "names no family")


def test_load_fresh_with_bad_numbers_keeps_the_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "load"
    run.mkdir()
    (run / "passes.jsonl").write_text("{}\n")
    code, err = lab(monkeypatch, capsys, "load", "--serve", "--fresh", "--requests", "0",
                    "--out", str(run))  # fmt: skip
    assert code == 2
    one_error(err, "--requests must be >= 1")
    assert (run / "passes.jsonl").exists()  # --fresh used to delete it before the check


# --- flags ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "part"),
    [
        (["serve", "--port", "99999"], "99999 is not in the range"),  # was an OverflowError
        (["serve", "--startup-timeout", "0"], "--startup-timeout"),
        (["generate", "--prompt", "hi", "--engine-arg", "=3"], "KEY before '=' is empty"),
        (["generate", "--prompt", "  "], "--prompt number 1 is empty"),
        (["generate", "--prompt", "hi", "--max-model-len", "0"], "max_model_len must be >= 1"),
        (["demo", "--backends", ","], "give at least one of hf, vllm"),  # exited 0, no table
        # these two used to fail only after the quickstart's two model steps had run
        (["quickstart", "--k", "0", "--out", "{tmp}/qs"], "'--k': 0 is not in the range x>=1"),
        (["quickstart", "--cases", "missing.jsonl", "--out", "{tmp}/qs"], "missing.jsonl: no such"),
        (["bench", "sweep", "--max-tokens", "0"], "--max-tokens"),  # printed "nan%", exit 0
        (["load", "--base-url", "http://127.0.0.1:9/v1", "--timeout", "0"], "--timeout"),
    ],
)
def test_bad_flags_fail_before_any_engine(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    part: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # a regression must not write runs/ into the checkout
    code, err = lab(monkeypatch, capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 2
    one_error(err, part)
    assert not (tmp_path / "qs").exists()


def test_shift_tokenizer_the_user_named_must_exist(
    cases: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = lab(monkeypatch, capsys, "shift", str(cases), str(cases), "--tokenizer",
                    "no-such-model", "--out", str(tmp_path / "shift"))  # fmt: skip
    assert code == 2  # it used to count whitespace words instead, silently
    one_error(err, "unknown model 'no-such-model'")


def test_broken_yaml_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("cases: [\n")
    code, err = lab(monkeypatch, capsys, "library", "show", "--library", str(broken))
    assert code == 2
    one_error(err, "broken.yaml:2: not valid YAML")
    with pytest.raises(LabError) as exc:  # `lab sample-report --cohorts FILE`
        load_cohorts_file(broken)
    assert "\n" not in str(exc.value) and "broken.yaml:2: not valid YAML" in str(exc.value)


def test_an_os_error_on_a_user_path_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The safety net in main(): a path that cannot be used is exit 2, not a traceback."""
    target = tmp_path / "a-file"
    target.write_text("x")

    @cli.command("bash-mkdir-probe")
    def probe() -> None:
        (target / "sub").mkdir()

    try:
        code, err = lab(monkeypatch, capsys, "bash-mkdir-probe")
    finally:
        cli.commands.pop("bash-mkdir-probe")
    assert code == 2
    one_error(err, str(target / "sub"), "Not a directory")


def test_an_os_error_without_a_path_keeps_its_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @cli.command("bash-oserror-probe")
    def probe() -> None:
        raise OSError("a bug, not bad input")

    monkeypatch.setattr(sys, "argv", ["lab", "bash-oserror-probe"])
    try:
        with pytest.raises(OSError, match="a bug"):
            main()
    finally:
        cli.commands.pop("bash-oserror-probe")


# --- case files and small parsers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ('"raw": "maybe"', "field 'raw': must be true or false"),  # was read as false
        ('"checks": [{"contains": ""}]', "field 'checks[0].value': 'value' must not be empty"),
        ('"checks": [{"contains": "x", "regex": "y"}]', "names 2 kinds ['contains', 'regex']"),
    ],
)
def test_case_fields_that_were_silently_wrong(tmp_path: Path, record: str, message: str) -> None:
    path = tmp_path / "cases.jsonl"
    fields = '"id": "a", "prompt": "hi"'
    if '"checks"' not in record:
        fields += ', "checks": [{"contains": "x"}]'
    path.write_text("{" + fields + ", " + record + "}\n")
    with pytest.raises(LabError, match=r"cases.jsonl:1: ") as exc:
        load_cases(path)
    assert message in str(exc.value)


def test_csv_header_naming_a_column_twice(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    path.write_text('id,prompt,prompt,checks\na,hi,there,"{""contains"": ""x""}"\n')
    with pytest.raises(LabError, match=r"cases.csv:1: field 'prompt': .* column twice"):
        load_cases(path)  # the second prompt used to replace the first, silently


def test_raw_accepts_the_usual_spellings(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    check = '"{""contains"": ""x""}"'
    path.write_text(f"id,prompt,checks,raw\na,hi,{check},no\nb,hi,{check},TRUE\n")
    assert [c.raw for c in load_cases(path)] == [False, True]


def test_engine_args_and_device_names() -> None:
    assert parse_engine_args(("seed=3", " kv_cache_dtype = auto")) == {
        "seed": 3,
        "kv_cache_dtype": " auto",
    }
    with pytest.raises(LabError, match="empty"):
        parse_engine_args(("=3",))
    for ok in ("auto", "cpu", "cuda", "cuda:1"):
        check_device_name(ok)
    for bad in ("gpu", "cuda:", "cuda:x", "CPU"):
        with pytest.raises(LabError, match="unknown device"):
            check_device_name(bad)


def test_click_usage_errors_still_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = lab(monkeypatch, capsys, "sample", "--k", "many")
    assert code == 2 and "Invalid value for '--k'" in err
    assert isinstance(cli, click.Group)


@pytest.mark.parametrize(
    ("name", "text", "part"),
    [
        ("settings.json", "[1, 2]", "settings.json: expected a mapping of settings"),
        ("settings.json", '{"k": 2, "no_such_setting": 1}', "no_such_setting"),
        ("cases.json", '{"a": 1}', "cases.json: expected a list of case mappings"),
        ("cases.json", '[{"id": "a b", "prompt": "x", "checks": [{"contains": "x"}]}]',
         "cases.json[0]: field 'id'"),
    ],
)  # fmt: skip
def test_damaged_run_directory_files_are_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
    part: str,
) -> None:
    """A hand-edited run directory: `lab sample-report` used to print a traceback."""
    (tmp_path / "settings.json").write_text('{"k": 2}')
    (tmp_path / "cases.json").write_text(f"[{CASE.strip()}]")
    (tmp_path / name).write_text(text)
    code, err = lab(monkeypatch, capsys, "sample-report", str(tmp_path))
    assert code == 2
    one_error(err, part)


@pytest.mark.parametrize("text", ["{bad", "[1]", '{"name": "x"}'])
def test_report_on_a_damaged_sweep_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    (tmp_path / "sweep_config.json").write_text(text)
    code, err = lab(monkeypatch, capsys, "report", str(tmp_path))
    assert code == 2  # a JSONDecodeError / TypeError / KeyError traceback before
    one_error(err, "sweep_config.json: not a readable sweep config")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep_config.json"]


@pytest.mark.parametrize(
    ("gate", "part"),
    [
        ("min_mean=nan", "min_mean must be a finite number >= 0"),  # NaN: a gate that never fails
        ("min_p5=-0.1", "min_p5 must be a finite number >= 0"),
        ("max_mean_over_p5=inf", "max_mean_over_p5 must be a finite number >= 0"),
    ],
)
def test_gate_values_that_cannot_gate(
    cases: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    gate: str,
    part: str,
) -> None:
    code, err = lab(monkeypatch, capsys, "sample", "--cases", str(cases), "--backend", "hf",
                    "--gate", gate, "--out", str(tmp_path / "run"))  # fmt: skip
    assert code == 2
    one_error(err, part)


@pytest.mark.parametrize(
    "args",
    [
        ["perturb", "{cases}", "--out", "{tmp}/p.jsonl", "--seed", "-1"],
        ["compare", "{tmp}", "{tmp}", "--seed", "-1"],
        ["shift", "{cases}", "{cases}", "--seed", "-1", "--out", "{tmp}/s"],
    ],
)
def test_negative_seeds_are_usage_errors(
    cases: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    """numpy generators refuse negative seeds: this was a ValueError traceback."""
    code, err = lab(monkeypatch, capsys,
                    *[a.format(cases=cases, tmp=tmp_path) for a in args])  # fmt: skip
    assert code == 2
    one_error(err, "Invalid value for '--seed'")


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "--cases", "{cases}", "--backend", "hf", "--out", "{dir}", "--fresh"],
        ["sweep", "{sweep}", "--out", "{dir}", "--fresh"],
        ["load", "--base-url", "http://127.0.0.1:9/v1", "--out", "{dir}", "--fresh"],
    ],
)
def test_fresh_refuses_a_directory_that_is_not_a_run(
    cases: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    """`--out ~/Documents --fresh` used to delete the whole directory before the run began."""
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "thesis.txt").write_text("years of work\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("prompts: [hi]\n")
    names = {"cases": cases, "dir": documents, "sweep": sweep}
    code, err = lab(monkeypatch, capsys, *[a.format(**names) for a in args])
    assert code == 2
    one_error(err, "holds files but no lab run", "--fresh would delete them")
    assert (documents / "thesis.txt").read_text() == "years of work\n"


def test_shift_with_one_case_names_the_file_before_loading_models(
    cases: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["shift", str(cases), str(cases), "--tokenizer", "whitespace"]
    args += ["--embedder", "no-such-embedder", "--out", str(tmp_path / "s")]
    code, err = lab(monkeypatch, capsys, *args)
    assert code == 2  # the embedder is never loaded: the size check names the file first
    one_error(err, f"{cases}: shift needs at least 2 cases in each set, got 1")
