"""Cohort buckets and tails: validation, bucketing, hand-computed tails, the report (no model)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from lab.cases.cohorts import (
    band_label,
    bucket_cases,
    load_cohorts_file,
    parse_cohorts,
)
from lab.cases.model import Case
from lab.errors import LabError
from lab.variance.analyze import cohort_tails
from lab.variance.config import SampleConfig, load_config
from lab.variance.report import build_report, rebuild_report
from tests.unit.test_cli import run_lab
from tests.unit.test_variance_report import StubEmbedder, make_run


def _case(cid: str, prompt: str, tags: list[str] | None = None, **metadata: object) -> Case:
    return Case(id=cid, checks=[], prompt=prompt, tags=tags or [], metadata=dict(metadata))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"langs": True}, "cohorts.langs: unknown key"),
        ({"length_bands": [0, 20, 10]}, r"cohorts.length_bands\[2\]: edges must increase"),
        ({"length_bands": [0, "x"]}, r"cohorts.length_bands\[1\]: must be a number or inf"),
        ({"length_bands": [-1, 5]}, r"cohorts.length_bands\[0\]: must be >= 0"),
        ({"length_bands": [5]}, "cohorts.length_bands: give at least two edges"),
        ({"locale": "yes"}, "cohorts.locale: must be true or false"),
        ({"intent": {"tag": "x"}}, "cohorts.intent: use a tag prefix"),
        ([1, 2], "setting 'cohorts' must be a mapping"),
    ],
)
def test_bad_cohort_config_names_the_field(value: object, message: str) -> None:
    with pytest.raises(LabError, match=message):
        SampleConfig(cohorts=value)  # type: ignore[arg-type]


def test_cohorts_in_yaml_config_and_not_in_identity(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("k: 4\ncohorts:\n  locale: true\n  length_bands: [0, 20, .inf]\n")
    config = load_config(path, {})
    assert config.cohorts == {"locale": True, "length_bands": [0, 20, "inf"]}
    plain = dataclasses.replace(config, cohorts={})
    assert config.identity() == plain.identity()  # analysis only: a run resumes either way
    assert json.dumps(config.to_dict())  # standard JSON: inf kept as "inf"
    bad = tmp_path / "bad.yaml"
    bad.write_text("cohorts: {length_bands: [0, 0]}\n")
    out = run_lab("sample", str(bad))
    assert out.returncode == 2 and "cohorts.length_bands[1]: edges must increase" in out.stderr


def test_band_labels() -> None:
    edges = [5.0, 20.0, math.inf]
    assert band_label(3, edges) == "length=<5"
    assert band_label(5, edges) == "length=[5,20)"
    assert band_label(20, edges) == "length=[20,inf)"
    assert band_label(25, [0.0, 20.0]) == "length=>=20"


def test_bucket_cases_every_dimension() -> None:
    cases = [
        _case("a", "What is the capital of France and why?", ["intent:geo"], plan="pro"),
        _case("b", "Wie spät ist es in Berlin, und wann fährt der Zug?", ["x"]),
        _case("c", 'Extract the name: {"name": "Ada", "age": 3}', ["intent:extract"]),
    ]
    spec = parse_cohorts(
        {
            "locale": True,
            "length_bands": [0, 8, "inf"],
            "schema_shape": True,
            "intent": "intent:",
            "tokenizer": "whitespace",
        }
    )
    buckets, info = bucket_cases(cases, spec, "unused")
    members = {name: idx for name, (_, idx) in buckets.items()}
    assert members["locale=en"] == [0, 2] and members["locale=de"] == [1]
    # whitespace tokens: 8, 10, 7
    assert members["length=[0,8)"] == [2] and members["length=[8,inf)"] == [0, 1]
    assert members["schema={metadata.plan}"] == [0]
    assert members["schema={json.age,json.name}"] == [2] and members["schema=(none)"] == [1]
    assert members["intent=geo"] == [0] and members["intent=extract"] == [2]
    assert members["intent=(none)"] == [1]
    assert info["length_tokens"] == "whitespace"
    by_field = parse_cohorts({"intent": {"field": "plan"}})
    buckets, _ = bucket_cases(cases, by_field, "unused")
    assert {n: i for n, (_, i) in buckets.items()} == {"intent=pro": [0], "intent=(none)": [1, 2]}


def test_cohort_tails_hand_values_worst_first() -> None:
    cases = [_case(f"c{i}", "q", ["all"] + (["bad"] if i < 2 else [])) for i in range(5)]
    rates = np.array([0.0, 0.5, 1.0, 1.0, 1.0])
    tails, _ = cohort_tails(cases, rates, {}, "unused")
    assert list(tails) == ["bad", "all"]
    bad, every = tails["bad"], tails["all"]
    assert bad["cases"] == 2 and bad["mean"] == 0.25 and bad["kind"] == "tag"
    # type 7 on [0, 0.5]: p5 = 0.025, p10 = 0.05, p50 = 0.25, p90 = 0.45
    assert [bad[q] for q in ("p5", "p10", "p50", "p90")] == pytest.approx([0.025, 0.05, 0.25, 0.45])
    # type 7 on [0, .5, 1, 1, 1]: h = 4q; p5 = 0.1, p10 = 0.2, p50 = 1, p90 = 1
    assert [every[q] for q in ("p5", "p10", "p50", "p90")] == pytest.approx([0.1, 0.2, 1, 1])
    assert every["mean"] == pytest.approx(0.7)


def test_report_shows_buckets_and_rebuilds_with_new_ones(tmp_path: Path) -> None:
    path, config = make_run(tmp_path)
    config = dataclasses.replace(config, cohorts={"length_bands": [0, 2, "inf"]})
    config.cohorts["tokenizer"] = "whitespace"
    metrics = build_report(path, config, emit=lambda m: None, embedder=StubEmbedder()).metrics  # type: ignore[arg-type]
    cohorts = metrics["cohorts"]
    # prompts "Capital of France?" (3 words), "7+5?" (1), "Say yes" (2); rates 1, .5, 0
    assert cohorts["length=[0,2)"]["mean"] == 0.5 and cohorts["length=[0,2)"]["kind"] == "length"
    assert cohorts["length=[2,inf)"]["mean"] == 0.5 and cohorts["length=[2,inf)"]["cases"] == 2
    assert cohorts["hard"]["mean"] == pytest.approx(0.25)
    summary = (path / "summary.md").read_text()
    assert "## Cohorts, worst tail first" in summary
    table = summary.split("## Cohorts, worst tail first")[1]
    assert table.index("| hard | tag | 2 |") < table.index("| facts | tag | 1 |")
    assert "<td>length=[0,2)</td><td>length</td>" in (path / "report.html").read_text()
    identity = (path / "config.json").read_text()
    new = tmp_path / "cohorts.yaml"
    new.write_text("cohorts:\n  intent: {field: plan}\n  tokenizer: whitespace\n")
    rebuilt = rebuild_report(path, {"cohorts": str(new)}, emit=lambda m: None).metrics
    assert "intent=(none)" in rebuilt["cohorts"] and "length=[0,2)" not in rebuilt["cohorts"]
    assert (path / "config.json").read_text() == identity
    assert json.loads((path / "settings.json").read_text())["cohorts"]["intent"] == {
        "field": "plan"
    }


def test_load_cohorts_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("locale: maybe\n")
    with pytest.raises(LabError, match=r"c.yaml: cohorts.locale: must be true or false"):
        load_cohorts_file(path)
