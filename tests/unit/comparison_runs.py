"""Synthetic n-of-k run directories in the real layout, for the comparison tests (no model).

`make_run` writes the cases, appends k Generation records per case through lab.store, and
builds the real report (lab.variance.report.build_report) with a hash-based stub embedder, so
config.json, cases.json, samples.jsonl, samples.parquet and metrics.json are what `lab sample`
writes. A sample passes when its text is "yes" (check `exact: yes`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lab.cases.loaders import load_cases
from lab.rundir import SAMPLES
from lab.variance.config import SampleConfig
from lab.variance.report import build_report
from lab.variance.runner import engine_config, open_run
from tests.unit.test_variance_report import StubEmbedder


def case_specs(count: int, tags: dict[int, list[str]] | None = None) -> list[dict[str, Any]]:
    tags = tags or {}
    return [
        {
            "id": f"case-{i:03d}",
            "prompt": f"Question {i}: say yes",
            "checks": [{"exact": "yes"}],
            "tags": tags.get(i, ["easy" if i % 2 else "hard"]),
        }
        for i in range(count)
    ]


def make_run(
    root: Path,
    name: str,
    outcomes: np.ndarray,
    seed: int = 0,
    specs: list[dict[str, Any]] | None = None,
    temperature: float = 0.7,
    texts: dict[tuple[int, int], str] | None = None,
    **settings: Any,
) -> Path:
    """outcomes [C, k] bool -> a finished run directory root/name (`settings`: more
    SampleConfig fields, e.g. an engine setting)."""
    count, k = outcomes.shape
    specs = specs or case_specs(count)
    cases_file = root / f"{name}-cases.jsonl"
    cases_file.write_text("\n".join(json.dumps(s) for s in specs) + "\n")
    config = SampleConfig(
        cases=str(cases_file),
        k=k,
        backend="hf",
        out=str(root / name),
        seed=seed,
        temperature=temperature,
        bootstrap_samples=20,
        **settings,
    )
    cases = load_cases(config.cases)
    store = open_run(config, cases, engine_config(config), fresh=True)
    texts = texts or {}
    for i, case in enumerate(cases):
        gens: list[dict[str, Any]] = [
            {
                "request_id": case.id,
                "sample_index": j,
                "seed": seed + j,
                "backend": "hf",
                "prompt_token_ids": [1, 2],
                "output_token_ids": [3],
                "token_logprobs": [-0.1],
                "top_logprobs": [[]],
                "text": texts.get((i, j), "yes" if outcomes[i, j] else f"no {i} {j}"),
                "finish_reason": "stop",
                "timings": {},
                "engine": {},
                "sampling": {},
                "error": None,
            }
            for j in range(k)
        ]
        store.append(SAMPLES, case.id, {"case_id": case.id, "wall_s": 0.1, "generations": gens})
    build_report(store.path, config, emit=lambda m: None, embedder=StubEmbedder())  # type: ignore[arg-type]
    return Path(store.path)


def draw(rates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """[C, k] Bernoulli outcomes with per-case success probabilities `rates`."""
    return rng.random((len(rates), k)) < rates[:, None]


__all__ = ["case_specs", "draw", "make_run"]
