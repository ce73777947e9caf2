"""The hf backend on a CUDA GPU with a random-weight Llama (lab.tinymodels: no download, no
prepared bundled model; the tokenizer is built with the `tokenizers` package).

Skipped without a GPU ("needs a CUDA GPU"). Batch invariance needs no trained weights, so a
random model is enough to check the CUDA path: greedy reproducibility, seeded sampling, n from
one prefill, and the batch-invariant mode end to end (a prompt alone and left-padded inside a
batch of 8 give bitwise the same tokens and logprobs). tests/model/test_tinymodels.py runs the
same checks on the CPU everywhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lab.backends import EngineConfig, Request, SamplingConfig
from lab.backends.hf import HFBackend
from lab.kernels import kernel_name
from lab.tinymodels import SMALL_SHAPE, build_causal_lm

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

#: raw prompts of different lengths: the target (index 2) is left-padded inside the batch
BATCH = [
    Request(f"p{i}", prompt=" ".join(["the quick brown fox jumps over the lazy dog"] * (1 + i)))
    for i in range(8)
]
TARGET = BATCH[2]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_causal_lm(tmp_path_factory.mktemp("tiny-llama"), SMALL_SHAPE)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_cuda_greedy_and_seeded_sampling(tiny_model: Path, dtype: str) -> None:
    backend = HFBackend(
        EngineConfig(backend="hf", model=str(tiny_model), device="cuda", dtype=dtype)
    )
    req = [Request(id="a", prompt="Hello there"), Request(id="b", prompt="The sky is")]
    g1 = backend.generate(req, SamplingConfig(max_tokens=16))
    g2 = backend.generate(req, SamplingConfig(max_tokens=16))
    assert [g.output_token_ids for g in g1] == [g.output_token_ids for g in g2]
    s = SamplingConfig(temperature=1.0, max_tokens=16, seed=3, n=4)
    a, b = backend.generate(req, s), backend.generate(req, s)
    assert [g.output_token_ids for g in a] == [g.output_token_ids for g in b]
    assert len(a) == 8 and {g.engine["device"] for g in a} == {"cuda"}
    backend.close()


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_cuda_batch_invariant_mode_alone_equals_padded_batch(tiny_model: Path, dtype: str) -> None:
    """The hf backend with batch_invariant: true on CUDA (the Triton kernels): the target's
    greedy tokens and every chosen-token logprob are bitwise equal alone and in the batch."""
    backend = HFBackend(
        EngineConfig(
            backend="hf", model=str(tiny_model), device="cuda", dtype=dtype, batch_invariant=True
        )
    )
    assert backend.kernels == kernel_name("cuda")
    greedy = SamplingConfig(max_tokens=24, logprobs=2)
    alone = backend.generate([TARGET], greedy)[0]
    inside = {g.request_id: g for g in backend.generate(BATCH, greedy)}[TARGET.id]
    backend.close()
    assert len(alone.output_token_ids) == 24  # random weights rarely pick the end token
    assert alone.output_token_ids == inside.output_token_ids
    assert alone.token_logprobs == inside.token_logprobs  # bitwise: floats compared exactly
    assert alone.engine["batch_invariant_kernels"] == kernel_name("cuda")
