"""Compare two determinism sweeps (`lab sweep` run directories): which cells' agreement changed.

Per sweep, from its cells.jsonl (lab.determinism.metrics helpers):
- per target prompt: unique completions over every ok cell, whether all raw outputs agree
  (TARr) and whether all parsed answers agree (TARa; a parse failure is disagreement), with
  the prompt's / sweep's answer_regex from sweep_config.json;
- per cell and target: unique completions inside the cell (identical mode has copies) and the
  first token where the cell's output leaves the sweep's reference cell (first value of every
  axis, repeat 0; else the first ok cell).

Between the sweeps, over the cells both hold (matched by their axes and repeat): the cells
whose agreement changed (unique completions, divergence from the reference, first divergence)
and, for the same cell, whether A's and B's outputs are the same tokens (first divergence
between the sweeps). Cells only one sweep holds are listed.

    from lab.comparison.sweeps import compare_sweeps
    result = compare_sweeps(Path("runs/before"), Path("runs/after"))
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from lab.determinism.agentsource import refuse_agent_sweep
from lab.determinism.cells import base_id, outputs_of
from lab.determinism.config import AXES, DEFAULT_AXES
from lab.determinism.divergence import compare
from lab.determinism.metrics import parse_answer, tar
from lab.errors import LabError
from lab.rundir import CELLS, log_file, read_cells, read_sweep_config


def axis_values(cell: dict[str, Any]) -> dict[str, Any]:
    """Every axis of a cell; one recorded before an axis existed gets that axis's default."""
    return {name: cell.get(name, (DEFAULT_AXES.get(name) or [None])[0]) for name in AXES}


def cell_key(entry: dict[str, Any]) -> str:
    return json.dumps(
        {"axes": axis_values(entry["cell"]), "repeat": entry.get("repeat", 0)},
        sort_keys=True,
        default=str,
    )


