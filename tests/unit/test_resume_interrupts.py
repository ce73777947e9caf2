"""Long runs killed and resumed, with a fake engine (no model): Ctrl-C at any moment, a Ctrl-C
swallowed by a finalizer, a partial last log line, a changed config, and what Ctrl-C prints."""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lab.store
from lab.backends import Backend, EngineConfig, Generation, Request, SamplingConfig
from lab.cases.loaders import load_cases
from lab.determinism.config import parse_sweep_config
from lab.determinism.sweep import run_sweep
from lab.errors import LabError
from lab.rundir import CELLS, SAMPLES
from lab.store import RunStore
from lab.variance.config import SampleConfig
from lab.variance.runner import open_run, sample_cases


class SeededBackend(Backend):
    """Output tokens depend only on each sample's seed (as a real seeded engine's do);
    `interrupt_after` raises KeyboardInterrupt on that call, as Ctrl-C inside generate."""

    def __init__(self, interrupt_after: int | None = None, on_call: Any = None) -> None:
        super().__init__(EngineConfig(backend="hf"))
        self.calls = 0
        self.interrupt_after = interrupt_after
        self.on_call = on_call

    def generate(self, requests: list[Request], sampling: SamplingConfig) -> list[Generation]:
        self.calls += 1
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            raise KeyboardInterrupt
        if self.on_call is not None:
            self.on_call()
        out = []
        for r in requests:
            for i in range(sampling.n):
                seed = sampling.sample_seed(i, r) or 0
                out.append(
                    Generation(
                        request_id=r.id, sample_index=i, seed=seed, backend="hf",
                        prompt_token_ids=[1], output_token_ids=[seed % 7, seed % 5],
                        token_logprobs=[-seed / 100, -0.5], top_logprobs=[[], []],
                        text="Paris" if seed % 3 == 0 else "Rome", finish_reason="stop",
                        timings={}, engine={}, sampling={},
                    )
                )  # fmt: skip
        return out


