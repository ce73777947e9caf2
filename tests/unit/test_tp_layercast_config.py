"""Tensor parallelism and LayerCast as settings (no model): refused where a backend cannot run
them, before anything starts; the CPU TP worker environment; LayerCast on a tiny module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab import settings
from lab.backends.base import EngineConfig
from lab.determinism.config import parse_sweep_config
from lab.devices import cpu_tensor_parallel_env
from lab.errors import ConfigError, LabError
from lab.variance.config import load_config
from lab.variance.runner import engine_config
from tests.unit.test_cli import run_lab


def test_engine_config_refuses_what_the_backend_cannot_run() -> None:
    with pytest.raises(ConfigError, match="tensor_parallel_size 3 needs the vllm backend"):
        EngineConfig(backend="hf", tensor_parallel_size=3)
    with pytest.raises(ConfigError, match="dtype layercast .* hf backend only, not vllm"):
        EngineConfig(backend="vllm", dtype="layercast")
    assert EngineConfig(backend="hf", dtype="LayerCast").dtype == "layercast"
    assert EngineConfig(backend="vllm", tensor_parallel_size=3).tensor_parallel_size == 3


@pytest.mark.parametrize(
    ("axes", "field"),
    [
        ({"tensor_parallel_size": [1, 3]}, "axes.tensor_parallel_size: 3 needs the vllm backend"),
        ({"backend": ["hf", "vllm"], "tensor_parallel_size": [3]}, "axes.tensor_parallel_size"),
        ({"backend": ["vllm"], "dtype": ["fp32", "layercast"]}, "axes.dtype: layercast"),
        ({"backend": ["hf", "openai"], "dtype": ["layercast"]}, "axes.dtype: .* includes openai"),
    ],
)
def test_sweep_config_refuses_an_impossible_cell_at_load(
    axes: dict[str, list[object]], field: str
) -> None:
    with pytest.raises(LabError, match=f"^sweep.yaml: {field}"):
        parse_sweep_config({"prompts": ["hi"], "axes": axes}, "sweep.yaml")


def test_sweep_config_takes_tp_on_vllm_and_layercast_on_hf() -> None:
    tp = parse_sweep_config({"prompts": ["hi"], "axes": {"backend": ["vllm"],
                             "tensor_parallel_size": [1, 3]}})  # fmt: skip
    assert tp.axes["tensor_parallel_size"] == [1, 3]
    lc = parse_sweep_config({"prompts": ["hi"], "axes": {"dtype": ["fp32", "bf16", "layercast"]}})
    assert lc.axes["dtype"] == ["float32", "bfloat16", "layercast"]


def test_lab_sweep_refuses_hf_tp_before_writing(tmp_path: Path) -> None:
    config = tmp_path / "sweep.yaml"
    config.write_text("prompts: [hi]\naxes:\n  tensor_parallel_size: [1, 3]\n")
    out = run_lab("sweep", str(config), "--out", str(tmp_path / "run"))
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "axes.tensor_parallel_size" in errors[0], out.stderr
    assert not (tmp_path / "run").exists()


def test_lab_sample_takes_tp_on_vllm_only(tmp_path: Path) -> None:
    config = load_config(None, {"tensor_parallel_size": 3, "backend": "vllm"})
    assert engine_config(config).tensor_parallel_size == 3
    path = tmp_path / "sample.yaml"
    path.write_text("backend: vllm\ntensor_parallel_size: 3\n")
    assert engine_config(load_config(path, {})).tensor_parallel_size == 3
    out = run_lab("sample", "--backend", "hf", "--tp", "3", "--out", str(tmp_path / "run"))
    assert out.returncode == 2
    assert "error: tensor_parallel_size 3 needs the vllm backend" in out.stderr
    assert not (tmp_path / "run").exists()
    bad = run_lab("generate", "--backend", "hf", "--tp", "3", "--prompt", "hi")
    assert bad.returncode == 2 and "needs the vllm backend" in bad.stderr


def test_cpu_tp_workers_run_unbound_with_the_cpus_shared_out() -> None:
    assert cpu_tensor_parallel_env(1, {}) == {}
    assert cpu_tensor_parallel_env(3, {}, cpus=2) == {
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
        "OMP_NUM_THREADS": "1",
    }
    assert cpu_tensor_parallel_env(4, {}, cpus=64)["OMP_NUM_THREADS"] == "16"
    # what the user set is theirs
    assert cpu_tensor_parallel_env(3, {"OMP_NUM_THREADS": "2"}, cpus=2) == {
        "VLLM_CPU_OMP_THREADS_BIND": "nobind"
    }


def test_temporary_env_restores_set_and_unset_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_TEST_A", "before")
    monkeypatch.delenv("LAB_TEST_B", raising=False)
    with settings.temporary_env({"LAB_TEST_A": "during", "LAB_TEST_B": "during"}):
        assert os.environ["LAB_TEST_A"] == os.environ["LAB_TEST_B"] == "during"
    assert os.environ["LAB_TEST_A"] == "before" and "LAB_TEST_B" not in os.environ


def test_layercast_stores_bf16_and_computes_fp32_on_a_tiny_module() -> None:
    import torch

    from lab.backends.layercast import apply_layercast, parameter_bytes, parameter_dtypes

    torch.manual_seed(0)  # the modules' initial weights
    embed = torch.nn.Embedding(16, 8)
    head = torch.nn.Linear(8, 16, bias=False)
    head.weight = embed.weight  # tied, as SmolLM2's
    model = torch.nn.Sequential(embed, torch.nn.LayerNorm(8), torch.nn.Linear(8, 8), head)
    ids = torch.tensor([[1, 2, 3, 4]])
    # reference: fp32 compute on the weights rounded to bf16 and back
    reference_model = torch.nn.Sequential(
        torch.nn.Embedding(16, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 8)
    )
    reference_model.load_state_dict(
        {k: v.to(torch.bfloat16).float() for k, v in model[:3].state_dict().items()}
    )
    with torch.no_grad():
        hidden = reference_model(ids)
        expected = hidden @ embed.weight.to(torch.bfloat16).float().T
    apply_layercast(model)
    assert parameter_dtypes(model) == {"bfloat16": 16 * 8 + 8 + 8 + 8 * 8 + 8}
    assert parameter_bytes(model) == 2 * (16 * 8 + 8 + 8 + 8 * 8 + 8)
    seen = []
    model[2].register_forward_pre_hook(lambda m, a: seen.append((m.weight.dtype, a[0].dtype)))
    with torch.no_grad():
        out = model(ids)
    assert out.dtype == torch.float32 and torch.equal(out, expected)
    assert seen == [(torch.float32, torch.float32)]  # the layer ran in fp32
    assert model[2].weight.dtype == torch.bfloat16  # and stores bf16 again after the call
    # an exception inside a forward still swaps the bf16 weights back
    with pytest.raises(RuntimeError), torch.no_grad():
        model[2](torch.ones(1, 3))
    assert model[2].weight.dtype == torch.bfloat16
