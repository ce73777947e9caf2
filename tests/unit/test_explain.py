"""`lab explain` without a model: the labelling of toggles, the toggles chosen, the resume of a
killed explain, the pairing of two n-of-k runs, and bad input (one line, exit 2). The replays
on the real model: tests/model/test_explain.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lab.backends.base import Generation, Request, SamplingConfig
from lab.determinism.explain import (
    INTERACTION,
    NO_DIVERGENCE,
    NOT_REPRODUCED,
    explain,
    format_result,
    label,
    read_results,
    toggles,
)
from lab.determinism.explainpair import Pair
from lab.determinism.explainsource import load_pair
from lab.errors import LabError
from lab.rundir import run_kind_of

A = {"backend": "hf", "model": "m", "dtype": "float32", "tensor_parallel_size": 1,
     "batch_invariant": False, "prefix_caching": False, "batch_size": 1, "order": "given",
     "seed": 0}  # fmt: skip


def gen(tokens: list[int], gap: float = 1.0) -> Generation:
    """A greedy record whose top-1/top-2 gap is `gap` at every step."""
    tops = [
        [{"token_id": t, "logprob": -0.1, "token": str(t)},
         {"token_id": t + 100, "logprob": -0.1 - gap, "token": "x"}]
        for t in tokens
    ]  # fmt: skip
    return Generation.from_dict({
        "request_id": "c", "sample_index": 0, "seed": 0, "backend": "hf",
        "prompt_token_ids": [1], "output_token_ids": tokens,
        "token_logprobs": [-0.1] * len(tokens), "top_logprobs": tops, "text": str(tokens),
        "finish_reason": "length", "timings": {}, "engine": {}, "sampling": {},
    })  # fmt: skip


def pair(b: dict[str, Any], record_b: list[int], record_a: list[int] | None = None) -> Pair:
    return Pair(
        kind="sweep", case="c", runs=("ra", "rb"), names=("A", "B"), setting_a=dict(A),
        setting_b=A | b, record_a=gen(record_a or [5, 6, 7, 8]), record_b=gen(record_b, 0.01),
        sampling=SamplingConfig(max_tokens=4), engine_fixed={"device": "cpu"},
        batch=lambda s: ([Request(id="c", prompt="p")], "c"),
    )  # fmt: skip


def moving(axis: str, value: Any, at: int, calls: list[Any] | None = None) -> Any:
    """A replayer on which `axis == value` moves token `at`; everything else replays A."""

    def run(setting: dict[str, Any], warm: bool) -> Generation:
        if calls is not None:
            calls.append((dict(setting), warm))
        tokens = [5, 6, 7, 8]
        if setting.get(axis) == value:
            tokens[at] = 99
        return gen(tokens)

    return run


def test_the_single_toggle_that_moves_the_recorded_token_is_the_label(tmp_path: Path) -> None:
    p = pair({"dtype": "bfloat16"}, [5, 6, 42, 1])
    result = explain(p, tmp_path / "x", replay=moving("dtype", "bfloat16", 2))
    assert result["label"] == "dtype"
    rows = {t["axis"]: t for t in result["toggles"]}
    assert rows["dtype"]["moved"] and rows["dtype"]["first_divergence"] == 2
    assert rows["dtype"]["gap"] == pytest.approx(1.0)  # A's replay's gap at the token
    assert not rows["batch_size"]["moved"] and not rows["batch_invariant"]["moved"]
    assert rows["prefix_caching"]["skipped"].startswith("the hf backend has no prefix cache")
    assert result["recorded"]["first_divergence"] == 2
    assert result["recorded"]["gaps"] == [pytest.approx(1.0), pytest.approx(0.01)]
    assert "label: dtype" in format_result(result)
    assert run_kind_of(tmp_path / "x") == "explain"


def test_a_lab_toggle_can_be_the_cause_though_a_and_b_differ_elsewhere(tmp_path: Path) -> None:
    """B differs in dtype, but only the batch toggle moves the token: it is labelled, dtype not
    (the negative control of the label: a differing axis is not blamed by default)."""
    p = pair({"dtype": "bfloat16"}, [5, 42, 7, 8])
    result = explain(p, tmp_path / "x", replay=moving("batch_size", 4, 1))
    assert result["label"] == "batch composition"


def test_a_toggle_that_moves_another_token_is_not_the_cause(tmp_path: Path) -> None:
    p = pair({"dtype": "bfloat16"}, [5, 6, 42, 1])
    result = explain(p, tmp_path / "x", replay=moving("dtype", "bfloat16", 3))
    assert result["label"] == INTERACTION


def test_a_replay_that_differs_from_its_record_is_not_reproduced(tmp_path: Path) -> None:
    p = pair({"dtype": "bfloat16"}, [5, 6, 42, 1], record_a=[5, 6, 7, 9])
    result = explain(p, tmp_path / "x", replay=moving("dtype", "bfloat16", 2))
    assert result["label"] == NOT_REPRODUCED
    assert result["noise"]["moved"] and result["noise"]["first_divergence"] == 3


def test_equal_records_are_no_divergence_and_replay_nothing(tmp_path: Path) -> None:
    calls: list[Any] = []
    p = pair({"dtype": "bfloat16"}, [5, 6, 7, 8])
    result = explain(p, tmp_path / "x", replay=moving("dtype", "bfloat16", 2, calls))
    assert result["label"] == NO_DIVERGENCE and calls == []


def test_label_names_every_axis_that_reproduces_alone() -> None:
    recorded = {"moved": True, "first_divergence": 2}
    noise = {"moved": False}
    rows: list[dict[str, Any]] = [
        {"axis": "dtype", "moved": True, "first_divergence": 2, "skipped": None},
        {"axis": "batch_invariant", "moved": True, "first_divergence": 2, "skipped": None},
        {"axis": "tensor_parallel_size", "skipped": "TP=2 needs as many GPUs"},
    ]
    assert label(recorded, noise, rows) == "dtype, batch-invariant kernels"
    assert label(recorded, noise, rows[2:]) == INTERACTION


def test_toggles_go_to_b_on_differing_axes_and_skip_the_impossible() -> None:
    p = pair({"tensor_parallel_size": 2, "backend": "vllm", "batch_size": 8}, [1])
    chosen = {t.axis: t for t in toggles(p, cuda=False)}
    assert str(chosen["tensor_parallel_size"].skipped).startswith("TP=2 needs")
    assert chosen["backend"].setting["backend"] == "vllm" and chosen["backend"].skipped is None
    assert chosen["batch_size"].setting["batch_size"] == 8  # B's batch, not the lab's mixed
    assert chosen["batch_invariant"].setting["batch_invariant"] is True
    on_gpus = {t.axis: t for t in toggles(p, cuda=True)}
    assert on_gpus["tensor_parallel_size"].skipped is None
    vllm = pair({}, [1])
    vllm.setting_a["backend"] = "vllm"
    prefix = next(t for t in toggles(vllm, cuda=False) if t.axis == "prefix_caching")
    assert prefix.warm and prefix.skipped is None and prefix.setting["prefix_caching"] is True


def test_a_killed_explain_resumes_without_replaying_finished_toggles(tmp_path: Path) -> None:
    p = pair({"dtype": "bfloat16"}, [5, 6, 42, 1])
    first: list[Any] = []
    explain(p, tmp_path / "explain-c", replay=moving("dtype", "bfloat16", 2, first))
    lines = (tmp_path / "explain-c" / "toggles.jsonl").read_text().splitlines()
    # A, dtype, batch, batch-invariant replayed; the prefix cache's skip is recorded too
    assert len(first) == 4 and len(lines) == 5
    out = tmp_path / "explain-c"
    (out / "toggles.jsonl").write_text("\n".join(lines[:2]) + "\n")  # killed after 2 lines
    again: list[Any] = []
    result = explain(p, out, replay=moving("dtype", "bfloat16", 2, again))
    assert len(again) == 2 and result["label"] == "dtype"
    assert read_results(tmp_path) == [json.loads((out / "explain.json").read_text())]


def test_an_engine_that_does_not_start_is_a_skipped_toggle(tmp_path: Path) -> None:
    def run(setting: dict[str, Any], warm: bool) -> Generation:
        if setting["batch_invariant"]:
            raise RuntimeError("no such kernel here")
        return gen([5, 6, 7, 8])

    result = explain(pair({"dtype": "bfloat16"}, [5, 6, 42, 1]), tmp_path / "x", replay=run)
    row = next(t for t in result["toggles"] if t["axis"] == "batch_invariant")
    assert "no such kernel here" in row["skipped"]


# --- two n-of-k runs ------------------------------------------------------------------------


def sample_run(root: Path, name: str, outputs: dict[str, list[list[int]]], **over: Any) -> Path:
    """A finished lab sample run directory in the real layout (lab.variance.runner.open_run)."""
    from lab.cases.loaders import load_cases
    from lab.rundir import SAMPLES as LOG
    from lab.variance.config import SampleConfig
    from lab.variance.runner import engine_config, open_run

    prompts = over.pop("prompts", {})
    cases_file = root / f"{name}.jsonl"
    cases_file.write_text("".join(json.dumps({"id": c, "prompt": prompts.get(c, f"say {c}"),
                                              "checks": [{"exact": "yes"}]}) + "\n"
                                  for c in outputs))  # fmt: skip
    k = len(next(iter(outputs.values())))
    config = SampleConfig(cases=str(cases_file), k=k, backend="hf", out=str(root / name),
                          temperature=over.pop("temperature", 0.7), **over)  # fmt: skip
    store = open_run(config, load_cases(config.cases), engine_config(config), fresh=True)
    for case, samples in outputs.items():
        gens = [gen(tokens).to_dict() | {"request_id": case, "sample_index": i, "seed": 10 + i}
                for i, tokens in enumerate(samples)]  # fmt: skip
        store.append(LOG, case, {"case_id": case, "wall_s": 0.1, "generations": gens})
    return root / name


def test_two_sample_runs_pair_sample_i_and_replay_with_its_seed(tmp_path: Path) -> None:
    a = sample_run(tmp_path, "a", {"x": [[1, 2], [3, 4]], "y": [[5, 6], [7, 8]]})
    b = sample_run(tmp_path, "b", {"x": [[1, 2], [3, 4]], "y": [[5, 6], [7, 9]]}, dtype="bf16")
    p = load_pair(str(a), str(b), None)
    assert p is not None and p.case == "y" and p.names[0].endswith("sample 1")
    assert p.setting_a["seed"] == 11 and p.setting_b["dtype"] == "bfloat16"
    requests, target = p.batch(p.setting_a)
    assert [r.seed for r in requests if r.id == target] == [11]
    assert any("recorded seed 11" in n for n in p.notes)
    assert load_pair(str(a), str(b), "x") is None  # case x does not part: no divergence


# --- bad input: one line, exit 2 ------------------------------------------------------------


def run_lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", "explain", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def one_error(out: subprocess.CompletedProcess[str], message: str) -> None:
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], out.stderr


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    a = sample_run(tmp_path, "a", {"x": [[1, 2]], "y": [[5, 6]]})
    other_prompt = sample_run(tmp_path, "p", {"x": [[1, 3]]}, prompts={"x": "another"})
    other_cases = sample_run(tmp_path, "c", {"z": [[1, 3]]})
    fewer = sample_run(tmp_path, "f", {"x": [[1, 3]]})
    greedy = sample_run(tmp_path, "g", {"x": [[1, 3]]}, temperature=0.0)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "cells.jsonl").write_text("")
    one_error(run_lab(str(tmp_path / "nope")), "no such run directory")
    one_error(run_lab(str(junk), str(a)), "holds no lab run")
    one_error(run_lab(str(a)), "give a second run RUN_B")
    one_error(run_lab(str(a), str(other_prompt)), "case 'x' has another prompt in each run")
    one_error(run_lab(str(a), str(other_cases)), "share no case")
    one_error(run_lab(str(a), str(greedy)), "sample differently (temperature")
    one_error(run_lab(str(a), str(fewer), "y"), "no finished case 'y'")
    one_error(run_lab(str(a), str(sweep)), "explain two runs of one kind")
    one_error(run_lab(str(sweep)), "not a finished sweep run directory")
    assert (junk / "notes.txt").read_text() == "mine"


def test_a_bad_cell_is_named() -> None:
    from lab.determinism.explainsweep import parse_cell

    with pytest.raises(LabError, match="--cell-a 'dtyp=bf16': expected AXIS=VALUE"):
        parse_cell("dtyp=bf16", "--cell-a")
    assert parse_cell("dtype=bf16, batch_size=3", "--cell-b") == {
        "dtype": "bfloat16", "batch_size": "3"}  # fmt: skip


def test_the_explained_table_escapes_model_text(tmp_path: Path) -> None:
    from lab.determinism.explainreport import explained_html, explained_markdown

    p = pair({"dtype": "bfloat16"}, [5, 6, 42, 1])
    p.case = "<script>x</script>"
    p.record_b.top_logprobs[2][0].token = "<b>|"
    p.record_b.top_logprobs[2][0].token_id = 42
    result = explain(p, tmp_path / "explain-x", replay=moving("dtype", "bfloat16", 2))
    html = "".join(explained_html([result]))
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;" in html
    assert "<td>dtype</td>" in html and "dtype (float32 -&gt; bfloat16)" in html
    markdown = "\n".join(explained_markdown([result]))
    row = markdown.splitlines()[-1]
    assert row.count(" | ") == 5  # the token's '|' does not split the row
    assert explained_html([]) == [] and explained_markdown([]) == []


def test_two_agent_runs_pair_a_trajectory_at_the_step_where_it_parts(tmp_path: Path) -> None:
    """Scripted agent runs (no model): c-add/1 answers differently at step 2 in run B. The
    step is rebuilt on A's history (step 1's call and its result) with its recorded seed,
    and the replay's reply is parsed into its action."""
    from lab.agents.explainpair import agent_pair
    from lab.agents.runner import run_agents
    from lab.variance.config import SampleConfig
    from tests.unit.agent_fakes import SCRIPT, ScriptedBackend, write_cases

    cases = write_cases(tmp_path / "cases")
    runs = []
    parted = SCRIPT | {"c-add/1": [SCRIPT["c-add/1"][0], "ANSWER: 6, I think"]}
    for name, script in [("a", SCRIPT), ("b", parted)]:
        config = SampleConfig(cases=str(cases), k=2, backend="hf", out=str(tmp_path / name),
                              temperature=0.7, bootstrap_samples=20)  # fmt: skip
        run_agents(config, backend=ScriptedBackend(script), emit=lambda m: None)
        runs.append(str(tmp_path / name))
    p = load_pair(runs[0], runs[1], None, agent_reader=agent_pair)
    assert p is not None and p.kind == "agent" and p.case == "c-add"
    assert p.names[0].endswith("trajectory 1 step 2")
    requests, target = p.batch(p.setting_a)
    step = next(r for r in requests if r.id == target)
    assert step.seed == p.record_a.seed and step.messages is not None
    history = [str(m.get("content")) for m in step.messages]
    # A's step 1 (the call) and the tool's answer 2 + 4 = 6 come after the opening messages
    assert any("add" in h for h in history[-2:]) and "6" in history[-1], history
    reply = gen([1])
    reply.text = 'CALL add {"a": 1, "b": 1}'
    assert p.action is not None and p.action(reply).startswith("add{")
    reply.text = "ANSWER: 6"
    assert p.action(reply) == "answer"
    assert any("recorded actions: answer vs answer" in n for n in p.notes)
    one_error(run_lab(runs[0], runs[1], "nope"), "no finished case 'nope'")


