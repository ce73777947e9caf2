"""Test modes: which requests make up one cell's batch, and which of them are measured.

- identical: batch_size copies of each target prompt in one batch (Thinking Machines' 1000
  "Tell me about Richard Feynman" completions). Targets: every copy.
- single: each target alone, or co-batched with batch_size - 1 filler prompts (SGLang "single").
- mixed: all targets (short and long) in one batch, topped up with fillers to batch_size.
- prefix: targets that share a prefix of each configured length (scaled to the context), all in
  one batch: exercises prefix caching and chunked prefill (SGLang "prefix").
- shuffled: all targets in one batch, in the order the cell's `order` axis gives.

The `order` axis (given / reversed / shuffled, seeded by the cell) applies to every mode.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lab.backends.base import Request
from lab.determinism.config import SweepConfig, SweepPrompt

_TOPICS = [
    "the ocean",
    "volcanoes",
    "the moon",
    "bees",
    "chess",
    "bread",
    "rivers",
    "jazz",
    "glaciers",
    "owls",
    "bicycles",
    "tea",
    "deserts",
    "the Roman empire",
    "electricity",
    "mushrooms",
    "lighthouses",
    "trains",
    "coral reefs",
    "the printing press",
]
_TEMPLATES = [
    "Write two sentences about {}.",
    "Give me three facts about {}.",
    "Explain {} to a child.",
    "What is interesting about {}?",
    "Write a short poem about {}.",
]
# Words for synthetic shared prefixes; one token each for most tokenizers after a space.
_PREFIX_WORDS = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi "
    "omicron pi rho sigma tau upsilon phi chi psi omega"
).split()


def filler_requests(count: int, offset: int = 0) -> list[Request]:
    """Distinct chat prompts that share the batch with the targets."""
    out = []
    for i in range(offset, offset + count):
        topic = _TOPICS[i % len(_TOPICS)]
        template = _TEMPLATES[(i // len(_TOPICS)) % len(_TEMPLATES)]
        text = template.format(topic)
        if i >= len(_TOPICS) * len(_TEMPLATES):
            text += f" (variant {i})"
        out.append(Request(id=f"filler-{i}", messages=[{"role": "user", "content": text}]))
    return out


def as_request(prompt: SweepPrompt, request_id: str | None = None) -> Request:
    return Request(id=request_id or prompt.id, prompt=prompt.prompt, messages=prompt.messages)


@dataclass
class CellBatch:
    """The requests of one generate call and which of them are measured."""

    requests: list[Request]
    #: request id -> the target id its output is compared under across cells
    targets: dict[str, str]


def prefix_prompts(config: SweepConfig, context_length: int) -> list[SweepPrompt]:
    """Targets with shared prefixes: for each length L, every target prompt preceded by the same
    L-word preamble. Lengths beyond half the context are scaled down to fit."""
    limit = max(1, context_length // 2)
    lengths = sorted({min(length, limit) for length in config.prefix_lengths})
    out = []
    for length in lengths:
        preamble = " ".join(_PREFIX_WORDS[i % len(_PREFIX_WORDS)] for i in range(length))
        for p in config.prompts:
            question = p.prompt if p.prompt is not None else (p.messages or [{}])[-1]["content"]
            text = f"Context: {preamble}\n\nIgnore the context above. {question}"
            out.append(
                SweepPrompt(
                    id=f"prefix{length}/{p.id}",
                    prompt=None,
                    messages=[{"role": "user", "content": text}],
                    expected=p.expected,
                    answer_regex=p.answer_regex,
                )
            )
    return out


def order_requests(requests: list[Request], order: str, seed: int) -> list[Request]:
    if order == "reversed":
        return requests[::-1]
    if order == "shuffled":
        shuffled = list(requests)
        random.Random(seed).shuffle(shuffled)  # a local generator: never the global RNG
        return shuffled
    return list(requests)


def build_cell_batches(
    config: SweepConfig, batch_size: int, order: str, order_seed: int, context_length: int
) -> list[CellBatch]:
    """The generate calls one cell makes (single mode: one call per target)."""
    mode = config.mode
    if mode == "identical":
        batches = []
        for p in config.prompts:
            reqs = [as_request(p, f"{p.id}#{i}") for i in range(batch_size)]
            batches.append(
                CellBatch(order_requests(reqs, order, order_seed), {r.id: r.id for r in reqs})
            )
        return batches
    if mode == "single":
        batches = []
        for index, p in enumerate(config.prompts):
            reqs = [as_request(p)] + filler_requests(batch_size - 1, offset=index * 7)
            batches.append(CellBatch(order_requests(reqs, order, order_seed), {p.id: p.id}))
        return batches
    targets = prefix_prompts(config, context_length) if mode == "prefix" else config.prompts
    reqs = [as_request(p) for p in targets]
    reqs += filler_requests(max(0, batch_size - len(reqs)))
    return [CellBatch(order_requests(reqs, order, order_seed), {p.id: p.id for p in targets})]


def target_prompts(config: SweepConfig, context_length: int) -> list[SweepPrompt]:
    """The prompts whose outputs the metrics compare (prefix mode expands them)."""
    return prefix_prompts(config, context_length) if config.mode == "prefix" else config.prompts
