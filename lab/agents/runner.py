"""`lab sample` over agent cases: k trajectories of every case, resumably, then the report.

All k x cases trajectories advance together, one engine call per turn over every trajectory
still running (lab.agents.trajectory). After each call the steps it produced are appended to
`steps.jsonl` as ONE fsynced line (the journal), and each trajectory that finished is
appended to `trajectories.jsonl` as one line with all its steps. A killed run resumes from
each trajectory's last complete step: finished trajectories are kept (exactly once), the
others are rebuilt from the journal (their recorded calls replayed on a fresh environment)
and go on at the next turn with the seed that turn always has. A trajectory whose journal
says it ended but whose final line is missing (a kill between the two writes) is finished
from the journal without another engine call.

The run directory is an n-of-k run directory (lab.samplerun) with trajectories in place of
samples, so cohorts, tails, the gate and `lab compare` read it as any other run.

    lab sample --cases bundled:agents --k 8 --backend vllm
    from lab.agents.runner import run_agents
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from lab import rundir, samplerun
from lab.agents.environment import Environments
from lab.agents.protocol import Protocol
from lab.agents.records import Step
from lab.agents.trajectory import TURN_STRIDE, Live, Stepper, Task, advance
from lab.backends import Backend, EngineConfig, load_backend
from lab.backends.base import Request, SamplingConfig
from lab.backends.prompts import supports_tools
from lab.backends.registry import preflight
from lab.cases.codechecks import resolve_checks
from lab.cases.loaders import load_cases
from lab.cases.model import Case, cases_fingerprint
from lab.envinfo import environment_record
from lab.errors import LabError
from lab.models import check_model
from lab.store import RunStore, raise_if_interrupted
from lab.variance.config import SampleConfig
from lab.variance.runner import RunOutcome, engine_config, sampling_config

#: the probe a server answers when it has a tool parser (tool_protocol auto, openai backend)
_PROBE_TOOL = {
    "type": "function",
    "function": {"name": "probe", "description": "", "parameters": {"type": "object"}},
}


def agent_cases(
    config: SampleConfig, whole: list[Case] | None = None
) -> tuple[list[Case], dict[str, int], int]:
    """The selected cases (all agent cases, or LabError), their indices in the whole set (the
    seeds follow from them) and the size of the whole set. `whole`: the case source already
    parsed (else parsed here)."""
    whole = load_cases(config.cases) if whole is None else whole
    selected = config.select(whole)
    plain = [c.id for _, c in selected if c.agent is None]
    if plain:
        raise LabError(
            f"{config.cases}: case {plain[0]!r} has no tools while others do; an agent run "
            "takes agent cases only (run the others with lab sample on their own file)"
        )
    if len(whole) * config.k >= TURN_STRIDE:
        raise LabError(f"cases x k must stay below {TURN_STRIDE} (turn seeds would overlap)")
    cases = [c for _, c in selected]
    resolve_checks(cases, config.code_policy())  # code in the case file: only if allowed
    return cases, {c.id: i for i, c in selected}, len(whole)


def is_agent_source(config: SampleConfig, whole: list[Case] | None = None) -> bool:
    """Whether the configured case source (`whole`, when already parsed) holds agent cases."""
    whole = load_cases(config.cases) if whole is None else whole
    return any(c.agent is not None for _, c in config.select(whole))


def choose_protocol(setting: str, backend: Backend) -> Protocol:
    """`auto`: the model's chat template with tools where it has them (hf, vllm), a server's
    tool parser where it answers a probe with tools (openai), else the text protocol."""
    wire = backend.config.backend == "openai"
    if setting != "auto":
        return Protocol(setting, wire=wire)
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is not None:
        return Protocol("native" if supports_tools(tokenizer) else "text")
    if wire:
        probe = Request(
            id="tool-probe", messages=[{"role": "user", "content": "hi"}], tools=[_PROBE_TOOL]
        )
        gens = backend.generate([probe], SamplingConfig(max_tokens=1))
        return Protocol("text" if gens[0].error else "native", wire=True)
    return Protocol("text")


def run_identity(
    config: SampleConfig, cases: list[Case], engine: EngineConfig, envs: Environments
) -> dict[str, Any]:
    return config.identity() | {
        "engine": engine.to_dict(),
        "cases_source": config.cases,
        "cases_fingerprint": cases_fingerprint(cases),
        "agent": {
            "max_turns": config.max_turns,
            "tool_protocol": config.tool_protocol,
            # the tools' code: a changed module would mix two environments in one run
            "environments": envs.fingerprints,
            "turn_stride": TURN_STRIDE,
        },
    }


class Journal:
    """The run directory's two agent logs: steps per engine call, finished trajectories."""

    def __init__(self, store: RunStore, stepper: Stepper, emit: Callable[[str], None]) -> None:
        self.store, self.stepper, self.emit = store, stepper, emit
        self.done = store.done_keys(rundir.TRAJECTORIES)
        self.lines = sum(1 for _ in store.entries(rundir.JOURNAL))
        self.started = time.perf_counter()
        self.tokens = 0

    def steps_by_trajectory(self) -> dict[str, list[Step]]:
        out: dict[str, list[Step]] = {}
        for entry in self.store.entries(rundir.JOURNAL):
            for record in entry["steps"]:
                out.setdefault(record["trajectory"], []).append(Step.from_dict(record))
        return out

    def on_steps(self, steps: list[Step]) -> None:
        failed = [s for s in steps if s.kind == "error"]
        if failed and self.stepper.protocol.wire:
            # a server that failed (unreachable, 5xx, a refused request) is not the model's
            # step: nothing of this call is journaled, so the same command redoes it
            raise LabError(
                f"trajectory {failed[0].trajectory} turn {failed[0].turn}: the server failed "
                f"({failed[0].reason}); {len(failed)} of {len(steps)} steps of this call not "
                "recorded: run the same command to resume"
            )
        self.store.append(
            rundir.JOURNAL, f"call-{self.lines}", {"steps": [s.to_dict() for s in steps]}
        )
        self.lines += 1
        self.tokens += sum(len(s.output_token_ids) for s in steps)

    def on_done(self, lives: list[Live]) -> None:
        for live in lives:
            if live.key in self.done:
                continue
            record = self.stepper.trajectory(live).to_dict()
            self.store.append(rundir.TRAJECTORIES, live.key, record)
            self.done.add(live.key)

    def on_round(self, running: list[Live]) -> None:
        elapsed = time.perf_counter() - self.started
        live = sum(r.outcome is None for r in running)
        turn = max((r.turn for r in running), default=0)
        self.emit(
            f"turn {turn}: {len(running) - live} of {len(running)} trajectories finished this "
            f"turn, {len(self.done)} done in all  {self.tokens / max(elapsed, 1e-9):.1f} tok/s "
            f"out  elapsed {elapsed:.0f}s"
        )


