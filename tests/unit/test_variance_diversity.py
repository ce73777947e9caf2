"""Batched diversity measures against hand values and a straightforward per-pair loop."""

from __future__ import annotations

import math

import pytest
import torch

from lab.variance.diversity import (
    cluster_entropy,
    connected_components,
    diversity,
    vendi_scores,
)


def _normalized(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_vendi_identical_is_one_and_orthogonal_is_k() -> None:
    k, d = 6, 16
    same = _normalized(torch.ones(1, k, d))
    orth = torch.eye(d)[:k].unsqueeze(0)  # [1, k, d] orthonormal rows
    out = diversity(torch.cat([same, orth]), threshold=0.9)
    assert out.vendi[0].item() == pytest.approx(1.0, abs=1e-5)
    assert out.vendi[1].item() == pytest.approx(float(k), abs=1e-4)
    assert out.mean_distance[0].item() == pytest.approx(0.0, abs=1e-6)
    assert out.mean_distance[1].item() == pytest.approx(1.0, abs=1e-6)
    assert out.clusters.tolist() == [1, k]
    assert out.semantic_entropy[0].item() == pytest.approx(0.0, abs=1e-7)
    assert out.semantic_entropy[1].item() == pytest.approx(math.log(k))


def test_batched_equals_per_pair_loop() -> None:
    g = torch.Generator().manual_seed(0)
    c, k, d = 5, 7, 12
    emb = _normalized(torch.randn(c, k, d, generator=g))
    out = diversity(emb, threshold=0.3)
    for case in range(c):
        sims = {}
        for i in range(k):
            for j in range(k):
                sims[i, j] = float(torch.dot(emb[case, i], emb[case, j]))
        pairs = [(i, j) for i in range(k) for j in range(k) if i != j]
        mean_distance = sum(1 - sims[p] for p in pairs) / len(pairs)
        assert out.mean_distance[case].item() == pytest.approx(mean_distance, abs=1e-5)
        for i in range(k):
            typ = sum(sims[i, j] for j in range(k) if j != i) / (k - 1)
            assert out.typicality[case, i].item() == pytest.approx(typ, abs=1e-5)
        # Vendi of one case alone, with numpy's eigen solver on the explicit matrix.
        mat = torch.tensor([[sims[i, j] for j in range(k)] for i in range(k)], dtype=torch.float64)
        eig = torch.linalg.eigvalsh(mat / k).clamp(min=0)
        eig = eig[eig > 0]
        vendi = math.exp(-float((eig * eig.log()).sum()))
        assert out.vendi[case].item() == pytest.approx(vendi, rel=1e-4)
        # Clusters by a union-find over pairs at the threshold.
        parent = list(range(k))
        for i, j in pairs:
            if sims[i, j] >= 0.3:
                parent[_find(parent, i)] = _find(parent, j)
        assert out.clusters[case].item() == len({_find(parent, i) for i in range(k)})


def _find(parent: list[int], x: int) -> int:
    while parent[x] != x:
        x = parent[x]
    return x


def test_connected_components_follow_chains() -> None:
    # 0-1, 1-2 linked (chain), 3 alone, 4-5 linked: three components, labels = smallest member
    k = 6
    adj = torch.zeros(1, k, k, dtype=torch.bool)
    for i, j in [(0, 1), (1, 2), (4, 5)]:
        adj[0, i, j] = adj[0, j, i] = True
    labels = connected_components(adj)
    assert labels.tolist() == [[0, 0, 0, 3, 4, 4]]
    clusters, entropy = cluster_entropy(labels)
    assert clusters.tolist() == [3]
    shares = [3 / 6, 1 / 6, 2 / 6]
    assert entropy.item() == pytest.approx(-sum(p * math.log(p) for p in shares))


def test_long_chain_needs_log_steps() -> None:
    k = 17  # a path 0-1-...-16 needs 16 hops; repeated squaring covers it in 5 steps
    adj = torch.zeros(1, k, k, dtype=torch.bool)
    for i in range(k - 1):
        adj[0, i, i + 1] = adj[0, i + 1, i] = True
    assert connected_components(adj).tolist() == [[0] * k]


def test_vendi_handles_near_duplicates() -> None:
    base = torch.randn(1, 1, 8)
    emb = _normalized(base.repeat(1, 4, 1) + 1e-7 * torch.randn(1, 4, 8))
    value = vendi_scores(emb @ emb.transpose(1, 2)).item()
    assert value == pytest.approx(1.0, abs=1e-3)
    assert math.isfinite(value)
