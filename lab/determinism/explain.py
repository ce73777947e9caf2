"""`lab explain`: which single setting moves the first divergent token of a pair of runs.

Two recorded outputs of one case part at token i (lab.determinism.explainsource finds the pair).
The case is replayed at setting A, in the batch it ran in (the run's fillers), and compared with
A's record: if the replay itself differs, the divergence is "not reproduced" (the replay's own
noise is reported). Then ONE axis at a time is toggled from A's value, and each replay is
compared with A's replay (lab.determinism.divergence.compare): the axes where A and B differ,
each to B's value, and the lab's own toggles (batch composition alone vs mixed, the
batch-invariant kernels on/off, the prefix cache warm vs cold). The label names the axis (or
axes) whose single toggle moves the tokens exactly at the recorded index; "none alone
(interaction)" when none does; "no divergence" when the records do not part at all. A toggle
this machine cannot run (TP > 1 without GPUs, an engine that does not start) is "skipped: why".

Each finished toggle is one line of toggles.jsonl (lab.store), so a killed explain resumes;
explain.json holds the result, which the sweep report shows beside its attribution table.

    result = explain(pair, out_dir)       # lab explain RUN_A [RUN_B] [CASE]
    print(format_result(result))
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.backends.base import EngineConfig, Generation
from lab.determinism.divergence import Divergence, compare, top_gap
from lab.determinism.explainpair import Pair
from lab.rundir import EXPLAIN_RESULT, TOGGLES
from lab.store import RunStore

NO_DIVERGENCE = "no divergence"
NOT_REPRODUCED = "not reproduced"
INTERACTION = "none alone (interaction)"
#: the batch the lab's "mixed" toggle puts a lone case into (the case and fillers)
MIXED_BATCH = 4
#: how the axes are named in the output
AXIS_NAMES = {
    "batch_size": "batch composition", "batch_invariant": "batch-invariant kernels",
    "prefix_caching": "prefix cache", "tensor_parallel_size": "TP", "backend": "engine",
}  # fmt: skip

#: (setting, warm) -> the replayed output of the measured request; raises when it cannot run
Replayer = Callable[[dict[str, Any], bool], Generation]


@dataclasses.dataclass
class Toggle:
    """One replay: A's setting with one axis changed."""

    axis: str
    change: str
    setting: dict[str, Any]
    #: prefix cache warm: the batch runs once before the measured run
    warm: bool = False
    skipped: str | None = None

    @property
    def key(self) -> str:
        return json.dumps({"axis": self.axis, "setting": self.setting, "warm": self.warm},
                          sort_keys=True, default=str)  # fmt: skip


def _show(axis: str, value: Any) -> str:
    if axis == "batch_size":
        return "alone" if value == 1 else f"batch {value}"
    return str(value)


def toggles(pair: Pair, cuda: bool) -> list[Toggle]:
    """The single-axis toggles from A: every axis where B differs (to B's value), then the
    lab's toggles not already among them."""
    a, b = pair.setting_a, pair.setting_b
    out = []
    for axis in a:
        if axis == "repeat" or a[axis] == b.get(axis, a[axis]):
            continue
        out.append(Toggle(axis, f"{_show(axis, a[axis])} -> {_show(axis, b[axis])}",
                          a | {axis: b[axis]}))  # fmt: skip
    moved = {t.axis for t in out}
    if "batch_size" not in moved:
        size = MIXED_BATCH if a["batch_size"] == 1 else 1
        out.append(Toggle("batch_size", f"{_show('batch_size', a['batch_size'])} -> "
                          f"{_show('batch_size', size)}", a | {"batch_size": size}))  # fmt: skip
    if "batch_invariant" not in moved:
        on = not a.get("batch_invariant")
        out.append(Toggle("batch_invariant", f"{not on} -> {on}", a | {"batch_invariant": on}))
    if "prefix_caching" not in moved:
        if a.get("prefix_caching"):
            out.append(Toggle("prefix_caching", "warm -> off", a | {"prefix_caching": False}))
        else:
            out.append(Toggle("prefix_caching", "off -> on, warm",
                              a | {"prefix_caching": True}, warm=True))  # fmt: skip
    for t in out:
        t.skipped = impossible(t.setting, cuda)
    return out


def impossible(setting: dict[str, Any], cuda: bool) -> str | None:
    """Why this machine cannot run a setting (None: it can)."""
    if (setting.get("tensor_parallel_size") or 1) > 1 and not cuda:
        return f"TP={setting['tensor_parallel_size']} needs as many GPUs; this machine has none"
    if setting.get("prefix_caching") and setting.get("backend") == "hf":
        return "the hf backend has no prefix cache (vLLM's)"
    return None


