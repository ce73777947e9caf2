"""Where a sweep's cells ran (each cell's `placement`: node, host, device, device name, CPU
threads) and whether cells that are compared ran on different hardware: logprobs are bitwise
comparable only between cells computed by the same device model with the same thread count,
so a sweep spread over unlike nodes (a Ray cluster) says so in its report.

Hardware = (device, device name, CPU threads). Differences the grid asks for are no warning:
cells are grouped by their `num_threads` and `node_kind` axes, and only unlike hardware inside
one group is (a Ray cluster that placed two copies of the same configuration on unlike nodes,
a resumed run on another machine).

    record = hardware_summary(entries)     # {"places": [...], "mixed": [...], "warning": ...}
    lines = hardware_lines(record)         # for the text summary
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

#: the axes whose values choose the hardware on purpose
CHOSEN_BY = ("num_threads", "node_kind")


def _hardware(where: dict[str, Any]) -> tuple[str, str, int | None]:
    return (str(where.get("device")), str(where.get("device_name")), where.get("threads"))


def describe(hardware: tuple[str, str, int | None]) -> str:
    device, name, threads = hardware
    return f"{name} ({device}{f', {threads} threads' if threads is not None else ''})"


def hardware_summary(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Places the ok cells ran on (with their cell counts) and, when cells that only the swept
    axes should separate ran on unlike hardware, the warning that says so."""
    places: dict[tuple[Any, ...], int] = defaultdict(int)
    groups: dict[tuple[Any, ...], set[tuple[str, str, int | None]]] = defaultdict(set)
    for entry in entries:
        where = entry.get("placement")
        if entry.get("status") != "ok" or not isinstance(where, dict):
            continue
        node = where.get("node") or where.get("host")
        places[(node, where.get("host"), *_hardware(where))] += 1
        chosen = tuple(entry.get("cell", {}).get(axis) for axis in CHOSEN_BY)
        groups[chosen].add(_hardware(where))
    rows = [
        {"node": node, "host": host, "device": device, "device_name": name,
         "threads": threads, "cells": count}
        for (node, host, device, name, threads), count in sorted(places.items(), key=str)
    ]  # fmt: skip
    mixed = sorted({describe(h) for kinds in groups.values() if len(kinds) > 1 for h in kinds})
    return {"places": rows, "mixed": mixed, "warning": warning_text(mixed) if mixed else None}


def warning_text(mixed: list[str]) -> str:
    return (
        f"cells ran on different hardware ({'; '.join(mixed)}): their differences mix the "
        "swept axes with the hardware's (device model, thread count), which are not bitwise "
        "comparable"
    )


def hardware_lines(record: dict[str, Any] | None, value: Callable[[Any], str] = str) -> list[str]:
    """`ran on ...` (one line) and the warning when there is one. `value` formats the run's own
    strings (device names): HTML callers pass an escaping one."""
    if not record or not record.get("places"):
        return []
    kinds = sorted({describe(_hardware(p)) for p in record["places"]})
    nodes = len({p["node"] for p in record["places"]})
    lines = [f"ran on {nodes} node(s): {'; '.join(map(value, kinds))}"]
    if record.get("mixed"):
        lines.append(f"warning: {warning_text([value(m) for m in record['mixed']])}")
    return lines


def hardware_table(record: dict[str, Any] | None) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows of the report's "Where the cells ran" table."""
    headers = ["node", "host", "device", "device name", "threads", "cells"]
    rows = [
        [p["node"], p["host"], p["device"], p["device_name"], p["threads"], p["cells"]]
        for p in (record or {}).get("places", [])
    ]
    return headers, rows
