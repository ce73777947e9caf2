"""Batch- and padding-invariant attention as ONE Triton kernel, for the layouts a serving batch
has: left-padded prompts (causal) and decode steps over a left-padded cache.

`fixed_order_attention` (attention.py) gets invariance from a fixed reduction order built out
of row-invariant GEMMs and elementwise ops: correct for any mask, but some thirty kernel
launches per call, which on a GPU costs ~0.7 ms where the stock kernel takes ~0.05 ms (measured
on an H200, experiments/gpu-h200/). This kernel does the same arithmetic plan in one launch:

- one program per (batch row, KV head, block of BLOCK_M query rows); the G query heads that
  share a KV head are stacked as rows, as in fixed_order_attention;
- keys are walked in chunks of KEY_CHUNK anchored at the LAST key (the newest token): chunk j
  of n covers keys [S - (n - j) * KEY_CHUNK, S - (n - j - 1) * KEY_CHUNK), and only the chunks
  holding a visible key are visited. A prompt alone and the same prompt left-padded inside a
  batch therefore see their real keys at the same places of the same chunks, visited in the
  same order, and the padding never enters an instruction;
- two passes: the row maximum over every visible score (exact in any order), then per chunk
  p = exp(score - max), the row sum of p and p @ v accumulated chunk after chunk in fp32.

Which layouts qualify is read off the mask once per forward pass (every layer gets the same
mask tensor): key j visible to query i iff j >= first[b] (the row's first real key), and, when
causal, j <= i + S - T. Anything else (sliding windows, float biases, right padding, a mask
per head) goes to fixed_order_attention, which handles every mask. Both kernels are
invariant on their own; a sequence alone and inside a batch must take the same one, which the
layouts guarantee: an unpadded prompt (mask None, is_causal, T == S) and its left-padded copy
both qualify, and so do decode steps with and without padding.

    TRITON_INTERPRET=1 .venv/bin/python -m pytest -q tests/gpu/test_triton_kernels.py  # logic
    .venv/bin/python -m pytest -q tests/gpu -k attention                              # on CUDA
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl

from lab.kernels.attention import _allowed, _edits, _span, fixed_order_attention

#: query rows per program (tl.dot needs at least 16)
BLOCK_M = 16
#: keys per chunk: the same anchoring and size as fixed_order_attention's
KEY_CHUNK = 64


@dataclass(frozen=True)
class PaddedLayout:
    """A mask the fused kernel can take: left padding, causal or not."""

    first: torch.Tensor  # [B] int32: each row's first visible key
    causal: bool  # key j visible to query i only if j <= i + S - T


# The last layout, keyed on the mask it came from (see attention._plan_for: one analysis
# serves every layer of a forward pass; a weak reference never keeps the mask alive).
_last: tuple[tuple[Any, ...], Any, PaddedLayout | None] | None = None


def padded_layout(
    attn_mask: torch.Tensor | None, is_causal: bool, b: int, t: int, s: int, device: torch.device
) -> PaddedLayout | None:
    """The mask as a PaddedLayout, or None when it is any other mask."""
    global _last
    if attn_mask is None:
        if is_causal and t != s:  # torch's top-left causal convention: not a padded layout
            return None
        # a one-query step sees every key either way: the same kernel as a padded step's
        causal = is_causal and t > 1
        return PaddedLayout(torch.zeros(b, dtype=torch.int32, device=device), causal)
    if attn_mask.dtype != torch.bool or attn_mask.dim() == 4 and attn_mask.shape[1] != 1:
        return None
    key: tuple[Any, ...] = (b, t, s, is_causal, str(device), tuple(attn_mask.shape))
    key += (attn_mask.data_ptr(), _edits(attn_mask))
    if _last is not None and _last[0] == key and _last[1]() is attn_mask:
        return _last[2]
    allowed, _ = _allowed(t, s, attn_mask, is_causal, device)
    assert allowed is not None
    allowed = allowed.expand(b, 1, t, s)[:, 0]  # [B, T, S]
    first, _ = _span(allowed.any(dim=1))  # [B]
    keys = torch.arange(s, device=device)
    from_first = keys[None, None, :] >= first[:, None, None]  # [B, 1, S]
    below = keys[None, None, :] <= torch.arange(t, device=device)[None, :, None] + (s - t)
    layout = None
    if torch.equal(allowed, from_first.expand(b, t, s)):  # first: a decode step is both
        layout = PaddedLayout(first.to(torch.int32), False)
    elif torch.equal(allowed, (from_first & below).expand(b, t, s)):
        layout = PaddedLayout(first.to(torch.int32), True)
    _last = (key, weakref.ref(attn_mask), layout)
    return layout


@triton.jit
def _padded_attention_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, first_ptr,
    sqb, sqh, sqt, sqd, skb, skh, sks, skd, svb, svh, svs, svd, sob, soh, sot, sod,
    HK, G, T, S, D, DV, scale,
    CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr, CHUNK: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """out [B, H, T, DV] = softmax(q k^T * scale, visible keys) v for one block of rows."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // HK).to(tl.int64)
    hk = (bh % HK).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # row r: query head hk*G + r // T, query r % T
    live = rows < G * T
    rows = tl.where(live, rows, 0)
    head = (hk * G + rows // T).to(tl.int64)
    query = (rows % T).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    q = tl.load(
        q_ptr + b * sqb + head[:, None] * sqh + query[:, None] * sqt + offs_d[None, :] * sqd,
        mask=live[:, None] & (offs_d[None, :] < D),
        other=0.0,
    ).to(tl.float32)
    first = tl.load(first_ptr + b)
    chunks = tl.cdiv(S - first, CHUNK)  # chunks holding a visible key, counted from the end
    offs_c = tl.arange(0, CHUNK)
    k_base = k_ptr + b * skb + hk * skh
    v_base = v_ptr + b * svb + hk * svh
    # pass 1: the row maximum over visible scores (exact in any order)
    top = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    for j in range(0, chunks):
        keys = S - (chunks - j) * CHUNK + offs_c
        real = keys >= first
        safe = tl.where(real, keys, 0).to(tl.int64)
        k = tl.load(
            k_base + safe[:, None] * sks + offs_d[None, :] * skd,
            mask=real[:, None] & (offs_d[None, :] < D),
            other=0.0,
        ).to(tl.float32)
        scores = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        visible = real[None, :] & live[:, None]
        if CAUSAL:
            visible = visible & (keys[None, :] <= query[:, None] + (S - T))
        scores = tl.where(visible, scores, float("-inf"))
        top = tl.maximum(top, tl.max(scores, axis=1))
    top = tl.where(top == float("-inf"), 0.0, top)
    # pass 2: exp, row sums and p @ v, chunk after chunk
    total = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_DV), tl.float32)
    for j in range(0, chunks):
        keys = S - (chunks - j) * CHUNK + offs_c
        real = keys >= first
        safe = tl.where(real, keys, 0).to(tl.int64)
        k = tl.load(
            k_base + safe[:, None] * sks + offs_d[None, :] * skd,
            mask=real[:, None] & (offs_d[None, :] < D),
            other=0.0,
        ).to(tl.float32)
        scores = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
        visible = real[None, :] & live[:, None]
        if CAUSAL:
            visible = visible & (keys[None, :] <= query[:, None] + (S - T))
        p = tl.where(visible, tl.exp(scores - top[:, None]), 0.0)
        total += tl.sum(p, axis=1)
        v = tl.load(
            v_base + safe[:, None] * svs + offs_dv[None, :] * svd,
            mask=real[:, None] & (offs_dv[None, :] < DV),
            other=0.0,
        ).to(tl.float32)
        acc = tl.dot(p, v, acc, input_precision=PRECISION)
    out = tl.where(total[:, None] > 0, acc / tl.where(total > 0, total, 1.0)[:, None], 0.0)
    tl.store(
        o_ptr + b * sob + head[:, None] * soh + query[:, None] * sot + offs_dv[None, :] * sod,
        out.to(o_ptr.dtype.element_ty),
        mask=live[:, None] & (offs_dv[None, :] < DV),
    )


