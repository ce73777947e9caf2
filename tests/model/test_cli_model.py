"""The CLI end to end on the real model."""

from __future__ import annotations

import json

import pytest

from tests.unit.test_cli import run_lab

pytestmark = pytest.mark.model


def test_generate_json_prints_records() -> None:
    out = run_lab(
        "generate",
        "--backend",
        "hf",
        "--prompt",
        "What is the capital of France? Answer in one word.",
        "--max-tokens",
        "12",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    [record] = [json.loads(line) for line in out.stdout.splitlines()]
    assert "Paris" in record["text"]
    assert len(record["token_logprobs"]) == len(record["output_token_ids"])


def test_demo_prints_the_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = run_lab(
        "demo", "--backends", "hf", "--max-tokens", "16", "--json-out", str(tmp_path / "demo.json")
    )
    assert out.returncode == 0, out.stderr
    assert "alone vs inside a batch of 8" in out.stdout
    assert "capital-of-france" in out.stdout
    payload = json.loads((tmp_path / "demo.json").read_text())
    assert {r["prompt"] for r in payload["rows"]} == {"capital-of-france", "feynman", "sort-list"}
    assert all(r["tokens_match"] for r in payload["rows"])  # fp32 greedy on CPU: text holds
    assert payload["environment"]["packages"]["torch"]