def run_agents(
    config: SampleConfig,
    backend: Backend | None = None,
    fresh: bool = False,
    emit: Callable[[str], None] = print,
    stop_after_calls: int | None = None,
    cache_dir: str | None = None,
    cases: list[Case] | None = None,
) -> RunOutcome:
    """The whole job: run (or resume) every trajectory, then analyze and write the report.

    `backend`: an already running engine (tests pass theirs). `stop_after_calls` stops after
    that many engine calls without the report (what a kill leaves behind). `cases`: the whole
    case source already parsed (`lab sample` parses it once)."""
    cases, positions, whole = agent_cases(config, cases)
    # refused code: exit 2, nothing written; --allow-module covers checks and environments
    envs = Environments(cases, config.allow_modules)
    backend_config = backend.config if backend is not None else engine_config(config)
    if backend is not None and backend_config.backend != config.backend:
        config = dataclasses.replace(config, backend=backend_config.backend)
    if backend is None and config.base_url is None:  # a server's model is the server's
        check_model(config.model, cache_dir)  # like every other input, before the directory
        preflight(backend_config, cache_dir)  # what its engine would refuse, before it too
    store = samplerun.open_run(
        config.out_dir(),
        run_identity(config, cases, backend_config, envs),
        cases,
        config.to_dict(),
        whole * config.k,  # every trajectory of the set steps in one call per turn
        fresh,
        environment_record(),
    )
    keys = [f"{c.id}/{i}" for c in cases for i in range(config.k)]
    chosen = f" (selected from {whole})" if len(cases) < whole else ""
    emit(f"run directory {store.path}: {len(cases)} agent cases{chosen} x k={config.k}")
    done = store.done_keys(rundir.TRAJECTORIES)
    complete = True
    if not done >= set(keys):
        raise_if_interrupted()
        # a managed server (openai backend without base_url) logs into the run directory
        backend = backend or load_backend(backend_config, cache_dir, log_dir=store.path)
        complete = _step_all(config, backend, store, cases, positions, envs, emit, stop_after_calls)
    else:
        emit("all trajectories already finished; rebuilding the report")
    if not complete:
        return RunOutcome(store.path, 0, False)
    from lab.agents.report import build_agent_report

    written = build_agent_report(store.path, config, emit=emit, cases=cases)
    return RunOutcome(store.path, len(cases), True, written)


def _step_all(
    config: SampleConfig,
    backend: Backend,
    store: RunStore,
    cases: list[Case],
    positions: dict[str, int],
    envs: Environments,
    emit: Callable[[str], None],
    stop_after_calls: int | None,
) -> bool:
    protocol = choose_protocol(config.tool_protocol, backend)
    sampling = dataclasses.replace(sampling_config(config, config.seed), n=1)
    stepper = Stepper(backend, sampling, config.k, protocol, envs, config.seed, config.max_turns)
    journal = Journal(store, stepper, emit)
    recorded = journal.steps_by_trajectory()
    lives: list[Live] = []
    finished: list[Live] = []
    for case in cases:
        for i in range(config.k):
            task = Task(case, positions[case.id], i)
            if task.key in journal.done:
                continue
            live = stepper.start(task)
            stepper.replay(live, recorded.get(task.key, []))
            (finished if live.outcome is not None else lives).append(live)
    journal.on_done(finished)  # journaled to the end, final line lost to a kill
    resumed = sum(1 for live in lives if live.steps)
    if journal.done or resumed:
        emit(
            f"resuming: {len(journal.done)} trajectories finished, {resumed} continue from "
            f"their last step, {len(lives) - resumed} start ({protocol.name} protocol)"
        )
    else:
        emit(f"{len(lives)} trajectories, {protocol.name} tool protocol")
    return advance(
        stepper,
        lives,
        on_steps=journal.on_steps,
        on_done=journal.on_done,
        on_round=journal.on_round,
        stop_after_calls=stop_after_calls,
    )
