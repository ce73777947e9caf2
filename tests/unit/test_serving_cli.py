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
