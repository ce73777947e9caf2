"""Batch-invariant CPU kernels: matmul, reductions, softmax and attention, in plain torch.

A kernel is batch-invariant when row i of its output is the same bits whatever else is in the
batch: `op(x[:1]) == op(x)[:1]`. These functions are what `set_batch_invariant_mode()` routes
the aten operators to on the CPU (see mode.py); they call only `.out` variants and other
operators the mode does not override, so they never recurse into themselves.

What breaks invariance on this CPU (MKL sgemm, AVX-512), measured with `lab probe`:

- GEMM rows depend on M. M < 4 takes a GEMV-like path, and for M < 12 the M % 4 leftover rows
  take yet another; for every M that is a multiple of 4 (and every M >= 12) each row goes
  through the same micro-kernel with a K-blocking that depends on K and N only. So the GEMMs
  here pad M up to a multiple of ROW_TILE = 8: the BLAS only ever sees M in {8, 16, 24, ...},
  and a row's reduction order is the same whether it sits alone or among 2048 others.
  ("tiles" instead cuts M into fixed [8, K] tiles through one bmm, so the BLAS sees M = 8
  exactly.)
  "onednn", where the torch build has oneDNN: fp32 matmuls go through oneDNN's linear on a
  weight packed once (cached per weight tensor) with M padded to a multiple of
  ONEDNN_ROW_TILE = 4. Measured row-invariant for every M from 1 to 2048 at SmolLM2's shapes
  on the AMD EPYC, and faster than MKL's GEMM there from 4 rows up (a 320-row prefill linear
  0.47x, the LM head at 8 rows 0.37x; a lone row 1.6x MKL's GEMV instead of 3.4x for the
  padded GEMM), so generation with the mode on is faster than stock there.
  None of this is a property of x86: on an Intel Xeon (AVX-512, the same torch and MKL) the
  padded MKL GEMM gives rows 1-8 other bits than the same rows in a 40-row call, and in bf16
  both "pad" and oneDNN move rows 7-32, while "tiles" holds. So the strategy is not assumed,
  it is checked: the first GEMM of each (dtype, K, N, weight layout) inside the mode runs a
  self-check (strategy_for: row i of an M-row product equal for M = 1..16 and 24, 33, 40, and
  for rows moved to the front), and the first strategy in the preference order that passes is
  used for that shape from then on. The order is never timed: it is PREFERENCE's entry for the
  instruction set torch's CPU kernels use (torch.backends.cpu.get_cpu_capability(), a fixed
  property of the machine and its environment), so the same machine always makes the same
  choice. On AVX-512, oneDNN's packed GEMM beats MKL's at the model's shapes (0.47-0.66x on
  the AVX-512 EPYC): onednn2, onednn, tiles, pad. On AVX2 only the order is onednn2, onednn,
  pad, tiles too: "pad" is MKL's own GEMM (the same call as stock at M = 8, so a batch costs
  nothing) but a lone row does the work of 8 (a 1-row linear 2.9-3.5x MKL's GEMV) and
  generation alone cost 1.60-1.69x on an AVX2-only EPYC; oneDNN's lone row does the work of 2
  (1.15x). Measured on an AMD EPYC limited to AVX2 (ATEN_CPU_CAPABILITY=avx2
  ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2), generation cost pad 1.33x in a
  batch of 8 and 1.64x alone, onednn2 0.94x and 0.85x; on an Intel Xeon limited the same way
  pad moves rows and the self-check fell through to onednn2 anyway. "onednn2" pads M to a
  multiple of 2 instead of 4: a lone row does
  the work of 2, not 4, and every row was measured bit-identical to "onednn"'s (M = 1..1099 at
  SmolLM2's shapes, AVX-512 and AVX2, 1 and 2 threads). CPU_MATMUL_STRATEGY forces one.
- A reduction with a single output and >= 32768 inputs is split across threads (two-pass), so
  `x[:1].mean(-1)` on a [1, 49152] row differs from the same row inside a batch. mean_dim
  always reduces a [R >= 2, N] contiguous view, one row per output, in a fixed vectorised
  order that depends on N only.
- Some elementwise kernels compute the last elements of a contiguous range (numel % 32 in
  fp32) with a scalar formula that differs by an ulp from the vector one: fp32 silu, sigmoid,
  gelu; bf16/fp16 rsqrt and gelu. Which values land in that tail depends on the batch size.
  Those ops run on the flat tensor padded to a multiple of 64 x threads elements (each
  thread's share of a parallel loop has its own tail).
- Attention: a left-padded prompt's keys are blocked differently from the same prompt
  alone; scaled_dot_product_attention runs each sequence trimmed and alone (attention.py).

log_softmax / softmax along a contiguous last dimension are row-wise already (each row: max,
sum of exp, in an order set by the row length only); the overrides pin that layout.

    .venv/bin/python -m pytest -q tests/unit/test_kernels.py
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from lab.kernels.attention import aten_sdpa, per_sequence_attention

#: the BLAS sees M only as a multiple of this (see module docstring)
ROW_TILE = 8
#: oneDNN's packed linear sees M only as a multiple of this ("onednn"; "onednn2": of 2)
ONEDNN_ROW_TILE = 4
#: the batch-size hint oneDNN packs weights for: fixed, so the packed layout (and the kernel)
#: never depends on M. None (oneDNN's default layout), not 1: on a 2-core Xeon (AVX-512) the
#: hint of 1 left the weight in its plain layout and the linear of 2 rows took 99 us against
#: 47 us packed (8 rows 128 vs 72 us, 320 rows 1.50 vs 1.36 ms; MKL's own 28 / 76 us / 1.54 ms);
#: the bits were the same and rows invariant for every even M measured (2..64, 128..600)
PACK_BATCH_HINT: int | None = None
#: strategy -> the row multiple oneDNN's linear sees
ONEDNN_TILES = {"onednn2": 2, "onednn": ONEDNN_ROW_TILE}


def onednn_linear_available() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available()) and hasattr(
            torch.ops.mkldnn, "_linear_pointwise"
        )
    except (AttributeError, RuntimeError):
        return False


#: force one matmul strategy: "onednn2" / "onednn" (oneDNN's packed linear on M padded to a
#: multiple of 2 / ONEDNN_ROW_TILE, fp32, where the build has it), "pad" (one MKL GEMM on M
#: padded to a multiple of ROW_TILE) or "tiles" (bmm over [ROW_TILE, K]); None: self-checked
CPU_MATMUL_STRATEGY: str | None = None
#: every strategy
STRATEGIES = ("onednn2", "onednn", "pad", "tiles")
#: the order the self-check tries them in, by instruction set (fastest first where they hold;
#: see the module docstring); any other instruction set takes AVX2's order
PREFERENCE = {
    "avx512": ("onednn2", "onednn", "tiles", "pad"),
    "avx2": ("onednn2", "onednn", "pad", "tiles"),
}
#: rows the self-check compares: each M below, and windows moved to the front
SELF_CHECK_ROWS = (*range(1, 17), 24, 33, 40)
#: (dtype, K, N, weight transposed) -> the strategy the self-check chose
_chosen: dict[tuple[torch.dtype, int, int, bool], str] = {}
#: tail-safe elementwise ops pad to a multiple of this many elements (x threads): 2 vectors
ELEMENTWISE_BLOCK = 64
#: ATen's CPU grain size: a reduction of one output over fewer inputs runs on one thread
ATEN_GRAIN_SIZE = 32768


def _round_up(n: int, multiple: int) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def _pad_rows(x: torch.Tensor, rows: int, dim: int) -> torch.Tensor:
    """x with zero rows appended along `dim` up to `rows` (x itself when already there)."""
    if x.shape[dim] == rows:
        return x
    shape = list(x.shape)
    shape[dim] = rows
    out = x.new_zeros(shape)
    out.narrow(dim, 0, x.shape[dim]).copy_(x)
    return out


# Packed weights, one per weight tensor: id(tensor) -> (weakref, version, layout, packed). The
# weakref proves the entry belongs to the same live tensor (an id can be reused after a tensor
# dies); the version counter catches in-place updates.
_PACKED: dict[int, tuple[Any, int, tuple[Any, ...], torch.Tensor]] = {}


def _packed_weight(b: torch.Tensor) -> torch.Tensor:
    """oneDNN's packed form of the [N, K] weight whose transpose is `b` [K, N], cached."""
    owner = b._base if b._base is not None else b
    if owner.is_inference():  # no version counter to prove it unchanged: pack every time
        return torch.ops.mkldnn._reorder_linear_weight(b.t().contiguous(), PACK_BATCH_HINT)
    layout = (b.shape, b.stride(), b.storage_offset(), b.dtype, b.data_ptr())
    key = id(owner)
    hit = _PACKED.get(key)
    if hit is not None and hit[0]() is owner and hit[1] == owner._version and hit[2] == layout:
        return hit[3]
    packed = torch.ops.mkldnn._reorder_linear_weight(b.t().contiguous(), PACK_BATCH_HINT)

    def forget(_: Any, key: int = key) -> None:
        _PACKED.pop(key, None)

    try:
        ref = weakref.ref(owner, forget)
    except TypeError:  # not weak-referenceable: do not cache
        return packed
    _PACKED[key] = (ref, owner._version, layout, packed)
    return packed


