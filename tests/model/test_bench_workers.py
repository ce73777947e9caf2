"""lab.bench.workers: a backend in a spawned child answers generate calls with the same records
as the same backend in this process, runs a function against its backend (a profile), reports
its engine record, and a failure in the child
comes back as a LabError (no hang). A tiny random Llama through the hf backend: seconds.

    .venv/bin/python -m pytest -q tests/model/test_bench_workers.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.backends import EngineConfig, Request, SamplingConfig
from lab.backends.hf import HFBackend
from lab.bench.roof import profile_generate
from lab.bench.workers import EngineWorker
from lab.errors import LabError
from lab.tinymodels import SMALL_SHAPE, build_causal_lm

pytestmark = pytest.mark.model


def test_a_worker_generates_what_this_process_does(tmp_path: Path) -> None:
    model = build_causal_lm(tmp_path / "tiny", SMALL_SHAPE)
    config = EngineConfig(backend="hf", model=str(model), device="cpu")
    requests = [Request("a", prompt="the quick brown fox"), Request("b", prompt="hello", seed=7)]
    sampling = SamplingConfig(temperature=0.8, n=3, max_tokens=6, seed=1)
    here = HFBackend(config).generate(requests, sampling)
    with EngineWorker(config) as worker:
        seconds, records = worker.generate(requests, sampling)
        # a module-level function runs in the child against its backend (a profiled call)
        shares, ops = worker.call(profile_generate, requests, sampling)
    assert seconds > 0
    assert shares["matmul"] > 0 and any("mm" in op for op, _ in ops)
    assert [r["output_token_ids"] for r in records] == [g.output_token_ids for g in here]
    assert [r["seed"] for r in records] == [g.seed for g in here]


def test_a_worker_that_cannot_start_raises() -> None:
    with pytest.raises(LabError, match="the engine worker failed"):
        EngineWorker(EngineConfig(backend="hf", model="/no/such/model", device="cpu"))