def engine_config(pair: Pair, setting: dict[str, Any]) -> EngineConfig:
    fixed = dict(pair.engine_fixed)
    if setting.get("backend") == "hf":  # vLLM's engine_args: an hf replay runs without them
        fixed.pop("engine_args", None)
    return EngineConfig.from_values(setting, **fixed)


def token_text(generation: Generation, index: int | None) -> str | None:
    """The text of the token chosen at `index`, from the recorded alternatives (None when it
    is not among them)."""
    if index is None or index >= len(generation.output_token_ids):
        return None
    chosen = generation.output_token_ids[index]
    alts = generation.top_logprobs[index] if index < len(generation.top_logprobs) else []
    return next((a.token for a in alts if a.token_id == chosen), None)


def summary(d: Divergence, baseline: Generation, other: Generation) -> dict[str, Any]:
    """What one comparison says: whether the tokens moved, where, and the gap there."""
    first = d.first_divergence
    return {
        "moved": not d.tokens_equal,
        "first_divergence": first,
        "gap": top_gap(baseline, first) if first is not None else None,
        "tokens": [d.reference_token, d.other_token],
        "token_texts": [token_text(baseline, first), token_text(other, first)],
        "max_abs_logprob_delta": d.max_abs_logprob_delta,
    }


def label(recorded: dict[str, Any], noise: dict[str, Any] | None,
          results: list[dict[str, Any]]) -> str:  # fmt: skip
    """The axis (or axes, comma-separated) whose single toggle moves the tokens at the
    recorded first divergence; the fixed labels of the module docstring otherwise."""
    if not recorded["moved"]:
        return NO_DIVERGENCE
    if noise is None or noise["moved"]:
        return NOT_REPRODUCED
    at = recorded["first_divergence"]
    hits = [AXIS_NAMES.get(r["axis"], r["axis"]) for r in results
            if r.get("skipped") is None and r["moved"] and r["first_divergence"] == at]  # fmt: skip
    return ", ".join(dict.fromkeys(hits)) if hits else INTERACTION


def explain(
    pair: Pair, out_dir: str | Path, replay: Replayer | None = None, fresh: bool = False
) -> dict[str, Any]:
    """Replay the pair (module docstring) into out_dir; returns (and writes) the result."""
    from lab.envinfo import environment_record

    recorded = summary(compare(pair.record_a, pair.record_b), pair.record_a, pair.record_b)
    recorded |= {"gaps": [recorded["gap"], top_gap(pair.record_b, recorded["first_divergence"] or 0)
                          if recorded["moved"] else None]}  # fmt: skip
    identity = {"runs": list(pair.runs), "names": list(pair.names), "case": pair.case,
                "setting_a": pair.setting_a, "setting_b": pair.setting_b,
                "records": pair.digest()}  # fmt: skip
    store = RunStore.open(out_dir, identity, fresh=fresh, environment=environment_record(),
                          kind="explain")  # fmt: skip
    result: dict[str, Any] = {
        "kind": pair.kind, "case": pair.case, "runs": list(pair.runs), "names": list(pair.names),
        "setting_a": pair.setting_a, "setting_b": pair.setting_b,
        "sampling": dataclasses.asdict(pair.sampling), "recorded": recorded,
        "texts": [pair.record_a.text, pair.record_b.text], "notes": list(pair.notes),
        "noise": None, "toggles": [], "records": pair.digest(),
        "cells": list(pair.cells) if pair.cells else None,
    }  # fmt: skip
    if recorded["moved"]:
        from lab.console import engine_output
        from lab.rundir import ENGINE_LOG

        with engine_output(store.path / ENGINE_LOG):  # the engines' chatter: engine.log
            _replay_all(pair, store, replay or default_replayer(pair), result)
    result["label"] = label(recorded, result["noise"], result["toggles"])
    store.write_json(EXPLAIN_RESULT, result)
    return result


def _replay_all(pair: Pair, store: RunStore, run: Replayer, result: dict[str, Any]) -> None:
    """A's replay, then every toggle, each appended to toggles.jsonl when done (resume)."""
    from lab.devices import cuda_available

    done = {e["key"]: e for e in store.entries(TOGGLES)}
    base_key = json.dumps({"axis": "A", "setting": pair.setting_a}, sort_keys=True, default=str)
    if base_key not in done:
        baseline = run(pair.setting_a, False)
        store.append(TOGGLES, base_key, {"axis": "A", "output": baseline.to_dict()})
        done[base_key] = {"output": baseline.to_dict()}
    baseline = Generation.from_dict(done[base_key]["output"])
    result["noise"] = summary(compare(pair.record_a, baseline), pair.record_a, baseline)
    chosen = toggles(pair, cuda_available())
    engine_a = engine_config(pair, pair.setting_a).key()
    # toggles on A's own engine first: a backend holds one running engine, and each other
    # engine configuration is a model load
    for t in sorted(chosen, key=lambda t: t.skipped is None and _engine_key(pair, t) != engine_a):
        if t.key not in done:
            done[t.key] = _run_toggle(t, run, baseline, pair)
            store.append(TOGGLES, t.key, done[t.key])
    result["toggles"] = [{k: v for k, v in done[t.key].items() if k != "key"} for t in chosen]


