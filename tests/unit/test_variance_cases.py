"""Case loading from JSONL, YAML, CSV and saved datasets; errors name file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.cases.loaders import bundled_cases_path, load_cases
from lab.errors import LabError

GOOD = {"id": "c1", "prompt": "What is 2+3?", "checks": [{"numeric": 5}], "tags": ["math"]}


def write_jsonl(path: Path, records: list[dict]) -> Path:  # type: ignore[type-arg]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def error_of(source: str | Path) -> str:
    with pytest.raises(LabError) as info:
        load_cases(source)
    message = str(info.value)
    assert "\n" not in message  # one line
    return message


def test_jsonl_loads_prompt_messages_tags_metadata(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [
            GOOD,
            {
                "id": "c2",
                "messages": [{"role": "user", "content": "Hi"}],
                "checks": {"contains": "hello"},
                "metadata": {"source": "x"},
            },
        ],
    )
    cases = load_cases(path)
    assert [c.id for c in cases] == ["c1", "c2"]
    assert cases[0].tags == ["math"] and cases[0].checks[0].type == "numeric"
    assert cases[0].request().messages == [{"role": "user", "content": "What is 2+3?"}]
    assert cases[1].request().messages == [{"role": "user", "content": "Hi"}]
    assert cases[1].metadata == {"source": "x"}
    assert cases[0].source.endswith("c.jsonl:1")


def test_raw_prompt_and_system(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [GOOD | {"raw": True}, GOOD | {"id": "c2", "system": "Be brief."}],
    )
    raw, system = load_cases(path)
    assert raw.request().prompt == "What is 2+3?" and raw.request().messages is None
    assert system.request().messages[0] == {"role": "system", "content": "Be brief."}  # type: ignore[index]


@pytest.mark.parametrize(
    ("record", "needle"),
    [
        ({"prompt": "x", "checks": [{"contains": "a"}]}, "field 'id'"),
        (GOOD | {"check": []}, "field 'check': unknown field"),
        ({"id": "c", "checks": [{"contains": "a"}]}, "field 'prompt'"),
        (GOOD | {"messages": [{"role": "user", "content": "x"}]}, "field 'prompt'"),
        (GOOD | {"checks": []}, "field 'checks'"),
        (GOOD | {"checks": [{"contains": "a"}, {"regex": "("}]}, "field 'checks[1].pattern'"),
        (GOOD | {"tags": [1]}, "field 'tags'"),
        (
            {
                "id": "c",
                "messages": [{"role": "bot", "content": "x"}],
                "checks": [{"contains": "a"}],
            },
            "field 'messages[0].role'",
        ),
    ],
)
def test_jsonl_errors_name_file_line_and_field(
    tmp_path: Path,
    record: dict,  # type: ignore[type-arg]
    needle: str,
) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD | {"id": "ok"}, record])
    message = error_of(path)
    assert message.startswith(f"{path}:2: ")
    assert needle in message


def test_jsonl_syntax_error_and_duplicate_ids(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{not json\n")
    assert error_of(path).startswith(f"{path}:2: not a JSON object")
    path = write_jsonl(tmp_path / "dup.jsonl", [GOOD, GOOD])
    message = error_of(path)
    assert message.startswith(f"{path}:2: field 'id': duplicate id 'c1'")


def test_yaml_errors_point_at_the_field_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "cases:\n"
        "  - id: a\n"
        "    prompt: hi\n"
        "    checks: [{contains: x}]\n"
        "  - id: b\n"
        "    prompt: hi\n"
        "    tags: [t]\n"
        "    checks:\n"
        "      - {numeric: twelve}\n"
    )
    message = error_of(path)
    assert message.startswith(f"{path}:8: field 'checks[0].value'")
    path.write_text("- id: a\n  prompt: [unclosed\n")
    assert error_of(path).startswith(f"{path}:")


def test_yaml_list_form(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("- id: a\n  prompt: hi\n  checks: [{contains: x}]\n  tags: a;b\n")
    [case] = load_cases(path)
    assert case.tags == ["a", "b"]


def test_csv_with_json_columns_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        "id,prompt,checks,tags,difficulty\n"
        'a,What is 2+3?,"[{""numeric"": 5}]",math;easy,1\n'
        'b,Name a color,"{""contains"": ""red""}",,2\n'
    )
    a, b = load_cases(path)
    assert a.tags == ["math", "easy"] and a.metadata == {"difficulty": "1"}
    assert b.checks[0].type == "contains" and b.tags == []
    path.write_text('id,prompt,checks\na,hi,"[{""numeric"": 5}]"\nb,hi,"[{""numeric"": }]"\n')
    message = error_of(path)
    assert message.startswith(f"{path}:3: field 'checks': not valid JSON")


def test_saved_dataset(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = {
        "id": ["a", "b"],
        "prompt": ["What is 2+3?", "Capital of France?"],
        "checks": [json.dumps([{"numeric": 5}]), json.dumps([{"contains": "Paris"}])],
        "tags": [["math"], ["facts"]],
        "source": ["s1", "s2"],
    }
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    a, b = load_cases(tmp_path / "ds")
    assert a.tags == ["math"] and b.checks[0].type == "contains"
    assert a.metadata == {"source": "s1"}
    # struct-typed checks: datasets fills the keys a row lacks with None
    structured = rows | {
        "checks": [[{"numeric": 5.0, "contains": None}], [{"numeric": None, "contains": "Paris"}]]
    }
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(structured)}).save_to_disk(
        str(tmp_path / "dd")
    )
    assert [c.checks[0].type for c in load_cases(tmp_path / "dd")] == ["numeric", "contains"]
    bad = rows | {"prompt": ["", "x"]}
    datasets.Dataset.from_dict(bad).save_to_disk(str(tmp_path / "bad"))
    assert (
        error_of(tmp_path / "bad")
        == f"{tmp_path / 'bad'}: row 0: field 'prompt': must be non-empty text"
    )


def test_unknown_source_and_bundled(tmp_path: Path) -> None:
    assert "no such case file" in error_of(tmp_path / "missing.jsonl")
    (tmp_path / "c.txt").write_text("x")
    assert "unknown case format" in error_of(tmp_path / "c.txt")
    assert "no bundled case set" in error_of("bundled:nope")


def test_bundled_basic_set() -> None:
    cases = load_cases("bundled:basic")
    assert len(cases) == 50
    assert bundled_cases_path("basic").is_file()
    tags = {t for c in cases for t in c.tags}
    assert {"facts", "arithmetic", "classification", "extraction", "instructions"} <= tags
    assert {c.checks[0].type for c in cases} >= {"contains", "numeric", "one_of", "json", "python"}
