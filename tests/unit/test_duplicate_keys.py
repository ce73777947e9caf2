"""A key given twice in one object of a case file or config: JSON and YAML loaders keep the
last value silently (a second `checks` drops the first check, so success is scored against
less than the author wrote). The lab refuses it in one line naming the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cases.loaders import load_cases
from lab.determinism.config import load_sweep_config
from lab.errors import LabError
from lab.variance.config import load_config
from lab.yamlio import load_yaml_file


def test_a_jsonl_case_with_a_key_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text(
        '{"id": "a", "prompt": "2+2?", "checks": [{"contains": "4"}]}\n'
        '{"id": "b", "prompt": "3+3?", "checks": [{"contains": "6"}], '
        '"checks": [{"regex": "."}]}\n'
    )
    with pytest.raises(LabError, match=r"cases\.jsonl:2: key 'checks' appears twice"):
        load_cases(str(path))
    nested = tmp_path / "nested.jsonl"
    nested.write_text(
        '{"id": "a", "prompt": "p", "checks": [{"contains": "x", "contains": "y"}]}\n'
    )
    with pytest.raises(LabError, match=r"nested\.jsonl:1: key 'contains' appears twice"):
        load_cases(str(nested))


def test_a_yaml_case_with_a_key_twice_is_refused_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "cases.yaml"
    path.write_text(
        "cases:\n"
        "  - id: a\n"
        "    prompt: 2+2?\n"
        "    checks: [{contains: '4'}]\n"
        "    checks: [{regex: '.'}]\n"
    )
    with pytest.raises(LabError, match=r"cases\.yaml:5: key 'checks' appears twice"):
        load_cases(str(path))


def test_configs_with_a_key_twice_are_refused(tmp_path: Path) -> None:
    sample = tmp_path / "sample.yaml"
    sample.write_text("k: 8\ntemperature: 0.7\nk: 32\n")
    with pytest.raises(LabError, match=r"sample\.yaml:3: key 'k' appears twice"):
        load_config(str(sample), {})
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("prompts: [hi]\naxes: {dtype: [fp32, bf16]}\naxes: {batch_size: [1, 8]}\n")
    with pytest.raises(LabError, match=r"sweep\.yaml:3: key 'axes' appears twice"):
        load_sweep_config(sweep)
    fine = tmp_path / "fine.yaml"
    fine.write_text("a: {k: 1}\nb: {k: 2}\n")  # the same key in two mappings is fine
    assert load_yaml_file(fine) == {"a": {"k": 1}, "b": {"k": 2}}
