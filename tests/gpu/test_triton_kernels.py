"""lab.kernels' Triton kernels: bitwise batch invariance and accuracy on a CUDA GPU, plus one
check that runs anywhere: the same kernels in Triton's CPU interpreter.

The CUDA tests are skipped without a GPU ("needs a CUDA GPU"). On a GPU machine without the
bundled model they need nothing else: a tiny random-weight Llama stands in for the model.

    .venv/bin/python -m pytest -q tests/gpu/test_triton_kernels.py
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
BATCHES = (1, 3, 8, 33)
# Largest |error| against float64 per dtype, for O(1) outputs of K ~ 500 sums (stated
# tolerances, not bitwise claims): fp32 FMA chains ~1e-5, bf16/fp16 output rounding.
TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 0.5, torch.float16: 0.1}


def slices_equal(fn, *xs: torch.Tensor, batched: int = 1) -> bool:  # type: ignore[no-untyped-def]
    full = fn(*xs)

    def part(lo: int, hi: int) -> torch.Tensor:
        return fn(*[t[lo:hi] if i < batched else t for i, t in enumerate(xs)])

    checks = [torch.equal(part(0, b), full[:b]) for b in BATCHES if b <= xs[0].shape[0]]
    return all(checks) and torch.equal(part(5, 8), full[5:8])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@needs_cuda
@pytest.mark.gpu
def test_cuda_matmuls(dtype: torch.dtype) -> None:
    from lab.kernels import triton_ops as T

    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(33, 576, device="cuda", generator=g).to(dtype)
    w = torch.randn(1536, 576, device="cuda", generator=g).to(dtype)
    bias = torch.randn(1536, device="cuda", generator=g).to(dtype)
    assert slices_equal(lambda x: T.mm(x, w.t()), a)
    assert slices_equal(lambda x: T.addmm(bias, x, w.t()), a)
    ref = a.double() @ w.t().double() + bias.double()
    assert (T.addmm(bias, a, w.t()).double() - ref).abs().max() < TOLERANCE[dtype] * 20
    x = torch.randn(33, 5, 64, device="cuda", generator=g).to(dtype)
    y = torch.randn(33, 64, 40, device="cuda", generator=g).to(dtype)
    assert slices_equal(T.bmm, x, y, batched=2)
    assert (T.bmm(x, y).double() - x.double() @ y.double()).abs().max() < TOLERANCE[dtype] * 5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@needs_cuda
@pytest.mark.gpu
def test_cuda_matmul_many_tiles_and_k_tail(dtype: torch.dtype) -> None:
    """Several M and N tiles per matrix and a K that no BLOCK_K divides (the masked tail):
    rows taken from the middle of the second M tile, alone, equal their rows of the batch."""
    from lab.kernels import triton_ops as T

    g = torch.Generator(device="cuda").manual_seed(1)
    a = torch.randn(300, 577, device="cuda", generator=g).to(dtype)
    w = torch.randn(1000, 577, device="cuda", generator=g).to(dtype)
    full = T.mm(a, w.t())
    for lo, hi in ((0, 1), (0, 3), (126, 131), (129, 130), (250, 300)):
        assert torch.equal(T.mm(a[lo:hi], w.t()), full[lo:hi]), (lo, hi)
    ref = a.double() @ w.t().double()
    assert (full.double() - ref).abs().max() < TOLERANCE[dtype] * 20
    config = T.tiling(dtype, a.device)
    limit = torch.cuda.get_device_properties(a.device).shared_memory_per_block_optin
    assert T.shared_memory_needed(config, a.element_size()) <= limit


@needs_cuda
@pytest.mark.gpu
def test_cuda_row_kernels() -> None:
    from lab.kernels import triton_ops as T

    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(33, 49152, device="cuda", generator=g) * 4
    assert slices_equal(lambda t: T.log_softmax(t, -1, False), x)
    assert slices_equal(lambda t: T.softmax(t, -1, False), x)
    assert slices_equal(lambda t: T.mean_dim(t, [-1], True), x)
    ref = torch.log_softmax(x.double(), -1)
    assert (T.log_softmax(x, -1, False).double() - ref).abs().max() < 1e-4
    assert (T.mean_dim(x, [-1]).double() - x.double().mean(-1)).abs().max() < 1e-6
    h = torch.randn(33, 7, 576, device="cuda", generator=g).bfloat16()
    assert T.log_softmax(h, -1, True).dtype == torch.float32


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_attention_alone_equals_left_padded(dtype: torch.dtype) -> None:
    import torch.nn.functional as F

    from lab.kernels import set_batch_invariant_mode

    g = torch.Generator(device="cuda").manual_seed(0)
    b, t, length = 8, 90, 77
    q, k, v = (torch.randn(b, 9, t, 64, device="cuda", generator=g).to(dtype) for _ in range(3))
    keys = torch.arange(t, device="cuda")
    pads = torch.tensor([t - length, 0, 3, 50, 1, 89, 7, 20], device="cuda")
    real = keys[None, :] >= pads[:, None]
    mask = ((keys[None, :] <= keys[:, None])[None] & real[:, None, :] & real[:, :, None])[:, None]
    with set_batch_invariant_mode(device="cuda"):
        batch = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        alone = F.scaled_dot_product_attention(
            q[:1, :, -length:], k[:1, :, -length:], v[:1, :, -length:], is_causal=True
        )
        step = F.scaled_dot_product_attention(q[:, :, -1:], k, v, attn_mask=real[:, None, None])
        step_alone = F.scaled_dot_product_attention(
            q[:1, :, -1:], k[:1, :, -length:], v[:1, :, -length:]
        )
    assert torch.equal(alone[0], batch[0, :, -length:])
    assert torch.equal(step_alone[0], step[0])
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask)
    rows = real  # queries that see a key
    err = (batch.double() - ref).permute(0, 2, 1, 3)[rows].abs().max()
    assert err < (1e-5 if dtype == torch.float32 else 2e-2)


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_fused_and_fallback_attention_paths(dtype: torch.dtype) -> None:
    """Left-padded masks take the fused kernel, a sliding window the fixed-order fallback;
    each is bitwise equal alone and padded, and close to float64."""
    import torch.nn.functional as F

    from lab.kernels import set_batch_invariant_mode
    from lab.kernels.triton_attention import padded_layout

    g = torch.Generator(device="cuda").manual_seed(3)
    b, t, length, window = 4, 150, 131, 40
    q = torch.randn(b, 9, t, 64, device="cuda", generator=g).to(dtype)
    k, v = (torch.randn(b, 3, t, 64, device="cuda", generator=g).to(dtype) for _ in range(2))
    keys = torch.arange(t, device="cuda")
    pads = torch.tensor([t - length, 0, 17, 149], device="cuda")
    real = keys[None, :] >= pads[:, None]
    causal = (keys[None, :] <= keys[:, None])[None] & real[:, None, :] & real[:, :, None]
    near = (keys[None, :] > keys[:, None] - window)[None]
    assert padded_layout(causal[:, None], False, b, t, t, q.device) is not None
    assert padded_layout((causal & near)[:, None], False, b, t, t, q.device) is None
    alone_window = (keys[:length, None] >= keys[None, :length]) & (
        keys[None, :length] > keys[:length, None] - window
    )
    for mask, alone_mask in ((causal, None), (causal & near, alone_window)):
        with set_batch_invariant_mode(device="cuda"):
            batch = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask[:, None], enable_gqa=True
            )
            alone = F.scaled_dot_product_attention(
                q[:1, :, -length:], k[:1, :, -length:], v[:1, :, -length:],
                attn_mask=None if alone_mask is None else alone_mask[None, None],
                is_causal=alone_mask is None, enable_gqa=True,
            )  # fmt: skip
        assert torch.equal(alone[0], batch[0, :, -length:])
        ref = F.scaled_dot_product_attention(  # stock kernels, float64
            q.double(), k.double(), v.double(), attn_mask=mask[:, None], enable_gqa=True
        )
        err = (batch.double() - ref).permute(0, 2, 1, 3)[real].abs().max()
        assert err < (1e-5 if dtype == torch.float32 else 2e-2)


@needs_cuda
@pytest.mark.gpu
def test_cuda_tiny_llama_alone_equals_padded_batch() -> None:
    """A random-weight Llama (no tokenizer needed): the last-token logits of a prompt alone
    and left-padded inside a batch are bitwise equal with the mode on."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lab.kernels import set_batch_invariant_mode

    config = LlamaConfig(
        vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).cuda().eval()
    lengths = [37, 80, 5, 64]
    width = max(lengths)
    ids = torch.randint(1, 1000, (len(lengths), width), device="cuda")
    mask = (
        torch.arange(width, device="cuda")[None, :]
        >= (width - torch.tensor(lengths, device="cuda"))[:, None]
    )
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode(), set_batch_invariant_mode(device="cuda"):
        batch = model(input_ids=ids, attention_mask=mask.long(), position_ids=positions).logits
        for row, n in enumerate(lengths):
            alone = model(input_ids=ids[row : row + 1, width - n :]).logits
            assert torch.equal(alone[0, -1], batch[row, -1]), row


