"""`lab load` and `lab serve` from the command line, against the local stub server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.serving.loadtest import percentile
from tests.unit.test_openai_client import Stub


def run_lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub()
    yield server
    server.close()


def test_load_prints_counts_and_resumes(stub: Stub, tmp_path: Path) -> None:
    out = tmp_path / "load"
    args = ["load", "--base-url", stub.base_url, "--requests", "6", "--concurrency", "2"]
    first = run_lab(*args, "--max-tokens", "4", "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert "all 6 requests (latest outcome): ok 6" in first.stdout
    assert "req/s" in first.stdout and "p50" in first.stdout
    assert len(stub.received) == 6
    again = run_lab(*args, "--max-tokens", "4", "--out", str(out))
    assert again.returncode == 0 and "nothing to send" in again.stdout
    assert len(stub.received) == 6
    # A different generation config in the same directory is refused, not mixed in.
    other = run_lab(*args, "--max-tokens", "5", "--out", str(out))
    assert other.returncode == 2 and "different config" in other.stderr


def test_load_against_no_server_is_incomplete_not_a_hang(tmp_path: Path) -> None:
    stub = Stub()
    url = stub.base_url
    stub.close()
    out = run_lab("load", "--base-url", url, "--requests", "4", "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "error:" in out.stderr  # cannot even list the models
    args = ["--model", "m", "--requests", "4", "--retries", "0", "--concurrency", "1"]
    out = run_lab("load", "--base-url", url, *args, "--out", str(tmp_path / "y"))
    assert out.returncode == 1
    assert "transport_error" in out.stdout and "not_sent" in out.stdout
    assert "incomplete" in out.stdout


def test_load_needs_exactly_one_target() -> None:
    out = run_lab("load", "--requests", "3")
    assert out.returncode == 2 and "exactly one of --base-url URL or --serve" in out.stderr


def test_serve_refuses_a_port_in_use(stub: Stub) -> None:
    out = run_lab("serve", "--port", str(stub.port), "--log", "/dev/null")
    assert out.returncode == 2 and f"port {stub.port} on 127.0.0.1 is already in use" in out.stderr


def test_percentile_matches_hand_values() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # sorted 1 2 3 4; position (n-1) q / 100
    assert percentile(values, 50) == 2.5
    assert percentile(values, 90) == pytest.approx(3.7)  # 3 + 0.7 * (4 - 3)
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 4.0
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) is None


def test_ctrl_c_on_a_load_test_exits_130_with_one_line(stub: Stub, tmp_path: Path) -> None:
    """Ctrl-C with 8 requests in flight: exit 130, one line with the true peak, the finished
    requests kept (a 60-line traceback, exit 1 and "peak in flight 0" before)."""
    import json
    import signal
    import time

    stub.delay_s = 3.0  # every answer takes 3 s: the 8 slots fill and stay full
    out = tmp_path / "load"
    args = ["--requests", "40", "--concurrency", "8", "--max-tokens", "4", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "load", "--base-url", stub.base_url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while stub.in_flight < 8 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stub.in_flight == 8, "the load test never had 8 requests in flight"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "peak in flight 8" in lines[0], stderr
    assert lines[0].startswith("interrupted: ") and str(out) in lines[0]
    assert stdout == ""
    assert json.loads((out / "summary.json").read_text())["max_in_flight"] == 8
    stub.delay_s = 0.0
    again = run_lab("load", "--base-url", stub.base_url, *args)  # the next pass sends the rest
    assert again.returncode == 0, again.stderr
    assert "all 40 requests (latest outcome): ok 40" in again.stdout
