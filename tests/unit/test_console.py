"""Engine chatter goes to RUN_DIR/engine.log, the lab's own lines to the terminal; --verbose
leaves stderr alone (lab.console)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import console, rundir
from lab.backends import Generation, Request, SamplingConfig


@pytest.fixture(autouse=True)
def quiet_by_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("LAB_VERBOSE", raising=False)
    console.set_verbose(False)
    yield
    console.set_verbose(False)


def chatter() -> None:
    """What an engine does while it loads: Python warnings and C-level writes to fd 2."""
    # sys.__stderr__: fd 2 as in a real process (pytest swaps sys.stderr for its own file)
    print("UserWarning: TypedStorage is deprecated", file=sys.__stderr__, flush=True)
    os.write(2, b"Loading safetensors checkpoint shards: 100%|##########|\n")


def test_chatter_goes_to_the_log_and_the_lab_lines_to_the_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "run" / rundir.ENGINE_LOG
    with console.engine_output(log) as where:
        chatter()
        console.echo("call 1/2 (4 cases x k=8): starting")
    assert where == log
    terminal = capfd.readouterr().err
    assert terminal == "call 1/2 (4 cases x k=8): starting\n"
    text = log.read_text()
    assert "TypedStorage is deprecated" in text and "checkpoint shards" in text
    assert "call 1/2" not in text
    print("after", file=sys.stderr, flush=True)  # fd 2 is the terminal's again
    assert capfd.readouterr().err == "after\n"


def test_verbose_shows_the_chatter(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    console.set_verbose(True)
    with console.engine_output(tmp_path / "engine.log") as where:
        chatter()
        console.echo("lab line")
    assert where is None and not (tmp_path / "engine.log").exists()
    err = capfd.readouterr().err
    assert "TypedStorage" in err and "checkpoint shards" in err and "lab line" in err


def test_a_crash_says_where_the_engine_output_is(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "engine.log"
    with pytest.raises(RuntimeError), console.engine_output(log):
        chatter()
        raise RuntimeError("CUDA error: device-side assert")
    assert capfd.readouterr().err == f"(the engine's own output is in {log})\n"
    from lab.errors import LabError

    with pytest.raises(LabError), console.engine_output(log):
        raise LabError("bad input")
    assert capfd.readouterr().err == ""  # a LabError is one line of its own (printed by main)


def test_a_sample_run_keeps_its_engine_output_in_the_run_directory(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import lab.variance.embedcache as embedcache
    from lab.variance.config import SampleConfig
    from lab.variance.runner import run_sample
    from tests.unit.test_variance_report import StubEmbedder
    from tests.unit.test_variance_runner import FakeBackend

    class Chatty(FakeBackend):
        def generate(self, requests: list[Request], sampling: SamplingConfig) -> list[Generation]:
            chatter()
            return super().generate(requests, sampling)

    monkeypatch.setattr(embedcache, "Embedder", lambda *a, **kw: StubEmbedder())
    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps({"id": "a", "prompt": "q", "checks": [{"contains": "Paris"}]}))
    config = SampleConfig(cases=str(cases), k=2, backend="hf", out=str(tmp_path / "run"))
    run_sample(config, backend=Chatty(), emit=console.echo)
    err = capfd.readouterr().err
    assert "call 1/1 (1 cases x k=2): prompts up to 1 chars, starting" in err
    assert "TypedStorage" not in err and "checkpoint shards" not in err
    assert "TypedStorage" in (tmp_path / "run" / "engine.log").read_text()


class Terminal:
    """A stream that says it is a terminal, keeping what was written."""

    def __init__(self, tty: bool) -> None:
        self.text, self.tty = "", tty

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_heartbeat_is_one_line_in_place_on_a_terminal(
    tty: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from lab.progress import Heartbeat

    out = Terminal(tty)
    monkeypatch.setattr(console, "stream", lambda: out)
    seen = threading.Event()
    monkeypatch.setattr(console, "status", _wrap(console.status, seen))
    with Heartbeat(console.echo, "call 1/1", interval=0.01):
        assert seen.wait(30)
    console.echo("sampled 8/8")
    if tty:  # rewritten in place, then replaced by the next line
        assert out.text.startswith("\r\x1b[Kcall 1/1: running ")
        assert "\n" not in out.text.removesuffix("\r\x1b[Ksampled 8/8\n")
    else:  # a file keeps every beat as a line
        assert out.text.startswith("call 1/1: running ") and out.text.endswith("sampled 8/8\n")
        assert "\r" not in out.text


def _wrap(fn: object, seen: object) -> object:
    def status(line: str) -> None:
        fn(line)  # type: ignore[operator]
        seen.set()  # type: ignore[attr-defined]

    return status
