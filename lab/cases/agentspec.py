"""Agent cases: the tools a case declares, the environment that answers them, its turn limit,
and the checks on a trajectory (which tools were called, how often, the final state).

A case becomes an agent case by declaring `tools` (JSON-Schema function definitions in the
OpenAI shape) and an `environment`:

    tools:
      - type: function
        function: {name: calculator, description: Evaluate arithmetic,
                   parameters: {type: object, properties: {expression: {type: string}},
                                required: [expression]}}
    environment:
      module: agenttools.py          # functions named like the tools, beside the case file
      state: {kv: {color: red}}      # the initial state (deep-copied per trajectory)
    # or canned answers keyed by call (the first entry whose name matches and whose
    # arguments, when given, equal the call's):
    #   environment: {responses: [{call: {name: lookup, arguments: {id: 7}}, result: "ok"}]}
    max_turns: 6                     # model turns at most (default 6)
    checks:                          # final-answer checks and trajectory checks, one list
      - {numeric: 391}
      - {called: calculator, arguments: {expression: "17*23"}}   # arguments: a subset
      - {not_called: kv_delete}
      - {max_calls: 3}               # tool calls in all (or of `tool`)
      - {state: {kv: {color: blue}}} # the environment's final state holds this subset

`parse_agent(record, base_dir)` validates those fields (AgentFieldError names the field). An
environment module given as a file path must lie beside the case file (`base_dir` or below
it); a dotted module name is imported only when the run allows it (`allow_modules`), which the
agent runner checks before anything is written. Trajectory checks run on plain data (the calls
made and the final state), so a finished run is re-checked without the environment.

    from lab.cases.agentspec import parse_agent
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from lab.cases.checks import CheckResult

AGENT_FIELDS = ("tools", "environment", "max_turns")
DEFAULT_MAX_TURNS = 6
MAX_TURNS_LIMIT = 64
_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class AgentFieldError(ValueError):
    """A bad agent field; `field` names it (e.g. "tools[1].function.name")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def canonical_json(value: Any) -> str:
    """One spelling per JSON value (sorted keys, no spaces): how calls are compared."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def contains_subset(whole: Any, part: Any) -> bool:
    """`part` is a recursive subset of `whole`: every key of a mapping present with a matching
    value; lists and scalars equal (1 == 1.0)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            k in whole and contains_subset(whole[k], v) for k, v in part.items()
        )
    return bool(whole == part)


@dataclass
class Call:
    """One tool call as a trajectory check sees it."""

    name: str
    arguments: Any


@dataclass
class TrajectoryCheck:
    """Base: `run(calls, final_state)` -> CheckResult. `spec` keeps the mapping it came from."""

    type: ClassVar[str] = ""
    params: ClassVar[tuple[str, ...]] = ()
    spec: dict[str, Any] = field(default_factory=dict)

    def run(self, calls: list[Call], final_state: Any) -> CheckResult:
        raise NotImplementedError


@dataclass
class Called(TrajectoryCheck):
    """`tool` was called at least `times` times (default 1) with arguments holding `arguments`
    (a subset; omitted: any arguments)."""

    type: ClassVar[str] = "called"
    params: ClassVar[tuple[str, ...]] = ("called", "arguments", "times")
    tool: str = ""
    arguments: dict[str, Any] | None = None
    times: int = 1

    def run(self, calls: list[Call], final_state: Any) -> CheckResult:
        named = [c for c in calls if c.name == self.tool]
        hits = [
            c
            for c in named
            if self.arguments is None or contains_subset(c.arguments, self.arguments)
        ]
        if len(hits) >= self.times:
            return CheckResult(True, f"called {self.tool} x{len(hits)}")
        if named and self.arguments is not None:
            seen = canonical_json(named[0].arguments)[:60]
            return CheckResult(False, f"{self.tool} called with {seen}, not {self.arguments}")
        return CheckResult(False, f"{self.tool} called {len(hits)} times, expected >= {self.times}")


@dataclass
class NotCalled(TrajectoryCheck):
    """`tool` was never called."""

    type: ClassVar[str] = "not_called"
    params: ClassVar[tuple[str, ...]] = ("not_called",)
    tool: str = ""

    def run(self, calls: list[Call], final_state: Any) -> CheckResult:
        n = sum(c.name == self.tool for c in calls)
        return CheckResult(n == 0, "not called" if n == 0 else f"{self.tool} called {n} times")


