"""Stepping trajectories: every live trajectory advances one model turn per engine call.

A trajectory is one run of an agent case: its chat history, its own environment, its steps.
`advance(stepper, lives)` runs them in lockstep: each round makes ONE `backend.generate` call
over every trajectory still running (k x cases rows; with `group_size`, one call per group of
that many), parses each reply (lab.agents.protocol), answers its calls from its environment,
and appends the step; a trajectory leaves the batch when it answers, errs or runs out of turns.

Seeds: turn t of sample i of case j (its index in the whole case set, k samples per case) is
generated with seed + j*k + i + t*TURN_STRIDE, as its own request (Request.seed), so a turn's
random numbers depend on (case, sample, turn) only, never on which other trajectories are
still in the batch. Turn 0 uses exactly the seed `lab sample` gives sample i of case j.

Resume: `Stepper.replay` rebuilds a trajectory from its journaled steps (lab.agents.runner),
re-executing the recorded calls on a fresh environment (tools are deterministic; a different
answer stops the run), so a killed run continues from each trajectory's last complete step.

    stepper = Stepper(backend, sampling, k, protocol, environments, seed=0)
    lives = [stepper.start(Task(case, j, i)) for j, case in enumerate(cases) for i in range(k)]
    advance(stepper, lives, on_steps=journal.append, on_done=finish)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.agents.environment import Environment, Environments
from lab.agents.protocol import Parsed, ParsedCall, Protocol, call_id
from lab.agents.records import Step, ToolCallRecord, Trajectory
from lab.backends.base import Backend, Generation, Request, SamplingConfig
from lab.cases.agentspec import canonical_json
from lab.cases.model import Case
from lab.errors import LabError
from lab.store import raise_if_interrupted

#: seeds of consecutive turns of one trajectory are this far apart (cases x k must stay below)
TURN_STRIDE = 1_000_000


def turn_seed(
    seed: int | None, case_index: int, k: int, sample_index: int, turn: int
) -> int | None:
    """The seed of one turn of one trajectory (module docstring); None stays None (greedy)."""
    if seed is None:
        return None
    return seed + case_index * k + sample_index + turn * TURN_STRIDE


@dataclass
class Task:
    """One trajectory to run: sample `sample_index` of `case`, the case's index in its set."""

    case: Case
    case_index: int
    sample_index: int

    @property
    def key(self) -> str:
        return f"{self.case.id}/{self.sample_index}"


@dataclass
class Live:
    """A trajectory in progress."""

    task: Task
    env: Environment
    messages: list[dict[str, Any]]
    max_turns: int
    steps: list[Step] = field(default_factory=list)
    #: None while running; then "answer", "max_turns" or "error"
    outcome: str | None = None
    final_answer: str | None = None

    @property
    def key(self) -> str:
        return self.task.key

    @property
    def turn(self) -> int:
        return len(self.steps)


def _tops(gen: Generation) -> list[list[list[Any]]]:
    return [[[a.token_id, a.logprob, a.token] for a in step] for step in gen.top_logprobs]


