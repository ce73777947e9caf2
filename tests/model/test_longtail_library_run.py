"""The worst-case input library on a real run: SmolLM2 through transformers, k=4, 3 cases,
greedy 16 tokens; `lab library add` takes the failures, `library run` gates on the floor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lab.backends import Backend
from lab.cases.loaders import load_cases
from lab.cli import cli
from lab.longtail.library import read_library, run_library
from lab.variance.config import SampleConfig
from lab.variance.runner import run_sample

pytestmark = pytest.mark.model

CASES = [
    {
        "id": "france",
        "prompt": "What is the capital of France? Answer in one word.",
        "checks": [{"contains": "Paris"}],
    },
    # A greedy 16-token answer cannot hold this word: the run has a certain failure to add.
    {
        "id": "unreachable",
        "prompt": "What is the capital of Japan? Answer in one word.",
        "checks": [{"contains": "Xqzvbnwk"}],
        "tags": ["hard"],
    },
    {
        "id": "japan-typo",
        "prompt": "Waht is teh capital of Jaapn? Answer in one word.",
        "checks": [{"contains": "Tokyo"}],
    },
]


def test_library_grows_from_a_real_run_and_gates_on_its_floor(
    hf_backend: Backend, tmp_path: Path
) -> None:
    cases_file = tmp_path / "cases.jsonl"
    cases_file.write_text("".join(json.dumps(c) + "\n" for c in CASES))
    settings = {"k": 4, "backend": "hf", "device": "cpu", "temperature": 0.0, "max_tokens": 16}
    settings |= {"embed_device": "cpu", "bootstrap_samples": 50}
    config = SampleConfig(cases=str(cases_file), out=str(tmp_path / "run"), **settings)  # type: ignore[arg-type]
    outcome = run_sample(config, backend=hf_backend, emit=lambda m: None)
    assert outcome.report is not None
    rates = outcome.report.rates
    assert rates["unreachable"] == 0.0

    lib = tmp_path / "library.yaml"
    runner = CliRunner()
    args = ["library", "add", str(outcome.path), "--library", str(lib), "--threshold", "0.5"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    library = read_library(lib)
    under = sorted(i for i, r in rates.items() if r < 0.5)
    assert sorted(c.id for c in library.cases) == under
    info = next(c for c in library.cases if c.id == "unreachable").metadata["library"]
    assert info["success_rate"] == 0.0 and info["run"]["model"] == "smollm2-135m-instruct"
    before = lib.read_bytes()
    again = runner.invoke(cli, args)
    assert again.exit_code == 0 and "added 0" in again.output
    assert lib.read_bytes() == before
    assert [c.id for c in load_cases(lib)] == [c.id for c in library.cases]

    out = {"out": str(tmp_path / "library-run")}  # not the default under the working directory
    run = run_library(lib, settings | out, backend=hf_backend, emit=lambda m: None)
    assert run.report is not None and run.report.run["k"] == 4
    by_id = run.report.rates
    assert by_id["unreachable"] == 0.0
    # a case at 0 among at most 2 puts p5 at or under 0.05, below the default floor's 0.1
    assert any(r.startswith("p5 of per-case success") for r in run.reasons), run.reasons
    mean = run.report.headline["mean"]
    assert any(r.startswith("mean success") for r in run.reasons) == (mean < 0.5)
    assert (run.path / "report.html").exists()
