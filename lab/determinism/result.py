"""What a sweep report hands its caller: `SweepReport`, the typed result of the report stage.

The prompt sweep's report (lab.determinism.report.write_sweep_report) and the agent sweep's
(lab.agents.sweepreport.write_agent_sweep_report) return one; `lab sweep`, `lab report` and
the quickstart read the metrics from it instead of reading metrics.json back from disk:

    report = write_sweep_report(run_dir)
    report.summary["unique_outputs_max"], report.html   # metrics.json's summary; report.html
    report.metrics                                      # the metrics.json document, as written

The document is held with JSON's types (what a reader of the file gets: tuples as lists,
non-JSON values as their str), so the file and the object agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.rundir import METRICS, REPORT, SWEEP_MARKDOWN
from lab.store import RunStore


@dataclass(frozen=True)
class SweepReport:
    """A written sweep report: its metrics.json document and the three files."""

    #: metrics.json as written
    metrics: dict[str, Any]
    metrics_path: Path
    markdown: Path
    html: Path

    @property
    def summary(self) -> dict[str, Any]:
        """The sweep's answer: cells, unique outputs, divergences, failed cells, ..."""
        return dict(self.metrics["summary"])


def write_sweep_files(
    store: RunStore, payload: dict[str, Any], markdown: str, html: str
) -> SweepReport:
    """metrics.json (from `payload`), report.md and report.html of a sweep run directory."""
    document: dict[str, Any] = json.loads(json.dumps(payload, default=str))
    return SweepReport(
        metrics=document,
        metrics_path=store.write_json(METRICS, document),
        markdown=store.write_text(SWEEP_MARKDOWN, markdown),
        html=store.write_text(REPORT, html),
    )
