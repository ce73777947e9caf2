"""Case files that are broken the ways production exports break: empty, invalid UTF-8, ragged
CSV, line-separator characters inside JSONL strings. Each is one LabError naming the place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.cases.loaders import load_cases
from lab.errors import LabError

CHECKS = '"[{""contains"": ""x""}]"'


@pytest.mark.parametrize("name", ["cases.jsonl", "cases.yaml", "cases.csv"])
def test_an_empty_file_says_so(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(" \n\n")
    with pytest.raises(LabError, match=rf"{name}: empty file \(no cases\)"):
        load_cases(path)


@pytest.mark.parametrize(
    "name,data,line",
    [
        (
            "cases.jsonl",
            b'{"id": "a", "prompt": "ok", "checks": {"contains": "x"}}\n{"id": "\xff"}',
            2,
        ),
        ("cases.yaml", b"- id: a\n  prompt: caf\xe9\n", 2),
        (
            "cases.csv",
            b"id,prompt,checks\na,ok,"
            + CHECKS.encode()
            + b"\nb,caf\xe9,"
            + CHECKS.encode()
            + b"\n",
            3,
        ),
    ],
)
def test_invalid_utf8_names_file_line_and_byte(
    tmp_path: Path, name: str, data: bytes, line: int
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(LabError, match=rf"{name}:{line}: not valid UTF-8 \(byte 0x(ff|e9)"):
        load_cases(path)


def test_ragged_csv_names_the_row(tmp_path: Path) -> None:
    short = tmp_path / "short.csv"
    short.write_text(f"id,prompt,checks\na,hi,{CHECKS}\nb,hi\n")
    with pytest.raises(LabError, match=r"short.csv:3: 2 values, the header has 3 columns"):
        load_cases(short)
    long = tmp_path / "long.csv"
    long.write_text(f"id,prompt,checks\na,hi,{CHECKS},extra\n")
    with pytest.raises(LabError, match=r"long.csv:2: more values than header columns"):
        load_cases(long)


def test_bom_and_crlf_files_load(tmp_path: Path) -> None:
    csv_file = tmp_path / "excel.csv"
    csv_file.write_bytes(("\ufeffid,prompt,checks\r\na,hi," + CHECKS + "\r\n").encode())
    assert [c.id for c in load_cases(csv_file)] == ["a"]
    jsonl = tmp_path / "win.jsonl"
    jsonl.write_bytes(b'{"id": "a", "prompt": "hi", "checks": {"contains": "x"}}\r\n')
    assert [c.prompt for c in load_cases(jsonl)] == ["hi"]


def test_jsonl_string_with_unicode_line_separators_is_one_case(tmp_path: Path) -> None:
    prompt = "one\u2028two\u0085three"
    path = tmp_path / "odd.jsonl"
    record = {"id": "a", "prompt": prompt, "checks": [{"contains": "x"}]}
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    assert [c.prompt for c in load_cases(path)] == [prompt]
