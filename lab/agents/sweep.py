"""`lab sweep` over agent cases: does a serving axis move a greedy trajectory?

A sweep config with `cases:` (lab.determinism.agentsource) in place of prompts runs, in every
cell of its grid, one trajectory of each selected agent case (k = 1, the sweep's sampling:
greedy by default) through the trajectory stepper (lab.agents.trajectory) on the cell's engine.
The grid, the engines, the run directory and its resume are the prompt sweep's
(lab.determinism.sweep.run_sweep with this module's cell runner): a finished cell is one line
of `cells.jsonl` holding every case's trajectory (each step's tokens, logprobs and top
alternatives, parsed calls, tool answers, final answer) and its verdict; a killed sweep
resumes at the first unfinished cell.

What a cell's `batch_size` means (as the prompt sweep's default `single` mode: a target alone
or beside batch_size - 1 filler prompts): EVERY engine call of the cell has exactly batch_size
rows. Each turn, the live trajectories are stepped batch_size at a time in case order (one
call per group), and a group short of batch_size (fewer live trajectories than that, or the
last group) is topped up with the sweep's filler prompts. So at batch size 1 every turn of
every trajectory is generated alone; at batch size 4 each is generated beside 3 other rows.
The `order` axis orders the rows of every call (seeded by the cell); `concurrency` (openai
backend) is how many of them are in flight at once.

    sweep = AgentSweep(config)
    store = run_agent_sweep(config, "runs/agents-t0-sweep")
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.agents.environment import Environments
from lab.agents.report import evaluate_trajectory
from lab.agents.runner import choose_protocol
from lab.agents.trajectory import TURN_STRIDE, Stepper, Task, advance
from lab.backends.base import Backend, Generation, Request, SamplingConfig
from lab.backends.openai_compat import OpenAIBackend
from lab.cases.codechecks import CodePolicy, resolve_checks
from lab.cases.model import cases_fingerprint
from lab.determinism.agentsource import AgentCases
from lab.determinism.config import SweepConfig
from lab.determinism.grid import Cell
from lab.determinism.modes import filler_requests, order_requests
from lab.determinism.sweep import run_sweep
from lab.store import RunStore


class CellStepper(Stepper):
    """A sweep cell's stepper: every engine call carries exactly `rows` rows (the live
    trajectories of the group, then fillers), in the cell's order (module docstring)."""

    def __init__(
        self,
        *args: Any,
        rows: int,
        order: str = "given",
        order_seed: int = 0,
        concurrency: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.rows, self.order, self.order_seed = rows, order, order_seed
        self.concurrency = concurrency
        self.engine: dict[str, Any] = {}
        self.filler_rows = 0
        self.generate_s = 0.0

    def generate(self, requests: list[Request]) -> list[Generation]:
        fillers = filler_requests(max(0, self.rows - len(requests)))
        self.filler_rows += len(fillers)
        rows = order_requests([*requests, *fillers], self.order, self.order_seed)
        started = time.perf_counter()
        if isinstance(self.backend, OpenAIBackend):
            if not self.backend.vllm_extras:
                raise RuntimeError("the server returns no token ids; the sweep compares them")
            gens = self.backend.generate(rows, self.sampling, concurrency=self.concurrency)
            failures = [g for g in gens if g.error]
            if failures:  # a lost request is no measurement: fail the cell, rerun resumes it
                raise RuntimeError(
                    f"{len(failures)} of {len(gens)} requests failed, e.g. {failures[0].error}"
                )
        else:
            gens = self.backend.generate(rows, self.sampling)
        self.generate_s += time.perf_counter() - started
        targets = {r.id for r in requests}
        self.engine = self.engine or next((g.engine for g in gens if g.request_id in targets), {})
        return gens


class AgentSweep:
    """The cases of an agent sweep, their environments, and the cell runner."""

    def __init__(self, config: SweepConfig) -> None:
        if config.agents is None:
            raise ValueError("not an agent sweep (no cases:)")
        self.spec: AgentCases = config.agents
        _, selected = self.spec.load()
        self.cases = [c for _, c in selected]
        self.positions = {c.id: i for i, c in selected}
        source = self.spec.source
        case_file = None if source.startswith("bundled:") else source.partition("#")[0]
        how = "agent.allow_modules: [{name}] in the sweep config"
        resolve_checks(
            self.cases, CodePolicy.from_settings(self.spec.allow_modules, case_file, how)
        )
        self.envs = Environments(self.cases, self.spec.allow_modules)  # refused code: LabError

    def identity(self) -> dict[str, Any]:
        """What besides the config decides the trajectories: the cases and the tools' code."""
        return {
            "agent_cases": cases_fingerprint(self.cases),
            "environments": self.envs.fingerprints,
            "turn_stride": TURN_STRIDE,
        }

    def run_cell(
        self, backend: Backend, config: SweepConfig, cell: Cell, context: int
    ) -> dict[str, Any]:
        """One greedy trajectory of every case on `backend`; the payload cells.jsonl keeps."""
        del context  # prompt sweeps' prefix lengths; nothing here
        axes = cell.axes
        seed = axes["seed"]
        sampling = SamplingConfig(**(config.sampling | {"seed": seed, "n": 1}))
        protocol = choose_protocol(self.spec.tool_protocol, backend)
        stepper = CellStepper(
            backend, sampling, 1, protocol, self.envs, seed, self.spec.max_turns,
            rows=axes["batch_size"], order=axes["order"],
            order_seed=(seed or 0) * 1000 + cell.repeat, concurrency=axes["concurrency"],
        )  # fmt: skip
        lives = [stepper.start(Task(c, self.positions[c.id], 0)) for c in self.cases]
        advance(stepper, lives, group_size=axes["batch_size"])
        trajectories: dict[str, Any] = {}
        tokens = 0
        for case, live in zip(self.cases, lives, strict=True):
            trajectory = stepper.trajectory(live)
            verdict = evaluate_trajectory(case, trajectory)
            tokens += trajectory.tokens_out
            trajectories[case.id] = trajectory.to_dict() | {
                "passed": verdict["passed"],
                "answer": verdict["answer"],
            }
        return {
            "status": "ok",
            "error": None,
            "cell": axes,
            "repeat": cell.repeat,
            "engine": stepper.engine,
            "sampling": dataclasses.asdict(sampling),
            "protocol": protocol.name,
            "timings": {
                "generate_s": stepper.generate_s,
                "output_tokens": tokens,
                "engine_calls": stepper.calls,
                "filler_rows": stepper.filler_rows,
            },
            "outputs": {},
            "trajectories": trajectories,
        }


def run_agent_sweep(
    config: SweepConfig,
    out_dir: str | Path,
    fresh: bool = False,
    cache_dir: str | None = None,
    progress: bool = True,
    on_cell: Callable[[Cell, dict[str, Any]], None] | None = None,
    retry_failed: bool = False,
) -> RunStore:
    """Run (or resume) an agent sweep into out_dir (lab.determinism.sweep.run_sweep's run
    directory and resume, this module's cells); returns the store."""
    sweep = AgentSweep(config)  # cases and environment code checked before the directory
    return run_sweep(
        config,
        out_dir,
        fresh=fresh,
        cache_dir=cache_dir,
        progress=progress,
        on_cell=on_cell,
        retry_failed=retry_failed,
        runner=sweep.run_cell,
        identity=sweep.identity(),
    )
