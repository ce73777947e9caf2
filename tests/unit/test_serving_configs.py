"""Serving configurations in n-of-k runs (no model): `lab sample`, `lab library run` and the
quickstart's step 3 take the engine a sweep cell has (one builder, EngineConfig.from_values),
it is part of the run's identity, the report header shows it and `lab compare` lists what
differs between runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from lab.backends.base import EngineConfig
from lab.cases.loaders import load_cases
from lab.cli import cli
from lab.commands.comparison import run_compare
from lab.determinism.config import parse_sweep_config
from lab.determinism.grid import reference_cell
from lab.errors import LabError
from lab.variance.config import SampleConfig, load_config
from lab.variance.render import engine_summary, markdown_summary
from lab.variance.runner import open_run
from tests.unit.comparison_runs import draw, make_run
from tests.unit.test_cli import run_lab

ENGINE_FLAGS = (
    "--tp", "--batch-invariant", "--prefix-caching", "--no-prefix-caching", "--eager",
    "--compiled", "--attention-backend", "--max-num-seqs", "--max-model-len", "--engine-arg",
)  # fmt: skip


@pytest.mark.parametrize("command", [["sample"], ["library", "run"], ["quickstart"]])
def test_every_n_of_k_entry_point_takes_the_engine_options(command: list[str]) -> None:
    out = CliRunner().invoke(cli, [*command, "--help"])
    assert out.exit_code == 0, out.output
    for flag in ENGINE_FLAGS:
        assert flag in out.output, (command, flag)


def test_config_keys_and_flags_build_the_engine_a_sweep_cell_builds(tmp_path: Path) -> None:
    path = tmp_path / "sample.yaml"
    path.write_text(
        "backend: vllm\ntensor_parallel_size: 3\nprefix_caching: false\n"
        "batch_invariant: true\nenforce_eager: false\nattention_backend: CPU_ATTN\n"
        "max_num_seqs: 32\nengine_args: {max_num_batched_tokens: 8192, seed: 1}\n"
    )
    # a flag adds an engine argument and overrides one of the file's
    config = load_config(path, {"engine_args": {"seed": 7, "swap_space": 1}})
    engine = config.engine_config()
    assert engine.engine_args == {"max_num_batched_tokens": 8192, "seed": 7, "swap_space": 1}
    sweep = parse_sweep_config(
        {
            "name": "x",
            "prompts": ["hi"],
            "axes": {
                "backend": ["vllm"], "tensor_parallel_size": [3], "prefix_caching": [False],
                "batch_invariant": [True], "enforce_eager": [False],
                "attention_backend": ["CPU_ATTN"], "max_num_seqs": [32],
            },
        },
        "test",
    )  # fmt: skip
    cell = reference_cell(sweep).engine_config("auto")
    assert engine.to_dict() | {"engine_args": {}} == cell.to_dict()


def test_the_engine_is_part_of_the_runs_identity(tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps({"id": "a", "prompt": "q", "checks": [{"exact": "x"}]}) + "\n")
    base = {"cases": str(cases), "k": 2, "out": str(tmp_path / "run")}
    first = SampleConfig(**base, batch_invariant=False)
    open_run(first, load_cases(str(cases)), first.engine_config(), fresh=False)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["engine"]["batch_invariant"] is False
    assert recorded["engine"]["engine_args"] == {}
    for change in ({"batch_invariant": True}, {"engine_args": {"swap_space": 1}}):
        other = SampleConfig(**base, **change)  # type: ignore[arg-type]
        with pytest.raises(LabError, match="different config"):
            open_run(other, load_cases(str(cases)), other.engine_config(), fresh=False)


def test_bad_engine_settings_fail_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="engine_args must be a mapping"):
        SampleConfig(engine_args=["x"])  # type: ignore[arg-type]
    with pytest.raises(LabError, match="max_model_len must be >= 1"):
        SampleConfig(max_model_len=0)
    out = run_lab("quickstart", "--backend", "hf", "--tp", "3", "--out", str(tmp_path / "q"))
    assert out.returncode == 2 and "needs the vllm backend" in out.stderr
    assert not (tmp_path / "q").exists()
    out = run_lab("sample", "--engine-arg", "novalue", "--out", str(tmp_path / "s"))
    assert out.returncode == 2 and "expected KEY=VALUE" in out.stderr
    assert not (tmp_path / "s").exists()


def test_library_run_passes_the_engine_settings_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lab.variance.runner as runner

    library = tmp_path / "lib.yaml"
    library.write_text(
        "floor: {min_mean: 0.5}\ncases:\n- id: a\n  prompt: q\n  checks: [{exact: x}]\n"
    )
    seen: list[SampleConfig] = []

    def fake_run(config: SampleConfig, **kw: Any) -> Any:
        seen.append(config)
        return runner.RunOutcome(Path(config.out or "."), 0, False)

    monkeypatch.setattr(runner, "run_sample", fake_run)
    out = CliRunner().invoke(
        cli,
        ["library", "run", "--library", str(library), "--no-prefix-caching", "--batch-invariant",
         "--engine-arg", "swap_space=2", "--out", str(tmp_path / "r")],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    engine = seen[0].engine_config()
    assert engine.prefix_caching is False and engine.batch_invariant is True
    assert engine.engine_args == {"swap_space": 2}


def test_quickstart_step_3_takes_the_engine_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lab.quickstart as quickstart

    seen: dict[str, Any] = {}

    def fake(**kw: Any) -> Any:
        seen.update(kw)
        raise LabError("stop here")

    monkeypatch.setattr(quickstart, "run_quickstart", fake)
    out = CliRunner().invoke(
        cli, ["quickstart", "--tp", "3", "--no-prefix-caching", "--out", str(tmp_path / "q")]
    )
    assert isinstance(out.exception, LabError)
    assert seen["engine"] == {"tensor_parallel_size": 3, "prefix_caching": False}


def test_report_header_names_the_serving_configuration() -> None:
    engine = EngineConfig(
        backend="vllm", tensor_parallel_size=3, prefix_caching=True, engine_args={"a": 1}
    ).to_dict() | {"device": "cpu", "vllm_version": "0.32.0"}
    line = engine_summary(engine)
    assert line == (
        "vllm 0.32.0 on cpu, fp32, TP 3, prefix caching on, eager, batch-invariant off, "
        "max_num_seqs 64, engine args a=1"
    )
    metrics: dict[str, Any] = {
        "run": {
            "cases": 1, "k": 2, "backend": "vllm", "model": "m", "dtype": "fp32",
            "temperature": 0.7, "top_p": 1.0, "top_k": 0, "max_tokens": 8, "seed": 0,
            "engine": engine,
        },
        "headline": {"high_variance": False},
        "intervals_95": {},
        "cost": {
            "inferences": 2, "tokens_in": 2, "tokens_in_unique_prompts": 1, "tokens_out": 2,
            "wall_s": 1.0, "tokens_out_per_s": 2.0, "tokens_total_per_s": 4.0,
            "truncated_share": 0.0, "errors": 0,
        },
        "cohorts": {},
        "cases": [],
    }  # fmt: skip
    summary = markdown_summary(metrics, {"thresholds": {}, "passed": True, "reasons": []})
    assert "Engine: vllm 0.32.0 on cpu, fp32, TP 3, prefix caching on" in summary


def test_compare_lists_the_configuration_differences(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    outcomes = draw(np.full(6, 0.5), 4, rng)
    a = make_run(tmp_path, "a", outcomes)
    b = make_run(tmp_path, "b", outcomes, batch_invariant=True, max_num_seqs=16)
    written, text = run_compare([str(a), str(b)], tmp_path / "cmp", False, 0.05, 0, 20)
    result = json.loads(written["json"].read_text())
    differences = result["comparisons"][0]["config_differences"]
    assert differences == [
        "engine.batch_invariant: False -> True",
        "engine.max_num_seqs: 64 -> 16",
    ]  # each setting once (max_num_seqs is also a top-level identity key)
    assert "## Configurations" in text
    assert "- b vs a: engine.batch_invariant: False -> True; engine.max_num_seqs: 64 -> 16" in text
    assert "batch-invariant on, max_num_seqs 16" in text  # b's serving line
    page = written["html"].read_text()
    assert "<h2>Configurations</h2>" in page and "engine.batch_invariant" in page


def test_compare_terminal_text_has_no_markdown_escapes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a = make_run(tmp_path, "run_a", draw(np.full(6, 0.5), 4, rng))
    b = make_run(tmp_path, "run_b", draw(np.full(6, 0.5), 4, rng), seed=9)
    written, text = run_compare([str(a), str(b)], tmp_path / "cmp", False, 0.05, 0, 20)
    assert "95% CI [" in text and "\\[" not in text and "\\]" not in text
    assert "\\[" in written["markdown"].read_text()  # the file stays escaped Markdown
