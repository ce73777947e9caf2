"""A sweep report names where its cells ran (node, device, threads) and warns when cells it
compares ran on unlike hardware, but not for the hardware the num_threads axis chooses
(hand-made cells, no model)."""

from __future__ import annotations

from typing import Any

from lab.determinism.config import parse_sweep_config
from lab.determinism.metrics import compute_metrics
from lab.determinism.report import choose_axes, render_html, render_markdown, unique_grid
from lab.determinism.summary import summary_lines
from lab.safetext import inline
from tests.unit.test_base import make_generation

XEON = "Intel(R) Xeon(R) <Platinum>"  # a device name the HTML must escape


def entry(config: Any, placement: dict[str, Any], repeat: int = 0, **axes: Any) -> dict[str, Any]:
    record = make_generation([1, 2], [-0.1, -0.2]).to_dict()
    record.pop("engine"), record.pop("sampling")
    record["text"] = "Four."  # a parsable answer: no TARa note before the hardware lines
    cell = {k: v[0] for k, v in config.axes.items()} | axes
    return {"status": "ok", "error": None, "cell": cell, "repeat": repeat, "engine": {},
            "sampling": {}, "timings": {}, "outputs": {"p0": record},
            "placement": placement}  # fmt: skip


def where(node: str, threads: int, name: str = XEON, device: str = "cpu") -> dict[str, Any]:
    return {"node": node, "host": "h-" + node, "device": device, "device_name": name,
            "threads": threads}  # fmt: skip


def report(config: Any, entries: list[dict[str, Any]]) -> tuple[list[str], str, str, Any]:
    metrics = compute_metrics(config, entries, context=2048)
    x, y = choose_axes(config, None, None)
    grid = unique_grid(config, metrics, entries, x, y)
    return (
        summary_lines(metrics.to_dict()),
        render_markdown(config, metrics, x, y, grid),
        render_html(config, metrics, x, y, grid),
        metrics,
    )


def test_cells_on_unlike_hardware_are_named_and_warned_about() -> None:
    config = parse_sweep_config({"prompts": ["x"], "axes": {"batch_size": [1, 8]}})
    entries = [
        entry(config, where("n1", 1), batch_size=1),
        entry(config, where("n2", 1, name="AMD EPYC", device="cpu"), batch_size=8),
    ]
    lines, markdown, html, metrics = report(config, entries)
    assert "ran on 2 node(s): AMD EPYC (cpu, 1 threads); Intel(R) Xeon(R) <Platinum>" in lines[1]
    assert lines[2].startswith("warning: cells ran on different hardware (AMD EPYC")
    assert "not bitwise comparable" in lines[2]
    assert "## Where the cells ran" in markdown and "**Warning**" in markdown
    assert "| n2 | h-n2 | cpu | AMD EPYC | 1 | 1 |" in markdown
    assert "<h2>Where the cells ran</h2>" in html and "<b>Warning</b>" in html
    assert XEON not in html and "Intel(R) Xeon(R) &lt;Platinum&gt;" in html
    assert metrics.to_dict()["hardware"]["mixed"]
    # the quickstart's HTML lines: the device names escaped too
    assert "&lt;Platinum&gt;" in summary_lines(metrics.to_dict(), inline)[1]


def test_threads_the_grid_chooses_are_no_warning_but_others_are() -> None:
    config = parse_sweep_config({"prompts": ["x"], "repeats": 2, "axes": {"num_threads": [1, 2]}})
    same_node = [
        entry(config, where("n1", 1), num_threads=1),
        entry(config, where("n1", 2), num_threads=2),
    ]
    lines, markdown, _, metrics = report(config, same_node)
    assert lines[1] == f"ran on 1 node(s): {XEON} (cpu, 1 threads); {XEON} (cpu, 2 threads)"
    assert not any(line.startswith("warning") for line in lines)
    assert metrics.hardware["warning"] is None and "**Warning**" not in markdown
    # the same num_threads value on two unlike nodes: that is hardware the grid did not ask for
    again = entry(config, where("n2", 1, name="Other"), repeat=1, num_threads=1)
    lines, _, _, _ = report(config, [*same_node, again])
    assert any(line.startswith("warning: cells ran on different hardware") for line in lines)
