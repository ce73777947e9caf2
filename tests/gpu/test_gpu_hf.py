"""The hf backend on a CUDA GPU with a tiny random-weight Llama (no download needed).

Skipped without a GPU. Batch invariance needs no trained weights, so a random model is enough
to check the CUDA path: greedy reproducibility, seeded sampling, n from one prefill.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lab.backends import EngineConfig, Request, SamplingConfig
from lab.backends.hf import HFBackend

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from lab import models

    path = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    # Reuse the bundled tokenizer when it is prepared (it is, after the CPU tests).
    source = models.models_dir() / models.DEFAULT_MODEL
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(path)
    return path


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
