"""lab.agents.divergence against hand-made trajectories: where two runs' tokens part, the
margins there, whether the action moved, and the logprob drift before the split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.agents.divergence import compare_agent_runs, format_divergence, margin, split


def step(tokens: list[int], lps: list[float], tops: list[list[list[Any]]], **kw: Any) -> dict:
    base = {
        "output_token_ids": tokens,
        "token_logprobs": lps,
        "top_logprobs": tops,
        "text": "".join(map(str, tokens)),
        "kind": "answer",
        "calls": [],
        "answer": None,
    }
    return base | kw


def traj(key: str, *steps: dict) -> dict:
    return {"key": key, "steps": list(steps)}


T = [[1, -0.1, "a"], [2, -2.4, "b"]]  # margin 2.3


def test_margin() -> None:
    assert margin(T) == -0.1 - -2.4
    assert margin(T[:1]) is None


def test_identical_trajectories_report_the_logprob_drift() -> None:
    a = traj("c/0", step([1, 2], [-0.1, -0.5], [T, T]))
    b = traj("c/0", step([1, 2], [-0.1, -0.25], [T, T]))
    assert split(a, b) == {"same": True, "max_logprob_delta": 0.25}


def test_a_split_in_the_second_step_with_a_different_call() -> None:
    near = [[5, -0.70, "x"], [6, -0.71, "y"]]
    first = step([1], [-0.1], [T])
    a = traj(
        "c/0",
        first,
        step(
            [3, 5],
            [-0.2, -0.70],
            [T, near],
            kind="call",
            calls=[{"name": "f", "arguments": {"x": 5}}],
        ),
    )
    b = traj(
        "c/0",
        first,
        step(
            [3, 6],
            [-0.3, -0.69],
            [T, [[6, -0.69, "y"], [5, -0.72, "x"]]],
            kind="call",
            calls=[{"name": "f", "arguments": {"x": 6}}],
        ),
    )
    got = split(a, b)
    assert got["step"] == 2 and got["token"] == 1 and got["chosen"] == [5, 6]
    assert abs(got["margins"][0] - 0.01) < 1e-9 and abs(got["margins"][1] - 0.03) < 1e-9
    assert got["action_differs"] is True
    assert got["token_texts"] == ["x", "y"] and got["logprobs"] == [-0.70, -0.69]
    assert abs(got["max_logprob_delta_before"] - 0.1) < 1e-9  # step 2 token 0: -0.2 vs -0.3


def test_one_run_stops_where_the_other_goes_on() -> None:
    a = traj("c/0", step([1, 2], [-0.1, -0.1], [T, T]))
    b = traj("c/0", step([1], [-0.1], [T]))
    got = split(a, b)
    assert got["step"] == 1 and got["token"] == 1 and got["chosen"] == [None, None]
    longer = traj("c/0", step([1], [-0.1], [T]), step([2], [-0.1], [T]))
    assert split(longer, b)["step"] == 2 and split(longer, b)["action_differs"] is True


def test_compare_two_run_directories(tmp_path: Path) -> None:
    runs = []
    for name, second in (("a", 2), ("b", 3)):
        root = tmp_path / name
        root.mkdir()
        rows = [
            traj("c/0", step([1], [-0.1], [T])),
            traj("d/0", step([1, second], [-0.1, -0.2], [T, [[2, -0.2, "b"], [3, -0.3, "c"]]])),
        ]
        (root / "trajectories.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        runs.append(root)
    got = compare_agent_runs(*runs)
    assert got["trajectories"] == 2 and got["identical"] == 1 and list(got["parted"]) == ["d/0"]
    assert got["actions_differ"] == 0  # same kind, no calls, same (absent) answer
    assert got["smallest_margin"][0]["key"] == "d/0" and got["smallest_margin"][0]["token"] == 1
    text = format_divergence(got)
    assert "1 token-identical, 1 parted" in text and "d/0: step 1 token 1" in text
