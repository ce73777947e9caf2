"""`lab sample --ray --replicas 2` on the simulated two-node cluster of test_scale_ray (two nodes
of one CPU, loopback only), the bundled SmolLM2 through hf, 8 cases x k=4, one case per call:

- sample for sample (tokens and logprobs) the local run's, with the same thread count (1);
- a node removed mid-run: the run completes, the lost calls ran again once, every case once;
- SIGKILL of the driver mid-run, then the same run: every case once, equal to the local run.

Skipped, with the reason, where Ray is not installed (the `ray` extra).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lab.rundir import SAMPLES
from lab.variance.config import SampleConfig, load_config
from tests.model.test_scale_ray import LOOPBACK, cluster  # noqa: F401 - the cluster fixture

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")

pytestmark = pytest.mark.model

CASES = 8
# one case per engine call (rows_per_call = k): 8 units of work for 2 replicas
FLAGS = {"k": 4, "max_tokens": 4, "rows_per_call": 4, "backend": "hf"}
PROMPTS = [
    "What is the capital of France? Answer in one word.",
    "What is 17 times 23? Answer with just the number.",
    "Name a primary color.",
    "Is the sky blue? Answer yes or no.",
    "Spell the word cat backwards.",
    "What comes after Monday?",
    "Give one word that rhymes with moon.",
    "How many legs does a spider have?",
]


@pytest.fixture(scope="module")
def cases_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ray-sample") / "cases.jsonl"
    rows = [{"id": f"c{i}", "prompt": p, "checks": [{"regex": "[A-Za-z0-9]"}]}
            for i, p in enumerate(PROMPTS)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def cli(cases_path: Path, out: Path) -> list[str]:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in FLAGS.items()]
    return [sys.executable, "-m", "lab.cli", "sample", "--cases", str(cases_path), *flags,
            "--out", str(out)]  # fmt: skip


def config(cases_path: Path, out: Path) -> SampleConfig:
    return load_config(None, FLAGS | {"cases": str(cases_path), "out": str(out)})


def samples(run_dir: Path) -> dict[str, list[tuple[list[int], list[float]]]]:
    """case -> [(output token ids, token logprobs)] by sample index; every case there once."""
    lines = [json.loads(line) for line in (run_dir / f"{SAMPLES}.jsonl").read_text().splitlines()]
    keys = [e["key"] for e in lines]
    assert len(keys) == len(set(keys)) == CASES, keys
    return {
        e["key"]: [(g["output_token_ids"], g["token_logprobs"])
                   for g in sorted(e["generations"], key=lambda g: g["sample_index"])]
        for e in lines
    }  # fmt: skip


def successes(run_dir: Path) -> list[tuple[str, int]]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return [(c["id"], c["successes"]) for c in metrics["cases"]]


@pytest.fixture(scope="module")
def local(cases_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same run locally, in a fresh process with one torch thread (as a 1-CPU replica)."""
    out = tmp_path_factory.mktemp("local") / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        cli(cases_path, out), env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in (out / f"{SAMPLES}.jsonl").read_text().splitlines()]
    assert {e["placement"]["threads"] for e in lines} == {1}
    return {"samples": samples(out), "successes": successes(out)}


def on_ray(cases_path: Path, out: Path, address: str, **options: Any) -> None:
    from lab.scale.sample import RayOptions, ray_sampler
    from lab.variance.runner import run_sample

    sampler = ray_sampler(RayOptions(address=address, replicas=2, **options))
    outcome = run_sample(config(cases_path, out), emit=lambda m: None, sampler=sampler)
    assert outcome.complete


def test_two_replicas_equal_the_local_run_sample_for_sample(
    cluster: Any,  # noqa: F811
    cases_path: Path,
    local: dict[str, Any],
    tmp_path: Path,
) -> None:
    from lab.scale.sweep import NODES

    out = tmp_path / "run"
    on_ray(cases_path, out, cluster.address)
    assert samples(out) == local["samples"]  # tokens and logprobs, bitwise
    assert successes(out) == local["successes"]  # the report: in case order
    lines = [json.loads(line) for line in (out / f"{SAMPLES}.jsonl").read_text().splitlines()]
    assert {e["placement"]["threads"] for e in lines} == {1}
    assert {e["placement"]["replica"] for e in lines} == {1, 2}
    nodes = {e["placement"]["node"] for e in lines}
    assert len(nodes) == 2, "one replica per node"
    recorded = [json.loads(line) for line in (out / f"{NODES}.jsonl").read_text().splitlines()]
    assert {r["key"] for r in recorded} == nodes
    batching = json.loads((out / "batching.json").read_text())
    assert batching["rows_per_call"] == 4


def test_node_removed_mid_run_completes_with_every_case_once(
    cluster: Any,  # noqa: F811
    cases_path: Path,
    local: dict[str, Any],
    tmp_path: Path,
) -> None:
    workers = list(cluster.worker_nodes)
    assert len(workers) == 1
    worker_node = workers[0].node_id
    removed: list[Any] = []

    def remove_worker_node(index: int, where: dict[str, Any]) -> None:
        # after the worker node's replica returned its first call and was given more
        if not removed and where["node"] == worker_node:
            cluster.remove_node(workers[0], allow_graceful=False)
            removed.append(workers[0])

    out = tmp_path / "run"
    try:
        on_ray(cases_path, out, cluster.address, on_call=remove_worker_node)
    finally:
        if removed:
            cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")  # for later tests
    assert removed, "the worker node's replica ran no call"
    assert samples(out) == local["samples"]
    lines = [json.loads(line) for line in (out / f"{SAMPLES}.jsonl").read_text().splitlines()]
    attempts = [e["placement"].get("attempt", 1) for e in lines]
    assert 2 in attempts, "the calls the lost replica held ran again"
    assert max(attempts) == 2, "each lost call ran again once"
    assert all(e["placement"]["node"] != worker_node for e in lines if "attempt" in e)
    assert not (out / "failures.jsonl").exists()


def test_driver_killed_then_same_command_resumes(
    cluster: Any,  # noqa: F811
    cases_path: Path,
    local: dict[str, Any],
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    command = cli(cases_path, out) + ["--ray", cluster.address, "--replicas", "2"]
    child = subprocess.Popen(
        command, env={**os.environ, **LOOPBACK}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    log = out / f"{SAMPLES}.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None:
        if log.exists() and log.read_text().count("\n") >= 1:
            break
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait()
    before = log.read_text().count("\n")
    assert 1 <= before < CASES, "the kill should land mid-run"

    # The same run again (in this process, already connected: one driver start less).
    on_ray(cases_path, out, cluster.address)
    assert samples(out) == local["samples"]
    assert successes(out) == local["successes"]
