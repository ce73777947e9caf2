"""Case files: load the cases of a bundled set, a file or a saved dataset, validated.

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

    from lab.cases.loaders import load_cases
    cases = load_cases("bundled:basic")
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import yaml

from lab.cases.model import Case, CaseFieldError, case_from_record
from lab.errors import LabError
from lab.yamlio import compose_yaml, construct_yaml, read_text

#: the bundled case sets (`bundled:NAME`): the YAML files beside this module
CASES_DIR = Path(__file__).resolve().parent


def bundled_case_sets() -> list[str]:
    return sorted(p.stem for p in CASES_DIR.glob("*.yaml"))


def bundled_cases_path(name: str) -> Path:
    """The file of a bundled case set (`bundled:NAME`)."""
    path = CASES_DIR / f"{name}.yaml"
    if not path.exists():
        raise LabError(f"no bundled case set {name!r}; have {bundled_case_sets()}")
    return path


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
            case = case_from_record(
                record, strict, where, require_checks, path if path.is_dir() else path.parent
            )
        except CaseFieldError as exc:
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
