"""What an n-of-k report hands its caller: `RunReport`, the typed result of the report stage.

The n-of-k report (lab.variance.report.build_report) and the agent report
(lab.agents.report.build_agent_report) return one; `lab sample`, `lab sample-report`, `lab
library run`, `lab compare` and the quickstart read it instead of spelling metrics.json's keys:

    report = build_report(run_dir, config)
    report.gate.passed, report.gate.reasons    # lab.variance.gate.GateVerdict
    report.summary                             # summary.md's text, as written
    report.headline["p5"], report.rates        # metrics.json's headline; case id -> success rate

`RunReport.read(run_dir)` is the same object read back from a finished run's directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.rundir import METRICS, SUMMARY, read_json, read_text
from lab.variance.gate import GateVerdict


@dataclass(frozen=True)
class RunReport:
    """A written n-of-k report: where, its metrics.json document, its gate, its summary.md."""

    path: Path
    #: metrics.json as written (the renderers read the whole document)
    metrics: dict[str, Any]
    gate: GateVerdict
    #: summary.md's text
    summary: str

    @property
    def run(self) -> dict[str, Any]:
        """What was sampled and how: cases, k, backend, model, sampling, the engine record."""
        return dict(self.metrics["run"])

    @property
    def headline(self) -> dict[str, Any]:
        """Expected success, the tails, pass@k / pass^k, maj@k, consistency counts, ..."""
        return dict(self.metrics["headline"])

    @property
    def cases(self) -> list[dict[str, Any]]:
        """Per-case records, in case order."""
        return list(self.metrics["cases"])

    @property
    def rates(self) -> dict[str, float]:
        """Case id -> success rate over its k samples (or trajectories)."""
        return {c["id"]: c["rate"] for c in self.metrics["cases"]}

    @classmethod
    def read(cls, path: str | Path) -> RunReport:
        """A finished run's report from its directory (metrics.json and summary.md)."""
        root = Path(path)
        metrics = read_json(root / METRICS, "the run's report; rerun lab sample")
        where = str(root / METRICS)
        if not isinstance(metrics, dict):
            raise LabError(f"{where}: expected a JSON object")
        for key in ("run", "headline", "cases"):
            if key not in metrics:
                raise LabError(f"{where}: no {key!r}; rebuild it with lab sample-report {root}")
        gate = GateVerdict.from_json(metrics.get("gate"), where)
        return cls(root, metrics, gate, read_text(root, SUMMARY))