@needs_triton
def test_tiling_shrinks_to_the_shared_memory_limit() -> None:
    """Runs anywhere triton imports: the fp16 tiling (144 KiB) fits an H100's 227 KiB as is,
    and on a consumer card's ~99 KiB drops a pipeline stage, then narrows N, never below the
    limit; fp32's 96 KiB fits both."""
    from lab.kernels import triton_ops as T

    fp16 = T.MATMUL_CONFIGS[torch.float16]
    assert T.shared_memory_needed(fp16, 2) == 144 * 1024
    assert T.fit_tiling(fp16, 2, 227 * 1024) == fp16
    small = T.fit_tiling(fp16, 2, 99 * 1024)
    assert small == {**fp16, "num_stages": 2} and T.shared_memory_needed(small, 2) <= 99 * 1024
    tiny = T.fit_tiling(fp16, 2, 40 * 1024)
    assert tiny["num_stages"] == 2 and tiny["BLOCK_N"] == 64 and tiny["BLOCK_M"] == 64
    assert T.shared_memory_needed(tiny, 2) <= 40 * 1024
    assert (
        T.fit_tiling(T.MATMUL_CONFIGS[torch.float32], 4, 98 * 1024)
        == T.MATMUL_CONFIGS[torch.float32]
    )


def interpreter_env() -> dict[str, str]:
    """Triton's CPU interpreter, one thread for torch and numpy's BLAS. With the default two
    threads, about one run in twenty gave the first fallback attention call (sliding window)
    errors of ~1e-4 on the half of the batch one thread computed, the same call again in the
    same process exact: a race in the threaded CPU libraries under the interpreter (never seen
    on a GPU); one thread keeps this a check of the kernels' logic."""
    single = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    return dict(os.environ, TRITON_INTERPRET="1", **single)


