"""The pair `lab explain` replays (lab.determinism.explain): one case recorded under two
settings, the settings, and how to rebuild the batch the case ran in. Made by
lab.determinism.explainsource (n-of-k runs), lab.determinism.explainsweep (sweep cells) and
lab.agents.explainpair (agent runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.backends.base import Generation, Request, SamplingConfig, canonical_dtype


@dataclass
class Pair:
    """One case recorded under two settings, and how to replay it."""

    kind: str  # "sweep" | "sample" | "agent"
    case: str
    runs: tuple[str, str]
    #: how each side is named in the output ("cell dtype=bfloat16", "sample 2")
    names: tuple[str, str]
    setting_a: dict[str, Any]
    setting_b: dict[str, Any]
    record_a: Generation
    record_b: Generation
    sampling: SamplingConfig
    #: the engine fields no toggle varies (device, engine_args, ...)
    engine_fixed: dict[str, Any]
    #: (setting) -> the requests of one engine call and the id of the measured one
    batch: Callable[[dict[str, Any]], tuple[list[Request], str]]
    notes: list[str] = field(default_factory=list)
    #: agent pairs: (replayed output) -> the step's action (tool call or answer), to compare
    action: Callable[[Generation], str] | None = None
    #: sweep pairs: the two cells' keys (the report checks their records are still these)
    cells: tuple[str, str] | None = None

    def digest(self) -> str:
        """Which two records are explained: a rerun sweep (--fresh) has other ones."""
        return records_digest(self.record_a, self.record_b)


def records_digest(a: Generation, b: Generation) -> str:
    import hashlib
    import json

    text = json.dumps([a.output_token_ids, b.output_token_ids, a.token_logprobs, b.token_logprobs])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def canonical_setting(setting: dict[str, Any]) -> dict[str, Any]:
    out = dict(setting)
    if out.get("dtype"):
        out["dtype"] = canonical_dtype(out["dtype"])
    return out