def _onednn_addmm(
    bias: torch.Tensor | None,
    a: torch.Tensor,
    b: torch.Tensor,
    beta: Any,
    alpha: Any,
    row_tile: int | None = None,
) -> torch.Tensor:
    """a [M, K] @ b [K, N] (+ bias) through oneDNN's packed linear on M padded to a multiple of
    row_tile (default ONEDNN_ROW_TILE): measured row-invariant for every such M on this build
    (lab probe checks), and faster than MKL's GEMM from 4 rows up on AVX-512 (about 2x on
    SmolLM2's layers)."""
    m = a.shape[0]
    rows = _round_up(m, row_tile or ONEDNN_ROW_TILE)
    # zero rows appended in one op: measured ~10 us a call less than zeros + copy at decode
    # sizes, and the same bits (rows are independent: the self-check holds either way)
    a_pad = torch.cat((a, a.new_zeros(rows - m, a.shape[1]))) if rows != m else a.contiguous()
    fusable = bias is not None and bias.dim() == 1 and beta == 1 and alpha == 1
    fused_bias = bias if fusable else None
    out = torch.ops.mkldnn._linear_pointwise(a_pad, _packed_weight(b), fused_bias, "none", [], "")
    out = out if rows == m else out[:m]
    if alpha != 1:
        out = out * alpha
    if bias is not None and fused_bias is None:  # the GEMM epilogue: alpha * AB + beta * C
        out = out + (bias * beta if beta != 1 else bias)
    return out


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [M, K] @ b [K, N] -> [M, N]; each row's result independent of M."""
    return addmm(None, a, b)