@dataclass
class MaxCalls(TrajectoryCheck):
    """At most `max_calls` tool calls in all (or of `tool`)."""

    type: ClassVar[str] = "max_calls"
    params: ClassVar[tuple[str, ...]] = ("max_calls", "tool")
    limit: int = 0
    tool: str | None = None

    def run(self, calls: list[Call], final_state: Any) -> CheckResult:
        n = sum(self.tool is None or c.name == self.tool for c in calls)
        return CheckResult(n <= self.limit, f"{n} calls (max {self.limit})")


@dataclass
class FinalState(TrajectoryCheck):
    """The environment's final state holds `state` (a recursive subset)."""

    type: ClassVar[str] = "state"
    params: ClassVar[tuple[str, ...]] = ("state",)
    expected: dict[str, Any] = field(default_factory=dict)

    def run(self, calls: list[Call], final_state: Any) -> CheckResult:
        if contains_subset(final_state, self.expected):
            return CheckResult(True, "final state matches")
        return CheckResult(
            False, f"final state {canonical_json(final_state)[:80]} lacks {self.expected}"
        )


TRAJECTORY_CHECKS: dict[str, type[TrajectoryCheck]] = {
    cls.type: cls for cls in (Called, NotCalled, MaxCalls, FinalState)
}


def is_trajectory_check(spec: Any) -> bool:
    """A check spec naming a trajectory check (`{called: ...}` or `{type: called, ...}`)."""
    if not isinstance(spec, dict):
        return False
    kind = spec.get("type")
    return (
        kind in TRAJECTORY_CHECKS if kind is not None else any(k in TRAJECTORY_CHECKS for k in spec)
    )


@dataclass
class EnvironmentSpec:
    """What answers the tool calls: a module's functions or a table of canned responses."""

    #: as written in the case: a file path (relative to the case file) or a dotted module name
    module: str | None = None
    #: the module file, resolved beside the case file (None: a dotted name, or not resolved
    #: because the case was read back from a run directory)
    module_path: Path | None = None
    #: canned answers: [{"call": {"name", "arguments"?}, "result": ..., "error"?: "..."}]
    responses: list[dict[str, Any]] | None = None
    #: the initial state (JSON), deep-copied for every trajectory
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def is_file(self) -> bool:
        return self.module is not None and (self.module.endswith(".py") or "/" in self.module)

    def initial_state(self) -> dict[str, Any]:
        return copy.deepcopy(self.state)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.module is not None:
            out["module"] = self.module
        if self.responses is not None:
            out["responses"] = self.responses
        if self.state:
            out["state"] = self.state
        return out


@dataclass
class AgentSpec:
    """The agent part of a case."""

    #: OpenAI-shape tool definitions: {"type": "function", "function": {name, description,
    #: parameters}}
    tools: list[dict[str, Any]]
    environment: EnvironmentSpec
    max_turns: int = DEFAULT_MAX_TURNS
    checks: list[TrajectoryCheck] = field(default_factory=list)

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]

    def run_checks(self, calls: list[Call], final_state: Any) -> list[CheckResult]:
        return [c.run(calls, final_state) for c in self.checks]