def padded_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    layout: PaddedLayout,
    scale: float | None,
    precision: str,
) -> torch.Tensor:
    """The fused kernel: query [B, H, T, D], key [B, Hk, S, D], value [B, Hk, S, Dv]."""
    b, h, t, d = query.shape
    hk, s, dv = key.shape[1], key.shape[2], value.shape[3]
    key, value = key.expand(b, hk, s, d), value.expand(b, hk, s, dv)
    g = h // hk
    out = torch.empty((b, h, t, dv), dtype=query.dtype, device=query.device)
    if out.numel() == 0:
        return out
    grid = (triton.cdiv(g * t, BLOCK_M), b * hk)
    _padded_attention_kernel[grid](
        query, key, value, out, layout.first,
        *query.stride(), *key.stride(), *value.stride(), *out.stride(),
        hk, g, t, s, d, dv, 1.0 / math.sqrt(d) if scale is None else float(scale),
        CAUSAL=layout.causal, BLOCK_M=BLOCK_M,
        BLOCK_D=max(16, triton.next_power_of_2(d)), BLOCK_DV=max(16, triton.next_power_of_2(dv)),
        CHUNK=KEY_CHUNK, PRECISION=precision,
    )  # fmt: skip
    return out


def attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None,
    is_causal: bool,
    scale: float | None,
    *,
    bmm: Any,
    row_sum: Any,
) -> torch.Tensor:
    """The fused kernel for padded layouts, fixed_order_attention for every other mask (4-D
    inputs; attention._inference_4d handles 3-D inputs and dropout)."""
    b, _, t, _ = query.shape
    layout = padded_layout(attn_mask, is_causal, b, t, key.shape[2], query.device)
    if layout is None:
        return fixed_order_attention.__wrapped__(  # type: ignore[attr-defined]
            query, key, value, attn_mask, is_causal, scale, bmm=bmm, row_sum=row_sum
        )
    # fp32 dots follow torch's setting, as the GEMMs do (triton_ops._precision)
    precision = "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"
    return padded_attention(query, key, value, layout, scale, precision)
