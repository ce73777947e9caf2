"""Cases: load, validate and tag the prompts a variance run samples.

A case is an id, a prompt (sent as one chat user turn, or as raw text with `raw: true`) or a
list of chat messages, the checks a sample must pass (lab.variance.checks), optional tags
(cohorts, for per-tag tails) and free metadata. Sources:

    bundled:basic            the 50 example cases shipped with the lab (lab/cases/basic.yaml)
    cases.jsonl              one JSON object per line
    cases.yaml / .yml        a list of mappings, or {cases: [...]}
    cases.csv                columns id, prompt | messages (JSON), checks (JSON), tags (a;b),
                             system, raw, metadata (JSON); any other column goes to metadata
    DIR[#split]              a Hugging Face `datasets` dataset saved with save_to_disk
                             (same columns as CSV; needs the `datasets` package)

JSONL and YAML refuse unknown fields (a typo like "check" must not silently drop checks); CSV
and datasets keep unknown columns as metadata. Any problem is one LabError naming the file,
the line (row for datasets) and the field:

    cases.jsonl:7: field 'checks[0].pattern': invalid regex: ...

    from lab.data import load_cases
    cases = load_cases("bundled:basic")
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.backends.base import Request
from lab.errors import LabError
from lab.variance.checks import Check
from lab.variance.specs import CheckSpecError, parse_check
from lab.yamlio import compose_yaml, construct_yaml, read_text

CASES_DIR = Path(__file__).resolve().parent / "cases"
FIELDS = ("id", "prompt", "messages", "system", "raw", "checks", "tags", "metadata")
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
        if self.tags:
            out["tags"] = self.tags
        if self.metadata:
            out["metadata"] = self.metadata
        return out


class _FieldError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def bundled_case_sets() -> list[str]:
    return sorted(p.stem for p in CASES_DIR.glob("*.yaml"))


def bundled_cases_path(name: str) -> Path:
    """The file of a bundled case set (`bundled:NAME`)."""
    path = CASES_DIR / f"{name}.yaml"
    if not path.exists():
        raise LabError(f"no bundled case set {name!r}; have {bundled_case_sets()}")
    return path


def _json_field(value: Any, name: str) -> Any:
    """CSV and datasets carry structured fields as JSON text."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise _FieldError(name, f"not valid JSON: {exc.msg}") from None
    return value


def _messages(value: Any) -> list[dict[str, str]]:
    value = _json_field(value, "messages")
    if not isinstance(value, list) or not value:
        raise _FieldError("messages", "must be a non-empty list of {role, content}")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise _FieldError(f"messages[{i}]", "must be a mapping with a string 'content'")
        if m.get("role") not in ("system", "user", "assistant"):
            raise _FieldError(f"messages[{i}].role", "must be system, user or assistant")
        out.append({"role": str(m["role"]), "content": str(m["content"])})
    return out