class Sweep:
    """The ok cells of one sweep directory, keyed by cell (axes + repeat)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = root.name
        refuse_agent_sweep(root, "lab compare", "single-turn sweeps and n-of-k runs")
        self.config = read_sweep_config(root)
        entries = read_cells(root)
        self.failed = [e for e in entries if e.get("status") != "ok"]
        self.cells = {cell_key(e): e for e in entries if e.get("status") == "ok"}
        if not self.cells:
            raise LabError(f"{root}/{log_file(CELLS)}: no finished cells to compare")
        self.targets = sorted({base_id(o) for e in self.cells.values() for o in e["outputs"]})
        default_regex = self.config.get("answer_regex")
        self.regex = {
            p["id"]: p.get("answer_regex") or default_regex
            for p in self.config.get("prompts", [])
            if isinstance(p, dict) and "id" in p
        }
        axes = self.config.get("axes", {})
        reference = {name: values[0] for name, values in axes.items() if values}
        ref_key = cell_key({"cell": reference, "repeat": 0})
        self.reference_key = ref_key if ref_key in self.cells else next(iter(self.cells))

    def answer(self, target: str, text: str) -> str | None:
        return parse_answer(text, self.regex.get(target, self.config.get("answer_regex")))

    def target_summary(self) -> dict[str, dict[str, Any]]:
        out = {}
        for t in self.targets:
            gens = [g for e in self.cells.values() for g in outputs_of(e, t)]
            seqs = [tuple(g.output_token_ids) for g in gens]
            answers = [self.answer(t, g.text) for g in gens]
            out[t] = {
                "outputs": len(seqs),
                "unique_completions": len(set(seqs)),
                "raw_agree": tar([seqs]) == 1.0,
                "answers_agree": tar([answers]) == 1.0,
                "_seqs": seqs,
                "_answers": answers,
            }
        return out

    def cell_state(self, key: str, target: str) -> dict[str, Any] | None:
        gens = outputs_of(self.cells[key], target)
        if not gens:
            return None
        refs = outputs_of(self.cells[self.reference_key], target)
        first = None
        differs = 0
        if refs:
            for g in gens:
                d = compare(refs[0], g)
                if not d.tokens_equal:
                    differs += 1
                    if d.first_divergence is not None:
                        first = (
                            d.first_divergence if first is None else min(first, d.first_divergence)
                        )
        return {
            "unique": len(Counter(tuple(g.output_token_ids) for g in gens)),
            "differs_from_reference": differs,
            "first_divergence": first,
            "outputs": len(gens),
        }


def _label(entry: dict[str, Any], varying: list[str]) -> str:
    values = axis_values(entry["cell"])
    parts = [f"{k}={values[k]}" for k in varying]
    if entry.get("repeat"):
        parts.append(f"repeat={entry['repeat']}")
    return ", ".join(parts) or "reference"


def compare_sweeps(path_a: Path, path_b: Path) -> dict[str, Any]:
    a, b = Sweep(Path(path_a)), Sweep(Path(path_b))
    common_targets = [t for t in a.targets if t in b.targets]
    if not common_targets:
        raise LabError(f"{a.root} and {b.root} share no target prompt; nothing to compare")
    entries = list(a.cells.values()) + list(b.cells.values())
    varying = [
        name
        for name in AXES
        if len({json.dumps(axis_values(e["cell"])[name], default=str) for e in entries}) > 1
    ]
    summary_a, summary_b = a.target_summary(), b.target_summary()

    def tar_of(summary: dict[str, dict[str, Any]], key: str) -> float | None:
        return tar([summary[t][key] for t in common_targets])

    targets = []
    for t in common_targets:
        sa, sb = summary_a[t], summary_b[t]
        row = {
            "target": t,
            "a_unique": sa["unique_completions"],
            "b_unique": sb["unique_completions"],
            "a_raw_agree": sa["raw_agree"],
            "b_raw_agree": sb["raw_agree"],
            "a_answers_agree": sa["answers_agree"],
            "b_answers_agree": sb["answers_agree"],
        }
        row["changed"] = (
            row["a_unique"] != row["b_unique"]
            or row["a_raw_agree"] != row["b_raw_agree"]
            or row["a_answers_agree"] != row["b_answers_agree"]
        )
        targets.append(row)

    shared = [k for k in a.cells if k in b.cells]
    cells = []
    for key in shared:
        for t in common_targets:
            state_a, state_b = a.cell_state(key, t), b.cell_state(key, t)
            if state_a is None or state_b is None:
                continue
            ga, gb = outputs_of(a.cells[key], t)[0], outputs_of(b.cells[key], t)[0]
            across = compare(ga, gb)
            changed = (
                state_a["unique"] != state_b["unique"]
                or state_a["differs_from_reference"] != state_b["differs_from_reference"]
                or state_a["first_divergence"] != state_b["first_divergence"]
            )
            if not changed and across.tokens_equal:
                continue
            cells.append(
                {
                    "cell": _label(a.cells[key], varying),
                    "target": t,
                    "a": state_a,
                    "b": state_b,
                    "agreement_changed": changed,
                    "same_tokens_across_sweeps": across.tokens_equal,
                    "first_divergence_across_sweeps": across.first_divergence,
                }
            )
    only_a = [_label(a.cells[k], varying) for k in a.cells if k not in b.cells]
    only_b = [_label(b.cells[k], varying) for k in b.cells if k not in a.cells]
    summary = {
        "targets_compared": len(common_targets),
        "cells_shared": len(shared),
        "a_TARr": tar_of(summary_a, "_seqs"),
        "b_TARr": tar_of(summary_b, "_seqs"),
        "a_TARa": tar_of(summary_a, "_answers"),
        "b_TARa": tar_of(summary_b, "_answers"),
        "targets_changed": sum(r["changed"] for r in targets),
        "cells_agreement_changed": len({c["cell"] for c in cells if c["agreement_changed"]}),
        "cell_targets_different_tokens": sum(not c["same_tokens_across_sweeps"] for c in cells),
    }
    return {
        "kind": "sweep",
        "runs": [{"name": a.name, "path": str(a.root)}, {"name": b.name, "path": str(b.root)}],
        "baseline": a.name,
        "summary": summary,
        "verdict": sweep_verdict(summary, a.name, b.name),
        "targets": targets,
        "cells": cells,
        "cells_only_in_a": only_a,
        "cells_only_in_b": only_b,
        "failed_cells": {a.name: len(a.failed), b.name: len(b.failed)},
    }


def sweep_verdict(summary: dict[str, Any], name_a: str, name_b: str) -> str:
    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    agreement = (
        f"TARr@N {fmt(summary['a_TARr'])} -> {fmt(summary['b_TARr'])}, "
        f"TARa@N {fmt(summary['a_TARa'])} -> {fmt(summary['b_TARa'])}"
    )
    if not summary["targets_changed"] and not summary["cells_agreement_changed"]:
        head = f"{name_b} agrees with itself exactly as {name_a} does"
    else:
        head = (
            f"agreement changed in {summary['cells_agreement_changed']} cell(s) and "
            f"{summary['targets_changed']} target(s)"
        )
    return (
        f"{head} ({agreement}; {summary['cell_targets_different_tokens']} cell/target "
        f"output(s) differ in tokens between the sweeps)"
    )
