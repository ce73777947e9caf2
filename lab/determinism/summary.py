"""A sweep's answer in a few lines (what `lab sweep` and the quickstart print), the note that
explains a TARa@N below TARr@N, and the definitions section of the sweep report.

    lines = summary_lines(json.loads((run / METRICS).read_text()))    # lab.rundir.METRICS
    note = tara_note(metrics["summary"])     # None when nothing needs explaining
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lab.determinism.hardware import hardware_lines

#: what every number of a sweep report means (the report's Definitions section)
DEFINITIONS = {
    "cell": "one engine configuration of the grid (dtype, batch size, TP, ...); the reference "
    "cell is the grid's first, and every other is compared with it",
    "N": "outputs per prompt the agreement is over: ok cells x copies of the prompt per cell",
    "TARr@N": "total agreement rate on raw outputs: the share of prompts whose N output token "
    "sequences are all identical (Atil et al., arXiv 2408.04667)",
    "TARa@N": "the same on parsed answers (answer_regex's first group, else the normalized "
    "text). An output the regex cannot parse counts as disagreement, so TARa@N can be below "
    "TARr@N although every token agrees",
    "unique completions": "distinct output token sequences of a prompt over every ok cell and "
    "repeat (1: the prompt is deterministic across the sweep)",
    "attribution": "for each swept axis, over the cells that differ from the reference only in "
    "that axis, the share of prompts whose tokens change (and whose logprobs change at all); "
    "'repeat' is the reference cell run again unchanged",
    "first divergence": "the first output token where a cell's sequence differs from the "
    "reference's; the reference's top-1/top-2 logprob gap there says how close it was to a tie",
    "max |delta logprob|": "the largest difference of a chosen token's logprob between a cell "
    "and the reference over their common prefix",
    "Avg_Std@Output_Length": "mean over prompts of the standard deviation of output length "
    "across cells",
    "hardware": "each cell records where it ran (node, device model, CPU threads); logprobs "
    "are bitwise comparable only between cells run on the same device model with the same "
    "thread count, so the report warns when compared cells ran on unlike hardware (beyond what "
    "the num_threads and node_kind axes choose)",
    "Std@Acc": "standard deviation (ddof=1) across cells of per-cell accuracy (prompts with an "
    "expected answer); best / worst possible accuracy: correct in at least one / every cell",
}


def num(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}"
    return "n/a" if value is None else str(value)


def tara_note(summary: dict[str, Any]) -> str | None:
    """Why TARa@N is what it is, when unparsable answers pulled it down."""
    unparsed = summary.get("targets_with_unparsed_answers") or 0
    if not unparsed:
        return None
    return (
        f"TARa@N counts an answer the answer_regex cannot parse as disagreement: "
        f"{unparsed} of {summary['targets']} prompts have one, so TARa@N "
        f"{num(summary['TARa@N'])} can be below TARr@N {num(summary['TARr@N'])} "
        "although the tokens agree"
    )


def summary_lines(metrics: dict[str, Any], value: Callable[[Any], str] = str) -> list[str]:
    """The sweep's answer in a few lines: agreement, which axis changed the output, first
    divergences. `value` formats the run's own values (prompt ids, cells): HTML callers pass
    an escaping one."""
    s = metrics["summary"]
    lines = [
        f"cells {s['cells_ok']}/{s['cells_total']} ok; {s['targets']} prompts; "
        f"max unique completions per prompt {s['max_unique_completions']}; "
        f"TARr@N {num(s['TARr@N'])}, TARa@N {num(s['TARa@N'])} (N={s.get('N', '?')}); "
        f"max |delta logprob| {num(s['max_abs_logprob_delta'])}",
    ]
    note = tara_note(s)
    if note is not None:
        lines.append(f"note: {note}")
    lines += hardware_lines(metrics.get("hardware"), value)
    for row in metrics.get("attribution", []):
        lines.append(
            f"axis {value(row['axis'])}: tokens change in {num(row['tokens_change_share'])} of "
            f"prompts, logprobs in {num(row['logprobs_change_share'])}"
        )
    if not metrics.get("attribution"):
        lines.append("no axis to blame: nothing varies, or the reference cell is missing")
    for d in metrics.get("divergences", [])[:3]:
        lines.append(
            f"first divergence: {value(d['target'])} in [{value(d['cell'])}] at token "
            f"{d['first_divergence']} "
            f"(reference top-1/top-2 gap {num(d['reference_top_gap'])})"
        )
    if "accuracy_mean" in s:
        lines.append(
            f"accuracy: mean {num(s['accuracy_mean'])}, Std@Acc {num(s['std_at_acc'])}, "
            f"best / worst possible {num(s['best_possible_accuracy'])} / "
            f"{num(s['worst_possible_accuracy'])}"
        )
    return lines
