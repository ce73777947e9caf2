"""`lab bench roof`'s arithmetic, no engine: FLOPs per generated token from a config.json,
and the report's fraction of the roof. (The timings themselves are never asserted.)

    .venv/bin/python -m pytest -q tests/unit/test_roof.py
"""

from __future__ import annotations

import pytest

from lab.bench.roof import (
    ModelFlops,
    PathResult,
    RoofResult,
    format_roof,
    matmul_peaks,
    model_flops,
)
from lab.errors import LabError

SMOLLM2 = {
    "model_type": "llama",
    "hidden_size": 576,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "intermediate_size": 1536,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
}


def test_smollm2_needs_about_273_mflop_per_token_at_64_of_context() -> None:
    f = model_flops(SMOLLM2, "smollm2")
    assert f.non_embedding == 30 * (2 * 2 * 576 * 576 + 2 * 2 * 576 * 192 + 3 * 2 * 576 * 1536)
    assert round(f.non_embedding / 1e6, 1) == 212.3
    assert round(f.lm_head / 1e6, 1) == 56.6  # tied: still computed
    assert round(f.attention_per_context * 64 / 1e6, 1) == 4.4
    assert round(f.per_token(64) / 1e6) == 273


def test_gpt2_names_and_an_ungated_mlp() -> None:
    f = model_flops({"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4,
                     "vocab_size": 100})  # fmt: skip
    # q, k, v, o: 4 x 2 x 64 x 64; MLP 2 x 2 x 64 x 256 (n_inner defaults to 4 x hidden)
    assert f.non_embedding == 2 * (4 * 2 * 64 * 64 + 2 * 2 * 64 * 256)
    with pytest.raises(LabError, match="vocab_size"):
        model_flops({"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2})


def test_the_fraction_of_the_roof() -> None:
    flops = ModelFlops("m", non_embedding=2e8, lm_head=5e7, attention_per_context=1e5)
    result = RoofResult(
        machine={"cpu": "cpu", "isa": "AVX2", "threads": 2, "load_average": 0.1,
                 "load_average_after": 0.2},
        peak_gflops=100.0,
        flops=flops,
        context=100.0,
        workload="w",
        paths=[PathResult("vllm", "s", tokens=1000, seconds=5.0, rounds_s=[5.0, 6.0])],
    )  # fmt: skip
    assert result.flops_per_token == 2.6e8
    assert result.roof_tok_per_s == pytest.approx(100e9 / 2.6e8)
    fraction = result.to_dict()["paths"][0]["fraction"]
    assert fraction == pytest.approx(200 / (100e9 / 2.6e8))
    text = format_roof(result)
    assert "ISA AVX2" in text and f"{100 * fraction:.1f}%" in text


def test_the_roof_names_each_gemm_and_the_compiled_paths_samples() -> None:
    flops = ModelFlops("m", non_embedding=2e8, lm_head=5e7, attention_per_context=1e5)
    compiled = PathResult("vllm-compiled", "s, compiled", 1000, 4.0, [4.0], start_s=70.0,
                          samples_differ=3, samples=256)  # fmt: skip
    result = RoofResult(
        machine={"cpu": "cpu", "isa": "AVX512", "threads": 2, "load_average": 0.1,
                 "load_average_after": 0.2},
        peak_gflops=225.0, flops=flops, context=100.0, workload="w",
        paths=[PathResult("vllm", "s", 1000, 5.0, [5.0]), compiled],
        peaks={"torch.mm": 197.0, "oneDNN": 225.0},
    )  # fmt: skip
    text = format_roof(result)
    assert "the faster of torch.mm 197.0 / oneDNN 225.0" in text
    assert "vllm-compiled: 3 of 256 samples differ" in text
    assert result.to_dict()["peaks_gflops"] == {"torch.mm": 197.0, "oneDNN": 225.0}


def test_matmul_peaks_times_torch_mm_and_onednn_where_torch_has_it() -> None:
    from lab.kernels.cpu import onednn_linear_available

    peaks = matmul_peaks("cpu", sizes=(64,), repeats=1)
    expected = {"torch.mm", "oneDNN"} if onednn_linear_available() else {"torch.mm"}
    assert set(peaks) == expected and all(g > 0 for g in peaks.values())
