"""The n-of-k driver on Ray (lab.scale.sample) with a stand-in for Ray and the fake engine of
test_variance_runner (no model, no cluster): calls spread over replicas at most `depth` each,
a lost replica's calls run again elsewhere, a call lost too often leaves its cases without a
samples line but with a failures record, and the same run then samples just those.

The real thing on a simulated two-node cluster: tests/model/test_scale_ray_sample.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lab.cases.loaders import load_cases
from lab.errors import LabError
from lab.rundir import SAMPLES
from lab.variance.runner import sampling_config
from tests.unit.test_cli import run_lab
from tests.unit.test_variance_runner import FakeBackend, start

exceptions = pytest.importorskip("ray.exceptions", reason="Ray is not installed")


class Ref:
    def __init__(self, actor: Actor, method: str, args: tuple[Any, ...]) -> None:
        self.actor, self.method, self.args = actor, method, args


class Actor:
    def __init__(self, world: FakeRay, number: int, config: Any) -> None:
        self.world, self.number, self.config = world, number, config
        self.dead = False
        self.results = 0
        self.held = 0

    def __getattr__(self, method: str) -> Any:
        actor = self

        class Method:
            def remote(self, *args: Any) -> Ref:
                ref = Ref(actor, method, args)
                actor.world.submitted.append(ref)
                actor.held += method == "run"
                actor.world.most_held = max(actor.world.most_held, actor.held)
                return ref

        return Method()


class FakeRay:
    """ray.remote / wait / get / kill: refs come back in the order they were sent; actor
    number n dies after returning die[n] calls (its node removed; 0: right after its start)."""

    exceptions = exceptions

    def __init__(self, die: dict[int, int] | None = None) -> None:
        self.die = die or {}
        self.actors: list[Actor] = []
        self.submitted: list[Ref] = []
        self.most_held = 0

    def nodes(self) -> list[dict[str, Any]]:
        return []  # no node table: what a replica asks for is not checked against one

    def remote(self, cls: Any) -> Any:
        world = self

        class Options:
            def options(self, **resources: Any) -> Options:
                return self

            def remote(self, engine: Any, config: Any, *rest: Any) -> Actor:
                world.actors.append(Actor(world, len(world.actors) + 1, config))
                return world.actors[-1]

        return Options()

    def wait(self, refs: list[Ref], num_returns: int, timeout: float) -> tuple[list[Ref], list]:
        first = next(r for r in self.submitted if r in refs)
        self.submitted.remove(first)
        return [first], [r for r in refs if r is not first]

    def get(self, ref: Ref) -> Any:
        actor = ref.actor
        if actor.dead:
            raise exceptions.ActorDiedError()
        if ref.method == "start":
            where = {"node": f"node{actor.number}", "host": "h", "device": "cpu",
                     "device_name": "cpu", "threads": 1}  # fmt: skip
            actor.dead = self.die.get(actor.number) == 0  # its node goes at once
            return {"placement": where, "environment": {"n": actor.number}, "start_s": 0.0}
        actor.held -= 1
        actor.results += 1
        if self.die.get(actor.number) == actor.results:
            actor.dead = True
        config = actor.config
        return FakeBackend().generate(ref.args[0], sampling_config(config, config.seed)), 0.5

    def kill(self, actor: Actor, no_restart: bool = True) -> None:
        actor.dead = True

    def is_initialized(self) -> bool:
        return True


@pytest.fixture
def cases_file(tmp_path: Path) -> Path:
    path = tmp_path / "cases.jsonl"
    rows = [{"id": f"c{i}", "prompt": f"q{i}", "checks": [{"contains": "Paris"}]} for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def lines(path: Path, name: str) -> list[dict[str, Any]]:
    log = path / f"{name}.jsonl"
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def run(config: Any, store: Any, fake: FakeRay, **options: Any) -> tuple[int, bool]:
    from lab.scale.sample import RayOptions, sample_on_ray

    cases = load_cases(config.cases)
    settings = RayOptions(address="fake", replicas=2, **options)
    return sample_on_ray(config, store, cases, lambda m: None, None, settings, ray=fake)


def test_calls_spread_over_replicas_depth_at_most_two(cases_file: Path, tmp_path: Path) -> None:
    config, store = start(cases_file, tmp_path, rows_per_call=4)  # one case per call
    fake = FakeRay()
    assert run(config, store, fake) == (5, True)
    entries = lines(store.path, SAMPLES)
    assert sorted(e["key"] for e in entries) == ["c0", "c1", "c2", "c3", "c4"]
    assert {e["placement"]["replica"] for e in entries} == {1, 2}
    assert fake.most_held == 2
    # the same seeds as a local run: case j sample i uses seed + j * k + i
    seeds = {e["key"]: [g["seed"] for g in e["generations"]] for e in entries}
    assert seeds["c3"] == [50 + 12 + i for i in range(4)]
    assert [n["key"] for n in lines(store.path, "nodes")] == ["node1", "node2"]


def test_a_lost_replicas_calls_run_again_once_elsewhere(cases_file: Path, tmp_path: Path) -> None:
    config, store = start(cases_file, tmp_path, rows_per_call=4)
    fake = FakeRay(die={2: 1})  # replica 2 dies after its first call, holding another
    assert run(config, store, fake) == (5, True)
    entries = lines(store.path, SAMPLES)
    assert sorted(e["key"] for e in entries) == ["c0", "c1", "c2", "c3", "c4"]
    again = [e for e in entries if e["placement"].get("attempt")]
    assert again and {e["placement"]["attempt"] for e in again} == {2}
    assert len(fake.actors) == 3, "a fresh replica was asked for"
    assert not lines(store.path, "failures")


def test_a_call_lost_too_often_is_recorded_failed_then_resampled(
    cases_file: Path, tmp_path: Path
) -> None:
    config, store = start(cases_file, tmp_path, rows_per_call=4)
    with pytest.raises(LabError, match=r"2 of 5 cases failed .*failures.jsonl.*same command"):
        run(config, store, FakeRay(die={2: 0}), retries=0)  # holding 2 calls
    done = {e["key"] for e in lines(store.path, SAMPLES)}
    failed = lines(store.path, "failures")
    assert len(done) == 3 and len(failed) == 2, "no case both sampled and failed"
    assert not done & {f["key"] for f in failed}
    assert "lost with its Ray replica 1 times" in failed[0]["reason"]

    config, store = start(cases_file, tmp_path, rows_per_call=4)  # the same command again
    assert run(config, store, FakeRay()) == (2, True)
    keys = [e["key"] for e in lines(store.path, SAMPLES)]
    assert sorted(keys) == ["c0", "c1", "c2", "c3", "c4"]


def test_no_more_replicas_than_calls(cases_file: Path, tmp_path: Path) -> None:
    config, store = start(cases_file, tmp_path, rows_per_call=20)  # all 5 cases in one call
    fake = FakeRay()
    assert run(config, store, fake) == (5, True)
    assert len(fake.actors) == 1


@pytest.mark.parametrize("command", ["sample", "sweep"])
def test_a_config_file_taken_for_the_ray_address_is_one_line_and_writes_nothing(
    command: str, tmp_path: Path
) -> None:
    """`lab sample --ray CONFIG.yaml` read the file as the address and made the run directory
    before Ray refused it: now one line, before anything is written."""
    from lab.scale.cluster import check_address

    for good in ("local", "auto", "ray://10.0.0.1:10001", "ray://head", "10.0.0.1:6379"):
        check_address(good)
    config = tmp_path / "cfg.yaml"
    config.write_text("k: 2\n")
    out = tmp_path / "run"
    head = [str(config)] if command == "sweep" else []
    result = run_lab(command, *head, "--ray", str(config), "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --ray {config}: not a cluster address (local, auto, ray://HOST:PORT or "
        "HOST:PORT); --ray takes an optional value, so put it after a config file: "
        "lab sweep CONFIG.yaml --ray"
    ]
    assert not out.exists()