@pytest.fixture
def cases_file(tmp_path: Path) -> Path:
    path = tmp_path / "cases.jsonl"
    rows = [{"id": f"c{i}", "prompt": f"q{i}", "checks": [{"contains": "Paris"}]} for i in range(5)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture
def ctrl_c_handler() -> Iterator[None]:
    """lab.cli.main's SIGINT handler, removed (and its count reset) afterwards."""
    previous, hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    lab.store.install_interrupt_handler()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = hook
        lab.store._interrupts = 0


def settings(cases_file: Path, out: Path, **kw: Any) -> SampleConfig:
    base: dict[str, Any] = {
        "cases": str(cases_file), "k": 3, "backend": "hf", "seed": 11, "out": str(out),
        "rows_per_call": 3, "temperature": 0.7,
    }  # fmt: skip
    return SampleConfig(**(base | kw))


def sample(config: SampleConfig, backend: Backend) -> RunStore:
    cases = load_cases(config.cases)
    store = open_run(config, cases, EngineConfig(backend="hf"), fresh=False)
    sample_cases(config, backend, store, cases, lambda m: None)
    return store


def generations(store: RunStore) -> dict[str, list[dict[str, Any]]]:
    return {e["key"]: e["generations"] for e in store.entries(SAMPLES)}


def test_ctrl_c_mid_run_then_resume_equals_an_uninterrupted_run(
    cases_file: Path, tmp_path: Path
) -> None:
    whole = sample(settings(cases_file, tmp_path / "whole"), SeededBackend())
    config = settings(cases_file, tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        sample(config, SeededBackend(interrupt_after=2))  # one case per call: 2 cases done
    cut = RunStore(tmp_path / "cut")
    assert [e["key"] for e in cut.entries(SAMPLES)] == ["c0", "c1"]
    resumed_backend = SeededBackend()
    sample(config, resumed_backend)
    assert resumed_backend.calls == 3  # only the three unfinished cases
    lines = cut.log_path(SAMPLES).read_text().splitlines()
    assert sorted(json.loads(line)["key"] for line in lines) == ["c0", "c1", "c2", "c3", "c4"]
    assert generations(cut) == generations(whole)  # seeds, tokens and logprobs alike


def test_a_ctrl_c_swallowed_by_a_finalizer_still_stops_at_the_next_case(
    cases_file: Path, tmp_path: Path, ctrl_c_handler: None
) -> None:
    class Finalized:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGINT)  # KeyboardInterrupt in __del__: "ignored"

    def collect_garbage() -> None:
        Finalized()
        gc.collect()

    backend = SeededBackend(on_call=collect_garbage)
    with pytest.raises(KeyboardInterrupt):
        sample(settings(cases_file, tmp_path / "run"), backend)
    assert lab.store._interrupts == 1  # it was pressed once, inside the finalizer
    assert backend.calls == 1  # without the check the run went on to all 5 cases
    assert [e["key"] for e in RunStore(tmp_path / "run").entries(SAMPLES)] == ["c0"]


def test_the_swallowed_ctrl_c_is_not_printed_as_a_traceback(ctrl_c_handler: None) -> None:
    from types import SimpleNamespace

    reported: list[Any] = []
    hook, sys.unraisablehook = sys.unraisablehook, reported.append
    try:
        lab.store.install_interrupt_handler()
        sys.unraisablehook(SimpleNamespace(exc_value=KeyboardInterrupt()))  # type: ignore[arg-type]
        sys.unraisablehook(SimpleNamespace(exc_value=ValueError("x")))  # type: ignore[arg-type]
    finally:
        sys.unraisablehook = hook
    assert [type(r.exc_value) for r in reported] == [ValueError]  # other errors still shown


def test_a_changed_config_is_refused_naming_what_changed(cases_file: Path, tmp_path: Path) -> None:
    config = settings(cases_file, tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        sample(config, SeededBackend(interrupt_after=1))
    changes: list[tuple[dict[str, Any], str]] = [
        ({"k": 4}, "k: 3 -> 4"),
        ({"temperature": 1.0}, "temperature: 0.7 -> 1.0"),
        ({"model": "other-model"}, 'model: "smollm2-135m-instruct" -> "other-model"'),
    ]
    for change, shown in changes:
        with pytest.raises(LabError) as refused:
            sample(settings(cases_file, tmp_path / "run", **change), SeededBackend())
        message = str(refused.value)
        assert "different config" in message and shown in message and "--fresh" in message
        assert "\n" not in message
    assert [e["key"] for e in RunStore(tmp_path / "run").entries(SAMPLES)] == ["c0"]


def test_append_repairs_a_partial_line_of_a_log_it_has_not_read(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path / "run", {})
    store.append("passes", "pass1", {"n": 1})
    with open(store.log_path("passes"), "a") as fh:
        fh.write('{"key": "pass2", "n"')  # killed mid-write
    store.append("passes", "pass2", {"n": 2})  # the next pass appends without reading first
    assert [e["n"] for e in store.entries("passes")] == [1, 2]


def test_repair_finds_the_last_newline_far_from_the_end(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path / "run", {})
    store.append("samples", "a", {"text": "x" * 10})
    with open(store.log_path("samples"), "a") as fh:
        fh.write('{"key": "b", "text": "' + "y" * 200_000)  # a large record cut short
    assert store.done_keys("samples") == {"a"}
    assert store.log_path("samples").read_text().count("\n") == 1
    with open(store.log_path("samples"), "w") as fh:
        fh.write('{"key": "c"')  # no complete line at all
    assert store.done_keys("samples") == set()
    assert store.log_path("samples").stat().st_size == 0


def test_ctrl_c_prints_how_to_resume_and_exits_130(
    cases_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import lab.cli
    import lab.variance.runner

    previous = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(
        lab.variance.runner, "load_backend", lambda *a, **kw: SeededBackend(interrupt_after=1)
    )
    out = tmp_path / "run"
    argv = ["lab", "sample", "--cases", str(cases_file), "--k", "3", "--backend", "hf"]
    monkeypatch.setattr(sys, "argv", argv + ["--rows-per-call", "3", "--out", str(out)])
    try:
        with pytest.raises(SystemExit) as exited:
            lab.cli.main()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert exited.value.code == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"interrupted: finished work is saved in {out}; run the same command again" in err
    assert [e["key"] for e in RunStore(out).entries(SAMPLES)] == ["c0"]


def sweep_config(tmp_path: Path) -> Any:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    return parse_sweep_config(
        {
            "name": "s",
            "mode": "identical",
            "prompts": [{"id": "f", "messages": [{"role": "user", "content": "Tell me."}]}],
            "sampling": {"max_tokens": 2},
            "axes": {"backend": ["hf"], "model": [str(model)], "batch_size": [1, 2]},
        }
    )


def test_a_sweep_stopped_by_ctrl_c_records_no_failed_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ctrl_c_handler: None
) -> None:
    import lab.determinism.sweep

    def broken_load(*args: Any) -> Backend:
        # Ctrl-C reached an engine's worker first: the load fails with an ordinary error
        # while the main thread's KeyboardInterrupt was swallowed.
        lab.store._interrupts += 1
        raise RuntimeError("Engine core initialization failed")

    monkeypatch.setattr(lab.determinism.sweep, "load_backend", broken_load)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep_config(tmp_path), tmp_path / "run", progress=False)
    assert list(RunStore(tmp_path / "run").entries(CELLS)) == []  # a rerun redoes both cells


def test_quickstart_index_is_readable_like_the_reports(tmp_path: Path) -> None:
    from lab.quickstart import write_index

    summary = {
        "cells_ok": 1, "cells_total": 1, "targets": 1, "max_unique_completions": 1,
        "TARr@N": 1.0, "TARa@N": 1.0, "max_abs_logprob_delta": 0.0,
    }  # fmt: skip
    kernel = {
        "outputs_with_logprob_differences": 0, "targets": 1, "max_abs_logprob_delta": 0.0,
        "divergent_outputs": 0,
    }  # fmt: skip
    variance = {
        "run": {"cases": 1, "k": 2},
        "headline": {
            "mean": 0.5, "p5": 0.5, "p50": 0.5, "pass@k": 1.0, "pass^k": 0.0,
            "high_variance": False,
        },
    }  # fmt: skip
    index = write_index(tmp_path, {"summary": summary}, {False: kernel, True: kernel}, variance)
    report = RunStore(tmp_path).write_text("report.html", "<html></html>")
    assert index.stat().st_mode & 0o777 == report.stat().st_mode & 0o777
    umask = os.umask(0o022)
    try:
        again = write_index(tmp_path, {"summary": summary}, {False: kernel, True: kernel}, variance)
    finally:
        os.umask(umask)
    assert again.stat().st_mode & 0o777 == 0o644  # was 0600 whatever the umask
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_resume_with_other_rows_per_call_is_refused(cases_file: Path, tmp_path: Path) -> None:
    # rows_per_call decides the batch composition, which moves hf logprobs: no silent mix.
    config = settings(cases_file, tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        sample(config, SeededBackend(interrupt_after=1))
    with pytest.raises(LabError, match=r"rows_per_call 3, not 6: .*--rows-per-call 3 to resume"):
        sample(settings(cases_file, tmp_path / "run", rows_per_call=6), SeededBackend())
    # Unset, the default (max_num_seqs rows on hf) is what is recorded and compared.
    default = settings(cases_file, tmp_path / "default", rows_per_call=None)
    with pytest.raises(KeyboardInterrupt):
        sample(default, SeededBackend(interrupt_after=0))
    with pytest.raises(LabError, match=r"rows_per_call 64, not 6"):
        sample(settings(cases_file, tmp_path / "default", rows_per_call=6), SeededBackend())
    sample(settings(cases_file, tmp_path / "default", rows_per_call=64), SeededBackend())
    assert len(list(RunStore(tmp_path / "default").entries(SAMPLES))) == 5
    # Not part of the identity that lab compare reads.
    assert "rows_per_call" not in json.loads((tmp_path / "default" / "config.json").read_text())


def test_a_run_made_before_batching_was_recorded_still_resumes(
    cases_file: Path, tmp_path: Path
) -> None:
    config = settings(cases_file, tmp_path / "old")
    with pytest.raises(KeyboardInterrupt):
        sample(config, SeededBackend(interrupt_after=1))
    (tmp_path / "old" / "batching.json").unlink()  # as an earlier version left it
    sample(config, SeededBackend())
    assert len(list(RunStore(tmp_path / "old").entries(SAMPLES))) == 5


def test_no_engine_starts_after_a_swallowed_ctrl_c(
    cases_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ctrl_c_handler: None
) -> None:
    # e.g. swallowed in a quickstart step that then finished: the next step starts nothing.
    import lab.variance.runner

    started: list[Any] = []
    monkeypatch.setattr(lab.variance.runner, "load_backend", lambda *a, **kw: started.append(a))
    lab.store._interrupts = 1
    with pytest.raises(KeyboardInterrupt):
        lab.variance.runner.run_sample(settings(cases_file, tmp_path / "run"), emit=lambda m: None)
    assert started == []
