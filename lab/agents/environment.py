"""The environment that answers an agent's tool calls, one fresh instance per trajectory.

Two kinds, as a case declares them (lab.cases.agentspec):

- a Python module whose functions are named like the tools: `calculator(expression)` answers
  `calculator`. A function with a parameter named `state` receives the trajectory's own state
  (a deep copy of the case's `environment.state`), which it may change; the final state is
  recorded and `state` checks read it. Arguments are validated against the tool's JSON Schema
  first; a bad argument, a missing function or an exception inside the tool is an error answer
  (`error: TypeError: ...`) that the model reads and the step records, never a crash.
- a table of canned responses keyed by call: the first entry whose name matches and whose
  arguments (when the entry gives them) equal the call's; no match is an error answer.

Tools must be deterministic: a resumed run replays a trajectory's recorded calls on a fresh
environment to rebuild its state, and refuses to go on when an answer comes out different.

Running a module is running code from a data file, so it is the user's explicit choice: a
module FILE beside the case file (the case's folder or below) runs; a dotted module NAME runs
only when named in `allow_modules` (`--allow-module NAME`). `check_environments` says so in one
line before anything is written, and imports every module once to check that each tool has its
function.

    envs = Environments(cases, allow_modules=[])
    env = envs.new(case)
    result, error = env.call("calculator", {"expression": "2+3"})
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
from types import ModuleType
from typing import Any

from lab.cases.agentspec import EnvironmentSpec, canonical_json
from lab.cases.model import Case
from lab.errors import LabError


class Environment:
    """One trajectory's environment: its state and how calls are answered."""

    def __init__(self, spec: EnvironmentSpec, tools: list[dict[str, Any]], module: Any) -> None:
        self.spec = spec
        self.state = spec.initial_state()
        self.module = module
        self.schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}

    def call(self, name: str, arguments: Any) -> tuple[Any, str | None]:
        """(result, None) or (None, error text) for one call; never raises for the model's
        mistakes or the tool's own exceptions."""
        if name not in self.schemas:
            return None, f"unknown tool {name!r}; the tools are {', '.join(self.schemas)}"
        if not isinstance(arguments, dict):
            return None, f"arguments of {name} must be a JSON object"
        problem = _schema_problem(self.schemas[name], arguments)
        if problem is not None:
            return None, f"bad arguments for {name}: {problem}"
        if self.spec.responses is not None:
            return self._canned(name, arguments)
        fn = getattr(self.module, name, None)
        if not callable(fn):
            return None, f"the environment has no function {name!r}"
        kwargs = dict(arguments)
        if "state" in kwargs:
            return None, "the argument name 'state' is reserved"
        if "state" in inspect.signature(fn).parameters:
            kwargs["state"] = self.state
        try:
            result = fn(**kwargs)
        except Exception as exc:  # noqa: BLE001 - a tool that raises answers with the error
            return None, f"{type(exc).__name__}: {exc}"
        try:
            return json.loads(json.dumps(result)), None
        except (TypeError, ValueError):
            return str(result), None

    def _canned(self, name: str, arguments: dict[str, Any]) -> tuple[Any, str | None]:
        for entry in self.spec.responses or []:
            call = entry["call"]
            if call["name"] != name:
                continue
            if "arguments" in call and canonical_json(call["arguments"]) != canonical_json(
                arguments
            ):
                continue
            if "error" in entry:
                return None, str(entry["error"])
            return entry["result"], None
        return None, f"no response for {name} {canonical_json(arguments)}"


def _schema_problem(schema: dict[str, Any], arguments: dict[str, Any]) -> str | None:
    import jsonschema

    errors = sorted(
        jsonschema.validators.validator_for(schema)(schema).iter_errors(arguments),
        key=lambda e: list(e.path),
    )
    if not errors:
        return None
    where = "/".join(str(p) for p in errors[0].path)
    return f"{where}: {errors[0].message}" if where else errors[0].message


class Environments:
    """The environments of a run's cases: each module imported once, allowed or refused."""

    def __init__(self, cases: list[Case], allow_modules: list[str] | tuple[str, ...] = ()) -> None:
        self.allow = set(allow_modules)
        self.modules: dict[str, ModuleType] = {}
        self.fingerprints: dict[str, str] = {}
        for case in cases:
            if case.agent is None or case.agent.environment.module is None:
                continue
            module = self._load(case)
            missing = [n for n in case.agent.tool_names if not callable(getattr(module, n, None))]
            if missing:
                raise LabError(
                    f"{case.source or case.id}: field 'environment.module': "
                    f"{case.agent.environment.module!r} has no function {missing[0]!r} "
                    "(one per tool, named like it)"
                )

    def _load(self, case: Case) -> ModuleType:
        assert case.agent is not None
        spec = case.agent.environment
        name = spec.module or ""
        where = f"{case.source or case.id}: field 'environment.module'"
        if spec.is_file:
            if spec.module_path is None:
                raise LabError(f"{where}: {name!r} is not resolved beside a case file")
            key = str(spec.module_path)
            if key not in self.modules:
                source = spec.module_path.read_bytes()
                digest = hashlib.sha256(source).hexdigest()
                loaded = importlib.util.spec_from_file_location(f"lab_env_{digest[:16]}", key)
                if loaded is None or loaded.loader is None:
                    raise LabError(f"{where}: cannot load {key}")
                module = importlib.util.module_from_spec(loaded)
                try:
                    loaded.loader.exec_module(module)
                except Exception as exc:  # noqa: BLE001 - the user's module: one line
                    raise LabError(f"{where}: importing {key} failed: {exc!r}") from None
                self.modules[key] = module
                self.fingerprints[spec.module or key] = digest
            return self.modules[key]
        if name not in self.allow:
            raise LabError(
                f"{where}: module {name!r} is code named by a case file; put it beside the case "
                f"file as a .py file, or allow it with --allow-module {name} "
                "(allow_modules in a config)"
            )
        if name not in self.modules:
            try:
                self.modules[name] = importlib.import_module(name)
            except ImportError as exc:
                raise LabError(f"{where}: cannot import {name!r}: {exc}") from None
            path = getattr(self.modules[name], "__file__", None)
            text = open(path, "rb").read() if path else name.encode()
            self.fingerprints[name] = hashlib.sha256(text).hexdigest()
        return self.modules[name]

    def new(self, case: Case) -> Environment:
        """A fresh environment for one trajectory of `case`."""
        assert case.agent is not None
        spec = case.agent.environment
        module = None
        if spec.module is not None:
            module = self.modules[str(spec.module_path) if spec.is_file else spec.module]
        return Environment(spec, case.agent.tools, module)
