"""`lab sample --only-tags / --limit`: a subset of a case set, whose cases keep the seeds they
have in the whole set (so their samples equal a full run's). Fake seeded engine, no model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import lab.variance.report
from lab.errors import LabError
from lab.rundir import SAMPLES
from lab.store import RunStore
from lab.variance.config import SampleConfig, load_config
from lab.variance.runner import run_sample
from tests.unit.test_resume_interrupts import SeededBackend

TAGS = [["geo"], ["math"], ["geo", "easy"], ["math"], ["geo"], ["code"]]


@pytest.fixture
def tagged_cases(tmp_path: Path) -> Path:
    path = tmp_path / "cases.jsonl"
    rows = [
        {"id": f"c{i}", "prompt": f"q{i}", "tags": tags, "checks": [{"contains": "Paris"}]}
        for i, tags in enumerate(TAGS)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def run(config: SampleConfig, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    # The report (embeddings, statistics) is not what is tested here.
    monkeypatch.setattr(lab.variance.report, "build_report", lambda *a, **kw: {})
    outcome = run_sample(config, backend=SeededBackend(), emit=lambda m: None)
    return {e["key"]: e["generations"] for e in RunStore(outcome.path).entries(SAMPLES)}


def test_a_subset_samples_the_chosen_cases_with_their_whole_set_seeds(
    tagged_cases: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = {"cases": str(tagged_cases), "k": 3, "backend": "hf", "seed": 5, "temperature": 0.7}
    full = run(SampleConfig(**base, out=str(tmp_path / "full")), monkeypatch)
    geo = run(SampleConfig(**base, only_tags=["geo"], out=str(tmp_path / "geo")), monkeypatch)
    assert list(geo) == ["c0", "c2", "c4"]
    for case_id, samples in geo.items():
        assert samples == full[case_id]  # seeds, tokens, logprobs: as in the full run
    assert [g["seed"] for g in geo["c4"]] == [5 + 4 * 3 + i for i in range(3)]

    first = run(
        SampleConfig(**base, only_tags=["math", "code"], limit=2, out=str(tmp_path / "m")),
        monkeypatch,
    )
    assert list(first) == ["c1", "c3"]
    assert first["c3"] == full["c3"]


def test_selection_flags_and_their_errors(tagged_cases: Path, tmp_path: Path) -> None:
    config = load_config(None, {"cases": str(tagged_cases), "only_tags": "geo, easy", "limit": 2})
    assert config.only_tags == ["geo", "easy"]
    assert str(config.out_dir()) == "runs/sample-cases-geo_easy-first2-vllm-k32"
    with pytest.raises(LabError, match=r"no case of .* has one of these tags \(tags there: "
                       r"code, easy, geo, math\)"):  # fmt: skip
        from lab.cases.loaders import load_cases

        SampleConfig(cases=str(tagged_cases), only_tags=["nope"]).select(
            load_cases(str(tagged_cases))
        )
    with pytest.raises(LabError, match="limit must be >= 1"):
        SampleConfig(limit=0)
    with pytest.raises(LabError, match="only_tags must be a non-empty list"):
        SampleConfig(only_tags=[])
