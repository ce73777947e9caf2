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


def _draws(probs: list[float], rows: int, seed0: int) -> torch.Tensor:
    """One token per row from `probs`, row r with its own generator seeded seed0 + r."""
    from lab.backends.hf import sample_rows

    logprobs = torch.tensor(probs, dtype=torch.float32).log().expand(rows, -1)
    generators = [torch.Generator().manual_seed(seed0 + r) for r in range(rows)]
    return sample_rows(logprobs, generators)


def test_inverse_cdf_draws_follow_the_probabilities() -> None:
    """Chi-square goodness of fit over 20,000 seeded draws (fixed seeds: the verdict is the
    same on every run); a zero-probability token is never drawn; the test has the power to
    reject a sampler that is off by a little."""
    from scipy.stats import chisquare

    probs = [0.5, 0.25, 0.0, 0.15, 0.07, 0.03]
    n = 20_000
    picked = _draws(probs, n, seed0=1000)
    counts = torch.bincount(picked, minlength=len(probs)).tolist()
    assert counts[2] == 0  # zero mass: never drawn (right=True)
    support = [i for i, p in enumerate(probs) if p > 0]
    observed = [counts[i] for i in support]
    expected = [probs[i] * n for i in support]
    assert chisquare(observed, expected).pvalue > 1e-3, counts
    # the same counts against slightly wrong probabilities are rejected: the test can fail
    wrong = [0.48, 0.27, 0.15, 0.07, 0.03]
    assert chisquare(observed, [p * n for p in wrong]).pvalue < 1e-6
    # a sample drawn inside a batch is the one drawn alone with the same seed
    assert int(_draws(probs, 1, seed0=1007)[0]) == int(picked[7])
