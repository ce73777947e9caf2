"""Tiny finished sample runs for model tests that read a run through the CLI (compare, retry,
fragility): one hf engine and one embedding model for all of them; agent runs too (runner
lab.agents.runner.run_agents).

    paths = make_sample_runs(tmp_path, CASES, {"greedy": {"temperature": 0.0, "k": 2}})
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.backends import EngineConfig, load_backend
from lab.variance.config import SampleConfig
from lab.variance.diversity import Embedder
from lab.variance.runner import run_sample

#: what every run shares unless its settings say otherwise (small: seconds per run)
BASE: dict[str, Any] = {
    "backend": "hf", "device": "cpu", "max_tokens": 8, "bootstrap_samples": 50,
    "embed_device": "cpu",
}  # fmt: skip


def make_sample_runs(
    root: Path,
    cases: list[dict[str, Any]] | str,
    runs: dict[str, dict[str, Any]],
    runner: Callable[..., Any] = run_sample,
) -> dict[str, Path]:
    """Run each named SampleConfig (BASE | its settings) over `cases` (case records, or a
    case source such as "bundled:agents") into root/NAME."""
    import lab.variance.embedcache as embedcache  # where the report builds its embedder

    case_file = root / "cases.jsonl"
    if isinstance(cases, str):
        source = cases
    else:
        case_file.write_text("\n".join(json.dumps(c) for c in cases) + "\n")
        source = str(case_file)
    backend = load_backend(EngineConfig(backend="hf", device="cpu", dtype="fp32"))
    embedder = Embedder(device="cpu")  # one load for every report
    paths = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(embedcache, "Embedder", lambda *a, **kw: embedder)
        for name, settings in runs.items():
            values = BASE | {"cases": source, "out": str(root / name)} | settings
            outcome = runner(SampleConfig(**values), backend=backend, emit=lambda m: None)
            assert outcome.complete, name
            paths[name] = outcome.path
    return paths
