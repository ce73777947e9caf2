"""Checks: does one model output pass? Each check also extracts the answer it judged.

A case carries a list of check specs; a sample passes when every check passes. A spec is a
mapping with a `type` and its parameters, or the shorthand `{TYPE: VALUE, ...}`:

    {"type": "contains", "value": "Paris"}      ==  {"contains": "Paris"}
    {"numeric": 12, "tolerance": 0.5}
    {"json": true, "schema": {...}}             (JSON Schema, any draft jsonschema knows)
    {"python": "my_module:my_check", "args": {...}}

Types: exact, normalized (SQuAD-style normalized exact), contains, regex, numeric, one_of,
json, python (see each class). A check that cannot parse the output (no number, no label, no
JSON) fails, and its `reason` says why. The `answer` a check extracts (the number, the label,
the canonical JSON) is what the majority vote (maj@k) counts.

Specs become Check objects in lab/cases/specs.py:

    from lab.cases.specs import parse_check
    parse_check({"numeric": 12}).run("7 + 5 = 12")   # CheckResult(passed=True, ...)
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT_CHARS = frozenset(string.punctuation)
# "1,234.5", "-7", "3.14", ".5": thousands separators only in groups of three.
_NUMBER = re.compile(r"(?<![\w.])-?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    #: why it failed (or what matched); always filled
    reason: str
    #: the answer the check extracted, for majority voting (None: nothing extracted)
    answer: str | None = None


def normalize_answer(text: str) -> str:
    """THE answer normalization of the lab (checks, majority answers, a sweep's TARa and
    accuracy): SQuAD's - lowercase, drop punctuation and the articles a/an/the, collapse
    whitespace - except that a number stays the number it is: its sign and decimal point are
    kept, its thousands separators dropped ("The answer: -1,234.50!" -> "answer -1234.50";
    SQuAD alone made "-3" equal "3" and "3.14" equal "314"). So case, spacing, punctuation
    around words (a trailing period, a colon) and articles never make two answers differ."""
    text = text.lower()
    keep = {i for m in _NUMBER.finditer(text) for i in range(m.start(), m.end()) if text[i] in "-."}
    text = "".join(c for i, c in enumerate(text) if i in keep or c not in _PUNCT_CHARS)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Check:
    """Base: `run(output, case)` -> CheckResult. `spec` keeps the mapping it came from."""

    type: ClassVar[str] = ""
    #: parameters this type accepts besides "type"
    params: ClassVar[tuple[str, ...]] = ()
    spec: dict[str, Any] = field(default_factory=dict)

    def run(self, output: str, case: Any = None) -> CheckResult:
        raise NotImplementedError


@dataclass
class Exact(Check):
    """The output, stripped of surrounding whitespace, equals `value` (or one of a list)."""

    type: ClassVar[str] = "exact"
    params: ClassVar[tuple[str, ...]] = ("value",)
    values: list[str] = field(default_factory=list)

    def run(self, output: str, case: Any = None) -> CheckResult:
        got = output.strip()
        ok = got in self.values
        return CheckResult(ok, "exact match" if ok else f"got {_short(got)!r}", got)


@dataclass
class Normalized(Check):
    """Equal after normalize_answer (case, punctuation, articles, whitespace; numbers kept)."""

    type: ClassVar[str] = "normalized"
    params: ClassVar[tuple[str, ...]] = ("value",)
    values: list[str] = field(default_factory=list)

    def run(self, output: str, case: Any = None) -> CheckResult:
        got = normalize_answer(output)
        ok = got in {normalize_answer(v) for v in self.values}
        return CheckResult(ok, "normalized match" if ok else f"got {_short(got)!r}", got)


@dataclass
class Contains(Check):
    """Substring test: every (mode=all, default) or any (mode=any) of `value` appears.
    Case-insensitive unless ignore_case: false; negate: true inverts (must NOT appear)."""

    type: ClassVar[str] = "contains"
    params: ClassVar[tuple[str, ...]] = ("value", "mode", "ignore_case", "negate")
    values: list[str] = field(default_factory=list)
    any_of: bool = False
    ignore_case: bool = True
    negate: bool = False

    def run(self, output: str, case: Any = None) -> CheckResult:
        hay = output.lower() if self.ignore_case else output
        found = [v for v in self.values if (v.lower() if self.ignore_case else v) in hay]
        missing = [v for v in self.values if v not in found]
        if self.negate:
            return CheckResult(not found, f"contains {found[0]!r}" if found else "absent")
        ok = bool(found) if self.any_of else not missing
        answer = found[0] if found else None
        return CheckResult(ok, f"found {found[0]!r}" if ok else f"missing {missing[0]!r}", answer)


@dataclass
class Regex(Check):
    """re.search of `pattern` in the stripped output (fullmatch: true for the whole output).
    The first group, if any, else the whole match, is the extracted answer."""

    type: ClassVar[str] = "regex"
    params: ClassVar[tuple[str, ...]] = ("pattern", "ignore_case", "fullmatch", "negate")
    pattern: re.Pattern[str] = field(default_factory=lambda: re.compile(""))
    fullmatch: bool = False
    negate: bool = False

    def run(self, output: str, case: Any = None) -> CheckResult:
        text = output.strip()
        m = self.pattern.fullmatch(text) if self.fullmatch else self.pattern.search(text)
        if self.negate:
            return CheckResult(m is None, "no match" if m is None else f"matched {m.group(0)!r}")
        if m is None:
            return CheckResult(False, f"no match for /{self.pattern.pattern}/")
        answer = m.group(1) if m.groups() and m.group(1) is not None else m.group(0)
        return CheckResult(True, f"matched {_short(m.group(0))!r}", answer)


def extract_numbers(text: str) -> list[float]:
    return [float(m.replace(",", "")) for m in _NUMBER.findall(text)]


@dataclass
class Numeric(Check):
    """A number in the output within `tolerance` (absolute, default 1e-6) or `rel_tolerance`
    of `value`. pick: last (default: models state the result last), first, any, only."""

    type: ClassVar[str] = "numeric"
    params: ClassVar[tuple[str, ...]] = ("value", "tolerance", "rel_tolerance", "pick")
    value: float = 0.0
    tolerance: float = 1e-6
    rel_tolerance: float = 0.0
    pick: str = "last"

    def close(self, x: float) -> bool:
        return abs(x - self.value) <= max(self.tolerance, self.rel_tolerance * abs(self.value))

    def run(self, output: str, case: Any = None) -> CheckResult:
        numbers = extract_numbers(output)
        if not numbers:
            return CheckResult(False, "no number in the output")
        if self.pick == "any":
            hits = [x for x in numbers if self.close(x)]
            x = hits[0] if hits else numbers[-1]
        elif self.pick == "only" and len(numbers) > 1:
            return CheckResult(False, f"{len(numbers)} numbers in the output, expected one")
        else:
            x = numbers[0] if self.pick == "first" else numbers[-1]
        answer = f"{x:g}"
        ok = self.close(x)
        return CheckResult(ok, f"{answer} {'==' if ok else '!='} {self.value:g}", answer)


@dataclass
class OneOf(Check):
    """Classification: find which of `labels` the output names. The whole (normalized) output
    equal to a label wins; else exactly one label must appear as a word or phrase (none or
    several: failure). With `answer`, that label must be the answer; without, any label passes."""

    type: ClassVar[str] = "one_of"
    params: ClassVar[tuple[str, ...]] = ("labels", "answer")
    labels: list[str] = field(default_factory=list)
    answer: str | None = None

    def extract(self, output: str) -> tuple[str | None, str]:
        norm = normalize_answer(output)
        for label in self.labels:
            if norm == normalize_answer(label):
                return label, "the output is the label"
        # Longest labels first, their matches masked, so "not spam" does not also count "spam".
        found = []
        for label in sorted(self.labels, key=lambda lab: -len(normalize_answer(lab))):
            pattern = rf"\b{re.escape(normalize_answer(label))}\b"
            if re.search(pattern, norm):
                found.append(label)
                norm = re.sub(pattern, " ", norm)
        if len(found) == 1:
            return found[0], "label found"
        if not found:
            return None, f"no label of {self.labels} in the output"
        return None, f"ambiguous: names {found}"

    def run(self, output: str, case: Any = None) -> CheckResult:
        label, why = self.extract(output)
        if label is None:
            return CheckResult(False, why)
        if self.answer is None or label == self.answer:
            return CheckResult(True, f"label {label!r}", label)
        return CheckResult(False, f"label {label!r}, expected {self.answer!r}", label)


def extract_json(output: str) -> tuple[Any, str | None]:
    """(value, None) or (None, why it did not parse). Tries a ``` fence, the whole text, then
    the span from the first { or [ to the last } or ] (models wrap JSON in prose)."""
    candidates = [m.group(1) for m in _FENCE.finditer(output)] + [output.strip()]
    starts = [i for i in (output.find("{"), output.find("[")) if i >= 0]
    if starts:
        start = min(starts)
        end = max(output.rfind("}"), output.rfind("]"))
        if end > start:
            candidates.append(output[start : end + 1])
    error = "no JSON in the output"
    for text in candidates:
        try:
            return json.loads(text), None
        except json.JSONDecodeError as exc:
            error = f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    return None, error


@dataclass
class JSONCheck(Check):
    """The output holds JSON that parses and, when `schema` is given, validates against it."""

    type: ClassVar[str] = "json"
    params: ClassVar[tuple[str, ...]] = ("schema",)
    validator: Any = None

    def run(self, output: str, case: Any = None) -> CheckResult:
        value, error = extract_json(output)
        if error is not None:
            return CheckResult(False, error)
        answer = json.dumps(value, sort_keys=True)
        if self.validator is not None:
            problems = sorted(self.validator.iter_errors(value), key=lambda e: list(e.path))
            if problems:
                where = "/".join(str(p) for p in problems[0].path) or "(root)"
                return CheckResult(False, f"schema: {where}: {problems[0].message}", answer)
        return CheckResult(True, "valid JSON" if self.validator is None else "schema ok", answer)


#: a dotted module name, as a python check names it
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def split_target(target: str) -> tuple[str, str] | None:
    """'module:function' -> (module, function); None when it has not that shape."""
    module, sep, attr = target.partition(":")
    if not sep or not MODULE_NAME.match(module) or not attr.isidentifier():
        return None
    return module, attr


@dataclass
class PythonCheck(Check):
    """`function` = "module:function", called as f(output, case, **args). It returns a bool,
    (bool, reason), or a CheckResult; an exception counts as a failure with its message. `fn`
    is set by lab.cases.codechecks.resolve_checks, from a module the user allowed only."""

    type: ClassVar[str] = "python"
    params: ClassVar[tuple[str, ...]] = ("function", "args")
    fn: Callable[..., Any] | None = None
    args: dict[str, Any] = field(default_factory=dict)

    def run(self, output: str, case: Any = None) -> CheckResult:
        if self.fn is None:  # a bug: every command that runs checks resolves them first
            raise RuntimeError(f"python check {self.spec.get('function')!r} was not resolved")
        try:
            result = self.fn(output, case, **self.args)
        except Exception as exc:  # noqa: BLE001 - a crashing check is a failed sample
            return CheckResult(False, f"check raised {type(exc).__name__}: {exc}")
        if isinstance(result, CheckResult):
            return result
        if isinstance(result, tuple) and len(result) == 2:
            return CheckResult(bool(result[0]), str(result[1]))
        return CheckResult(bool(result), "passed" if result else f"{self.spec['function']} said no")


def run_checks(checks: list[Check], output: str, case: Any = None) -> list[CheckResult]:
    return [check.run(output, case) for check in checks]