class Stepper:
    """Turns model replies into steps: parse, answer the calls, extend the history."""

    def __init__(
        self,
        backend: Backend,
        sampling: SamplingConfig,
        k: int,
        protocol: Protocol,
        environments: Environments,
        seed: int | None = 0,
        max_turns: int | None = None,
    ) -> None:
        if sampling.n != 1:
            raise LabError("trajectories are generated one sample per request (n=1)")
        self.backend, self.sampling, self.k = backend, sampling, k
        self.protocol, self.environments = protocol, environments
        self.seed, self.max_turns = seed, max_turns
        self.tokenizer = getattr(backend, "tokenizer", None)
        self.calls = 0

    def start(self, task: Task) -> Live:
        case = task.case
        assert case.agent is not None
        opening = case.request().messages or []
        messages = self.protocol.initial_messages(opening, case.agent.tools)
        limit = self.max_turns or case.agent.max_turns
        return Live(task, self.environments.new(case), messages, limit)

    def request(self, live: Live) -> Request:
        agent = live.task.case.agent
        assert agent is not None
        return Request(
            id=live.key,
            messages=[dict(m) for m in live.messages],
            seed=turn_seed(
                self.seed, live.task.case_index, self.k, live.task.sample_index, live.turn
            ),
            tools=self.protocol.request_tools(agent.tools),
        )

    def raw_text(self, gen: Generation) -> str:
        """The reply with special tokens kept (Mistral's [TOOL_CALLS] is one), end-of-text
        markers dropped; the decoded text when the engine has no local tokenizer."""
        if self.protocol.name != "native" or self.tokenizer is None or not gen.output_token_ids:
            return gen.text
        text = str(self.tokenizer.decode(gen.output_token_ids, skip_special_tokens=False))
        ends = {getattr(self.tokenizer, n, None) for n in ("eos_token", "pad_token")}
        ends |= {"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "</s>", "<|endoftext|>"}
        changed = True
        while changed:
            changed = False
            for end in ends:
                if end and text.rstrip().endswith(end):
                    text, changed = text.rstrip()[: -len(end)], True
        return text

    def step(self, lives: list[Live]) -> list[Step]:
        """One engine call over `lives`; each gets its next step (and may finish)."""
        requests = [self.request(live) for live in lives]
        started = time.perf_counter()
        gens = self.generate(requests)
        generate_s = time.perf_counter() - started
        self.calls += 1
        by_id = {g.request_id: g for g in gens}
        steps = []
        for live, request in zip(lives, requests, strict=True):
            gen = by_id.get(live.key)
            if gen is None:
                raise LabError(f"trajectory {live.key}: the backend returned no output")
            steps.append(self._step(live, gen, request.seed, generate_s, len(gens)))
        return steps

    def generate(self, requests: list[Request]) -> list[Generation]:
        """The engine call of one step (a sweep cell's stepper adds filler rows here)."""
        return self.backend.generate(requests, self.sampling)

    def _step(
        self, live: Live, gen: Generation, seed: int | None, generate_s: float, rows: int
    ) -> Step:
        turn = live.turn
        base: dict[str, Any] = {
            "trajectory": live.key,
            "turn": turn,
            "seed": seed,
            "prompt_tokens": len(gen.prompt_token_ids),
            "output_token_ids": list(gen.output_token_ids),
            "token_logprobs": list(gen.token_logprobs),
            "top_logprobs": _tops(gen),
            "text": gen.text,
            "finish_reason": gen.finish_reason,
        }
        if gen.finish_reason == "error":
            step = Step(**base, kind="error", reason=gen.error or "generation error")
            step.timings = {"generate_s": generate_s, "tools_s": 0.0, "batch_rows": float(rows)}
            self.apply(live, step)
            return step
        parsed = self.protocol.parse(self.raw_text(gen), gen.tool_calls)
        started = time.perf_counter()
        calls = []
        for j, call in enumerate(parsed.calls):
            result, error = live.env.call(call.name, call.arguments)
            calls.append(ToolCallRecord(call_id(turn, j), call.name, call.arguments, result, error))
        step = Step(
            **base,
            kind=parsed.kind,
            calls=calls,
            content=parsed.content,
            answer=parsed.answer,
            reason=parsed.reason,
            timings={
                "generate_s": generate_s,
                "tools_s": time.perf_counter() - started,
                "batch_rows": float(rows),
            },
        )
        self.apply(live, step)
        return step

    def apply(self, live: Live, step: Step) -> None:
        """Extend the history with one step and settle whether the trajectory ended."""
        live.steps.append(step)
        if step.kind == "error":
            live.outcome = "error"
            return
        calls = [ParsedCall(c.name, c.arguments, c.id) for c in step.calls]
        parsed = Parsed(step.kind, calls, step.answer, step.reason, step.content)
        live.messages.append(self.protocol.assistant_message(parsed, step.turn))
        if step.kind == "answer":
            live.outcome, live.final_answer = "answer", step.answer
            return
        if step.kind == "call":
            answers = [(c.result, c.error) for c in step.calls]
            live.messages += self.protocol.result_messages(parsed, answers, step.turn)
        else:
            live.messages += self.protocol.malformed_messages(parsed)
        if live.turn >= live.max_turns:
            live.outcome = "max_turns"

    def replay(self, live: Live, steps: list[Step]) -> None:
        """Rebuild a trajectory from its journaled steps: the calls run again on its fresh
        environment and must answer as recorded."""
        for step in sorted(steps, key=lambda s: s.turn):
            if live.outcome is not None or step.turn != live.turn:
                break  # a later duplicate or a gap: the steps after it are redone
            for call in step.calls:
                result, error = live.env.call(call.name, call.arguments)
                if (error, canonical_json(result)) != (call.error, canonical_json(call.result)):
                    raise LabError(
                        f"trajectory {live.key} step {step.turn + 1}: {call.name} answered "
                        "differently than when it was recorded; the environment must be "
                        "deterministic to resume (run with --fresh)"
                    )
            self.apply(live, step)

    def trajectory(self, live: Live) -> Trajectory:
        assert live.outcome is not None
        return Trajectory(
            case_id=live.task.case.id,
            sample_index=live.task.sample_index,
            protocol=self.protocol.name,
            outcome=live.outcome,
            final_answer=live.final_answer,
            steps=live.steps,
            final_state=live.env.state,
        )


def advance(
    stepper: Stepper,
    lives: list[Live],
    group_size: int | None = None,
    on_steps: Callable[[list[Step]], None] | None = None,
    on_done: Callable[[list[Live]], None] | None = None,
    on_round: Callable[[list[Live]], None] | None = None,
    stop_after_calls: int | None = None,
) -> bool:
    """Step every live trajectory until all have finished; True when they have (False:
    stopped after `stop_after_calls` engine calls). `on_steps` gets each call's steps (the
    journal), `on_done` the trajectories that finished in that call, `on_round` the live ones
    after every round."""
    calls = 0
    while True:
        running = [live for live in lives if live.outcome is None]
        if not running:
            return True
        size = group_size or len(running)
        for start in range(0, len(running), size):
            raise_if_interrupted()
            if stop_after_calls is not None and calls >= stop_after_calls:
                return False
            group = running[start : start + size]
            steps = stepper.step(group)
            calls += 1
            if on_steps is not None:
                on_steps(steps)
            finished = [live for live in group if live.outcome is not None]
            if finished and on_done is not None:
                on_done(finished)
        if on_round is not None:
            on_round(running)


def clone_sampling(sampling: SamplingConfig) -> SamplingConfig:
    """The sampling of one trajectory turn: the run's, with n = 1."""
    return dataclasses.replace(sampling, n=1)
