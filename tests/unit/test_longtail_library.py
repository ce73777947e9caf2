"""The worst-case input library on run directories made by the real sampling pipeline with a
scripted engine (no model): what `add` takes, de-duplication, idempotence, atomic writes, the
floor as a gate, and `show`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lab.backends import Backend, EngineConfig, Generation, Request, SamplingConfig
from lab.cases.loaders import load_cases
from lab.cli import cli
from lab.errors import LabError
from lab.longtail import library as L
from lab.variance import report
from lab.variance.config import SampleConfig
from lab.variance.report import build_report
from lab.variance.runner import open_run, sample_cases
from tests.unit.test_variance_report import StubEmbedder

K = 4
DAY = dt.date(2026, 11, 27)


class ScriptedBackend(Backend):
    """Answers by prompt: "always" -> Paris, "half" -> Paris on even samples, else London."""

    def __init__(self) -> None:
        super().__init__(EngineConfig(backend="hf"))

    def generate(self, requests: list[Request], sampling: SamplingConfig) -> list[Generation]:
        def text(r: Request, i: int) -> str:
            prompt = r.messages[-1]["content"] if r.messages else r.prompt or ""
            good = "always" in prompt or ("half" in prompt and i % 2 == 0)
            return "Paris" if good else "London"

        return [
            Generation(
                request_id=r.id, sample_index=i, seed=sampling.sample_seed(i, r), backend="hf",
                prompt_token_ids=[1, 2], output_token_ids=[3], token_logprobs=[-0.1],
                top_logprobs=[[]], text=text(r, i), finish_reason="stop",
                timings={}, engine={}, sampling={},
            )
            for r in requests
            for i in range(sampling.n)
        ]  # fmt: skip


def make_run(tmp_path: Path, name: str, cases: list[dict[str, Any]], **settings: Any) -> Path:
    """A finished `lab sample` run directory (real runner and report, scripted engine)."""
    cases_file = tmp_path / f"{name}.jsonl"
    cases_file.write_text("".join(json.dumps(c) + "\n" for c in cases))
    values = {"cases": str(cases_file), "k": K, "backend": "hf", "out": str(tmp_path / name)}
    config = SampleConfig(**(values | settings))  # type: ignore[arg-type]
    loaded = load_cases(config.cases)
    store = open_run(config, loaded, EngineConfig(backend="hf"), fresh=False)
    sample_cases(config, ScriptedBackend(), store, loaded, emit=lambda m: None)
    build_report(store.path, config, emit=lambda m: None, embedder=StubEmbedder())  # type: ignore[arg-type]
    return store.path


def case(case_id: str, prompt: str, tags: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": case_id, "prompt": prompt, "checks": [{"contains": "Paris"}]}
    return out | ({"tags": tags} if tags else {})


CASES = [
    case("good", "always: capital of France?"),
    case("flaky", "half: capital of France?"),
    case("bad", "never: capital of France?", ["hard"]),
]


def test_add_takes_the_cases_under_the_threshold_with_their_origin(tmp_path: Path) -> None:
    run = make_run(tmp_path, "run1", CASES)
    lib = tmp_path / "evals" / "library.yaml"
    result = L.add_from_run(run, lib, threshold=0.5, today=DAY)
    # rates 1.0, 0.5, 0.0: only 0.0 is under 0.5 (0.5 is not)
    assert (result.below, result.added, result.duplicates, result.total) == (1, ["bad"], [], 1)
    loaded = load_cases(lib)  # the library is a case file lab sample runs as is
    assert [c.id for c in loaded] == ["bad"] and loaded[0].tags == ["hard"]
    info = loaded[0].metadata["library"]
    assert info["run_dir"] == str(run.resolve()) and info["added"] == "2026-11-27"
    assert (info["success_rate"], info["successes"], info["n"]) == (0.0, 0, K)
    assert (
        info["run"]["k"] == K
        and info["run"]["backend"] == "hf"
        and len(info["run"]["config"]) == 12
    )
    assert info["source_id"] == "bad" and info["threshold"] == 0.5
    header = L.read_library(lib)
    assert header.floor == L.DEFAULT_FLOOR
    more = L.add_from_run(run, lib, threshold=0.75, today=DAY)
    assert more.added == ["flaky"] and more.duplicates == ["bad"] and more.total == 2


def test_add_is_idempotent(tmp_path: Path) -> None:
    run = make_run(tmp_path, "run1", CASES)
    lib = tmp_path / "library.yaml"
    L.add_from_run(run, lib, threshold=0.75, today=DAY)
    before = lib.read_bytes()
    again = L.add_from_run(run, lib, threshold=0.75, today=dt.date(2027, 1, 1))
    assert again.added == [] and sorted(again.duplicates) == ["bad", "flaky"]
    assert lib.read_bytes() == before


def test_duplicates_are_found_by_content_and_ids_made_unique(tmp_path: Path) -> None:
    lib = tmp_path / "library.jsonl"
    L.add_from_run(make_run(tmp_path, "run1", CASES), lib, today=DAY)
    second = [
        case("renamed", "  never: capital of France?\r\n"),  # same content, other id
        case("bad", "never: what is the capital of Peru?"),  # other content, taken id
        {"id": "checks", "prompt": "never: capital of France?", "checks": [{"contains": "P"}]},
    ]
    run2 = make_run(tmp_path, "run2", second, temperature=1.0)
    result = L.add_from_run(run2, lib, today=DAY)
    assert result.duplicates == ["renamed"]
    assert result.added == ["bad-2", "checks"]  # other checks: another case
    cases = {c.id: c for c in load_cases(lib)}
    assert set(cases) == {"bad", "bad-2", "checks"}
    seen = cases["bad"].metadata["library"]["also_seen"]
    assert [s["run_dir"] for s in seen] == [str(run2.resolve())]
    assert seen[0]["run"]["temperature"] == 1.0
    assert cases["bad-2"].metadata["library"]["source_id"] == "bad"
    assert lib.read_text().startswith(L.JSONL_HEADER)
    # a second sighting from the same run is not recorded twice
    before = lib.read_bytes()
    L.add_from_run(run2, lib, today=DAY)
    assert lib.read_bytes() == before


def test_fingerprint_keeps_noise_variants_apart() -> None:
    from lab.cases.model import case_from_record

    def fp(prompt: str) -> str:
        return L.case_fingerprint(case_from_record(case("x", prompt), True, "t"))

    assert fp("What is it?") == fp("  What is it?\r\n")
    assert fp("Is it a caf\u00e9?") == fp("Is it a cafe\u0301?")  # NFC: the same text typed twice
    assert fp("What is it?") != fp("what is it?")
    assert fp("What is it?") != fp("What  is it?")


def test_a_failed_write_leaves_the_library_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run(tmp_path, "run1", CASES)
    lib = tmp_path / "library.yaml"
    L.add_from_run(run, lib, threshold=0.5, today=DAY)
    before = lib.read_bytes()

    def broken(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(L.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        L.add_from_run(run, lib, threshold=0.75, today=DAY)
    assert lib.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_input_names_the_place(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="no such run directory"):
        L.add_from_run(tmp_path / "nope", tmp_path / "lib.yaml")
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")
    with pytest.raises(LabError, match=r"half/samples.parquet: missing; run `lab sample-report"):
        L.add_from_run(half, tmp_path / "lib.yaml")
    run = make_run(tmp_path, "run1", CASES)
    for text, message in [
        ("", "empty file"),
        ("cases: [\n", "not valid YAML"),
        ("- id: a\n", "a mapping with 'floor' and 'cases'"),
        ("floor: {min_mean: high}\ncases: []\n", "field 'floor': gate: min_mean must be a number"),
        ("floor: {min_men: 1}\ncases: []\n", "unknown threshold 'min_men'"),
    ]:
        lib = tmp_path / "bad.yaml"
        lib.write_text(text)
        with pytest.raises(LabError, match=message):
            L.add_from_run(run, lib)
        assert lib.read_text() == text  # nothing written over a file it could not read
    lib = tmp_path / "bad.jsonl"
    lib.write_bytes(b'# lab-library: {"floor": {}}\n{"id": "a", "prompt": "caf\xe9"}\n')
    with pytest.raises(LabError, match="not valid UTF-8"):
        L.read_library(lib)
    with pytest.raises(LabError, match=r"threshold must be in \(0, 1\]"):
        L.add_from_run(run, tmp_path / "lib.yaml", threshold=0)


def test_run_gates_on_the_floor_through_the_sample_machinery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = report.build_report
    monkeypatch.setattr(
        report,
        "build_report",
        lambda root, cfg, emit, **kw: original(root, cfg, emit=emit, embedder=StubEmbedder(), **kw),  # type: ignore[arg-type]
    )
    lib = tmp_path / "library.yaml"
    L.add_from_run(make_run(tmp_path, "run1", CASES), lib, threshold=0.75, today=DAY)
    out = tmp_path / "librun"
    run = L.run_library(
        lib, {"k": 6, "out": str(out)}, backend=ScriptedBackend(), emit=lambda m: None
    )
    assert run.report is not None and run.path == out
    # flaky passes 3 of 6, bad 0 of 6: mean 0.25 < 0.5; p5 0.025 < 0.1
    assert run.report.headline["mean"] == pytest.approx(0.25)
    assert run.reasons == [
        "mean success 0.250 < min_mean 0.5",
        "p5 of per-case success 0.025 < min_p5 0.1",
    ]
    assert json.loads((out / "settings.json").read_text())["gate"]["min_mean"] == 0.5
    # The same library with a floor it meets passes.
    L.add_from_run(tmp_path / "run1", lib, floor={"min_mean": 0.2}, today=DAY)
    assert L.read_library(lib).floor == {"min_mean": 0.2}
    monkeypatch.chdir(tmp_path)  # the default run directory is relative: runs/library-...
    held = L.run_library(lib, {"k": 6}, backend=ScriptedBackend(), emit=lambda m: None)
    assert held.reasons == [] and held.path.name.startswith("library-library-")
    assert (tmp_path / held.path / "metrics.json").is_file()


def test_run_command_exits_1_with_reasons_under_the_floor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab.variance import runner

    original = report.build_report
    monkeypatch.setattr(
        report,
        "build_report",
        lambda root, cfg, emit, **kw: original(root, cfg, emit=emit, embedder=StubEmbedder(), **kw),  # type: ignore[arg-type]
    )
    monkeypatch.setattr(runner, "load_backend", lambda *a, **kw: ScriptedBackend())
    lib = tmp_path / "library.yaml"
    L.add_from_run(make_run(tmp_path, "run1", CASES), lib, threshold=0.75, today=DAY)
    args = ["library", "run", "--library", str(lib), "--backend", "hf", "--k", "2"]
    failed = CliRunner().invoke(cli, args + ["--out", str(tmp_path / "a")])
    assert failed.exit_code == 1
    assert "library under its floor: mean success 0.250 < min_mean 0.5" in failed.output
    L.add_from_run(tmp_path / "run1", lib, floor={"min_p5": 0.0}, today=DAY)
    held = CliRunner().invoke(cli, args + ["--out", str(tmp_path / "b")])
    assert held.exit_code == 0, held.output
    assert "library holds its floor" in held.output


def test_run_refuses_an_empty_library(tmp_path: Path) -> None:
    lib = tmp_path / "library.yaml"
    lib.write_text("floor: {min_mean: 0.5}\ncases: []\n")
    with pytest.raises(LabError, match="no cases yet"):
        L.run_library(lib, {"k": 2}, emit=lambda m: None)


def test_show_and_add_commands(tmp_path: Path) -> None:
    from lab.longtail.perturb import perturb_cases

    variants = perturb_cases(
        load_cases(_write(tmp_path, CASES)), ["truncation", "paraphrase"], seed=0
    ).variants
    run = make_run(tmp_path, "run1", [c.to_dict() for c in variants])
    lib = tmp_path / "library.yaml"
    runner = CliRunner()
    added = runner.invoke(
        cli, ["library", "add", str(run), "--library", str(lib), "--gate", "min_mean=0.6"]
    )
    assert added.exit_code == 0, added.output
    assert "added" in added.output and "cases in the library" in added.output
    shown = runner.invoke(cli, ["library", "show", "--library", str(lib), "--json"])
    summary = json.loads(shown.output)
    library = L.read_library(lib)
    assert summary["cases"] == len(library.cases) > 0
    assert summary["floor"] == {"min_mean": 0.6}
    assert summary["sources"] == {str(run.resolve()): len(library.cases)}
    kinds = {c.metadata["perturbation"]["kind"] for c in library.cases}
    assert set(summary["perturbation_kinds"]) == kinds
    flagged = sum("answer-may-change" in c.tags for c in library.cases)
    assert summary["answer_may_change"] == flagged
    text = runner.invoke(cli, ["library", "show", "--library", str(lib)]).output
    assert f"{len(library.cases)} cases, floor min_mean=0.6" in text
    missing = runner.invoke(cli, ["library", "show", "--library", str(tmp_path / "no.yaml")])
    assert "no such library" in str(missing.exception)


def _write(tmp_path: Path, cases: list[dict[str, Any]]) -> Path:
    path = tmp_path / "source.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    return path
