"""A scripted fake model for the agent tests: replies looked up by (trajectory, turn), each
turn's seed recorded, token ids derived from the seed (as a seeded engine's would be).

    backend = ScriptedBackend({"c-add/0": ['CALL add {"a": 2, "b": 3}', "ANSWER: 5"]})
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lab.agents.trajectory import TURN_STRIDE
from lab.backends import Backend, EngineConfig, Generation, Request, SamplingConfig

TOOLS_PY = '''"""Tools of the test cases."""


def add(a, b):
    return a + b


def boom():
    raise ValueError("kaput")


def kv_set(key, value, state):
    state.setdefault("kv", {})[key] = value
    return "ok"
'''


def tool(name: str, **props: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"the {name} tool",
            "parameters": {
                "type": "object",
                "properties": {p: {"type": t} for p, t in props.items()},
                "required": list(props),
            },
        },
    }


CASES: list[dict[str, Any]] = [
    {
        "id": "c-add", "prompt": "What is 2 + 3?", "tools": [tool("add", a="number", b="number")],
        "environment": {"module": "tools.py"}, "max_turns": 3,
        "checks": [{"numeric": 5}, {"called": "add", "arguments": {"a": 2}}],
        "tags": ["math"],
    },
    {
        "id": "c-boom", "prompt": "Break it.", "tools": [tool("boom")],
        "environment": {"module": "tools.py"}, "max_turns": 2,
        "checks": [{"contains": "fine"}],
    },
    {
        "id": "c-kv", "prompt": "Store color=blue.",
        "tools": [tool("kv_set", key="string", value="string")],
        "environment": {"module": "tools.py", "state": {"kv": {"color": "red"}}}, "max_turns": 3,
        "checks": [{"state": {"kv": {"color": "blue"}}}, {"max_calls": 1}],
        "tags": ["kv"],
    },
    {
        "id": "c-table", "prompt": "Weather in Paris?", "tools": [tool("weather", city="string")],
        "environment": {"responses": [
            {"call": {"name": "weather", "arguments": {"city": "Paris"}}, "result": "18 C"},
            {"call": {"name": "weather"}, "error": "unknown city"},
        ]},
        "max_turns": 2, "checks": [{"contains": "18"}],
    },
]  # fmt: skip

#: k = 2 trajectories per case: (reply per turn)
SCRIPT: dict[str, list[str]] = {
    "c-add/0": ['CALL add {"a": 2, "b": 3}', "ANSWER: 5"],
    "c-add/1": ['CALL add {"a": 2, "b": 4}', "ANSWER: 6"],
    "c-boom/0": ["CALL boom {}", "CALL boom {}"],
    "c-boom/1": ["CALL boom {", "I give up, all fine"],
    "c-kv/0": ['CALL kv_set {"key": "color", "value": "blue"}', "ANSWER: done"],
    "c-kv/1": ['CALL kv_set {"key": "color", "value": "blue"}', "ANSWER: done"],
    "c-table/0": ['CALL weather {"city": "Paris"}', "It is 18 C."],
    "c-table/1": ['CALL weather {"city": "Rome"}', "No idea."],
}


def write_cases(folder: Path, cases: list[dict[str, Any]] | None = None) -> Path:
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tools.py").write_text(TOOLS_PY)
    path = folder / "cases.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in (cases or CASES)) + "\n")
    return path


class ScriptedBackend(Backend):
    """Replies from SCRIPT by (request id, turn); turn = seed // TURN_STRIDE (the runner's
    seeds); `calls` counts generate calls, `rows` the rows of each; `delay` sleeps per call."""

    def __init__(self, script: dict[str, list[str]] | None = None, delay: float = 0.0) -> None:
        super().__init__(EngineConfig(backend="hf"))
        self.script = script or SCRIPT
        self.calls = 0
        self.rows: list[int] = []
        self.requests: list[Request] = []
        self.delay = delay

    def generate(self, requests: list[Request], sampling: SamplingConfig) -> list[Generation]:
        self.calls += 1
        self.rows.append(len(requests))
        self.requests += requests
        if self.delay:
            time.sleep(self.delay)
        out = []
        for r in requests:
            seed = r.seed or 0
            turn = seed // TURN_STRIDE
            replies = self.script.get(r.id, [])
            text = replies[turn] if turn < len(replies) else "ANSWER: out of script"
            out.append(
                Generation(
                    request_id=r.id, sample_index=0, seed=seed, backend="hf",
                    prompt_token_ids=list(range(len(r.messages or []))),
                    output_token_ids=[seed % 11, turn, len(text)],
                    token_logprobs=[-(seed % 5) / 10, -0.5, -0.25], top_logprobs=[[], [], []],
                    text=text, finish_reason="stop", timings={}, engine={}, sampling={},
                )
            )  # fmt: skip
        return out