def _tool(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise AgentFieldError(where, "a tool must be a mapping {type: function, function: {...}}")
    if "function" in raw:
        if raw.get("type", "function") != "function":
            raise AgentFieldError(f"{where}.type", "only 'function' tools are supported")
        extra = sorted(set(raw) - {"type", "function"})
        if extra:
            raise AgentFieldError(f"{where}.{extra[0]}", "unknown key; a tool has type, function")
        fn, where = raw["function"], f"{where}.function"
    else:
        fn = raw  # the bare {name, description, parameters} shape
    if not isinstance(fn, dict):
        raise AgentFieldError(where, "must be a mapping {name, description, parameters}")
    extra = sorted(set(fn) - {"name", "description", "parameters", "strict"})
    if extra:
        raise AgentFieldError(
            f"{where}.{extra[0]}", "unknown key; use name, description, parameters"
        )
    name = fn.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise AgentFieldError(f"{where}.name", "must be a name of letters, digits, _ . - (<= 64)")
    description = fn.get("description", "")
    if not isinstance(description, str):
        raise AgentFieldError(f"{where}.description", "must be text")
    parameters = fn.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise AgentFieldError(f"{where}.parameters", "must be a JSON Schema of type object")
    import jsonschema

    try:
        jsonschema.validators.validator_for(parameters).check_schema(parameters)
    except jsonschema.SchemaError as exc:
        raise AgentFieldError(
            f"{where}.parameters", f"invalid JSON Schema: {exc.message}"
        ) from None
    out = {"name": name, "description": description, "parameters": parameters}
    return {"type": "function", "function": out}


def _environment(raw: Any, tools: list[str], base_dir: Path | None) -> EnvironmentSpec:
    if not isinstance(raw, dict):
        raise AgentFieldError("environment", "must be a mapping with module or responses")
    extra = sorted(set(raw) - {"module", "responses", "state"})
    if extra:
        raise AgentFieldError(
            f"environment.{extra[0]}", "unknown key; use module, responses, state"
        )
    if ("module" in raw) == ("responses" in raw):
        raise AgentFieldError("environment", "give exactly one of 'module' or 'responses'")
    state = raw.get("state", {})
    if not isinstance(state, dict):
        raise AgentFieldError("environment.state", "must be a mapping")
    try:
        json.dumps(state)
    except (TypeError, ValueError):
        raise AgentFieldError(
            "environment.state", "must be JSON (text, numbers, lists, maps)"
        ) from None
    spec = EnvironmentSpec(state=state)
    if "module" in raw:
        module = raw["module"]
        if not isinstance(module, str) or not module.strip():
            raise AgentFieldError(
                "environment.module", "must be a file beside the case or a module"
            )
        spec.module = module
        if spec.is_file:
            rel = Path(module)
            if rel.is_absolute() or ".." in rel.parts:
                raise AgentFieldError(
                    "environment.module",
                    f"{module!r}: a module file must lie beside the case file (a relative path "
                    "inside its folder); name an importable module and allow it with "
                    "--allow-module instead",
                )
            if base_dir is not None:
                path = (base_dir / rel).resolve()
                if not path.is_file():
                    raise AgentFieldError("environment.module", f"no such file {path}")
                spec.module_path = path
        elif not _MODULE_NAME.match(module):
            raise AgentFieldError(
                "environment.module", f"{module!r} is neither a .py file nor a module name"
            )
        return spec
    responses = raw["responses"]
    if not isinstance(responses, list) or not responses:
        raise AgentFieldError("environment.responses", "must be a non-empty list")
    for i, entry in enumerate(responses):
        where = f"environment.responses[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("call"), dict):
            raise AgentFieldError(where, "must be {call: {name, arguments?}, result: ...}")
        extra = sorted(set(entry) - {"call", "result", "error"})
        if extra:
            raise AgentFieldError(f"{where}.{extra[0]}", "unknown key; use call, result, error")
        if ("result" in entry) == ("error" in entry):
            raise AgentFieldError(where, "give exactly one of 'result' or 'error'")
        call = entry["call"]
        if call.get("name") not in tools:
            raise AgentFieldError(
                f"{where}.call.name", f"{call.get('name')!r} is not a declared tool"
            )
        if set(call) - {"name", "arguments"}:
            raise AgentFieldError(f"{where}.call", "a call has name and arguments")
        if "arguments" in call and not isinstance(call["arguments"], dict):
            raise AgentFieldError(f"{where}.call.arguments", "must be a mapping")
    spec.responses = responses
    return spec


def _int(spec: dict[str, Any], key: str, where: str, low: int) -> int:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise AgentFieldError(f"{where}.{key}", f"'{key}' must be an integer >= {low}")
    return value


def parse_trajectory_check(raw: dict[str, Any], tools: list[str], where: str) -> TrajectoryCheck:
    """A TrajectoryCheck from `{called: NAME, ...}` or `{type: called, called: NAME, ...}`."""
    spec = dict(raw)
    kind = spec.pop("type", None) or next(k for k in spec if k in TRAJECTORY_CHECKS)
    if kind not in spec:
        raise AgentFieldError(where, f"give the {kind} value, e.g. {{{kind}: ...}}")
    cls = TRAJECTORY_CHECKS[kind]
    unknown = sorted(set(spec) - set(cls.params))
    if unknown:
        raise AgentFieldError(
            f"{where}.{unknown[0]}", f"{kind} check has no parameter {unknown[0]!r}"
        )
    if kind in ("called", "not_called"):
        if spec[kind] not in tools:
            raise AgentFieldError(f"{where}.{kind}", f"{spec[kind]!r} is not a declared tool")
    if cls is Called:
        arguments = spec.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            raise AgentFieldError(
                f"{where}.arguments", "must be a mapping (a subset of the call's)"
            )
        times = _int(spec, "times", where, 1) if "times" in spec else 1
        return Called(spec=raw, tool=spec["called"], arguments=arguments, times=times)
    if cls is NotCalled:
        return NotCalled(spec=raw, tool=spec["not_called"])
    if cls is MaxCalls:
        tool = spec.get("tool")
        if tool is not None and tool not in tools:
            raise AgentFieldError(f"{where}.tool", f"{tool!r} is not a declared tool")
        return MaxCalls(spec=raw, limit=_int(spec, "max_calls", where, 0), tool=tool)
    expected = spec.get("state")
    if not isinstance(expected, dict) or not expected:
        raise AgentFieldError(
            f"{where}.state", "must be a non-empty mapping (a subset of the state)"
        )
    return FinalState(spec=raw, expected=expected)


def parse_agent(
    record: dict[str, Any], trajectory_checks: list[tuple[int, Any]], base_dir: Path | None
) -> AgentSpec | None:
    """The agent part of a case record (None: no tools and no trajectory checks).
    `trajectory_checks`: (index in `checks`, spec) of the trajectory checks found there."""
    has = [k for k in AGENT_FIELDS if k in record]
    if not has and not trajectory_checks:
        return None
    if "tools" not in record:
        where = has[0] if has else f"checks[{trajectory_checks[0][0]}]"
        raise AgentFieldError(where, "belongs to an agent case: declare its 'tools' too")
    raw_tools = record["tools"]
    if isinstance(raw_tools, str):  # CSV / datasets carry structured fields as JSON text
        try:
            raw_tools = json.loads(raw_tools)
        except json.JSONDecodeError as exc:
            raise AgentFieldError("tools", f"not valid JSON: {exc.msg}") from None
    if not isinstance(raw_tools, list) or not raw_tools:
        raise AgentFieldError("tools", "must be a non-empty list of function definitions")
    tools = [_tool(t, f"tools[{i}]") for i, t in enumerate(raw_tools)]
    names = [t["function"]["name"] for t in tools]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise AgentFieldError("tools", f"tool {twice[0]!r} is declared twice")
    if "environment" not in record:
        raise AgentFieldError(
            "environment", "an agent case needs an environment (module or responses)"
        )
    raw_env = record["environment"]
    if isinstance(raw_env, str):
        try:
            raw_env = json.loads(raw_env)
        except json.JSONDecodeError as exc:
            raise AgentFieldError("environment", f"not valid JSON: {exc.msg}") from None
    environment = _environment(raw_env, names, base_dir)
    max_turns = record.get("max_turns", DEFAULT_MAX_TURNS)
    if isinstance(max_turns, str) and max_turns.strip().isdigit():
        max_turns = int(max_turns)
    if (
        isinstance(max_turns, bool)
        or not isinstance(max_turns, int)
        or not (1 <= max_turns <= MAX_TURNS_LIMIT)
    ):
        raise AgentFieldError("max_turns", f"must be an integer from 1 to {MAX_TURNS_LIMIT}")
    checks = [parse_trajectory_check(spec, names, f"checks[{i}]") for i, spec in trajectory_checks]
    return AgentSpec(tools=tools, environment=environment, max_turns=max_turns, checks=checks)


def agent_to_dict(agent: AgentSpec) -> dict[str, Any]:
    """The agent fields of a case spec (checks go back into the case's `checks`)."""
    return {
        "tools": agent.tools,
        "environment": agent.environment.to_dict(),
        "max_turns": agent.max_turns,
    }
