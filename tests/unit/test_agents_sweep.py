"""`lab sweep` over agent cases against a scripted fake engine whose replies depend on the
cell's dtype: the exact step and token where a cell's trajectory parts from the reference's,
the tokens and margins there, what changed in the outcome, the per-axis histogram, the rows of
every engine call (batch_size, fillers included), resume per cell, and bad configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import lab.determinism.sweep
from lab.agents.sweep import run_agent_sweep
from lab.agents.sweepreport import agent_summary_lines, write_agent_sweep_report
from lab.agents.trajectory import TURN_STRIDE
from lab.backends import Backend, Generation, Request, SamplingConfig
from lab.backends.base import TopLogprob
from lab.determinism.config import load_sweep_config
from lab.errors import LabError
from lab.rundir import CELLS
from tests.unit.agent_fakes import TOOLS_PY, write_cases

#: fp32 replies per (trajectory, turn); bf16 changes one argument in step 2 of c-add (so
#: step 3's answer moves too) and c-table's final answer (which then fails its check), and
#: leaves c-boom and c-kv alone
FP32 = {
    "c-add/0": ['CALL add {"a": 2, "b": 3}', 'CALL add {"a": 5, "b": 1}', "ANSWER: 6"],
    "c-boom/0": ["CALL boom {}", "fine"],
    "c-kv/0": ['CALL kv_set {"key": "color", "value": "blue"}', "ANSWER: done"],
    "c-table/0": ['CALL weather {"city": "Paris"}', "It is 18 C."],
}
BF16 = FP32 | {
    "c-add/0": ['CALL add {"a": 2, "b": 3}', 'CALL add {"a": 5, "b": 2}', "ANSWER: 7"],
    "c-table/0": ['CALL weather {"city": "Paris"}', "It is 19 C."],
}
#: the top-1/top-2 margin of every token: 0.5 in fp32, 0.0 (a tie) in bf16
MARGIN = {"float32": 0.5, "bfloat16": 0.0}


class DtypeBackend(Backend):
    """Token ids are the reply's characters; every call's rows are recorded."""

    log: list[tuple[str, int, list[str]]] = []  # (dtype, batch rows, request ids) per call

    def generate(self, requests: list[Request], sampling: SamplingConfig) -> list[Generation]:
        dtype = self.config.dtype
        DtypeBackend.log.append((dtype, len(requests), [r.id for r in requests]))
        script = FP32 if dtype == "float32" else BF16
        out = []
        for r in requests:
            turn = (r.seed or 0) // TURN_STRIDE
            replies = script.get(r.id, ["filler text"])
            text = replies[min(turn, len(replies) - 1)]
            tops = [
                [TopLogprob(ord(ch), -0.1, ch), TopLogprob(0, -0.1 - MARGIN[dtype], "?")]
                for ch in text
            ]
            out.append(
                Generation(
                    request_id=r.id, sample_index=0, seed=r.seed, backend="hf",
                    prompt_token_ids=[1, 2], output_token_ids=[ord(ch) for ch in text],
                    token_logprobs=[-0.1] * len(text), top_logprobs=tops, text=text,
                    finish_reason="stop", timings={}, engine={"dtype": dtype}, sampling={},
                )
            )  # fmt: skip
        return out


def write_config(tmp_path: Path, axes: str, agent: str = "{tool_protocol: text}") -> Path:
    cases = write_cases(tmp_path / "cases")
    path = tmp_path / "sweep.yaml"
    path.write_text(
        f"name: agent-sweep\ncases: {cases.name}\nagent: {agent}\n"
        f"sampling: {{max_tokens: 40, logprobs: 2}}\naxes: {axes}\n"
    )
    (tmp_path / cases.name).write_text(cases.read_text())  # relative to the config
    (tmp_path / "tools.py").write_text((cases.parent / "tools.py").read_text())
    return path


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, list[str]]]:
    DtypeBackend.log = []
    monkeypatch.setattr(
        lab.determinism.sweep,
        "load_backend",
        lambda config, cache_dir=None, log_dir=None: DtypeBackend(config),
    )
    return DtypeBackend.log


def test_where_the_bf16_trajectories_part(tmp_path: Path, fake_engine: list[Any]) -> None:
    path = write_config(tmp_path, "{dtype: [fp32, bf16], batch_size: [1, 3]}")
    config = load_sweep_config(path)
    assert config.mode == "agents" and config.agents is not None
    run_agent_sweep(config, tmp_path / "run", progress=False)
    written = write_agent_sweep_report(tmp_path / "run")
    metrics = json.loads(written.metrics_path.read_text())
    assert metrics == written.metrics
    assert metrics["cases"] == ["c-add", "c-boom", "c-kv", "c-table"]
    cells = {c["label"]: c for c in metrics["cells"]}
    assert set(cells) == {
        "dtype=float32, batch_size=1", "dtype=float32, batch_size=3",
        "dtype=bfloat16, batch_size=1", "dtype=bfloat16, batch_size=3",
    }  # fmt: skip
    assert cells["dtype=float32, batch_size=1"]["reference"]
    same = cells["dtype=float32, batch_size=3"]
    assert same["parted"] == 0 and same["compared"] == 4 and same["actions_changed"] == 0
    for label in ("dtype=bfloat16, batch_size=1", "dtype=bfloat16, batch_size=3"):
        cell = cells[label]
        assert cell["parted"] == 2 and cell["step_histogram"] == {"2": 2}
        assert cell["beyond_step_1"] == 2
        add, table = cell["cases"]["c-add"], cell["cases"]["c-table"]
        # 'CALL add {"a": 5, "b": ' is 23 characters: the argument b is token 23 of step 2
        assert (add["step"], add["token"], add["chosen"]) == (2, 23, [ord("1"), ord("2")])
        assert add["token_texts"] == ["1", "2"] and add["margins"] == [0.5, 0.0]
        assert add["action_differs"] and add["actions_changed"]
        assert add["final_answers"] == ["6", "7"] and add["answer_changed"]
        assert add["passed"] == [False, False] and not add["success_changed"]
        assert (table["step"], table["token"], table["token_texts"]) == (2, 7, ["8", "9"])
        assert table["passed"] == [True, False] and table["success_changed"]
        assert table["action_differs"] and not table["actions_changed"]  # an answer either way
        assert cell["cases"]["c-boom"]["same"] and cell["cases"]["c-kv"]["same"]
    assert metrics["axes"]["dtype"] == {
        "compared": 4, "parted": 2, "step_histogram": {"2": 2}, "beyond_step_1": 2,
        "actions_changed": 1, "success_changed": 1, "answers_changed": 2,
    }  # fmt: skip
    assert metrics["axes"]["batch_size"]["parted"] == 0
    pairs = metrics["axis_pairs"]  # each axis with everything else fixed, not only vs reference
    assert (pairs["dtype"]["compared"], pairs["dtype"]["parted"]) == (8, 4)
    assert [p["parted"] for p in pairs["dtype"]["pairs"]] == [2, 2]
    assert (pairs["batch_size"]["compared"], pairs["batch_size"]["parted"]) == (8, 0)
    lines = agent_summary_lines(metrics)
    assert any(line.startswith("  c-add: step 2 token 23: reference '1'") for line in lines)
    assert lines[-1] == "4 of 4 splits come after step 1"
    html = (tmp_path / "run" / "report.html").read_text()
    assert "c-table: step 2 token 7: reference &#x27;8&#x27;" in html


def test_every_engine_call_has_batch_size_rows(tmp_path: Path, fake_engine: list[Any]) -> None:
    """batch 1: each trajectory alone per turn; batch 3: three rows per call, live
    trajectories in case order, topped up with fillers once fewer are live."""
    path = write_config(tmp_path, "{batch_size: [1, 3]}")
    run_agent_sweep(load_sweep_config(path), tmp_path / "run", progress=False)
    alone = [ids for _, rows, ids in fake_engine if rows == 1]
    assert [ids[0] for ids in alone[:4]] == ["c-add/0", "c-boom/0", "c-kv/0", "c-table/0"]
    assert len(alone) == 3 + 2 + 2 + 2  # each turn of each trajectory is one call
    batched = [ids for _, rows, ids in fake_engine if rows != 1]
    assert all(len(ids) == 3 for ids in batched)
    assert batched[0] == ["c-add/0", "c-boom/0", "c-kv/0"]
    assert batched[1][0] == "c-table/0" and batched[1][1].startswith("filler-")
    assert batched[-1][0] == "c-add/0" and len(batched) == 2 + 2 + 1  # turns 1, 2, 3
    entries = [json.loads(line) for line in (tmp_path / "run" / "cells.jsonl").open()]
    traj = entries[1]["trajectories"]["c-add"]
    assert [s["calls"][0]["result"] for s in traj["steps"][:2]] == [5, 6]  # the tool answered
    assert entries[1]["timings"] == entries[1]["timings"] | {"engine_calls": 5, "filler_rows": 6}


def test_resume_runs_only_the_missing_cells(tmp_path: Path, fake_engine: list[Any]) -> None:
    path = write_config(tmp_path, "{dtype: [fp32, bf16]}")
    config = load_sweep_config(path)
    run_agent_sweep(config, tmp_path / "run", progress=False)
    log = tmp_path / "run" / f"{CELLS}.jsonl"
    lines = log.read_text().splitlines()
    log.write_text(lines[0] + "\n")  # the second cell never finished
    fake_engine.clear()
    run_agent_sweep(config, tmp_path / "run", progress=False)
    assert {dtype for dtype, _, _ in fake_engine} == {"bfloat16"}
    again = log.read_text().splitlines()
    assert len(again) == 2
    first, second = (json.loads(line) for line in (lines[1], again[1]))
    assert first["trajectories"]["c-add"]["final_answer"] == "7"
    assert second["trajectories"]["c-add"]["final_answer"] == "7"
    (tmp_path / "tools.py").write_text(TOOLS_PY.replace("a + b", "a - b"))
    with pytest.raises(LabError, match="different config"):  # other tool code: not a resume
        run_agent_sweep(load_sweep_config(path), tmp_path / "run", progress=False)


def test_the_cli_runs_and_reports_an_agent_sweep(tmp_path: Path, fake_engine: list[Any]) -> None:
    from lab.cli import cli

    path = write_config(tmp_path, "{dtype: [fp32, bf16]}", "{case_ids: [c-add, c-boom]}")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["sweep", str(path), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "agent sweep: 2 of 2 cells recorded (0 failed), 2 cases" in result.output
    assert "axis dtype: 1 of 2 case trajectories part from the reference (step 2: 1)" in (
        result.output
    )
    (out / "report.md").unlink()
    result = CliRunner().invoke(cli, ["report", str(out)])
    assert result.exit_code == 0 and (out / "report.md").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("prompts: [hi]\n", "prompts: not with cases:"),
        ("agent: {limit: 0}\n", "agent.limit: an integer from 1"),
        ("agent: {case_ids: [nope]}\n", "no case 'nope'"),
        ("agent: {tool_protocol: smoke}\n", "agent.tool_protocol"),
        ("agent: {colour: red}\n", "unknown key(s) ['colour']"),
        ("mode: single\n", "mode: an agent sweep"),
    ],
)
def test_bad_agent_sweep_configs(tmp_path: Path, extra: str, message: str) -> None:
    cases = write_cases(tmp_path / "cases")
    path = tmp_path / "sweep.yaml"
    path.write_text(f"cases: {cases}\n{extra}")
    with pytest.raises(LabError) as error:
        load_sweep_config(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_plain_cases_and_an_agent_block_without_cases_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("cases: bundled:basic\n")
    with pytest.raises(LabError, match="has no tools; an agent sweep takes agent cases"):
        load_sweep_config(path)
    path.write_text("prompts: [hi]\nagent: {limit: 2}\n")
    with pytest.raises(LabError, match="agent: is for an agent sweep"):
        load_sweep_config(path)


def test_html_findings_nest_as_the_summary_indents_and_escape_model_text() -> None:
    from lab.agents.sweepreport import nested_list

    html = "".join(nested_list(["axis x: 1 part", "  a vs b: 1 part", "    c: '<|im_end|>'", "z"]))
    assert html == (
        "<ul><li>axis x: 1 part<ul><li>a vs b: 1 part"
        "<ul><li>c: &#x27;&lt;|im_end|&gt;&#x27;</li></ul>"
        "</li></ul></li><li>z</li></ul>"
    )
    assert nested_list([]) == []