def addmm(
    bias: torch.Tensor | None,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    beta: Any = 1,
    alpha: Any = 1,
) -> torch.Tensor:
    """beta * bias + alpha * (a [M, K] @ b [K, N]) -> [M, N], row-invariant (see ROW_TILE)."""
    if not a.is_floating_point():  # integer GEMM is exact: nothing to pin
        out = a.new_empty((a.shape[0], b.shape[1]))
        if bias is None:
            return torch.mm(a, b, out=out)
        return torch.addmm(bias, a, b, beta=beta, alpha=alpha, out=out)
    strategy = strategy_for(a.dtype, a.shape[1], b.shape[1], b.stride(0) == 1)
    return _addmm_with(strategy, bias, a, b, beta, alpha)


def cpu_isa() -> str:
    """The PREFERENCE entry ("avx512" or "avx2") for the instruction set torch's CPU kernels
    use (ATEN_CPU_CAPABILITY=avx2 set before torch starts makes an AVX-512 machine an AVX2
    one)."""
    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    return "avx512" if capability.startswith("AVX512") else "avx2"


def candidates(dtype: torch.dtype, isa: str | None = None) -> list[str]:
    """The strategies that can run `dtype` here, in the order the self-check tries them (the
    PREFERENCE of `isa`, default this machine's)."""
    onednn = dtype == torch.float32 and onednn_linear_available()
    order = PREFERENCE.get(isa or cpu_isa(), PREFERENCE["avx2"])
    return [s for s in order if onednn or s not in ONEDNN_TILES]


