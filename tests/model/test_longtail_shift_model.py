"""`lab shift` end to end with the real all-MiniLM-L6-v2 embeddings and the SmolLM2 tokenizer:
a planted shift is found, two samples of one distribution stay quiet."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from lab.longtail.shift import run_shift

pytestmark = pytest.mark.model

COUNTRIES = ["France", "Japan", "Italy", "Spain", "Canada", "Brazil", "Egypt", "Kenya", "Chile"]
TEMPLATES = [
    ("What is the capital of {c}?", "facts"),
    ("Which language is spoken in {c}?", "facts"),
    ("What is {a} plus {b}?", "math"),
    ("Compute {a} times {b}.", "math"),
    ("Is this review positive or negative: 'the {t} was {adj}'?", "classify"),
]
GERMAN = [
    "Bitte storniere meine Bestellung, die Lieferung ist zu spät.",
    "Warum wurde meine Rechnung doppelt abgebucht?",
    "Ich möchte mein Abonnement kündigen und das Geld zurück.",
]
CHINESE = ["我的订单什么时候发货？", "请帮我取消这个订阅。", "为什么我的账单金额不对？"]
LONG = (
    "I have been a customer for years and my invoice for last month shows a charge I do not "
    "recognise. Can you explain what it is, which plan it belongs to, and refund it if it was "
    "a mistake? I also need a copy of every invoice since January for my accountant."
)


def english(rng: random.Random, i: int) -> dict[str, Any]:
    template, tag = rng.choice(TEMPLATES)
    prompt = template.format(
        c=rng.choice(COUNTRIES),
        a=rng.randint(2, 99),
        b=rng.randint(2, 99),
        t=rng.choice(["pasta", "hotel", "movie", "phone"]),
        adj=rng.choice(["great", "awful", "fine", "lovely"]),
    )
    return {"id": f"en{i}", "prompt": prompt, "tags": [tag]}


def write(path: Path, cases: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    return str(path)


def test_planted_shift_is_found(tmp_path: Path) -> None:
    rng = random.Random(0)
    demo = [english(rng, i) for i in range(40)]  # English, short, no billing
    prod = [english(rng, 100 + i) for i in range(25)]
    prod += [{"id": f"de{i}", "prompt": rng.choice(GERMAN), "tags": ["billing"]} for i in range(10)]
    prod += [{"id": f"zh{i}", "prompt": rng.choice(CHINESE), "tags": ["billing"]} for i in range(8)]
    prod += [{"id": f"long{i}", "prompt": LONG, "tags": ["billing"]} for i in range(10)]
    report = run_shift(
        write(tmp_path / "demo.jsonl", demo),
        write(tmp_path / "prod.jsonl", prod),
        tmp_path / "out",
        "all-MiniLM-L6-v2",
        permutations=500,
    )
    gaps = {g["name"]: g for g in report["gaps"]}
    assert report["method"]["tokens"] == "tokenizer:smollm2-135m-instruct"
    language = gaps["language mix"]
    assert language["severity"] == "high" and language["test"]["p_value"] < 0.01
    assert set(language["data"]["under_represented"]) >= {"de", "zh"}
    assert gaps["script mix"]["data"]["under_represented"] == ["CJK"]
    length = gaps["input length"]
    assert length["severity"] == "high" and length["test"]["p_value"] < 0.001
    billing = gaps["tag billing"]
    assert billing["severity"] == "high" and "absent from demo" in billing["detail"]
    mmd = gaps["embedding distribution (MMD)"]
    assert mmd["test"]["p_value"] < 0.01 and mmd["severity"] in ("medium", "high")
    least = [item["text"] for item in mmd["data"]["least_covered"]]
    # the least covered production inputs are the planted ones (billing: de, zh, long en)
    assert all(text in GERMAN + CHINESE + [LONG[:300]] for text in least)
    assert report["gaps"][0]["severity"] == "high"  # sorted: the worst gaps first
    for name in ("gaps.json", "shift.md", "shift.html"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_two_samples_of_one_distribution_stay_quiet(tmp_path: Path) -> None:
    rng = random.Random(1)
    pool = [english(rng, i) for i in range(120)]
    report = run_shift(
        write(tmp_path / "a.jsonl", pool[:60]),
        write(tmp_path / "b.jsonl", pool[60:]),
        tmp_path / "out",
        "all-MiniLM-L6-v2",
        permutations=500,
    )
    for g in report["gaps"]:
        assert g["severity"] in ("none", "low"), g
        if g["test"] is not None and g["test"]["p_value"] is not None:
            assert g["test"]["p_value"] >= 0.05, g
    assert report["summary"]["high"] == report["summary"]["medium"] == 0