INTERPRETER_CHECK = textwrap.dedent(
    """
    import torch
    from lab.kernels import triton_ops as T
    from lab.kernels.attention import fixed_order_attention

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(130, 70, generator=g), torch.randn(70, 150, generator=g)
    bias = torch.randn(150, generator=g)
    c = T.mm(a, b)
    assert (c.double() - a.double() @ b.double()).abs().max() < 1e-4
    # Rows keep their place in their 128-row tile: the interpreter's dot is numpy's BLAS,
    # which (unlike a GPU's MMA) may round a row differently at another place in the tile.
    assert torch.equal(T.mm(a[:1], b), c[:1]) and torch.equal(T.mm(a[:3], b), c[:3])
    assert torch.equal(T.mm(a[128:130], b), c[128:130])  # the second M tile, alone
    assert torch.equal(T.mm(a, b.t().contiguous().t()), c)  # strides
    ref = 0.5 * bias.double() + 2.0 * (a.double() @ b.double())
    assert (T.addmm(bias, a, b, beta=0.5, alpha=2.0).double() - ref).abs().max() < 1e-3
    x, y = torch.randn(5, 9, 70, generator=g), torch.randn(5, 70, 33, generator=g)
    o = T.bmm(x, y)
    assert (o.double() - x.double() @ y.double()).abs().max() < 1e-4
    assert torch.equal(T.bmm(x[:1], y[:1]), o[:1]) and torch.equal(T.bmm(x[2:4], y[2:4]), o[2:4])
    z = torch.randn(7, 2100, generator=g)
    for fn, ref in ((T.log_softmax, torch.log_softmax), (T.softmax, torch.softmax)):
        out = fn(z, -1, False)
        assert (out.double() - ref(z.double(), -1)).abs().max() < 1e-5
        assert torch.equal(fn(z[:1], -1, False), out[:1])
        assert torch.equal(fn(z[3:5], -1, False), out[3:5])
    assert (T.log_softmax(z, 0, False) - torch.log_softmax(z, 0)).abs().max() < 1e-5
    m = T.mean_dim(z, [-1], True)
    assert m.shape == (7, 1) and (m.double() - z.double().mean(-1, keepdim=True)).abs().max() < 1e-6
    assert torch.equal(T.mean_dim(z[2:5], [-1]), T.mean_dim(z, [-1])[2:5])
    assert T.mean_dim(torch.randn(3, 4, 5, generator=g), [0, 2]).shape == (4,)
    q = torch.randn(2, 4, 5, 16, generator=g)
    k, v = torch.randn(2, 2, 5, 16, generator=g), torch.randn(2, 2, 5, 16, generator=g)
    out = T.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.double(), k.double(), v.double(), is_causal=True, enable_gqa=True
    )
    assert (out.double() - ref).abs().max() < 1e-5
    print("ok")
    """
)


