"""An agent pair for `lab explain`: trajectory i of a case in two agent runs (lab sample over
agent cases), at the step where their tokens part (lab.agents.divergence.split).

The step's prompt is A's history up to that step, rebuilt as a resume rebuilds it
(lab.agents.trajectory.Stepper.replay: the recorded calls run again on a fresh environment and
must answer as recorded); the step is replayed alone with its recorded seed, and each replay's
reply is parsed (the run's protocol) into its action, so a toggle that moves the tool call is
told apart from one that moves only tokens.

    pair = agent_pair("runs/agents-a", "runs/agents-b", "kv-write-color", None)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from lab import rundir
from lab.agents.divergence import split
from lab.agents.records import Step
from lab.backends.base import Generation, TopLogprob
from lab.cases.model import Case
from lab.determinism.explainpair import Pair
from lab.determinism.explainsource import (
    engine_fixed,
    first_parting,
    lone_batch,
    read_two_runs,
    run_setting,
    sampling_of,
)
from lab.errors import LabError


def agent_pair(run_a: str, run_b: str, case: str | None, sample: int | None) -> Pair | None:
    from lab.agents.environment import Environments
    from lab.agents.protocol import Protocol, action_of
    from lab.agents.trajectory import Stepper, Task

    def by_case(path: Path) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for e in sorted(rundir.read_trajectories(path), key=lambda e: e["sample_index"]):
            out.setdefault(e["case_id"], []).append(e)
        return out

    runs = read_two_runs(run_a, run_b, by_case)
    config_a, config_b, cases = runs.config_a, runs.config_b, runs.cases
    rows_a, rows_b = runs.rows_a, runs.rows_b
    if sample is not None:
        if case is None:
            raise LabError("--sample picks a trajectory of one case; name the CASE too")
        rows_a = {k: [e for e in v if e["sample_index"] == sample] for k, v in rows_a.items()}
        rows_b = {k: [e for e in v if e["sample_index"] == sample] for k, v in rows_b.items()}
    found = first_parting(rows_a, rows_b, case, lambda x, y: not split(x, y)["same"], run_a, run_b)
    if found is None:
        return None
    name, i = found
    ta, tb = rows_a[name][i], rows_b[name][i]
    where = split(ta, tb)
    turn = where["step"] - 1
    if turn >= len(ta["steps"]) or turn >= len(tb["steps"]):
        raise LabError(f"{name}/{ta['sample_index']}: one trajectory ends before step "
                       f"{turn + 1}; no step of both to replay")  # fmt: skip
    settings = rundir.read_settings(Path(run_a))
    case_ = source_case(str(settings.get("cases")), cases[name], run_a)
    envs = Environments([case_], settings.get("allow_modules") or [])
    protocol = Protocol(ta["protocol"])
    sampling = dataclasses.replace(sampling_of(config_a, run_a), n=1)
    stepper = Stepper(None, sampling, 1, protocol, envs)  # type: ignore[arg-type]  # no calls
    live = stepper.start(Task(case_, 0, ta["sample_index"]))
    stepper.replay(live, [Step.from_dict(s) for s in ta["steps"][:turn]])
    step_a, step_b = ta["steps"][turn], tb["steps"][turn]
    request = dataclasses.replace(stepper.request(live), seed=step_a.get("seed"))
    setting_a, setting_b = run_setting(config_a), run_setting(config_b)
    setting_a["seed"], setting_b["seed"] = step_a.get("seed"), step_b.get("seed")

    def action(gen: Generation) -> str:
        parsed = protocol.parse(gen.text, gen.tool_calls)
        return action_of(parsed.kind, parsed.calls)

    index = ta["sample_index"]
    return Pair(
        kind="agent", case=name, runs=(run_a, run_b),
        names=(f"{run_a} trajectory {index} step {turn + 1}",
               f"{run_b} trajectory {index} step {turn + 1}"),
        setting_a=setting_a, setting_b=setting_b,
        record_a=step_generation(step_a, request.id), record_b=step_generation(step_b, request.id),
        sampling=sampling, engine_fixed=engine_fixed(config_a["engine"]), batch=lone_batch(request),
        notes=[f"step {turn + 1} replayed alone on A's history (the run stepped every "
               "trajectory in one call)",
               f"recorded actions: {step_action(step_a)} vs {step_action(step_b)}"],
        action=action,
    )  # fmt: skip


def source_case(source: str, recorded: Case, run: str) -> Case:
    """The case as its case file gives it: cases.json keeps the case, but the environment's
    module resolves beside the case file (lab.agents.environment), so the file is read again
    and must still hold the case as run."""
    from lab.cases.loaders import load_cases

    found = next((c for c in load_cases(source) if c.id == recorded.id), None)
    if found is None or found.request() != recorded.request():
        raise LabError(f"{source}: no longer holds case {recorded.id!r} as {run} ran it; "
                       "the replay needs the run's case file")  # fmt: skip
    return found


def step_action(step: dict[str, Any]) -> str:
    return Step.from_dict(step).action


def step_generation(step: dict[str, Any], request_id: str) -> Generation:
    """A stored agent step as a Generation (its tokens, logprobs and alternatives)."""
    tops = [[TopLogprob(int(t[0]), float(t[1]), str(t[2]) if len(t) > 2 else "") for t in alts]
            for alts in step.get("top_logprobs") or []]  # fmt: skip
    return Generation(
        request_id=request_id, sample_index=0, seed=step.get("seed"), backend="",
        prompt_token_ids=[], output_token_ids=list(step["output_token_ids"]),
        token_logprobs=list(step["token_logprobs"]), top_logprobs=tops, text=step["text"],
        finish_reason=step["finish_reason"], timings={}, engine={}, sampling={},
    )  # fmt: skip
