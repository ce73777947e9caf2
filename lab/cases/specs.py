"""Check specs -> Check objects, validated, with errors that name the offending field.

    {"type": "contains", "value": "Paris"}   ==   {"contains": "Paris"}     (shorthand)

`parse_check(spec)` raises CheckSpecError(field, message); lab.cases.model and loaders turn
that into a LabError naming the case file, line and field (e.g. `checks[1].pattern`). A python
check's "module:function" is only checked for its shape here: nothing is imported while a case
file loads. Its function is resolved from the modules the user allowed (lab.cases.codechecks)
by the commands that run checks, before any engine starts.

    from lab.cases.specs import parse_check
    check = parse_check({"numeric": 12, "tolerance": 0.5})
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from lab.cases.checks import (
    Check,
    Contains,
    Exact,
    JSONCheck,
    Normalized,
    Numeric,
    OneOf,
    PythonCheck,
    Regex,
    split_target,
)


class CheckSpecError(ValueError):
    """A bad check spec; `field` names the offending key (e.g. "pattern")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _strings(spec: dict[str, Any], key: str) -> list[str]:
    value = spec.get(key)
    # YAML turns `contains: 12` into an int; a number written as the expected text is text.
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise CheckSpecError(key, f"'{key}' must be a string or a non-empty list of strings")


def _flag(spec: dict[str, Any], key: str, default: bool) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise CheckSpecError(key, f"'{key}' must be true or false")
    return value


def _number(spec: dict[str, Any], key: str, default: float | None = None) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CheckSpecError(key, f"'{key}' must be a finite number")
    return float(value)


CHECK_TYPES: dict[str, type[Check]] = {
    cls.type: cls
    for cls in (Exact, Normalized, Contains, Regex, Numeric, OneOf, JSONCheck, PythonCheck)
}
ALIASES = {"normalized_exact": "normalized", "labels": "one_of", "function": "python"}


def canonical_spec(spec: Any) -> dict[str, Any]:
    """Expand the `{TYPE: VALUE}` shorthand to `{"type": TYPE, <main param>: VALUE}`."""
    if not isinstance(spec, dict):
        raise CheckSpecError("", 'a check must be a mapping, e.g. {"contains": "Paris"}')
    spec = {k: v for k, v in spec.items() if v is not None}  # datasets fill absent keys with None
    if "type" in spec:
        name = ALIASES.get(spec["type"], spec["type"])
        return spec | {"type": name}
    named = [k for k in spec if ALIASES.get(k, k) in CHECK_TYPES]
    if len(named) > 1:
        raise CheckSpecError(
            "type", f"one check names {len(named)} kinds {named}; give each its own check"
        )
    if len(named) != 1:
        raise CheckSpecError("type", f"give 'type' (one of {sorted(CHECK_TYPES)})")
    key = named[0]
    name = ALIASES.get(key, key)
    main = CHECK_TYPES[name].params[0]
    out = {k: v for k, v in spec.items() if k != key} | {"type": name}
    if not (name == "json" and spec[key] is True):
        out[main] = spec[key]
    return out


def parse_check(raw: Any) -> Check:
    """A Check from a spec; raises CheckSpecError naming the bad field."""
    spec = canonical_spec(raw)
    name = spec["type"]
    cls = CHECK_TYPES.get(name)
    if cls is None:
        raise CheckSpecError(
            "type", f"unknown check type {name!r}; use one of {sorted(CHECK_TYPES)}"
        )
    unknown = sorted(set(spec) - {"type", *cls.params})
    if unknown:
        raise CheckSpecError(unknown[0], f"{name} check has no parameter {unknown[0]!r}")
    if cls is Exact or cls is Normalized:
        return cls(spec=spec, values=_strings(spec, "value"))
    if cls is Contains:
        mode = spec.get("mode", "all")
        if mode not in ("all", "any"):
            raise CheckSpecError("mode", "'mode' must be 'all' or 'any'")
        values = _strings(spec, "value")
        if not all(values):  # "" is in every output: a check that can never fail
            raise CheckSpecError("value", "'value' must not be empty text")
        return Contains(
            spec=spec,
            values=values,
            any_of=mode == "any",
            ignore_case=_flag(spec, "ignore_case", True),
            negate=_flag(spec, "negate", False),
        )
    if cls is Regex:
        if not isinstance(spec.get("pattern"), str):
            raise CheckSpecError("pattern", "'pattern' must be a string")
        flags = re.IGNORECASE if _flag(spec, "ignore_case", False) else 0
        try:
            pattern = re.compile(spec["pattern"], flags | re.DOTALL)
        except re.error as exc:
            raise CheckSpecError("pattern", f"invalid regex: {exc}") from None
        return Regex(
            spec=spec,
            pattern=pattern,
            fullmatch=_flag(spec, "fullmatch", False),
            negate=_flag(spec, "negate", False),
        )
    if cls is Numeric:
        pick = spec.get("pick", "last")
        if pick not in ("last", "first", "any", "only"):
            raise CheckSpecError("pick", "'pick' must be last, first, any or only")
        return Numeric(
            spec=spec,
            value=_number(spec, "value"),
            tolerance=_number(spec, "tolerance", 1e-6),
            rel_tolerance=_number(spec, "rel_tolerance", 0.0),
            pick=pick,
        )
    if cls is OneOf:
        labels = _strings(spec, "labels")
        answer = spec.get("answer")
        if answer is not None and answer not in labels:
            raise CheckSpecError("answer", f"answer {answer!r} is not one of the labels {labels}")
        return OneOf(spec=spec, labels=labels, answer=answer)
    if cls is JSONCheck:
        return JSONCheck(spec=spec, validator=_schema_validator(spec.get("schema")))
    target = spec.get("function")
    if not isinstance(target, str) or split_target(target) is None:
        raise CheckSpecError(
            "function", f"'function' must be a 'module:function' string, got {target!r}"
        )
    args = spec.get("args", {})
    if not isinstance(args, dict):
        raise CheckSpecError("args", "'args' must be a mapping of keyword arguments")
    return PythonCheck(spec=spec, args=args)  # fn: lab.cases.codechecks.resolve_checks


def _schema_validator(schema: Any) -> Any:
    if schema is None:
        return None
    if isinstance(schema, str):  # CSV / datasets columns carry the schema as JSON text
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise CheckSpecError("schema", f"schema is not JSON: {exc.msg}") from None
    if not isinstance(schema, dict):
        raise CheckSpecError("schema", "'schema' must be a JSON Schema object")
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise CheckSpecError("schema", f"invalid JSON Schema: {exc.message}") from None
    return cls(schema)
