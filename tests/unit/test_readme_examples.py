"""The README's complete examples (case files in each format, a sweep config) load as written:
each block marked `<!-- example: NAME -->` is saved as NAME and read by the lab's own loaders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.cases.loaders import load_cases
from lab.determinism.config import load_sweep_config

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE = re.compile(r"<!-- example: (\S+) -->\n```[a-z]*\n(.*?)```", re.S)


def examples() -> dict[str, str]:
    return {name: body for name, body in EXAMPLE.findall(README.read_text())}


def save(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text(examples()[name])
    return path


def test_every_format_is_shown() -> None:
    assert set(examples()) == {
        "cases.yaml", "cases.jsonl", "cases.csv", "sweep.yaml", "agent-sweep.yaml",
    }  # fmt: skip


def test_the_yaml_case_file_loads_and_its_checks_work(tmp_path: Path) -> None:
    cases = {c.id: c for c in load_cases(save(tmp_path, "cases.yaml"))}
    assert list(cases) == ["capital-fr", "sum", "sentiment", "person-json", "completion"]
    assert cases["capital-fr"].tags == ["geography", "short"]
    assert cases["sum"].system is not None and cases["sum"].metadata == {"source": "hand-written"}
    assert [c.run("42").passed for c in cases["sum"].checks] == [True, True]
    assert not all(c.run("it is 42").passed for c in cases["sum"].checks)
    assert cases["sentiment"].messages is not None and len(cases["sentiment"].messages) == 2
    assert cases["sentiment"].checks[0].run("Negative.").passed
    person = cases["person-json"].checks[0]
    assert person.run('{"name": "Ada", "age": 36}').passed
    assert not person.run('{"name": "Ada", "age": "36"}').passed
    assert cases["completion"].raw and cases["completion"].checks[0].run(" blue.").passed


@pytest.mark.parametrize("name", ["cases.jsonl", "cases.csv"])
def test_the_jsonl_and_csv_files_load(tmp_path: Path, name: str) -> None:
    cases = {c.id: c for c in load_cases(save(tmp_path, name))}
    assert cases["capital-fr"].tags == ["geography", "short"]
    assert cases["capital-fr"].checks[0].run("Paris").passed
    if name == "cases.csv":
        assert cases["capital-fr"].metadata == {"owner": "maps-team"}
        assert cases["sum"].system and cases["sum"].checks[0].run("42").passed
        assert cases["sum"].metadata == {"source": "hand-written"}


def test_the_sweep_config_loads(tmp_path: Path) -> None:
    config = load_sweep_config(save(tmp_path, "sweep.yaml"))
    prompts = {p.id: p for p in config.prompts}
    assert list(prompts) == ["p0", "capital-fr", "sum", "chat"]
    assert prompts["sum"].answer_regex == r"(\d+)" and prompts["sum"].expected == "42"
    assert prompts["chat"].messages is not None
    assert config.answer_regex is not None
    assert re.search(config.answer_regex, "The capital is Paris.").group(1) == "Paris"


def test_the_agent_sweep_config_loads(tmp_path: Path) -> None:
    config = load_sweep_config(save(tmp_path, "agent-sweep.yaml"))
    assert config.mode == "agents" and config.prompts == [] and config.agents is not None
    _, selected = config.agents.load()
    assert [c.id for _, c in selected] == ["calc-add", "calc-div", "convert-c-f", "kv-read-city"]
    assert config.agents.max_turns == 4 and config.agents.tool_protocol == "text"
    assert config.axes["dtype"] == ["float32", "bfloat16"] and config.axes["batch_size"] == [1, 4]