ATTENTION_INTERPRETER_CHECK = textwrap.dedent(
    """
import torch
import torch.nn.functional as F
from lab.kernels import triton_ops as T
from lab.kernels.triton_attention import padded_layout

g = torch.Generator().manual_seed(0)
b, h, hk, d = 4, 6, 2, 32
lengths = [70, 9, 1, 40]
s = max(lengths)
q = torch.randn(b, h, s, d, generator=g)
k = torch.randn(b, hk, s, d, generator=g)
v = torch.randn(b, hk, s, d, generator=g)
keys = torch.arange(s)
pads = torch.tensor([s - n for n in lengths])
real = keys[None, :] >= pads[:, None]  # [B, S]
causal = keys[None, :] <= keys[:, None]
mask = (causal[None] & real[:, None, :] & real[:, :, None])[:, None]  # [B,1,T,S]
sdpa = T.scaled_dot_product_attention
lay = padded_layout(mask, False, b, s, s, q.device)
assert lay is not None and lay.causal and lay.first.tolist() == pads.tolist(), lay
out = sdpa(q, k, v, attn_mask=mask)
def reference(q, k, v, mask):
    # softmax(q k^T / sqrt(d) masked) v written out in float64: independent of torch's own
    # CPU attention kernels, which differ by CPU (rows with no visible key come out NaN and
    # are never compared)
    group = q.shape[1] // k.shape[1]
    kd = k.double().repeat_interleave(group, 1)
    vd = v.double().repeat_interleave(group, 1)
    scores = q.double() @ kd.transpose(-1, -2) / q.shape[-1] ** 0.5
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), -1) @ vd
def worst(got, ref, rows):
    diff = (got.double() - ref).permute(0, 2, 1, 3)[rows]
    return diff.abs().max(), int(diff.isnan().sum()), tuple(got.shape)
ref = reference(q, k, v, mask)
rows = real
err = worst(out, ref, rows)
assert err[0] < 1e-5 and err[1] == 0, ("left-padded", err)
assert torch.all(out.permute(0, 2, 1, 3)[~rows] == 0)  # padded queries: zeros
for i, n in enumerate(lengths):  # alone, unpadded, is_causal (mask None)
    alone = sdpa(q[i:i+1, :, -n:], k[i:i+1, :, -n:], v[i:i+1, :, -n:], is_causal=True)
    assert (alone[0] - out[i, :, -n:]).abs().max() < 1e-5
# decode: one query over the cache; alone vs padded bitwise (rows sit at the same places)
step = sdpa(q[:, :, -1:], k, v, attn_mask=real[:, None, None])
assert padded_layout(real[:, None, None], False, b, 1, s, q.device).causal is False
for i, n in enumerate(lengths):
    alone = sdpa(q[i:i+1, :, -1:], k[i:i+1, :, -n:], v[i:i+1, :, -n:])
    assert torch.equal(alone[0], step[i]), i
ref = reference(q[:, :, -1:], k, v, real[:, None, None])
assert (step.double() - ref).abs().max() < 1e-5, ("decode", (step.double() - ref).abs().max())
# other masks fall back to fixed_order_attention (still right)
window = mask & (keys[None, :] > keys[:, None] - 16)[None, None]
assert padded_layout(window, False, b, s, s, q.device) is None
out_w = sdpa(q, k, v, attn_mask=window)
err = worst(out_w, reference(q, k, v, window), rows)
assert err[0] < 1e-5 and err[1] == 0, ("sliding window", err)
assert padded_layout(None, True, 1, 3, 7, q.device) is None  # top-left causal, T != S
# head dim 80: padded to 128 in the kernel
q2, k2, v2 = (torch.randn(2, 2, 5, 80, generator=g) for _ in range(3))
o2 = sdpa(q2, k2, v2, is_causal=True)
r2 = F.scaled_dot_product_attention(q2.double(), k2.double(), v2.double(), is_causal=True)
assert (o2.double() - r2).abs().max() < 1e-5
print("ok")
    """
)


@needs_triton
def test_fused_padded_attention_in_the_cpu_interpreter() -> None:
    """The fused attention kernel (triton_attention.py) in Triton's interpreter: which masks
    it takes, float64 accuracy for left-padded prefill and decode, decode steps bitwise equal
    alone and padded, and the fallback for other masks (a sliding window)."""
    env = interpreter_env()
    result = subprocess.run(
        [sys.executable, "-c", ATTENTION_INTERPRETER_CHECK],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


@needs_triton
def test_triton_kernels_in_the_cpu_interpreter() -> None:
    """Runs on any machine: the Triton kernels' logic (tiling, masks, strides, no split-K)
    through Triton's interpreter on CPU tensors, in a subprocess because TRITON_INTERPRET
    must be set before triton is imported."""
    env = interpreter_env()
    result = subprocess.run(
        [sys.executable, "-c", INTERPRETER_CHECK],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
