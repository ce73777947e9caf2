"""Where two agent runs' trajectories part at the token level: the T=0 question of issue 16.

Two runs of the same agent cases under one serving change (batch size, dtype, engine), greedy:
for each trajectory both ran, the first step whose output tokens differ, the first token there,
the two tokens chosen, and the margin each run had at that token (top-1 minus top-2 logprob,
from the recorded top alternatives: run with `logprobs: 2` or more), whether the step's action
(the tool, its arguments, the answer) differs, and the largest |logprob delta| seen on the
shared tokens before the split (how far the numbers moved without moving a token). The
smallest margin on a run's greedy paths says how close the run came to a flip.

    summary = compare_agent_runs("runs/t0-batch64", "runs/t0-batch1")
    print(format_divergence(summary))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab import rundir
from lab.determinism.divergence import top_gap_of


def margin(top: list[list[Any]]) -> float | None:
    """Top-1 minus top-2 logprob at one token ([[id, logprob, text], ...]); None when fewer
    than two alternatives were recorded (lab.determinism.divergence.top_gap_of)."""
    return top_gap_of([alt[1] for alt in top])


def _tops(step: dict[str, Any], i: int) -> list[list[Any]]:
    tops = step.get("top_logprobs") or []
    return tops[i] if i < len(tops) else []


def token_text(step: dict[str, Any], i: int) -> str | None:
    """The text of the token chosen at position i, from the recorded alternatives (None when
    it is not among them)."""
    chosen = step["output_token_ids"][i]
    return next((str(t[2]) for t in _tops(step, i) if t[0] == chosen and len(t) > 2), None)


def split(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two runs of one trajectory (trajectories.jsonl entries): where their tokens part."""
    max_delta = 0.0
    for turn, (sa, sb) in enumerate(zip(a["steps"], b["steps"], strict=False)):
        ta, tb = sa["output_token_ids"], sb["output_token_ids"]
        for i, (x, y) in enumerate(zip(ta, tb, strict=False)):
            if x != y:
                return {
                    "same": False, "step": turn + 1, "token": i,
                    "tokens": [sa["text"], sb["text"]],
                    "chosen": [x, y],
                    "token_texts": [token_text(sa, i), token_text(sb, i)],
                    "logprobs": [sa["token_logprobs"][i], sb["token_logprobs"][i]],
                    "margins": [margin(_tops(sa, i)), margin(_tops(sb, i))],
                    "action_differs": _action(sa) != _action(sb),
                    "max_logprob_delta_before": max_delta,
                }  # fmt: skip
            max_delta = max(max_delta, abs(sa["token_logprobs"][i] - sb["token_logprobs"][i]))
        if len(ta) != len(tb):  # one stopped where the other went on: they part at the end
            i = min(len(ta), len(tb))
            return {
                "same": False, "step": turn + 1, "token": i, "tokens": [sa["text"], sb["text"]],
                "chosen": [None, None], "margins": [None, None],
                "action_differs": _action(sa) != _action(sb),
                "max_logprob_delta_before": max_delta,
            }  # fmt: skip
    if len(a["steps"]) != len(b["steps"]):
        n = min(len(a["steps"]), len(b["steps"]))
        return {
            "same": False, "step": n + 1, "token": 0, "tokens": ["", ""],
            "chosen": [None, None], "margins": [None, None], "action_differs": True,
            "max_logprob_delta_before": max_delta,
        }  # fmt: skip
    return {"same": True, "max_logprob_delta": max_delta}


def _action(step: dict[str, Any]) -> tuple[Any, ...]:
    calls = tuple((c["name"], repr(c["arguments"])) for c in step.get("calls", []))
    return (step["kind"], calls, step.get("answer"))


def smallest_margin(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The closest call on a run's paths: the token with the smallest top-1/top-2 gap."""
    best: dict[str, Any] | None = None
    for entry in entries:
        for turn, step in enumerate(entry["steps"]):
            for i, top in enumerate(step.get("top_logprobs") or []):
                m = margin(top)
                if m is not None and (best is None or m < best["margin"]):
                    best = {"key": entry["key"], "step": turn + 1, "token": i, "margin": m}
    return best


def compare_agent_runs(run_a: str | Path, run_b: str | Path) -> dict[str, Any]:
    """Every trajectory both runs finished, compared (module docstring)."""
    a = {e["key"]: e for e in rundir.read_trajectories(run_a)}
    b = {e["key"]: e for e in rundir.read_trajectories(run_b)}
    keys = sorted(set(a) & set(b))
    rows = {key: split(a[key], b[key]) for key in keys}
    parted = {k: r for k, r in rows.items() if not r["same"]}
    same = [r for r in rows.values() if r["same"]]
    return {
        "runs": [str(run_a), str(run_b)],
        "trajectories": len(keys),
        "identical": len(same),
        "parted": parted,
        "actions_differ": sum(1 for r in parted.values() if r["action_differs"]),
        "max_logprob_delta_identical": max((r["max_logprob_delta"] for r in same), default=0.0),
        "smallest_margin": [smallest_margin(list(a.values())), smallest_margin(list(b.values()))],
    }


def format_divergence(s: dict[str, Any]) -> str:
    lines = [
        f"{s['runs'][0]} vs {s['runs'][1]}: {s['trajectories']} trajectories, "
        f"{s['identical']} token-identical, {len(s['parted'])} parted "
        f"({s['actions_differ']} with a different action at the step they part)",
        f"max |logprob delta| on identical trajectories: {s['max_logprob_delta_identical']:.3g}",
    ]
    for name, m in zip(s["runs"], s["smallest_margin"], strict=True):
        if m is not None:
            lines.append(
                f"closest call in {name}: {m['key']} step {m['step']} token {m['token']}, "
                f"top-1 - top-2 = {m['margin']:.4f}"
            )
    for key, r in sorted(s["parted"].items()):
        margins = ", ".join("n/a" if m is None else f"{m:.4f}" for m in r["margins"])
        lines.append(
            f"  {key}: step {r['step']} token {r['token']} (margins {margins}; "
            f"|delta| before {r['max_logprob_delta_before']:.3g}); "
            f"{'action differs' if r['action_differs'] else 'same action'}: "
            f"{r['tokens'][0][:60]!r} vs {r['tokens'][1][:60]!r}"
        )
    return "\n".join(lines)
