"""The analysis and the artifacts on a synthetic run (no model): numbers, gate, escaping."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from lab.cases.loaders import load_cases
from lab.errors import LabError
from lab.rundir import SAMPLES
from lab.store import RunStore
from lab.variance.config import GateConfig, SampleConfig, load_config, parse_gate
from lab.variance.gate import evaluate_gate
from lab.variance.report import build_report, rebuild_report
from lab.variance.result import RunReport
from lab.variance.runner import engine_config, open_run

K = 4
CASES = [
    # id, outputs of the 4 samples
    ("always", ["Paris", "Paris.", "It is Paris", "Paris!"]),
    ("sometimes", ["12", "13", "12", "<b>14</b>"]),
    ("never", [f"<script>alert(1)</script> {w}" for w in ("no", "nope", "never", "no")]),
]


class StubEmbedder:
    """Deterministic unit vectors from a hash of the text: equal texts, equal embeddings."""

    name = "stub"
    device = "cpu"

    def embed_cases(self, texts: list[list[str]]) -> torch.Tensor:
        rows = []
        for case in texts:
            for text in case:
                seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
                v = torch.randn(16, generator=torch.Generator().manual_seed(seed))
                rows.append(v / v.norm())
        return torch.stack(rows).reshape(len(texts), len(texts[0]), 16)


def make_run(tmp_path: Path, gate: GateConfig | None = None) -> tuple[Path, SampleConfig]:
    cases_file = tmp_path / "cases.jsonl"
    specs = [
        {
            "id": "always",
            "prompt": "Capital of France?",
            "checks": [{"contains": "Paris"}],
            "tags": ["facts"],
        },
        {
            "id": "sometimes",
            "prompt": "7+5?",
            "checks": [{"numeric": 12}],
            "tags": ["math", "hard"],
        },
        {"id": "never", "prompt": "Say yes", "checks": [{"exact": "yes"}], "tags": ["hard"]},
    ]
    cases_file.write_text("\n".join(json.dumps(s) for s in specs) + "\n")
    config = SampleConfig(
        cases=str(cases_file),
        k=K,
        backend="hf",
        out=str(tmp_path / "run"),
        seed=100,
        bootstrap_samples=200,
        gate=gate or GateConfig(),
        prices={"input": 1.0, "output": 2.0},
    )
    cases = load_cases(config.cases)
    store = open_run(config, cases, engine_config(config), fresh=False)
    for case_id, outputs in CASES:
        gens = [
            {
                "request_id": case_id,
                "sample_index": i,
                "seed": 100 + i,
                "backend": "hf",
                "prompt_token_ids": [1, 2, 3],
                "output_token_ids": [5] * (i + 1),
                "token_logprobs": [-0.5] * (i + 1),
                "top_logprobs": [[] for _ in range(i + 1)],
                "text": text,
                "finish_reason": "stop",
                "timings": {},
                "engine": {},
                "sampling": {},
                "error": None,
            }
            for i, text in enumerate(outputs)
        ]
        store.append(SAMPLES, case_id, {"case_id": case_id, "wall_s": 1.0, "generations": gens})
    return Path(config.out or ""), config


def test_metrics_match_hand_values(tmp_path: Path) -> None:
    path, config = make_run(tmp_path)
    metrics = build_report(path, config, emit=lambda m: None, embedder=StubEmbedder()).metrics  # type: ignore[arg-type]
    by_id = {c["id"]: c for c in metrics["cases"]}
    assert [by_id[i]["successes"] for i in ("always", "sometimes", "never")] == [4, 2, 0]
    head = metrics["headline"]
    assert head["mean"] == pytest.approx(0.5)
    assert head["pass@1"] == pytest.approx(0.5)
    assert head["pass^k"] == pytest.approx(1 / 3)  # only "always" has all 4 pass
    assert head["pass@k"] == pytest.approx(2 / 3)
    # type 7 p5 of [0, 0.5, 1]: h = 2 x 0.05 = 0.1 -> 0.05; mean / p5 = 10
    assert head["p5"] == pytest.approx(0.05) and head["mean_over_p5"] == pytest.approx(10)
    assert head["high_variance"] is True
    # maj@k: always -> "Paris"-ish answers pass; sometimes -> "12" (2 of 4) passes; never fails
    assert by_id["sometimes"]["majority_answer"] == "12"
    assert by_id["sometimes"]["majority_share"] == 0.5
    assert head["maj@k"] == pytest.approx(2 / 3)
    # run j = sample j of every case: runs pass [2, 1, 2, 1] of 3 cases
    assert metrics["run_rates"] == pytest.approx([2 / 3, 1 / 3, 2 / 3, 1 / 3])
    # worst output is a failing one
    assert by_id["sometimes"]["worst"]["passed"] is False
    assert by_id["sometimes"]["worst"]["sample_index"] in (1, 3)
    assert by_id["always"]["worst"]["passed"] is True
    # curves and definitions
    assert metrics["curves"]["k"] == [1, 2, 4]
    assert metrics["curves"]["pass^k"][0] == pytest.approx(0.5)
    cost = metrics["cost"]
    assert cost["inferences"] == 12 and cost["tokens_in"] == 36
    assert cost["tokens_in_unique_prompts"] == 9 and cost["tokens_out"] == 3 * (1 + 2 + 3 + 4)
    assert cost["wall_s"] == 3.0 and cost["price"] == pytest.approx((36 + 2 * 30) / 1e6)
    assert metrics["cohorts"]["hard"]["mean"] == pytest.approx(0.25)
    assert set(metrics["intervals_95"]) == {"mean", "p5", "pass@k", "pass^k", "maj@k"}


def test_every_artifact_and_html_escaping(tmp_path: Path) -> None:
    path, config = make_run(tmp_path)
    build_report(path, config, emit=lambda m: None, embedder=StubEmbedder())  # type: ignore[arg-type]
    for name in (
        "config.json",
        "environment.json",
        "settings.json",
        "cases.json",
        "samples.jsonl",
        "samples.parquet",
        "metrics.json",
        "summary.md",
        "report.html",
    ):
        assert (path / name).is_file(), name
    html = (path / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    import pyarrow.parquet as pq

    rows = pq.read_table(path / "samples.parquet").to_pylist()
    assert len(rows) == 3 * K
    assert {r["seed"] for r in rows} == {100, 101, 102, 103}
    assert all(isinstance(r["reasons"], str) and r["reasons"] for r in rows)

    def reject(name: str) -> None:
        raise AssertionError(f"non-standard JSON literal {name}")

    # strict JSON: no NaN / Infinity literals
    json.loads((path / "metrics.json").read_text(), parse_constant=reject)


def test_gate_fails_with_reasons_and_rebuild_changes_it(tmp_path: Path) -> None:
    path, config = make_run(tmp_path, gate=parse_gate(["min_mean=0.9,min_p5=0.1", "ratio=2"]))
    written = build_report(path, config, emit=lambda m: None, embedder=StubEmbedder())  # type: ignore[arg-type]
    assert written.gate.passed is False
    assert len(written.gate.reasons) == 3
    assert "mean success 0.500 < min_mean 0.9" in written.gate.reasons[0]
    assert written.gate.thresholds == {"min_mean": 0.9, "min_p5": 0.1, "max_mean_over_p5": 2}
    assert "FAILED" in (path / "summary.md").read_text()
    # the object is what the files hold: metrics.json's gate block, summary.md's text
    on_disk = json.loads((path / "metrics.json").read_text())
    assert on_disk["gate"] == written.gate.to_json() == written.metrics["gate"]
    assert (path / "summary.md").read_text() == written.summary
    again = RunReport.read(path)
    assert again.gate == written.gate and again.summary == written.summary
    assert again.rates == {"always": 1.0, "sometimes": 0.5, "never": 0.0}


def test_run_report_read_names_the_file_and_field(tmp_path: Path) -> None:
    path, config = make_run(tmp_path)
    build_report(path, config, emit=lambda m: None, embedder=StubEmbedder())  # type: ignore[arg-type]
    metrics = json.loads((path / "metrics.json").read_text())
    (path / "metrics.json").write_text(json.dumps(metrics | {"gate": {"passed": "yes"}}))
    with pytest.raises(LabError, match=r"metrics.json: gate: expected an object with passed"):
        RunReport.read(path)
    del metrics["headline"]
    (path / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(LabError, match=r"metrics.json: no 'headline'; rebuild it"):
        RunReport.read(path)
    (path / "metrics.json").unlink()
    with pytest.raises(LabError, match=r"metrics.json: missing"):
        RunReport.read(path)


def test_gate_rules() -> None:
    head = {"mean": 0.8, "p5": 0.5, "mean_over_p5": 1.6, "pass^k": 0.3}
    assert evaluate_gate(head, GateConfig(min_mean=0.8, min_p5=0.5, max_mean_over_p5=2)) == []
    assert evaluate_gate(head | {"mean_over_p5": "inf"}, GateConfig(max_mean_over_p5=2))
    assert evaluate_gate(head | {"pass^k": None}, GateConfig(min_pass_hat_k=0.1))  # NaN fails
    with pytest.raises(Exception, match="unknown threshold"):
        parse_gate(["min_median=1"])


def test_config_file_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("cases: c.jsonl\nk: 4\ngate: {min_p5: 0.2}\nprices: {input: 1}\n")
    config = load_config(path, {"k": 8, "gate": ("min_mean=0.5",), "price_out": 3.0, "seed": None})
    assert config.k == 8 and config.cases == str(tmp_path / "c.jsonl")
    assert config.gate == GateConfig(min_mean=0.5, min_p5=0.2)
    assert config.prices == {"input": 1, "output": 3.0}
    path.write_text("kk: 4\n")
    with pytest.raises(Exception, match="unknown setting 'kk'"):
        load_config(path, {})


def test_rebuild_report_keeps_samples(tmp_path: Path, monkeypatch: Any) -> None:
    path, config = make_run(tmp_path)
    import lab.variance.report as report_module

    original = report_module.build_report
    monkeypatch.setattr(
        report_module,
        "build_report",
        lambda root, cfg, emit, **kw: original(root, cfg, emit=emit, embedder=StubEmbedder(), **kw),  # type: ignore[arg-type]
    )
    written = rebuild_report(path, {"gate": ("min_mean=0.4",)}, emit=lambda m: None)
    assert written.gate.passed is True and written.gate.thresholds == {"min_mean": 0.4}
    assert len(list(RunStore(path).entries(SAMPLES))) == 3
    with pytest.raises(Exception, match="changes the samples"):
        rebuild_report(path, {"k": 8}, emit=lambda m: None)


def test_mean_over_p5_with_a_zero_p5_says_why_instead_of_inf(tmp_path: Path) -> None:
    """3 of 10 cases never pass: p5 is 0 and mean / p5 has no value; the report, the HTML
    and a gate's reason say so (they printed "inf")."""
    import numpy as np

    from tests.unit.comparison_runs import make_run

    outcomes = np.ones((10, 4), dtype=bool)
    outcomes[:3] = False
    path = make_run(tmp_path, "run", outcomes)
    summary = (path / "summary.md").read_text()
    assert "| mean / p5 | unbounded: p5 is 0 (the worst 5% of cases never pass) |" in summary
    assert "| inf |" not in summary and ">inf<" not in (path / "report.html").read_text()
    head = json.loads((path / "metrics.json").read_text())["headline"]
    assert evaluate_gate(head, GateConfig(max_mean_over_p5=4)) == [
        "mean / p5 unbounded (p5 is 0) > max_mean_over_p5 4"
    ]
