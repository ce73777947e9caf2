"""The records an agent run stores: one Step per model turn, one Trajectory per finished run of
a case (lab.rundir names them: `steps.jsonl` as the resume journal, `trajectories.jsonl`
as the finished trajectories the report reads).

A Step holds what the science needs, as a Generation does: the output token ids, the logprob of
each chosen token and the top alternatives, the text, the finish reason, the seed, and beside
them what the agent made of it: the parsed calls with the tool's answers (or the error), the
final answer, or why the call did not parse; and timing.

    step = Step.from_dict(record)
    actions = Trajectory.from_dict(entry).actions()
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lab.agents.protocol import action_of
from lab.cases.agentspec import Call


@dataclass
class ToolCallRecord:
    """One call inside a step, with the environment's answer."""

    id: str
    name: str
    arguments: Any
    result: Any = None
    #: the error answer (bad arguments, unknown tool, the tool raised) or None
    error: str | None = None


@dataclass
class Step:
    """One model turn of one trajectory."""

    #: "CASE_ID/SAMPLE_INDEX"
    trajectory: str
    #: 0-based turn (reports number steps from 1)
    turn: int
    seed: int | None
    prompt_tokens: int
    output_token_ids: list[int]
    token_logprobs: list[float]
    #: per token: [[token_id, logprob, token text], ...] (the top alternatives, best first)
    top_logprobs: list[list[list[Any]]]
    text: str
    #: the engine's: "stop", "length", "tool_calls" or "error"
    finish_reason: str
    #: "call" | "answer" | "malformed" | "error"
    kind: str
    calls: list[ToolCallRecord] = field(default_factory=list)
    #: the assistant text the history keeps (text before a call, the answer, ...)
    content: str = ""
    answer: str | None = None
    #: why the call did not parse, or the generation error
    reason: str | None = None
    #: "generate_s" (the whole engine call this turn), "tools_s", "batch_rows"
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def action(self) -> str:
        return action_of(self.kind, [dataclasses.asdict(c) for c in self.calls])

    @property
    def tools(self) -> str:
        """The tool names of this step (or its kind): what a tool-choice sequence compares."""
        return "; ".join(c.name for c in self.calls) if self.kind == "call" else self.kind

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        d = dict(d)
        d["calls"] = [ToolCallRecord(**c) for c in d.get("calls", [])]
        return cls(**d)


#: how a trajectory ended: a final answer, out of turns, or a generation error
OUTCOMES = ("answer", "max_turns", "error")


@dataclass
class Trajectory:
    """One finished trajectory of one case: its steps, how it ended, the final state."""

    case_id: str
    sample_index: int
    #: "native" or "text" (lab.agents.protocol)
    protocol: str
    outcome: str
    final_answer: str | None
    steps: list[Step]
    final_state: Any = None

    @property
    def key(self) -> str:
        return f"{self.case_id}/{self.sample_index}"

    def calls(self) -> list[Call]:
        return [Call(c.name, c.arguments) for s in self.steps for c in s.calls]

    def actions(self) -> tuple[str, ...]:
        """The action sequence: one action per step, and `max_turns` / `error` when it ended
        so (an answer is the last step's own action)."""
        tail = (self.outcome,) if self.outcome != "answer" else ()
        return tuple(s.action for s in self.steps) + tail

    def tool_sequence(self) -> tuple[str, ...]:
        """Tool names per step (arguments left out): the tool-choice sequence."""
        tail = (self.outcome,) if self.outcome != "answer" else ()
        return tuple(s.tools for s in self.steps) + tail

    @property
    def tokens_out(self) -> int:
        return sum(len(s.output_token_ids) for s in self.steps)

    @property
    def tokens_in(self) -> int:
        return sum(s.prompt_tokens for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"key": self.key}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        d = {k: v for k, v in d.items() if k != "key"}
        d["steps"] = [Step.from_dict(s) for s in d["steps"]]
        return cls(**d)