def _engine_key(pair: Pair, toggle: Toggle) -> tuple[Any, ...] | None:
    try:
        return engine_config(pair, toggle.setting).key()
    except Exception:  # noqa: BLE001 - a setting the engine refuses: replayed (and skipped) last
        return None


def _run_toggle(t: Toggle, run: Replayer, baseline: Generation, pair: Pair) -> dict[str, Any]:
    row: dict[str, Any] = {"axis": t.axis, "change": t.change, "skipped": t.skipped}
    if t.skipped is None:
        try:
            output = run(t.setting, t.warm)
        except Exception as exc:  # noqa: BLE001 - an engine this machine cannot start
            row["skipped"] = f"the engine did not run ({type(exc).__name__}: {exc})"[:300]
            return row
        row |= summary(compare(baseline, output), baseline, output)
        row["text"] = output.text
        if pair.action is not None:  # an agent step: whether the tool call moves too
            row["action"] = pair.action(output)
            row["action_moved"] = row["action"] != pair.action(baseline)
    return row


def default_replayer(pair: Pair) -> Replayer:
    """Replays on the real engines (lab.backends.load_backend reuses a running one)."""
    from lab.backends import load_backend

    def run(setting: dict[str, Any], warm: bool) -> Generation:
        requests, target = pair.batch(setting)
        backend = load_backend(engine_config(pair, setting))
        sampling = dataclasses.replace(pair.sampling, seed=setting.get("seed"), n=1)
        if warm:
            backend.generate(requests, sampling)  # fills the prefix cache
        outputs = backend.generate(requests, sampling)
        return next(g for g in outputs if g.request_id == target)

    return run


def format_result(result: dict[str, Any]) -> str:
    """The terminal (and README) form: the pair, the replay's noise, one line per toggle."""
    r = result["recorded"]
    lines = [f"{result['case']}: {result['names'][0]} vs {result['names'][1]}"]
    if not r["moved"]:
        return "\n".join(lines + [f"label: {NO_DIVERGENCE} (the recorded tokens are equal)"])
    gaps = ", ".join("n/a" if g is None else f"{g:.4f}" for g in r["gaps"])
    lines.append(f"recorded: first divergent token {r['first_divergence']} "
                 f"({_token(r, 0)} vs {_token(r, 1)}), top-1 - top-2 gap {gaps}")  # fmt: skip
    lines += [f"note: {n}" for n in result["notes"]]
    n = result["noise"]
    if n is not None:
        state = (f"differs from the record at token {n['first_divergence']}" if n["moved"]
                 else "token-identical to the record")  # fmt: skip
        lines.append(f"replay of A: {state}, max |dlogprob| {n['max_abs_logprob_delta']:.3g}")
    for t in result["toggles"]:
        name = f"  {AXIS_NAMES.get(t['axis'], t['axis'])} ({t['change']})"
        if t.get("skipped"):
            lines.append(f"{name}: skipped: {t['skipped']}")
        elif t["moved"]:
            gap = "n/a" if t["gap"] is None else f"{t['gap']:.4f}"
            tool = "; the tool call moves" if t.get("action_moved") else ""
            lines.append(f"{name}: moves token {t['first_divergence']} to {_token(t, 1)} "
                         f"(gap {gap}){tool}")  # fmt: skip
        else:
            lines.append(f"{name}: no token moves (max |dlogprob| "
                         f"{t['max_abs_logprob_delta']:.3g})")  # fmt: skip
    lines.append(f"label: {result['label']}")
    return "\n".join(lines)


def _token(row: dict[str, Any], side: int) -> str:
    """`1135 ' Feyn'`: a token id with its text where recorded (repr: spaces and newlines show)."""
    text = (row.get("token_texts") or [None, None])[side]
    return f"{row['tokens'][side]}" + ("" if text is None else f" {text!r}")


def read_results(run_dir: str | Path) -> list[dict[str, Any]]:
    """The explain results recorded inside a run directory (explain-*/explain.json)."""
    out = []
    for path in sorted(Path(run_dir).glob(f"explain-*/{EXPLAIN_RESULT}")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue  # a damaged record is no finding; explain writes it again
    return out
