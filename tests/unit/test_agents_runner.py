"""The trajectory runner against a scripted fake model (tests/unit/agent_fakes.py): exact
trajectories (calls, a tool that raises, a malformed call, max_turns, canned responses), the
history each turn sends, per-turn seeds independent of the batch, resume after a stop or a
SIGKILL equal to an uninterrupted run, and the code a case file may run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lab import rundir
from lab.agents.runner import run_agents
from lab.agents.trajectory import TURN_STRIDE
from lab.backends import EngineConfig, Generation, Request, SamplingConfig
from lab.errors import LabError
from lab.store import RunStore
from lab.variance.config import SampleConfig
from tests.unit.agent_fakes import CASES, SCRIPT, ScriptedBackend, write_cases

ROOT = Path(__file__).resolve().parents[2]


def config(cases: Path, out: Path, **kw: Any) -> SampleConfig:
    base: dict[str, Any] = {
        "cases": str(cases), "k": 2, "backend": "hf", "out": str(out), "seed": 0,
        "bootstrap_samples": 50, "temperature": 0.7,
    }  # fmt: skip
    return SampleConfig(**(base | kw))


def trajectories(out: Path) -> dict[str, dict[str, Any]]:
    """Finished trajectories by key, timings dropped (wall clock differs between runs)."""
    out_map = {}
    for entry in rundir.read_trajectories(out):
        for step in entry["steps"]:
            step.pop("timings")
        out_map[entry["key"]] = entry
    return out_map


def actions(entry: dict[str, Any]) -> list[str]:
    return [s["kind"] if s["kind"] != "call" else s["calls"][0]["name"] for s in entry["steps"]]


@pytest.fixture
def cases_file(tmp_path: Path) -> Path:
    return write_cases(tmp_path / "cases")


def test_scripted_trajectories_exactly(cases_file: Path, tmp_path: Path) -> None:
    backend = ScriptedBackend()
    outcome = run_agents(config(cases_file, tmp_path / "run"), backend=backend, emit=lambda m: None)
    assert outcome.complete
    # one engine call per turn over every live trajectory: 4 cases x k=2, two turns
    assert backend.calls == 2 and backend.rows == [8, 8]
    got = trajectories(tmp_path / "run")
    assert actions(got["c-add/0"]) == ["add", "answer"]
    assert got["c-add/0"]["steps"][0]["calls"][0] | {"id": ""} == {
        "id": "", "name": "add", "arguments": {"a": 2, "b": 3}, "result": 5, "error": None,
    }  # fmt: skip
    assert got["c-add/0"]["final_answer"] == "5" and got["c-add/1"]["final_answer"] == "6"
    # a tool that raises: an error answer, twice, then out of turns
    boom = got["c-boom/0"]
    assert [c["error"] for s in boom["steps"] for c in s["calls"]] == ["ValueError: kaput"] * 2
    assert boom["outcome"] == "max_turns" and boom["final_answer"] is None
    # a malformed call is a step, and the model goes on
    assert actions(got["c-boom/1"]) == ["malformed", "answer"]
    assert "not JSON" in got["c-boom/1"]["steps"][0]["reason"]
    # state and canned answers
    assert got["c-kv/0"]["final_state"] == {"kv": {"color": "blue"}}
    assert got["c-table/0"]["steps"][0]["calls"][0]["result"] == "18 C"
    assert got["c-table/1"]["steps"][0]["calls"][0]["error"] == "unknown city"
    # seeds: seed + case_index * k + sample + turn * TURN_STRIDE
    assert [s["seed"] for s in got["c-kv/1"]["steps"]] == [5, 5 + TURN_STRIDE]
    # verdicts
    assert outcome.report is not None
    by_case = {c["id"]: c for c in outcome.report.cases}
    assert {k: v["successes"] for k, v in by_case.items()} == {
        "c-add": 1, "c-boom": 1, "c-kv": 2, "c-table": 1,
    }  # fmt: skip
    reasons = by_case["c-boom"]["trajectories"][0]["reasons"]
    assert reasons == ["no final answer (max_turns)"]
    agent = outcome.report.metrics["agent"]
    assert agent["first_divergence_histogram"] == {"1": 3, "never": 1}
    assert agent["outcomes"] == {"answer": 7, "max_turns": 1, "error": 0}
    assert agent["malformed_steps"] == 1 and agent["tool_errors"] == 3


def test_the_history_each_turn_sends(cases_file: Path, tmp_path: Path) -> None:
    backend = ScriptedBackend()
    run_agents(config(cases_file, tmp_path / "run"), backend=backend, emit=lambda m: None)
    sent = {(r.id, (r.seed or 0) // TURN_STRIDE): r for r in backend.requests}
    first = sent[("c-add/0", 0)].messages
    assert first is not None and first[0]["role"] == "system"
    assert "CALL tool_name {JSON arguments}" in first[0]["content"]
    assert "- add {" in first[0]["content"]
    assert first[-1] == {"role": "user", "content": "What is 2 + 3?"}
    assert sent[("c-add/0", 0)].tools is None  # the text protocol keeps tools out of the template
    second = sent[("c-add/0", 1)].messages or []
    assert second[-2:] == [
        {"role": "assistant", "content": 'CALL add {"a": 2, "b": 3}'},
        {"role": "user", "content": "RESULT: 5"},
    ]
    assert (sent[("c-boom/1", 1)].messages or [])[-1]["content"].startswith(
        "RESULT: error: the CALL line could not be parsed"
    )
    assert (sent[("c-table/1", 1)].messages or [])[-1]["content"] == "RESULT: error: unknown city"


def test_native_protocol_sends_tools_and_reads_tool_call_blocks(tmp_path: Path) -> None:
    cases = write_cases(tmp_path / "cases", CASES[:1])
    script = {
        "c-add/0": [
            '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>',
            "5",
        ],
        "c-add/1": ["<tool_call>{oops</tool_call>", "5"],
    }
    backend = ScriptedBackend(script)
    run_agents(
        config(cases, tmp_path / "run", tool_protocol="native"),
        backend=backend,
        emit=lambda m: None,
    )
    got = trajectories(tmp_path / "run")
    assert actions(got["c-add/0"]) == ["add", "answer"] and got["c-add/0"]["protocol"] == "native"
    assert actions(got["c-add/1"]) == ["malformed", "answer"]
    second = next(r for r in backend.requests if r.id == "c-add/0" and (r.seed or 0) >= TURN_STRIDE)
    assert second.tools is not None and second.tools[0]["function"]["name"] == "add"
    assert second.messages is not None
    call, answer = second.messages[-2:]
    assert call["tool_calls"][0]["function"] == {"name": "add", "arguments": {"a": 2, "b": 3}}
    assert answer == {
        "role": "tool", "tool_call_id": call["tool_calls"][0]["id"], "name": "add", "content": "5",
    }  # fmt: skip


def test_batch_composition_never_changes_a_trajectory(cases_file: Path, tmp_path: Path) -> None:
    """Each trajectory stepped alone (group size 1) gets the same seeds and steps."""
    from lab.agents.environment import Environments
    from lab.agents.protocol import Protocol
    from lab.agents.trajectory import Stepper, Task, advance
    from lab.backends.base import SamplingConfig
    from lab.cases.loaders import load_cases

    cases = load_cases(cases_file)
    runs = {}
    for size in (None, 1):
        backend = ScriptedBackend()
        stepper = Stepper(backend, SamplingConfig(n=1, temperature=0.7), 2, Protocol("text"),
                          Environments(cases), seed=0)  # fmt: skip
        lives = [stepper.start(Task(c, j, i)) for j, c in enumerate(cases) for i in range(2)]
        assert advance(stepper, lives, group_size=size)
        runs[size] = [
            [(s.seed, s.action, s.text) for s in stepper.trajectory(live).steps] for live in lives
        ]
        assert backend.calls == (2 if size is None else 16)
    assert runs[None] == runs[1]


def test_stopped_then_resumed_equals_an_uninterrupted_run(cases_file: Path, tmp_path: Path) -> None:
    run_agents(
        config(cases_file, tmp_path / "whole"), backend=ScriptedBackend(), emit=lambda m: None
    )
    cut = config(cases_file, tmp_path / "cut")
    first = run_agents(cut, backend=ScriptedBackend(), emit=lambda m: None, stop_after_calls=1)
    assert not first.complete
    assert rundir.read_trajectories(tmp_path / "cut") == []
    again = ScriptedBackend()
    assert run_agents(cut, backend=again, emit=lambda m: None).complete
    assert again.calls == 1  # only turn 2: turn 1 came back from the journal
    assert trajectories(tmp_path / "cut") == trajectories(tmp_path / "whole")
    lines = (tmp_path / "cut" / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == 8  # exactly once each


class ServerBackend(ScriptedBackend):
    """The script through a server (openai): its call number `fail_call` fails one row."""

    def __init__(self, fail_call: int | None = None) -> None:
        super().__init__()
        self.config = EngineConfig(backend="openai", base_url="http://127.0.0.1:1/v1")
        self.fail_call = fail_call

    def generate(self, requests: list[Request], sampling: SamplingConfig) -> list[Generation]:
        out = super().generate(requests, sampling)
        if self.calls == self.fail_call:
            out[0].finish_reason, out[0].error = "error", "503: overloaded"
        return out


def test_a_server_failure_is_not_a_step_and_the_run_resumes(
    cases_file: Path, tmp_path: Path
) -> None:
    """On a server (openai), a failed request stops the run before its call is journaled (an
    in-process engine's error is a recorded step); the same command redoes that call."""
    settings = {"tool_protocol": "text"}
    whole = config(cases_file, tmp_path / "whole", **settings)
    run_agents(whole, backend=ServerBackend(), emit=lambda m: None)
    cut = config(cases_file, tmp_path / "cut", **settings)
    with pytest.raises(LabError, match=r"the server failed \(503: overloaded\)"):
        run_agents(cut, backend=ServerBackend(fail_call=2), emit=lambda m: None)
    journal = (tmp_path / "cut" / "steps.jsonl").read_text().splitlines()
    assert len(journal) == 1  # turn 1 journaled, turn 2 not
    again = ServerBackend()
    assert run_agents(cut, backend=again, emit=lambda m: None).complete
    assert again.calls == 1
    assert trajectories(tmp_path / "cut") == trajectories(tmp_path / "whole")


def test_a_kill_between_journal_and_final_line_needs_no_engine_call(
    cases_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run_agents(config(cases_file, out), backend=ScriptedBackend(), emit=lambda m: None)
    before = trajectories(out)
    (out / "trajectories.jsonl").unlink()
    again = ScriptedBackend()
    run_agents(config(cases_file, out), backend=again, emit=lambda m: None)
    assert again.calls == 0 and trajectories(out) == before


CHILD = """
import sys
sys.path.insert(0, {root!r})
from tests.unit.agent_fakes import ScriptedBackend
from lab.agents.runner import run_agents
from lab.variance.config import SampleConfig
cfg = SampleConfig(cases={cases!r}, k=2, backend="hf", out={out!r}, seed=0,
                   bootstrap_samples=50, temperature=0.7)
run_agents(cfg, backend=ScriptedBackend(delay=0.5), emit=lambda m: None)
"""


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(
    cases_file: Path, tmp_path: Path
) -> None:
    run_agents(
        config(cases_file, tmp_path / "whole"), backend=ScriptedBackend(), emit=lambda m: None
    )
    out = tmp_path / "killed"
    code = CHILD.format(root=str(ROOT), cases=str(cases_file), out=str(out))
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    journal = out / "steps.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (journal.is_file() and journal.read_text().strip()):
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert journal.read_text().strip(), "the child wrote no step before the kill"
    assert not (out / "metrics.json").exists()
    assert len(rundir.read_trajectories(out)) < 8  # killed mid-run, not after it
    again = ScriptedBackend()
    run_agents(config(cases_file, out), backend=again, emit=lambda m: None)
    assert again.calls <= 1
    assert trajectories(out) == trajectories(tmp_path / "whole")
    assert len(RunStore(out).log_path("trajectories").read_text().splitlines()) == 8


def test_a_changed_environment_module_is_refused_on_resume(
    cases_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run_agents(config(cases_file, out), backend=ScriptedBackend(), emit=lambda m: None,
               stop_after_calls=1)  # fmt: skip
    tools = cases_file.parent / "tools.py"
    tools.write_text(tools.read_text().replace("a + b", "a + b + 1"))
    with pytest.raises(LabError, match="different config"):
        run_agents(config(cases_file, out), backend=ScriptedBackend(), emit=lambda m: None)


def test_a_named_module_runs_only_when_allowed(tmp_path: Path) -> None:
    case = dict(CASES[0], environment={"module": "lab.cases.agenttools"}, tools=[
        {"type": "function", "function": {"name": "calculator", "parameters": {
            "type": "object", "properties": {"expression": {"type": "string"}}}}}],
        checks=[{"numeric": 5}])  # fmt: skip
    cases = write_cases(tmp_path / "cases", [case])
    out = tmp_path / "run"
    with pytest.raises(LabError, match="--allow-module lab.cases.agenttools"):
        run_agents(config(cases, out), backend=ScriptedBackend(), emit=lambda m: None)
    assert not out.exists()  # refused before anything was written
    script = {"c-add/0": ['CALL calculator {"expression": "2+3"}', "5"], "c-add/1": ["5"]}
    run_agents(config(cases, out, allow_modules=["lab.cases.agenttools"]),
               backend=ScriptedBackend(script), emit=lambda m: None)  # fmt: skip
    assert trajectories(out)["c-add/0"]["steps"][0]["calls"][0]["result"] == 5


def test_the_report_files_and_escaping(tmp_path: Path) -> None:
    evil = dict(CASES[3], id="c-evil")
    cases = write_cases(tmp_path / "cases", [evil])
    script = {
        "c-evil/0": ["<script>alert(1)</script>"],
        "c-evil/1": ['CALL weather {"city": "<b>"}'],
    }
    out = tmp_path / "run"
    run_agents(config(cases, out), backend=ScriptedBackend(script), emit=lambda m: None)
    page = (out / "report.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;" in page
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["kind"] == "agents"
    for name in ("summary.md", "samples.parquet", "cases.json", "config.json", "steps.jsonl"):
        assert (out / name).is_file()


def test_an_agent_run_carries_the_sample_marker_and_fresh_keeps_other_files(
    cases_file: Path, tmp_path: Path
) -> None:
    from lab.rundir import MARKER, run_kind_of
    from lab.runkinds import check_run_dir

    out = tmp_path / "run"
    run_agents(config(cases_file, out), backend=ScriptedBackend(), emit=lambda m: None)
    marker = json.loads((out / MARKER).read_text())
    assert marker["kind"] == "sample" and "trajectories.jsonl" in marker["writes"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(LabError, match="holds a sample run"):
        check_run_dir(out, "sweep")
    run_agents(config(cases_file, out), backend=ScriptedBackend(), emit=lambda m: None, fresh=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert len((out / "trajectories.jsonl").read_text().splitlines()) == 8
    # a directory from before the marker is still recognized by its agent logs
    (out / MARKER).unlink()
    (out / "cases.json").unlink()
    (out / "config.json").unlink()
    assert run_kind_of(out) == "sample"


def test_lab_compare_of_two_agent_runs_adds_the_jensen_shannon_divergence(
    cases_file: Path, tmp_path: Path
) -> None:
    """Run B answers c-add/1 like c-add/0: c-add's action-sequence distribution goes from
    {x: 1/2, y: 1/2} to {x: 1}; the other three cases are unchanged (JS 0)."""
    import math

    from lab.commands.comparison import run_compare

    run_agents(config(cases_file, tmp_path / "a"), backend=ScriptedBackend(), emit=lambda m: None)
    # (a trailing space: the fake's third token is the reply's length, so the tokens part too)
    changed = SCRIPT | {"c-add/1": ['CALL add {"a": 2, "b": 3} ', "ANSWER: 5"]}
    run_agents(
        config(cases_file, tmp_path / "b"),
        backend=ScriptedBackend(changed),
        emit=lambda m: None,
    )
    written, text = run_compare(
        [str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "cmp", False, 0.05, 0, 200
    )
    result = json.loads(written["json"].read_text())
    actions = result["comparisons"][0]["actions"]
    # P = {x: 1/2, y: 1/2}, Q = {x: 1}, M = {x: 3/4, y: 1/4}
    kl_pm = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    kl_qm = math.log2(1 / 0.75)
    js_add = (kl_pm + kl_qm) / 2
    assert actions["cases"][0]["id"] == "c-add"
    assert actions["cases"][0]["js"] == pytest.approx(js_add)
    assert actions["mean_js"] == pytest.approx(js_add / 4)  # three cases unchanged: JS 0
    assert "Jensen-Shannon" in text
    # token by token: only c-add/1 parted, at its first step's third token, with another call
    split = result["comparisons"][0]["token_split"]
    assert split["trajectories"] == 8 and list(split["parted"]) == ["c-add/1"]
    assert split["parted"]["c-add/1"]["step"] == 1 and split["parted"]["c-add/1"]["token"] == 2
    assert split["actions_differ"] == 1
    assert "7 of 8 trajectories token-identical" in text
