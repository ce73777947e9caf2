"""Batch- and padding-invariant attention: the same bits for a sequence alone or in a batch.

Batch invariance in attention is more than row independence. A left-padded prompt in a batch
sees more key positions than the same prompt alone (the padding, masked), and a kernel that
reduces over the key axis blocks that axis by its length: masked keys add exact zeros, but
where the real keys fall in the blocking changes, and so does the rounding (`lab probe`:
CPU flash attention moves a padded prompt's output by ~4e-7). Two ways out, both here:

- `per_sequence_attention` (the CPU path): every sequence is trimmed to the queries and keys
  its mask lets take part (left or right padding drops out) and run through the device's own
  fused kernel alone, with batch size 1. A sequence alone and the same sequence inside any
  padded batch make the identical kernel call, so they get the identical bits. Costs a loop
  over the batch rows; the kernel itself stays the fast fused one.
- `fixed_order_attention` (the CUDA path for masks other than left padding, on the Triton
  GEMMs; usable anywhere; triton_attention.py fuses the same plan into one kernel): vectorised
  over the batch with a reduction order that does not depend on the key axis' length:
  1. Key chunks are anchored at each row's last visible key: the key axis is cut into chunks
     of KEY_CHUNK counted back from that key, the first (partial) chunk zero-filled in front.
     With left padding, or none, that key is the last one (the newest token) for every row,
     so chunks are views of the cache; rows anchored elsewhere are shifted right first (a
     copy). Alone or padded, a sequence's real keys fall at the same places in the same
     chunks, and chunks holding only padding come before them.
  2. Every GEMM has fixed K and N: scores per chunk (q [G*T, D] @ k_c^T [D, KEY_CHUNK]) and
     outputs per chunk (p_c [G*T, KEY_CHUNK] @ v_c [KEY_CHUNK, Dv]); only M (the queries)
     varies, and the device's GEMMs are row-invariant (cpu.py, triton_ops.py).
  3. Softmax: the max is exact in any order; exp is elementwise; chunk outputs and chunk sums
     of p are added up in chunk order. A chunk of padding adds exact zeros to a running sum
     that is still exactly zero, so it changes nothing.

Both: inference only (no dropout, no autograd); rows whose mask hides every key return zeros
(as torch's own kernels do since 2.5).

    .venv/bin/python -m pytest -q tests/unit/test_kernels.py -k attention
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

#: keys reduced per GEMM; every GEMM over the key axis has exactly this K
KEY_CHUNK = 64

#: a row-invariant batched GEMM: a [Bt, M, K] @ b [Bt, K, N] -> [Bt, M, N]
Bmm = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: a fixed-order sum over the last dim: x [..., N] -> [...], each row alone
RowSum = Callable[[torch.Tensor], torch.Tensor]


def _mask_4d(mask: torch.Tensor) -> torch.Tensor:
    """A mask broadcastable to [B, H, T, S], as a 4-D tensor (leading dims of size 1 added)."""
    while mask.dim() < 4:
        mask = mask.unsqueeze(0)
    return mask


def _allowed(
    t: int, s: int, attn_mask: torch.Tensor | None, is_causal: bool, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(allowed, bias): which (query, key) pairs may attend, bool [B|1, H|1, T, S] or None for
    all; and the additive float mask [B|1, H|1, T, S] when the caller gave one."""
    allowed: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    if is_causal:  # torch's convention: query i sees keys 0..i (top-left aligned)
        allowed = torch.ones(t, s, dtype=torch.bool, device=device).tril()[None, None]
    if attn_mask is not None:
        mask = _mask_4d(attn_mask)
        if mask.dtype == torch.bool:
            allowed = mask if allowed is None else allowed & mask
        else:
            bias = mask.float()
            finite = bias != float("-inf")
            allowed = finite if allowed is None else allowed & finite
    return allowed, bias