def _tags(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [t.strip() for t in re.split(r"[;,|]", value) if t.strip()]
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return list(value)
    raise _FieldError("tags", "must be a list of strings (or 'a;b' text)")


def _checks(value: Any) -> list[Check]:
    value = _json_field(value, "checks")
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _FieldError("checks", 'give at least one check, e.g. [{"contains": "Paris"}]')
    checks = []
    for i, spec in enumerate(value):
        try:
            checks.append(parse_check(spec))
        except CheckSpecError as exc:
            where = f"checks[{i}].{exc.field}" if exc.field else f"checks[{i}]"
            raise _FieldError(where, str(exc)) from None
    return checks


def case_from_record(
    record: dict[str, Any], strict: bool, source: str, require_checks: bool = True
) -> Case:
    """One case from a mapping; raises _FieldError naming the field.

    `require_checks=False` accepts a case without checks (a production sample compared with
    `lab shift` has inputs only); checks that are given are still validated.
    """
    record = {k: v for k, v in record.items() if v is not None}
    extra = {k: v for k, v in record.items() if k not in FIELDS}
    if extra and strict:
        name = sorted(extra)[0]
        raise _FieldError(name, f"unknown field; a case has {', '.join(FIELDS)}")
    case_id = record.get("id")
    if isinstance(case_id, int) and not isinstance(case_id, bool):
        case_id = str(case_id)
    if not isinstance(case_id, str) or not _ID.match(case_id):
        raise _FieldError("id", "must be a non-empty id (letters, digits, _ . : / -)")
    has_prompt, has_messages = "prompt" in record, "messages" in record
    if has_prompt == has_messages:
        raise _FieldError("prompt", "give exactly one of 'prompt' or 'messages'")
    if has_prompt and (not isinstance(record["prompt"], str) or not record["prompt"].strip()):
        raise _FieldError("prompt", "must be non-empty text")
    system = record.get("system")
    if system is not None and (not isinstance(system, str) or has_messages):
        raise _FieldError("system", "must be text, and only beside 'prompt'")
    raw = record.get("raw", False)
    if isinstance(raw, str):  # CSV / datasets text; anything else is a typo, not False
        raw = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(
            raw.strip().lower(), raw
        )
    if not isinstance(raw, bool):
        raise _FieldError("raw", "must be true or false")
    metadata = _json_field(record.get("metadata", {}), "metadata")
    if not isinstance(metadata, dict):
        raise _FieldError("metadata", "must be a mapping")
    return Case(
        id=case_id,
        prompt=record.get("prompt"),
        messages=_messages(record["messages"]) if has_messages else None,
        system=system,
        raw=raw,
        checks=_checks(record.get("checks")) if require_checks or "checks" in record else [],
        tags=_tags(record.get("tags")),
        metadata=metadata | extra,
        source=source,
    )


class _DuplicateKey(Exception):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _records_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    out = []
    # split("\n"), not splitlines(): U+2028 or U+0085 inside a JSON string is not a line end.
    for number, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            record = json.loads(line, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise LabError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
        except _DuplicateKey as exc:  # json keeps the last one silently: a lost check
            raise LabError(
                f"{path}:{number}: key {exc.args[0]!r} appears twice in one object; "
                "JSON would keep only the last"
            ) from None
        if not isinstance(record, dict):
            raise LabError(f"{path}:{number}: expected a JSON object per line")
        out.append((number, record))
    return out


def _records_yaml(
    path: Path,
) -> tuple[list[tuple[int, dict[str, Any]]], dict[tuple[int, str], int]]:
    """The cases with their start lines, and (case start line, field) -> the field's own line
    (for precise errors), from one parse."""
    root = compose_yaml(read_text(path), path)
    if isinstance(root, yaml.MappingNode):
        root = next((v for k, v in root.value if k.value == "cases"), root)
    data = construct_yaml(root, path)
    if not isinstance(data, list) or not isinstance(root, yaml.SequenceNode):
        raise LabError(f"{path}:1: expected a list of cases (or a mapping with 'cases')")
    out = []
    field_lines: dict[tuple[int, str], int] = {}
    for item, record in zip(root.value, data, strict=True):
        line = item.start_mark.line + 1
        if not isinstance(record, dict):
            raise LabError(f"{path}:{line}: a case must be a mapping")
        out.append((line, record))
        for key, _ in item.value:
            field_lines[(line, str(key.value))] = key.start_mark.line + 1
    return out, field_lines


def _records_csv(path: Path) -> list[tuple[int, dict[str, Any]]]:
    out = []
    missing: Any = object()  # restval: marks a row with fewer values than the header
    with io.StringIO(read_text(path), newline="") as fh:
        reader = csv.DictReader(fh, restval=missing)
        if not reader.fieldnames or "id" not in reader.fieldnames:
            raise LabError(f"{path}:1: field 'id': the header needs an 'id' column")
        twice = sorted({n for n in reader.fieldnames if reader.fieldnames.count(n) > 1})
        if twice:  # DictReader would keep only the last column of that name, silently
            raise LabError(f"{path}:1: field {twice[0]!r}: the header names this column twice")
        line = reader.line_num
        for row in reader:
            if None in row:
                raise LabError(f"{path}:{line + 1}: more values than header columns")
            if any(v is missing for v in row.values()):
                got = sum(v is not missing for v in row.values())
                raise LabError(
                    f"{path}:{line + 1}: {got} values, the header has {len(row)} columns"
                )
            out.append((line + 1, {k: (v if v != "" else None) for k, v in row.items()}))
            line = reader.line_num
    return out


def _records_dataset(spec: str) -> list[tuple[int, dict[str, Any]]]:
    path, _, split = spec.partition("#")
    try:
        import datasets
    except ImportError:
        raise LabError(f"{path}: loading a saved dataset needs `pip install datasets`") from None
    try:
        ds = datasets.load_from_disk(path)
    except Exception as exc:  # noqa: BLE001 - datasets raises several types for a bad dir
        raise LabError(f"{path}: not a saved datasets dataset ({exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        names = list(ds)
        if not split:
            split = "test" if "test" in names else (names[0] if len(names) == 1 else "")
        if split not in names:
            raise LabError(f"{path}: pick a split with {path}#SPLIT, one of {names}")
        ds = ds[split]
    elif split:
        raise LabError(f"{path}: a single dataset has no split {split!r}")
    return [(i, dict(row)) for i, row in enumerate(ds)]


def load_cases(source: str | Path, require_checks: bool = True) -> list[Case]:
    """Cases from a bundled set name, a file, or a saved dataset directory.

    `require_checks=False`: inputs without checks are fine (production samples).
    """
    text = str(source)
    if text.startswith("bundled:"):
        path = bundled_cases_path(text.split(":", 1)[1])
    else:
        path = Path(text.partition("#")[0])
    if not path.exists():
        raise LabError(f"{path}: no such case file or dataset directory")
    strict, label = True, "line"
    field_lines: dict[tuple[int, str], int] = {}
    suffix = path.suffix.lower()
    if path.is_file() and not read_text(path).strip():
        raise LabError(f"{path}: empty file (no cases)")
    if path.is_dir():
        records = _records_dataset(text)
        strict, label = False, "row"
    elif suffix in (".jsonl", ".ndjson"):
        records = _records_jsonl(path)
    elif suffix in (".yaml", ".yml"):
        records, field_lines = _records_yaml(path)
    elif suffix == ".csv":
        records = _records_csv(path)
        strict = False
    else:
        raise LabError(f"{path}: unknown case format; use .jsonl, .yaml, .csv or a dataset dir")
    if not records:
        raise LabError(f"{path}: no cases")
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for line, record in records:
        where = f"{path}:{line}" if label == "line" else f"{path}: row {line}"
        try:
            case = case_from_record(record, strict, where, require_checks)
        except _FieldError as exc:
            at = field_lines.get((line, exc.field.split(".")[0].split("[")[0]), line)
            where = f"{path}:{at}" if label == "line" else where
            raise LabError(f"{where}: field '{exc.field}': {exc}") from None
        if case.id in seen:
            raise LabError(
                f"{where}: field 'id': duplicate id {case.id!r} (first at {seen[case.id]})"
            )
        seen[case.id] = line
        cases.append(case)
    return cases


def cases_fingerprint(cases: list[Case]) -> str:
    """A hash of the cases as specs: a resumed run refuses a changed case set."""
    text = json.dumps([c.to_dict() for c in cases], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