def strategy_for(dtype: torch.dtype, k: int, n: int, transposed: bool) -> str:
    """The matmul strategy for [M, k] @ [k, n] in `dtype` (weight stored transposed or not):
    CPU_MATMUL_STRATEGY when set, else the first candidate the self-check finds row-invariant
    on this machine (cached; "tiles" when none passes, the last resort)."""
    if CPU_MATMUL_STRATEGY is not None:
        return CPU_MATMUL_STRATEGY
    key = (dtype, k, n, transposed)
    chosen = _chosen.get(key)
    if chosen is None:
        chosen = next(
            (s for s in candidates(dtype) if rows_invariant(s, dtype, k, n, transposed)), "tiles"
        )
        _chosen[key] = chosen
    return chosen


def chosen_strategies() -> dict[str, str]:
    """What the self-check chose so far, for records and `lab probe`: "dtype KxN" -> strategy."""
    return {
        f"{str(d).removeprefix('torch.')} {k}x{n}{' (w^T)' if t else ''}": s
        for (d, k, n, t), s in sorted(_chosen.items(), key=str)
    }


def rows_invariant(strategy: str, dtype: torch.dtype, k: int, n: int, transposed: bool) -> bool:
    """Whether `strategy` gives each row of a [M, k] @ [k, n] product the same bits for every M
    in SELF_CHECK_ROWS and for rows moved to the front, on random data (fixed seed)."""
    g = torch.Generator().manual_seed(0)
    rows = max(SELF_CHECK_ROWS)
    a = torch.randn(rows, k, generator=g).to(dtype)
    b = torch.randn(n, k, generator=g).to(dtype).t() if transposed else torch.randn(k, n).to(dtype)
    full = _addmm_with(strategy, None, a, b, 1, 1)
    for m in SELF_CHECK_ROWS:
        if not torch.equal(_addmm_with(strategy, None, a[:m], b, 1, 1), full[:m]):
            return False
    for lo in (1, 5, 13, 29):  # rows from the middle of the batch, alone at the front
        if not torch.equal(_addmm_with(strategy, None, a[lo : lo + 4], b, 1, 1), full[lo : lo + 4]):
            return False
    return True


