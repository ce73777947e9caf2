"""How fast the diversity embedder runs: one batched pass over every output of a run against
one encode call per case, and sentences/s at each batch size, on one device.

`lab sample` embeds all C x k outputs of a run in one `encode` call; this measures what that
buys over the straightforward per-case loop, and which batch size suits the device (small on a
CPU, where large batches pad more and fall out of cache; large on a GPU, where small ones leave
it idle). Texts are synthetic outputs of 3 to 30 words, the length of the bundled cases'
answers; any sentence-transformers model works (a random-weight MiniLM-shaped one from
lab.tinymodels where the real one cannot be carried: the cost is the shape's, not the
weights').

    lab bench embeddings [--device cuda] [--embedder PATH] [--num-cases 50 --k 32]
    lab bench embeddings --device cpu --run RUN_DIR     # a sample run's real outputs

The batch size the lab encodes with is chosen per device (lab.variance.diversity.
default_batch_size); this is the measurement that chooses it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

WORDS = (
    "paris capital france answer city river museum number twelve seven blue sky json "
    "name age colour fruit red green yes no the is of a in"
).split()


def synthetic_outputs(cases: int, k: int, seed: int = 0) -> list[list[str]]:
    """C lists of k short texts (3-30 words), the same for the same seed."""
    rng = random.Random(seed)
    return [
        [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) for _ in range(k)]
        for _ in range(cases)
    ]


@dataclass
class EmbeddingBench:
    """Best-of-rounds seconds for each way of embedding the same C x k texts."""

    device: str
    embedder: str
    cases: int
    k: int
    batch_size: int
    batched_s: float
    loop_s: float
    measures_s: float
    #: batch size -> seconds for one encode call over all texts
    by_batch_size: dict[int, float] = field(default_factory=dict)

    @property
    def texts(self) -> int:
        return self.cases * self.k

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "embedder": self.embedder,
            "cases": self.cases,
            "k": self.k,
            "batch_size": self.batch_size,
            "batched_s": self.batched_s,
            "loop_s": self.loop_s,
            "loop_over_batched": self.loop_s / self.batched_s,
            "measures_s": self.measures_s,
            "sentences_per_s": {b: self.texts / s for b, s in self.by_batch_size.items()},
        }


def _timed(device: str, call: Any) -> float:
    import torch

    started = time.perf_counter()
    call()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started


def bench_embeddings(
    embedder: str = "all-MiniLM-L6-v2",
    device: str = "cpu",
    cases: int = 50,
    k: int = 32,
    batch_size: int | None = None,
    batch_sizes: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024),
    rounds: int = 3,
    texts: list[list[str]] | None = None,
) -> EmbeddingBench:
    """Time the batched pass, the per-case loop (alternating, best of `rounds`) and one
    encode per batch size (sizes in rotating order, best of `rounds`), all on `device`.
    `texts`: C lists of k outputs to embed (default: synthetic ones, `cases` x `k`)."""
    from lab.variance.diversity import Embedder, diversity

    texts = texts or synthetic_outputs(cases, k)
    cases, k = len(texts), len(texts[0])
    model = Embedder(embedder, device=device, batch_size=batch_size)
    batch_size = model.batch_size  # None given: the device's default
    flat = [t for case in texts for t in case]
    model.embed(flat[:64], batch_size)  # warm-up: allocations, kernel selection
    best = {"batched": float("inf"), "loop": float("inf"), "measures": float("inf")}
    for _ in range(rounds):
        best["batched"] = min(
            best["batched"], _timed(device, lambda: model.embed_cases(texts, batch_size))
        )
        best["loop"] = min(
            best["loop"], _timed(device, lambda: [model.embed(c, batch_size) for c in texts])
        )
        emb = model.embed_cases(texts, batch_size)
        best["measures"] = min(best["measures"], _timed(device, lambda emb=emb: diversity(emb)))
    by_size = {size: float("inf") for size in batch_sizes}
    for r in range(max(rounds, 2)):  # the order rotates: load from others hits every size
        shift = r % len(batch_sizes)
        for size in batch_sizes[shift:] + batch_sizes[:shift]:
            seconds = _timed(device, lambda s=size: model.embed(flat, s))
            by_size[size] = min(by_size[size], seconds)
    return EmbeddingBench(
        device=model.device,
        embedder=embedder,
        cases=cases,
        k=k,
        batch_size=batch_size,
        batched_s=best["batched"],
        loop_s=best["loop"],
        measures_s=best["measures"],
        by_batch_size=by_size,
    )


def format_embedding_bench(result: EmbeddingBench) -> str:
    """The result as text: the loop/batched ratio, then sentences/s per batch size."""
    lines = [
        f"embedder {result.embedder} on {result.device}: {result.cases} cases x k={result.k} "
        f"= {result.texts} texts",
        f"  one batched pass (batch {result.batch_size}) {result.batched_s * 1e3:9.1f} ms",
        f"  per-case loop ({result.cases} calls)     {result.loop_s * 1e3:9.1f} ms",
        f"  loop / batched = {result.loop_s / result.batched_s:.2f}x; diversity measures "
        f"(batched, [C, k, k]) {result.measures_s * 1e3:.1f} ms",
        f"  {'batch size':>10} {'sentences/s':>12}",
    ]
    for size, seconds in result.by_batch_size.items():
        lines.append(f"  {size:>10} {result.texts / seconds:>12.0f}")
    return "\n".join(lines)
