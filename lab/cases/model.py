"""The case: one prompt a variance run samples, with the checks its outputs must pass.

A case is an id, a prompt (sent as one chat user turn, or as raw text with `raw: true`) or a
list of chat messages, the checks a sample must pass (lab.cases.checks), optional tags
(cohorts, for per-tag tails) and free metadata. `case_from_record` builds one from a mapping
(a case file's line or row, a run directory's cases.json) and raises CaseFieldError naming the
bad field; lab.cases.loaders turns that into a LabError naming the file and line.

    from lab.cases.model import Case, case_from_record
    case = case_from_record({"id": "a", "prompt": "2+2?", "checks": [{"numeric": 4}]}, True, "x")
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.backends.base import Request
from lab.cases.agentspec import (
    AGENT_FIELDS,
    AgentFieldError,
    AgentSpec,
    agent_to_dict,
    is_trajectory_check,
    parse_agent,
)
from lab.cases.checks import Check
from lab.cases.specs import CheckSpecError, parse_check

FIELDS = ("id", "prompt", "messages", "system", "raw", "checks", "tags", "metadata") + AGENT_FIELDS
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")


@dataclass
class Case:
    id: str
    checks: list[Check]
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    #: a system message put before `prompt` (chat prompts only)
    system: str | None = None
    #: send `prompt` as raw text instead of a chat user turn
    raw: bool = False
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    #: "file:line" it came from
    source: str = ""
    #: an agent case's tools, environment, turn limit and trajectory checks
    #: (lab.cases.agentspec); None for a single-turn case
    agent: AgentSpec | None = None

    def request(self) -> Request:
        if self.messages is not None:
            return Request(id=self.id, messages=self.messages)
        assert self.prompt is not None
        if self.raw:
            return Request(id=self.id, prompt=self.prompt)
        messages = [] if self.system is None else [{"role": "system", "content": self.system}]
        return Request(id=self.id, messages=messages + [{"role": "user", "content": self.prompt}])

    def to_dict(self) -> dict[str, Any]:
        """The case as a spec again (checks as their specs), e.g. to store beside a run."""
        out: dict[str, Any] = {"id": self.id}
        for key in ("prompt", "messages", "system"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.raw:
            out["raw"] = True
        out["checks"] = [c.spec for c in self.checks]
        if self.agent is not None:
            out |= agent_to_dict(self.agent)
            out["checks"] = out["checks"] + [c.spec for c in self.agent.checks]
        if self.tags:
            out["tags"] = self.tags
        if self.metadata:
            out["metadata"] = self.metadata
        return out


class CaseFieldError(Exception):
    """A bad field of one case record; `field` names it (e.g. "checks[1].pattern")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _json_field(value: Any, name: str) -> Any:
    """CSV and datasets carry structured fields as JSON text."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise CaseFieldError(name, f"not valid JSON: {exc.msg}") from None
    return value


def _messages(value: Any) -> list[dict[str, str]]:
    value = _json_field(value, "messages")
    if not isinstance(value, list) or not value:
        raise CaseFieldError("messages", "must be a non-empty list of {role, content}")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise CaseFieldError(f"messages[{i}]", "must be a mapping with a string 'content'")
        if m.get("role") not in ("system", "user", "assistant"):
            raise CaseFieldError(f"messages[{i}].role", "must be system, user or assistant")
        out.append({"role": str(m["role"]), "content": str(m["content"])})
    return out


def _tags(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [t.strip() for t in re.split(r"[;,|]", value) if t.strip()]
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return list(value)
    raise CaseFieldError("tags", "must be a list of strings (or 'a;b' text)")


def _check_specs(value: Any) -> list[Any]:
    value = _json_field(value, "checks")
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise CaseFieldError("checks", 'give at least one check, e.g. [{"contains": "Paris"}]')
    return value


def _checks(value: list[Any], skip: set[int] | None = None) -> list[Check]:
    """The answer checks of a spec list (`skip`: indices of trajectory checks)."""
    checks = []
    for i, spec in enumerate(value):
        if skip and i in skip:
            continue
        try:
            checks.append(parse_check(spec))
        except CheckSpecError as exc:
            where = f"checks[{i}].{exc.field}" if exc.field else f"checks[{i}]"
            raise CaseFieldError(where, str(exc)) from None
    return checks


def case_from_record(
    record: dict[str, Any],
    strict: bool,
    source: str,
    require_checks: bool = True,
    base_dir: Path | None = None,
) -> Case:
    """One case from a mapping; raises CaseFieldError naming the field.

    `require_checks=False` accepts a case without checks (a production sample compared with
    `lab shift` has inputs only); checks that are given are still validated. `base_dir`: the
    case file's folder, where an agent case's environment module file lies.
    """
    record = {k: v for k, v in record.items() if v is not None}
    extra = {k: v for k, v in record.items() if k not in FIELDS}
    if extra and strict:
        name = sorted(extra)[0]
        raise CaseFieldError(name, f"unknown field; a case has {', '.join(FIELDS)}")
    case_id = record.get("id")
    if isinstance(case_id, int) and not isinstance(case_id, bool):
        case_id = str(case_id)
    if not isinstance(case_id, str) or not _ID.match(case_id):
        raise CaseFieldError("id", "must be a non-empty id (letters, digits, _ . : / -)")
    has_prompt, has_messages = "prompt" in record, "messages" in record
    if has_prompt == has_messages:
        raise CaseFieldError("prompt", "give exactly one of 'prompt' or 'messages'")
    if has_prompt and (not isinstance(record["prompt"], str) or not record["prompt"].strip()):
        raise CaseFieldError("prompt", "must be non-empty text")
    system = record.get("system")
    if system is not None and (not isinstance(system, str) or has_messages):
        raise CaseFieldError("system", "must be text, and only beside 'prompt'")
    raw = record.get("raw", False)
    if isinstance(raw, str):  # CSV / datasets text; anything else is a typo, not False
        raw = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(
            raw.strip().lower(), raw
        )
    if not isinstance(raw, bool):
        raise CaseFieldError("raw", "must be true or false")
    metadata = _json_field(record.get("metadata", {}), "metadata")
    if not isinstance(metadata, dict):
        raise CaseFieldError("metadata", "must be a mapping")
    specs = _check_specs(record.get("checks")) if require_checks or "checks" in record else []
    trajectory = [(i, s) for i, s in enumerate(specs) if is_trajectory_check(s)]
    try:
        agent = parse_agent(record, trajectory, base_dir)
    except AgentFieldError as exc:
        raise CaseFieldError(exc.field, str(exc)) from None
    if agent is not None and raw:
        raise CaseFieldError("raw", "an agent case (tools) is a chat: raw must be false")
    return Case(
        id=case_id,
        prompt=record.get("prompt"),
        messages=_messages(record["messages"]) if has_messages else None,
        system=system,
        raw=raw,
        checks=_checks(specs, {i for i, _ in trajectory}),
        tags=_tags(record.get("tags")),
        metadata=metadata | extra,
        source=source,
        agent=agent,
    )


def cases_fingerprint(cases: list[Case]) -> str:
    """A hash of the cases as specs: a resumed run refuses a changed case set."""
    text = json.dumps([c.to_dict() for c in cases], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
