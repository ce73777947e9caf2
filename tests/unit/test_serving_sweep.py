"""The `concurrency` sweep axis for the openai backend: config checks, cell keys, and a whole
sweep against the local stub server (tests/unit/test_openai_client.py), whose tokens change
when it handles more than one request at once, so the metrics must see divergence at
concurrency > 1 and none at concurrency 1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.determinism.config import parse_sweep_config
from lab.determinism.grid import expand
from lab.determinism.metrics import compute_metrics
from lab.determinism.sweep import run_sweep
from lab.errors import ConfigError
from lab.rundir import CELLS
from lab.store import RunStore
from tests.unit.test_openai_client import Stub


def config_data(**over: object) -> dict[str, object]:
    return {
        "name": "serving",
        "mode": "identical",
        "prompts": [{"id": "f", "messages": [{"role": "user", "content": "Tell me."}]}],
        "sampling": {"max_tokens": 3},
        "axes": {"backend": ["openai"], "batch_size": [6], "concurrency": [1, 3]},
    } | over


def test_concurrency_is_for_the_openai_backend_only() -> None:
    cfg = parse_sweep_config(config_data())
    assert cfg.axes["concurrency"] == [1, 3]
    assert sorted(c.axes["concurrency"] for c in expand(cfg)) == [1, 3]
    with pytest.raises(ConfigError, match="axes.concurrency: only the openai backend"):
        parse_sweep_config(config_data(axes={"backend": ["vllm"], "concurrency": [1, 8]}))
    with pytest.raises(ConfigError, match="axes.concurrency: values must be >= 1"):
        parse_sweep_config(config_data(axes={"backend": ["openai"], "concurrency": [0]}))
    with pytest.raises(ConfigError, match="base_url: is for the openai backend only"):
        parse_sweep_config(config_data(axes={"backend": ["hf"]}, base_url="http://x:1/v1"))
    with pytest.raises(ConfigError, match="base_url: must be an http"):
        parse_sweep_config(config_data(base_url="localhost:8000"))


def test_offline_sweeps_keep_their_cell_keys_and_identity() -> None:
    """Runs made before the axis existed resume: no concurrency, no base_url in their keys."""
    cfg = parse_sweep_config(config_data(axes={"backend": ["vllm"], "batch_size": [1, 8]}))
    assert cfg.axes["concurrency"] == [None]
    identity = cfg.generation_identity()
    assert "concurrency" not in identity["axes"] and "base_url" not in identity
    cell = expand(cfg)[0]
    assert "concurrency" not in json.loads(cell.key())["axes"]
    assert cell.engine_config("cpu").base_url is None
    served = parse_sweep_config(config_data(base_url="http://127.0.0.1:9/v1"))
    assert served.generation_identity()["axes"]["concurrency"] == [1, 3]
    assert expand(served)[0].engine_config("cpu", served.base_url).base_url == (
        "http://127.0.0.1:9/v1"
    )


@pytest.fixture
def vllm_stub() -> Iterator[Stub]:
    server = Stub()
    server.vllm = True
    server.delay_s = 0.05
    yield server
    server.close()


def test_sweep_over_concurrency_against_a_server(vllm_stub: Stub, tmp_path: Path) -> None:
    model = tmp_path / "model"  # a local checkpoint stand-in: the sweep reads its context
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    cfg = parse_sweep_config(config_data(model=str(model), base_url=vllm_stub.base_url))
    store = run_sweep(cfg, tmp_path / "run", progress=False)
    entries = list(store.entries(CELLS))
    assert [e["status"] for e in entries] == ["ok", "ok"]
    by_level = {e["cell"]["concurrency"]: e for e in entries}
    assert len(by_level[1]["outputs"]) == len(by_level[3]["outputs"]) == 6
    assert by_level[1]["engine"]["server_batch_invariant"] == "unknown"  # not ours to know
    assert by_level[1]["engine"]["token_ids"] == "server"
    assert vllm_stub.max_in_flight == 3

    metrics = compute_metrics(cfg, entries, 512)
    within = {r["cell"]: r for r in metrics.within_cell}
    # concurrency 1: every copy alone -> one completion, the reference's.
    assert within["concurrency=1"]["unique_completions"] == 1
    # concurrency 3: the copies that shared the server diverge at their third token (index 2).
    shared = sum(1 for o in by_level[3]["outputs"].values() if o["output_token_ids"][2] == 8)
    assert shared >= 2  # three were in flight at once: at least two saw company
    row = {r["cell"]: r for r in metrics.per_cell}["concurrency=3"]
    assert row["tokens_differ"] == shared and set(row["first_divergences"]) == {2}
    assert within["concurrency=3"]["unique_completions"] == (2 if shared < 6 else 1)

    # A rerun resumes: nothing left, nothing sent.
    vllm_stub.received.clear()
    run_sweep(cfg, tmp_path / "run", progress=False)
    assert vllm_stub.received == []
    assert len(list(RunStore(tmp_path / "run").entries(CELLS))) == 2


def test_a_failed_request_fails_its_cell(vllm_stub: Stub, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    url = vllm_stub.base_url
    vllm_stub.close()  # nobody answers
    data = config_data(model=str(model), base_url=url)
    run_sweep(parse_sweep_config(data), tmp_path / "run", progress=False)
    entries = list(RunStore(tmp_path / "run").entries(CELLS))
    assert [e["status"] for e in entries] == ["failed", "failed"]
    assert all("ConnectError" in e["error"] and url in e["error"] for e in entries)


def test_a_sweep_config_saved_before_the_axis_loads() -> None:
    from lab.determinism.config import SweepConfig

    cfg = parse_sweep_config(config_data(axes={"backend": ["vllm"]}))
    old = cfg.to_dict()
    old["axes"].pop("concurrency")
    old.pop("base_url")
    prompts = old.pop("prompts")
    loaded = SweepConfig(**old, prompts=prompts)
    assert loaded.axes["concurrency"] == [None] and loaded.base_url is None
    assert [c.key() for c in expand(loaded)] == [c.key() for c in expand(cfg)]
