"""The command line: bad input exits 2 with one line naming the problem, before any engine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run_lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["generate", "--model", "nope", "--prompt", "hi"], "unknown model 'nope'"),
        (["generate", "--backend", "vllm", "--tp", "2", "--prompt", "hi"], "does not divide"),
        (["generate", "--dtype", "int3", "--prompt", "hi"], "unknown dtype"),
        (["generate", "--device", "cuda", "--prompt", "hi"], "no CUDA GPU"),
        (["demo", "--backends", "tgi"], "unknown backend"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a CUDA GPU is present, so --device cuda is valid here")
    out = run_lab(*args)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], out.stderr


def test_unknown_option_is_a_usage_error() -> None:
    assert run_lab("generate", "--bogus").returncode == 2


def test_env_json_has_the_record_fields() -> None:
    out = run_lab("env", "--json")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    for key in ("lab_version", "lab_commit", "cpu", "gpu", "packages", "env"):
        assert key in record
    assert record["packages"]["torch"]
    assert record["packages"]["transformers"]


@pytest.mark.parametrize("command", ["sample", "generate", "sweep"])
def test_a_usage_error_is_one_line(command: str) -> None:
    """`--backend foo` printed click's usage, a "Try --help" line and the error: now one line."""
    out = run_lab(command, "--backend", "foo")
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    if command == "sweep":  # no --backend there: the unknown option, on one line too
        assert len(lines) == 1 and lines[0].startswith("error: No such option '--backend'")
        return
    choices = "'hf', 'vllm', 'openai'" if command == "sample" else "'hf', 'vllm'"
    assert lines == [
        f"error: Invalid value for '--backend': 'foo' is not one of {choices} "
        f"(see `python -m lab.cli {command} --help`)"
    ], out.stderr