def _span(flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, N] bool -> per row, the first and one-past-the-last True index (0, 0 when none)."""
    n = flags.shape[-1]
    any_ = flags.any(-1)
    first = torch.where(any_, flags.int().argmax(-1), 0)
    end = torch.where(any_, n - flags.flip(-1).int().argmax(-1), 0)
    return first, end


#: one sequence's attention: (q [1, H, T, D], k, v [1, H, S, *], is_causal, additive mask
#: [1, H|1, T, S] or None, scale) -> [1, H, T, Dv]
SequenceKernel = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, bool, torch.Tensor | None, float | None],
    torch.Tensor,
]


@dataclass(frozen=True)
class _Row:
    """How one sequence runs: its block of queries and keys, and how its mask looks there."""

    queries: slice  # the queries that see any key
    keys: slice  # the keys those queries see
    causal: bool  # the block is square and lower-triangular (a prompt, alone or left-padded)
    general: bool  # neither causal nor all-visible: the kernel gets the block of the mask


def _plan(allowed: torch.Tensor) -> list[_Row | None]:
    """Per batch row of `allowed` (bool [B, H|1, T, S]), its _Row (None: nothing visible)."""
    b, _, t, s = allowed.shape
    k_lo, k_hi = _span(allowed.any(dim=2).any(dim=1))  # [B]
    q_lo, q_hi = _span(allowed.any(dim=3).any(dim=1))  # [B]
    # Each row against the two common shapes, all rows at once.
    qi = torch.arange(t, device=allowed.device)[None, :, None] - q_lo[:, None, None]  # [B,T,1]
    ki = torch.arange(s, device=allowed.device)[None, None, :] - k_lo[:, None, None]  # [B,1,S]
    inside = (qi >= 0) & (qi < (q_hi - q_lo)[:, None, None])
    inside = inside & (ki >= 0) & (ki < (k_hi - k_lo)[:, None, None])  # [B, T, S]
    full = (allowed == inside[:, None]).flatten(1).all(-1)  # [B] every pair in the block
    tril = (allowed == (inside & (ki <= qi))[:, None]).flatten(1).all(-1)  # [B]
    rows: list[_Row | None] = []
    for ql, qh, kl, kh, f, c in zip(
        q_lo.tolist(), q_hi.tolist(), k_lo.tolist(), k_hi.tolist(), full.tolist(), tril.tolist(),
        strict=True,
    ):  # fmt: skip
        causal = not f and c and qh - ql == kh - kl
        rows.append(
            _Row(slice(ql, qh), slice(kl, kh), causal, not (f or causal)) if qh > ql else None
        )
    return rows


# The last plan, keyed on the mask it came from: a forward pass hands every layer the same
# mask tensor, so one analysis serves all layers (a weak reference: never keeps it alive;
# the key also holds its shape, storage and an in-place-edit check).
_last_plan: tuple[tuple[Any, ...], Any, list[_Row | None]] | None = None


def _edits(mask: torch.Tensor) -> tuple[int, ...]:
    """Changes when `mask` is edited in place: its version counter, or for an inference
    tensor (which has none) the count and the index sum of its nonzero entries."""
    try:
        return (mask._version,)
    except RuntimeError:
        flat = (mask != 0).flatten()
        places = torch.arange(flat.numel(), device=mask.device)
        return (int(flat.sum()), int((places * flat).sum()))


def _plan_for(
    attn_mask: torch.Tensor | None, is_causal: bool, b: int, t: int, s: int, device: torch.device
) -> list[_Row | None]:
    global _last_plan
    key: tuple[Any, ...] = (b, t, s, is_causal, str(device))
    if attn_mask is not None:
        key += (tuple(attn_mask.shape), attn_mask.dtype, attn_mask.data_ptr(), _edits(attn_mask))
    if _last_plan is not None and _last_plan[0] == key:
        source = _last_plan[1]
        if (source is None and attn_mask is None) or (source is not None and source() is attn_mask):
            return _last_plan[2]
    allowed, _ = _allowed(t, s, attn_mask, is_causal, device)
    if allowed is None:
        allowed = torch.ones(1, 1, t, s, dtype=torch.bool, device=device)
    plan = _plan(allowed.expand(b, allowed.shape[1], t, s))
    _last_plan = (key, None if attn_mask is None else weakref.ref(attn_mask), plan)
    return plan


def _inference_4d(
    attention: Callable[..., torch.Tensor],
) -> Callable[..., torch.Tensor]:
    """The entry checks both attentions share: dropout is refused (inference only), and 3-D
    inputs [B, T, D] run as one head [B, 1, T, D]."""

    @functools.wraps(attention)
    def entry(
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None,
        dropout_p: float,
        is_causal: bool,
        scale: float | None,
        enable_gqa: bool,
        **kernels: Any,
    ) -> torch.Tensor:
        del enable_gqa  # grouped heads are handled whenever H is a multiple of Hk
        if dropout_p:
            raise NotImplementedError("batch-invariant attention is inference-only (dropout_p=0)")
        if query.dim() == 3:
            return attention(
                query[:, None], key[:, None], value[:, None], attn_mask, is_causal, scale,
                **kernels,
            )[:, 0]  # fmt: skip
        if query.shape[1] % key.shape[1]:
            raise ValueError(
                f"query heads ({query.shape[1]}) must be a multiple of key/value heads "
                f"({key.shape[1]})"
            )
        return attention(query, key, value, attn_mask, is_causal, scale, **kernels)

    return entry


def aten_sdpa(
    attention: Callable[..., torch.Tensor], **kernels: Any
) -> Callable[..., torch.Tensor]:
    """An override with aten::scaled_dot_product_attention's signature that runs `attention`
    (per_sequence_attention or fixed_order_attention) with the given kernels."""

    def scaled_dot_product_attention(
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        dropout_p: float = 0.0,
        is_causal: bool = False,
        *,
        scale: float | None = None,
        enable_gqa: bool = False,
    ) -> torch.Tensor:
        return attention(
            query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, **kernels
        )

    return scaled_dot_product_attention


@_inference_4d
def per_sequence_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None,
    is_causal: bool,
    scale: float | None,
    *,
    kernel: SequenceKernel,
) -> torch.Tensor:
    """Attention one sequence at a time, each trimmed to the queries and keys its mask uses.

    Shapes and mask as `fixed_order_attention`. Within its block a sequence runs with no mask
    when it may see every key (a decode step), as causal when the block is square and lower-
    triangular (a prompt, alone or left-padded), else with its block of the mask.
    """
    b, h, t, _ = query.shape
    hk, s, dv = key.shape[1], key.shape[2], value.shape[3]
    if hk != h:  # the same layout transformers' repeat_kv gives a padded batch
        key = key[:, :, None].expand(b, hk, h // hk, s, key.shape[3]).reshape(b, h, s, -1)
        value = value[:, :, None].expand(b, hk, h // hk, s, dv).reshape(b, h, s, dv)
    key, value = key.expand(b, h, s, key.shape[3]), value.expand(b, h, s, dv)
    if b == 1 and attn_mask is None and t and s and (not is_causal or t == s):
        # One sequence that sees every key (or is square and causal): the plan would make this
        # very call on full-range slices (a 1 x 1 causal block counts as all-visible), so skip
        # its analysis (a decode step alone: ~20 us of Python a layer).
        return kernel(query, key, value, is_causal and t > 1, None, scale)
    plan = _plan_for(attn_mask, is_causal, b, t, s, query.device)
    allowed, bias = None, None
    if attn_mask is not None and (
        attn_mask.dtype != torch.bool or any(r and r.general for r in plan)
    ):
        allowed, bias = _allowed(t, s, attn_mask, is_causal, query.device)
    results: list[torch.Tensor | None] = []
    for i, row in enumerate(plan):
        if row is None:
            results.append(None)  # nothing visible: zeros
            continue
        mask = None
        if bias is not None or row.general:
            assert allowed is not None
            block = allowed.expand(b, allowed.shape[1], t, s)[i, :, row.queries, row.keys]
            mask = torch.zeros(block.shape, dtype=query.dtype, device=query.device)
            if bias is not None:  # the kernel wants the mask in the query's dtype
                extra = bias.expand(b, bias.shape[1], t, s)[i, :, row.queries, row.keys]
                mask = mask + extra.to(query.dtype)
            mask = mask.masked_fill(~block, float("-inf"))[None]  # [1, H|1, Tq, Sk]
        results.append(
            kernel(
                query[i : i + 1, :, row.queries],
                key[i : i + 1, :, row.keys],
                value[i : i + 1, :, row.keys],
                row.causal and mask is None,
                mask,
                scale,
            )
        )
    if all(r is not None and r.shape[2] == t for r in results):  # every query took part
        return torch.cat(results)  # type: ignore[arg-type]
    out = query.new_zeros(b, h, t, dv)
    for i, (row, result) in enumerate(zip(plan, results, strict=True)):
        if row is not None and result is not None:
            out[i : i + 1, :, row.queries] = result
    return out


def _front_pad(x: torch.Tensor, lead: int, dim: int, value: float | bool = 0) -> torch.Tensor:
    """x with `lead` entries of `value` prepended along `dim` (x itself when lead == 0)."""
    if lead == 0:
        return x
    shape = list(x.shape)
    shape[dim] = lead
    return torch.cat([torch.full(shape, value, dtype=x.dtype, device=x.device), x], dim=dim)


def _shift_right(
    x: torch.Tensor, shift: torch.Tensor, dim: int, value: float | bool
) -> torch.Tensor:
    """Row b of x moved `shift[b]` places later along `dim` (entries pushed in: `value`)."""
    size = x.shape[dim]
    index = torch.arange(size, device=x.device)[None, :] - shift[:, None]  # [B, S]
    valid = index >= 0
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    shape[dim] = size
    index = index.clamp(min=0).view(shape).expand(x.shape)
    return x.gather(dim, index).masked_fill(~valid.view(shape), value)


@_inference_4d
def fixed_order_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None,
    is_causal: bool,
    scale: float | None,
    *,
    bmm: Bmm,
    row_sum: RowSum,
) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v with a padding- and batch-invariant reduction order.

    query [B, H, T, D], key [B, Hk, S, D], value [B, Hk, S, Dv] (3-D inputs: H = 1), H a
    multiple of Hk (grouped-query attention). attn_mask: bool (True = may attend) or additive
    float, broadcastable to [B, H, T, S]. Rows with no key to attend to return zeros (as
    torch's own kernels do since 2.5).
    """
    out_dtype = query.dtype
    if query.dtype in (torch.float16, torch.bfloat16):  # scores and sums in fp32
        query, key, value = query.float(), key.float(), value.float()
    b, h, t, d = query.shape
    hk, s, dv = key.shape[1], key.shape[2], value.shape[3]
    g = h // hk
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    key, value = key.expand(b, hk, s, d), value.expand(b, hk, s, dv)

    allowed, bias = _allowed(t, s, attn_mask, is_causal, query.device)

    # 1. Anchor: each row's last visible key must be the last key; shift rows that end early.
    if allowed is not None:
        visible = allowed.any(dim=2).any(dim=1).expand(b, s)  # [B, S]
        shift = visible.flip(-1).int().argmax(-1)  # [B] keys after the last visible one
        shift = shift.masked_fill(~visible.any(-1), 0)
        if bool(shift.any()):
            key = _shift_right(key, shift, 2, 0.0)
            value = _shift_right(value, shift, 2, 0.0)
            allowed = _shift_right(allowed.expand(b, *allowed.shape[1:3], s), shift, 3, False)
            if bias is not None:
                bias = _shift_right(bias.expand(b, *bias.shape[1:3], s), shift, 3, 0.0)
    chunks = max(1, -(-s // KEY_CHUNK))
    lead = chunks * KEY_CHUNK - s  # zero keys in front of the first chunk

    def chunk(x: torch.Tensor, c: int) -> torch.Tensor:  # [B, Hk, S, X] -> [B*Hk, CHUNK, X]
        lo, hi = c * KEY_CHUNK - lead, (c + 1) * KEY_CHUNK - lead
        part = _front_pad(x[:, :, max(lo, 0) : hi], max(-lo, 0), 2)  # a view but for chunk 0
        return part.reshape(b * hk, KEY_CHUNK, x.shape[3])

    # 2. Scores, grouped-query: the G query heads sharing a KV head are stacked as rows.
    q_g = query.reshape(b * hk, g * t, d)  # [B*Hk, G*T, D]
    scores = torch.cat(
        [bmm(q_g, chunk(key, c).transpose(1, 2)) for c in range(chunks)], dim=-1
    )  # [B*Hk, G*T, Lp]
    padded = chunks * KEY_CHUNK
    scores = scores.view(b, hk, g, t, padded) * scale
    visible_s = (torch.arange(padded, device=query.device) >= lead)[None, None, None, None, :]

    def spread(m: torch.Tensor) -> torch.Tensor:  # [B|1, H|1, T|1, S] -> [B|1, Hk|1, G|1, T, Lp]
        m = _front_pad(m.expand(*m.shape[:2], t, s), lead, 3, False)  # masked below anyway
        return m.view(m.shape[0], hk, g, t, padded) if m.shape[1] == h > 1 else m[:, :, None]

    if bias is not None:
        scores = scores + spread(bias)
    if allowed is not None:
        visible_s = visible_s & spread(allowed)
    scores = scores.masked_fill(~visible_s, float("-inf"))
    top = scores.amax(dim=-1, keepdim=True)  # exact in any order
    top = top.masked_fill(top == float("-inf"), 0.0)  # rows with nothing visible
    probs = torch.exp(scores - top).view(b * hk, g * t, padded)  # masked keys: exactly 0
    sums = row_sum(probs.view(b * hk, g * t, chunks, KEY_CHUNK))  # [B*Hk, G*T, C], per chunk

    # 3. Outputs per chunk, added up in chunk order.
    out = bmm(probs[:, :, :KEY_CHUNK], chunk(value, 0))  # [B*Hk, G*T, Dv]
    total = sums[:, :, :1]
    for c in range(1, chunks):
        out = out + bmm(probs[:, :, c * KEY_CHUNK : (c + 1) * KEY_CHUNK], chunk(value, c))
        total = total + sums[:, :, c : c + 1]
    out = (out / total).masked_fill(total == 0, 0.0)
    return out.view(b, h, t, dv).to(out_dtype)