def _addmm_with(
    strategy: str,
    bias: torch.Tensor | None,
    a: torch.Tensor,
    b: torch.Tensor,
    beta: Any,
    alpha: Any,
) -> torch.Tensor:
    if strategy in ONEDNN_TILES and a.dtype == torch.float32 == b.dtype:
        tile = ONEDNN_ROW_TILE if strategy == "onednn" else ONEDNN_TILES[strategy]
        return _onednn_addmm(bias, a, b, beta, alpha, tile)
    m = a.shape[0]
    rows = _round_up(m, ROW_TILE)
    a_pad = _pad_rows(a, rows, 0)  # [rows, K]
    if bias is not None and bias.dim() == 2 and bias.shape[0] == m != rows:
        bias = _pad_rows(bias, rows, 0)  # a full [M, N] bias: pad it alongside
    if strategy == "tiles":  # always, so the bias epilogue is the same for every M
        tiles = a_pad.reshape(rows // ROW_TILE, ROW_TILE, a.shape[1])  # [T, 8, K]
        out = torch.bmm(
            tiles,
            b.expand(tiles.shape[0], *b.shape),
            out=a.new_empty((tiles.shape[0], ROW_TILE, b.shape[1])),
        ).view(rows, b.shape[1])
        if alpha != 1:
            out = out * alpha
        if bias is not None:  # the GEMM's own epilogue: alpha * AB + beta * C
            out = out + (bias * beta if beta != 1 else bias)
    else:
        out = a.new_empty((rows, b.shape[1]))  # [rows, N]
        if bias is None:
            torch.mm(a_pad, b, out=out)
        else:
            torch.addmm(bias, a_pad, b, beta=beta, alpha=alpha, out=out)
    return out if rows == m else out[:m]


def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [Bt, M, K] @ b [Bt, K, N] -> [Bt, M, N]; each matrix independent of Bt, each row of M."""
    if not a.is_floating_point():
        return torch.bmm(a, b, out=a.new_empty((a.shape[0], a.shape[1], b.shape[2])))
    m = a.shape[1]
    rows = _round_up(m, ROW_TILE)
    a_pad = _pad_rows(a, rows, 1)  # [Bt, rows, K]
    out = torch.bmm(a_pad, b, out=a.new_empty((a.shape[0], rows, b.shape[2])))
    return out if rows == m else out[:, :m].contiguous()


def _reduced_dims(x: torch.Tensor, dim: Any) -> list[int]:
    if dim is None or (isinstance(dim, list | tuple) and len(dim) == 0):
        return list(range(x.dim()))
    dims = [dim] if isinstance(dim, int) else list(dim)
    return sorted({d % max(x.dim(), 1) for d in dims})


def mean_dim(
    x: torch.Tensor, dim: Any, keepdim: bool = False, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """mean over `dim`: each output reduced alone, in an order set by the reduced size only."""
    out_dtype = dtype or x.dtype
    if x.dim() == 0:
        return x.to(out_dtype).clone()
    dims = _reduced_dims(x, dim)
    kept = [d for d in range(x.dim()) if d not in dims]
    n = 1
    for d in dims:
        n *= x.shape[d]
    r = 1
    for d in kept:
        r *= x.shape[d]
    if (
        (r >= 2 or n < ATEN_GRAIN_SIZE)
        and x.is_contiguous()
        and dims == list(range(len(kept), x.dim()))
    ):
        # Already [R, N] rows in memory (RMSNorm's mean over the hidden dim): reduce in place.
        # A single row is safe too while it is shorter than ATen's grain size (only then is
        # it split across threads): measured bit-equal to the same row in a batch of 16 for
        # every N from 1 to 199 and 255, 256, 257, 576, 577, 1000, 1536, 2048, 4095-4097,
        # 8191, 16384, 32767, 32768 (40000 and 49152 differ), fp32 / bf16 / fp16, 1 and 2
        # threads; a decode step alone (R = 1) then skips the copy into two rows (its mean
        # 25 -> 12 us a call).
        total = torch.sum(x, dim=dims, keepdim=keepdim, dtype=out_dtype)
        return total.div_(n)
    rows = x.permute(*kept, *dims).reshape(r, n)  # [R, N]; a copy only if not already so
    # R >= 2 keeps ATen on its one-row-per-output path (R == 1 with N >= 32768 splits the row
    # across threads, which changes the summation order).
    rows = _pad_rows(rows.contiguous(), max(r, 2), 0)
    # Same arithmetic as ATen's CPU mean (sum in the output dtype's accumulator, then divide).
    total = torch.sum(
        rows, dim=-1, dtype=out_dtype, out=rows.new_empty(rows.shape[0], dtype=out_dtype)
    )
    result = total[:r].div_(n)
    out_shape = [x.shape[d] for d in kept]
    result = result.reshape(out_shape)
    if keepdim:
        for d in dims:
            result = result.unsqueeze(d)
    return result


def row_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over the last dim, each row alone in an order set by the row length (>= 2 rows
    keep ATen off its split-one-row path)."""
    rows = x.reshape(-1, x.shape[-1])
    out = torch.sum(_pad_rows(rows.contiguous(), max(rows.shape[0], 2), 0), dim=-1)
    return out[: rows.shape[0]].view(x.shape[:-1])


def _lastdim_call(x: torch.Tensor, dim: int, fn: Any, half_to_float: bool) -> torch.Tensor:
    """Run a row-wise kernel on x with `dim` moved last and contiguous, then move it back."""
    dim = dim % max(x.dim(), 1)
    if half_to_float:  # ATen's CPU kernels refuse it: upcast first (what CUDA does inside)
        x = x.float()
    moved = x.movedim(dim, -1).contiguous() if x.dim() else x
    out = torch.empty(moved.shape, dtype=x.dtype, device=x.device)
    fn(moved, -1 if x.dim() else 0, False, out=out)
    return out.movedim(-1, dim) if x.dim() else out


def log_softmax(x: torch.Tensor, dim: int, half_to_float: bool) -> torch.Tensor:
    """aten::_log_softmax with the reduced dim laid out last and contiguous (row-wise kernel)."""
    return _lastdim_call(x, dim, torch.ops.aten._log_softmax.out, half_to_float)


def softmax(x: torch.Tensor, dim: int, half_to_float: bool) -> torch.Tensor:
    """aten::_softmax with the reduced dim laid out last and contiguous (row-wise kernel)."""
    return _lastdim_call(x, dim, torch.ops.aten._softmax.out, half_to_float)


def _tail_safe(op_out: Any, exact: tuple[torch.dtype, ...] = ()) -> Any:
    """An elementwise aten op run with no element in a scalar tail (see module docstring).
    `exact`: dtypes whose vector and scalar formulas are the same IEEE operations (fp32
    rsqrt is 1 / sqrt both ways, each correctly rounded), which need no padding."""

    def kernel(x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if x.dtype in exact:
            return op_out(x, **kwargs, out=torch.empty_like(x))
        n = x.numel()
        # Each thread's share of a parallel loop has its own tail, hence the thread count.
        block = ELEMENTWISE_BLOCK * max(1, torch.get_num_threads())
        if n % block == 0 and x.is_contiguous():
            return op_out(x, **kwargs, out=torch.empty_like(x))
        flat = _pad_rows(x.contiguous().view(-1), _round_up(n, block), 0)
        return op_out(flat, **kwargs, out=torch.empty_like(flat))[:n].view(x.shape)

    return kernel


#: fp32 silu / sigmoid / gelu and bf16 / fp16 rsqrt / gelu: the scalar tail rounds differently
silu = _tail_safe(torch.ops.aten.silu.out)
sigmoid = _tail_safe(torch.ops.aten.sigmoid.out)
gelu = _tail_safe(torch.ops.aten.gelu.out)
rsqrt = _tail_safe(torch.ops.aten.rsqrt.out, exact=(torch.float32, torch.float64))


def _flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    is_causal: bool,
    mask: torch.Tensor | None,
    scale: float | None,
) -> torch.Tensor:
    """ATen's fused CPU attention for one sequence (not overridden by the mode)."""
    out = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, 0.0, is_causal, attn_mask=mask, scale=scale
    )
    return out[0]


#: aten::scaled_dot_product_attention, one trimmed sequence at a time (attention.py)
scaled_dot_product_attention = aten_sdpa(per_sequence_attention, kernel=_flash_attention)


#: aten operator name -> kernel, as registered for the CPU dispatch key
OVERRIDES = {
    "mm": mm,
    "addmm": addmm,
    "bmm": bmm,
    "mean.dim": mean_dim,
    "_log_softmax": log_softmax,
    "_softmax": softmax,
    "silu": silu,
    "sigmoid": sigmoid,
    "gelu": gelu,
    "rsqrt": rsqrt,
    "scaled_dot_product_attention": scaled_dot_product_attention,
}
