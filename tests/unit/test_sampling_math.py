"""The hf backend's logit processing against direct definitions (no model)."""

from __future__ import annotations

import math

import torch

from lab.backends.base import SamplingConfig
from lab.backends.hf import process_logits


def test_greedy_is_plain_log_softmax() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    out = process_logits(logits, SamplingConfig())
    expected = [x - math.log(sum(math.exp(v) for v in (1, 2, 3))) for x in (1, 2, 3)]
    assert torch.allclose(out, torch.tensor([expected]))


def test_temperature_top_k_top_p() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    # top_p=0.7: tokens 0 (mass before 0) and 1 (mass before 0.5) survive; 2 has 0.8 before it.
    out = process_logits(logits, SamplingConfig(temperature=1.0, top_p=0.7))
    probs = out.exp()[0]
    assert torch.allclose(probs, torch.tensor([0.5 / 0.8, 0.3 / 0.8, 0.0, 0.0]))
    # top_k=1 keeps only the argmax.
    out = process_logits(logits, SamplingConfig(temperature=1.0, top_k=1))
    assert out[0, 0] == 0.0 and torch.isinf(out[0, 1:]).all()
    # temperature 2 flattens: p ~ sqrt(p0).
    out = process_logits(logits, SamplingConfig(temperature=2.0)).exp()[0]
    root = torch.tensor([0.5, 0.3, 0.15, 0.05]).sqrt()
    assert torch.allclose(out, root / root.sum())
