"""An agent sweep's cases: a sweep config whose `cases:` names agent cases (tools) in place of
prompts. Each cell then runs one greedy trajectory of every selected case (lab.agents.sweep).

    name: agents-t0
    cases: bundled:agents          # or a case file (relative to the config)
    agent:                         # every key optional
      case_ids: [calc-add, kv-set] # these cases (in the set's order), then
      only_tags: [calc]            # those carrying one of these tags, then
      limit: 12                    # the first N of what is left
      max_turns: 4                 # model turns per trajectory (default: each case's)
      tool_protocol: auto          # auto | native | text (lab.agents.protocol)
      allow_modules: []            # dotted modules the environments / python checks may run
    sampling: {max_tokens: 48, logprobs: 2}
    axes: {dtype: [fp32, bf16], batch_size: [1, 4]}

Only the shapes are checked here, and that the cases load and the selection holds agent cases
only; the environments' code is imported when the sweep starts (lab.agents.sweep).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.cases.loaders import load_cases
from lab.cases.model import Case
from lab.errors import ConfigError, LabError
from lab.rundir import is_agent_sweep

#: the `mode` of a sweep config with `cases:`
AGENT_MODE = "agents"
AGENT_KEYS = {"case_ids", "only_tags", "limit", "max_turns", "tool_protocol", "allow_modules"}
PROTOCOLS = ("auto", "native", "text")


@dataclass
class AgentCases:
    """Which agent cases a sweep runs, and how their trajectories run."""

    #: case source: bundled:NAME or a case file (made absolute against the config's folder)
    source: str
    case_ids: list[str] | None = None
    only_tags: list[str] | None = None
    limit: int | None = None
    max_turns: int | None = None
    tool_protocol: str = "auto"
    allow_modules: list[str] = field(default_factory=list)

    def select(self, cases: list[Case]) -> list[tuple[int, Case]]:
        """(index in the whole set, case) of the selected cases: case_ids, only_tags, limit.
        The index fixes a case's seeds, as in `lab sample`."""
        chosen = list(enumerate(cases))
        if self.case_ids is not None:
            known = {c.id for c in cases}
            missing = [i for i in self.case_ids if i not in known]
            if missing:
                raise LabError(f"agent.case_ids: no case {missing[0]!r} in {self.source}")
            chosen = [(i, c) for i, c in chosen if c.id in self.case_ids]
        if self.only_tags is not None:
            chosen = [(i, c) for i, c in chosen if set(self.only_tags) & set(c.tags)]
        if not chosen:
            raise LabError(f"agent: the selection leaves no case of {self.source}")
        return chosen if self.limit is None else chosen[: self.limit]

    def load(self) -> tuple[list[Case], list[tuple[int, Case]]]:
        """The whole case set and the selection (LabError for a case without tools)."""
        whole = load_cases(self.source)
        selected = self.select(whole)
        plain = [c.id for _, c in selected if c.agent is None]
        if plain:
            raise LabError(
                f"{self.source}: case {plain[0]!r} has no tools; an agent sweep takes agent "
                "cases only (sweep plain prompts with prompts:)"
            )
        return whole, selected


def _names(source: str, where: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
        raise ConfigError(f"{source}: {where}: a non-empty list of names, got {value!r}")
    return list(value)


def _count(source: str, where: str, value: Any, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ConfigError(f"{source}: {where}: an integer from 1 to {high}, got {value!r}")
    return value


def parse_agent_cases(source: str, data: dict[str, Any], base_dir: Path | None) -> AgentCases:
    """The `cases:` and `agent:` keys of a sweep config (module docstring)."""
    cases = data["cases"]
    if not isinstance(cases, str) or not cases.strip():
        raise ConfigError(f"{source}: cases: a case source (bundled:agents or a file)")
    for key in ("prompts", "prompts_file", "prefix_lengths", "answer_regex"):
        if key in data:
            raise ConfigError(f"{source}: {key}: not with cases: (an agent sweep has no prompts)")
    if data.get("mode", AGENT_MODE) != AGENT_MODE:
        raise ConfigError(f"{source}: mode: an agent sweep (cases:) is mode {AGENT_MODE}")
    if not cases.startswith("bundled:") and base_dir is not None:
        path = Path(cases.partition("#")[0])
        if not path.is_absolute():
            cases = str(base_dir / cases)
    raw = data.get("agent") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: agent: expected a mapping")
    unknown = set(raw) - AGENT_KEYS
    if unknown:
        raise ConfigError(
            f"{source}: agent: unknown key(s) {sorted(unknown)}; known: {sorted(AGENT_KEYS)}"
        )
    protocol = raw.get("tool_protocol", "auto")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{source}: agent.tool_protocol: one of {', '.join(PROTOCOLS)}")

    def names(key: str) -> list[str] | None:
        return None if raw.get(key) is None else _names(source, f"agent.{key}", raw[key])

    def count(key: str, high: int) -> int | None:
        return None if raw.get(key) is None else _count(source, f"agent.{key}", raw[key], high)

    spec = AgentCases(
        source=cases,
        case_ids=names("case_ids"),
        only_tags=names("only_tags"),
        limit=count("limit", 10**6),
        max_turns=count("max_turns", 64),
        tool_protocol=protocol,
        allow_modules=[] if raw.get("allow_modules") == [] else names("allow_modules") or [],
    )
    try:
        spec.load()
    except LabError as exc:
        raise ConfigError(f"{source}: cases: {exc}") from None
    return spec


def agent_cases_from_dict(raw: dict[str, Any] | None) -> AgentCases | None:
    """The AgentCases a run directory's sweep_config.json holds (None: a prompt sweep)."""
    return None if raw is None else AgentCases(**raw)


def refuse_agent_sweep(run_dir: str | Path, command: str, what: str) -> None:
    """LabError (one line) when `run_dir` holds an agent sweep, which `command` cannot read:
    it works on `what`; the agent sweep's own report compares its cells."""
    if is_agent_sweep(run_dir):
        raise LabError(
            f"{run_dir}: an agent sweep; {command} works on {what}. Its own report compares "
            f"every cell with the reference and each pair differing in one axis, with the "
            f"margins where trajectories split: lab report {run_dir}"
        )
