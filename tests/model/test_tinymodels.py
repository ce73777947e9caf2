"""lab.tinymodels on the CPU: the checkpoints the GPU checks build (tests/gpu) load through the
hf backend, generate, decode every id, keep their shapes, and are bitwise batch-invariant with
the mode on, as the bundled model is. The CPU counterpart of tests/gpu/test_gpu_hf.py.

    .venv/bin/python -m pytest -q tests/model/test_tinymodels.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lab.backends import EngineConfig, Request, SamplingConfig
from lab.backends.hf import HFBackend
from lab.tinymodels import (
    MINILM_SHAPE,
    SMALL_SHAPE,
    build_causal_lm,
    build_sentence_encoder,
    byte_level_tokenizer,
)

pytestmark = pytest.mark.model

BATCH = [
    Request(f"p{i}", prompt=" ".join(["the quick brown fox jumps over the lazy dog"] * (1 + i)))
    for i in range(8)
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_causal_lm(tmp_path_factory.mktemp("tiny-llama"), SMALL_SHAPE)


def test_byte_level_tokenizer_round_trips_and_decodes_every_id() -> None:
    tok = byte_level_tokenizer(1000)
    text = 'Grüße, naïve café — 27/11/2026 {"a": 1}'
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    assert len(tok) == 1000
    assert tok.decode([700]) == "<t444>"  # filler ids decode to text, never to None
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert tok.decode(ids) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_tiny_llama_through_the_hf_backend(tiny_model: Path) -> None:
    config = json.loads((tiny_model / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"]) == (128, 2)
    backend = HFBackend(EngineConfig(backend="hf", model=str(tiny_model), device="cpu"))
    chat = Request("c", messages=[{"role": "user", "content": "Hello"}])
    gens = backend.generate(
        [chat, BATCH[0]], SamplingConfig(temperature=1.0, n=3, seed=1, max_tokens=12, logprobs=2)
    )
    backend.close()
    assert len(gens) == 6 and all(len(g.output_token_ids) >= 1 for g in gens)
    assert all(isinstance(g.text, str) for g in gens)
    # random weights, seeded: the three samples of a request are not all the same
    assert len({tuple(g.output_token_ids) for g in gens[:3]}) > 1


def test_batch_invariant_mode_alone_equals_padded_batch_on_cpu(tiny_model: Path) -> None:
    """The CPU twin of the CUDA test: with the mode on, a prompt alone and left-padded in a
    batch of 8 give bitwise-equal greedy logprobs; with it off, the logits are close."""
    greedy = SamplingConfig(max_tokens=16, logprobs=2)
    target = BATCH[2]
    results = {}
    for on in (True, False):
        backend = HFBackend(
            EngineConfig(backend="hf", model=str(tiny_model), device="cpu", batch_invariant=on)
        )
        alone = backend.generate([target], greedy)[0]
        inside = {g.request_id: g for g in backend.generate(BATCH, greedy)}[target.id]
        backend.close()
        results[on] = (alone, inside)
    alone, inside = results[True]
    assert alone.output_token_ids == inside.output_token_ids
    assert alone.token_logprobs == inside.token_logprobs
    stock_alone, _ = results[False]
    pairs = zip(alone.token_logprobs, stock_alone.token_logprobs, strict=True)
    diffs = [abs(a - b) for a, b in pairs]
    assert alone.output_token_ids == stock_alone.output_token_ids and max(diffs) < 1e-3


def test_minilm_shaped_encoder_embeds(tmp_path: Path) -> None:
    from lab.variance.diversity import Embedder

    texts = ["the cat sat on the mat", "a dog ran in the park", "paris is the capital"] * 3
    path = build_sentence_encoder(tmp_path / "enc", texts=texts)
    emb = Embedder(str(path), device="cpu").embed(texts)
    assert emb.shape == (9, MINILM_SHAPE["hidden_size"])
    assert torch.allclose(emb.norm(dim=-1), torch.ones(9), atol=1e-5)
    assert torch.equal(emb[0], emb[3])  # the same text, the same vector
    assert not torch.allclose(emb[0], emb[1])


def test_trained_wordpiece_when_no_real_vocabulary() -> None:
    from lab.tinymodels import _trained_wordpiece

    tok = _trained_wordpiece(["the cat sat on the mat", "the dog ran"], 200)
    ids = tok("the cat ran")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["[CLS]", "the", "cat", "ran", "[SEP]"]