def test_an_hf_replay_drops_the_vllm_engine_args() -> None:
    from lab.determinism.explain import engine_config

    p = pair({"backend": "vllm"}, [1])
    p.engine_fixed = {"device": "cpu", "engine_args": {"block_size": 32}}
    assert engine_config(p, p.setting_a).engine_args == {}
    assert engine_config(p, p.setting_b).engine_args == {"block_size": 32}


def test_the_report_shows_an_explanation_only_while_its_records_stand(tmp_path: Path) -> None:
    """A sweep rerun with --fresh has new records: the old explain-*/explain.json is not shown
    (the negative control of the report's table)."""
    from lab.determinism.cells import cell_of
    from lab.determinism.explainreport import current_results

    def entry(dtype: str, tokens: list[int]) -> dict[str, Any]:
        output = {k: v for k, v in gen(tokens).to_dict().items() if k not in ("engine", "sampling")}
        return {"status": "ok", "cell": {"dtype": dtype}, "repeat": 0, "engine": {},
                "sampling": {}, "outputs": {"c": output}}  # fmt: skip

    a, b = entry("float32", [5, 6, 7, 8]), entry("bfloat16", [5, 6, 42, 1])
    p = pair({"dtype": "bfloat16"}, [5, 6, 42, 1])
    p.cells = (cell_of(a).key(), cell_of(b).key())
    explain(p, tmp_path / "explain-c", replay=moving("dtype", "bfloat16", 2))
    assert [r["label"] for r in current_results(tmp_path, [a, b])] == ["dtype"]
    rerun = entry("bfloat16", [5, 6, 43, 1])
    assert current_results(tmp_path, [a, rerun]) == []
    assert current_results(tmp_path, [a]) == []
