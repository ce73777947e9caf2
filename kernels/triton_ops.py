"""Batch-invariant CUDA kernels in Triton: one configuration for every shape, no split-K.

After thinking-machines-lab/batch_invariant_ops. A GPU GEMM library picks its tiling and
split-K by shape, so a row's reduction order changes with the batch size. Here every output
tile is computed by one program that walks K from 0 upwards in BLOCK_K steps with an fp32
accumulator, whatever M, N and K are; the block sizes depend on the dtype only. The row-wise
kernels (log_softmax, softmax, mean) give each row to one program that walks it in fixed
BLOCK-sized pieces, so a row's arithmetic depends on its length only.

This module imports triton at the top: lab.kernels imports it only when CUDA mode is asked
for (mode.py), so `import lab.kernels` works on machines without triton. The kernels also run
in Triton's CPU interpreter (TRITON_INTERPRET=1, set before triton is imported) on CPU
tensors, which is how their logic is tested on a machine without a GPU.

    TRITON_INTERPRET=1 .venv/bin/python -m pytest -q tests/gpu/test_triton_kernels.py
    .venv/bin/python -m pytest -q tests/gpu/test_triton_kernels.py   # on a CUDA machine
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from lab.kernels import triton_attention
from lab.kernels.attention import _inference_4d, aten_sdpa

# One tiling per dtype, for every shape. fp32 and bf16: the fastest batch-invariant tiling of
# scripts/gpu_tiling_sweep.py on an H200 for a SmolLM2-135M decode step (30 layers + LM head at
# 8 rows): fp32 7.2 ms against 29.6 ms for batch_invariant_ops' 128 x 128 x 32, bf16 1.8 ms
# against 4.1 ms (experiments/gpu-h200/tiling_sweep.txt). Small M tiles suit decoding, where a
# batch is a few rows; no split-K, so a row's sum runs in the same BLOCK_K steps whatever M is.
# fp16 keeps batch_invariant_ops' persistent-GEMM tiling (run on the H200, not swept).
MATMUL_CONFIGS: dict[torch.dtype, dict[str, int]] = {
    torch.float32: {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 32, "num_stages": 4, "num_warps": 4},
    torch.bfloat16: {"BLOCK_M": 32, "BLOCK_N": 64, "BLOCK_K": 64, "num_stages": 4, "num_warps": 4},
    torch.float16: {"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64, "num_stages": 3, "num_warps": 8},
}
# Batched GEMMs here are attention's small matrices: smaller tiles, still one per dtype.
BMM_CONFIGS: dict[torch.dtype, dict[str, int]] = {
    torch.float32: {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "num_stages": 3, "num_warps": 4},
    torch.bfloat16: {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 64, "num_stages": 3, "num_warps": 4},
    torch.float16: {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 64, "num_stages": 3, "num_warps": 4},
}
GROUP_M = 8
#: row kernels walk a row in pieces of this many elements
ROW_BLOCK = 1024


def _precision(dtype: torch.dtype) -> str:
    """fp32 GEMMs follow torch's own setting: IEEE fp32 unless TF32 was allowed. (Only fp32
    operands read it; others get Triton's default.)"""
    if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest":
        return "ieee"
    return "tf32"


def shared_memory_needed(config: dict[str, int], element_size: int) -> int:
    """Bytes of shared memory a GEMM tiling's software pipeline holds: num_stages copies of
    an A tile [BLOCK_M, BLOCK_K] and a B tile [BLOCK_K, BLOCK_N]."""
    tile = config["BLOCK_M"] * config["BLOCK_K"] + config["BLOCK_K"] * config["BLOCK_N"]
    return tile * element_size * config["num_stages"]


def fit_tiling(config: dict[str, int], element_size: int, limit: int) -> dict[str, int]:
    """The tiling itself when it fits in `limit` bytes of shared memory per block, else a
    smaller one: fewer pipeline stages first (same arithmetic), then narrower N, M and K
    tiles. The result depends on the dtype and the device only, never on the shape, so a
    row's bits still do not depend on the batch (they may differ between GPU models, as
    every GPU kernel's do)."""
    fitted = dict(config)
    while shared_memory_needed(fitted, element_size) > limit:
        if fitted["num_stages"] > 2:
            fitted["num_stages"] -= 1
        elif fitted["BLOCK_N"] > 64:
            fitted["BLOCK_N"] //= 2
        elif fitted["BLOCK_M"] > 64:
            fitted["BLOCK_M"] //= 2
        elif fitted["BLOCK_K"] > 16:
            fitted["BLOCK_K"] //= 2
        else:
            break  # the smallest tiling: let Triton report what it lacks
    return fitted


#: (dtype, device index, batched) -> the tiling used there
_TILINGS: dict[tuple[torch.dtype, int, bool], dict[str, int]] = {}


def tiling(dtype: torch.dtype, device: torch.device, batched: bool = False) -> dict[str, int]:
    """The GEMM tiling for this dtype on this device: the table's, shrunk to the device's
    shared memory per block (H100/H200: 227 KiB; consumer cards ~99 KiB, where the fp16
    128 x 256 x 64 tiling's 144 KiB does not fit)."""
    table = BMM_CONFIGS if batched else MATMUL_CONFIGS
    if device.type != "cuda":
        return table[dtype]
    index = device.index if device.index is not None else torch.cuda.current_device()
    key = (dtype, index, batched)
    if key not in _TILINGS:
        props = torch.cuda.get_device_properties(device)
        # opt-in limit: what a kernel may ask for beyond the default 48 KiB; 1 KiB is kept
        # for Triton's own scratch (barriers, the epilogue's layout conversion).
        limit = int(getattr(props, "shared_memory_per_block_optin", 0) or 48 * 1024) - 1024
        element_size = torch.empty((), dtype=dtype).element_size()
        _TILINGS[key] = fit_tiling(table[dtype], element_size, limit)
    return _TILINGS[key]


def _num_programs(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).multi_processor_count)
    return 4  # Triton's CPU interpreter


@triton.jit
def _tile_position(tile_id, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    """Grouped ordering of output tiles (L2 reuse); changes which program, not the arithmetic."""
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = tile_id // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + (tile_id % group_size_m)
    pid_n = (tile_id % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit
def _matmul_persistent_kernel(
    a_ptr, b_ptr, c_ptr, bias_ptr,
    M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn, stride_xm, stride_xn,
    alpha, beta,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, NUM_PROGRAMS: tl.constexpr,
    HAS_BIAS: tl.constexpr, SCALED: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """c [M, N] = alpha * a [M, K] @ b [K, N] + beta * bias [M, N] (bias strides may be 0)."""
    start_pid = tl.program_id(axis=0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    k_tiles = tl.cdiv(K, BLOCK_K)
    num_tiles = num_pid_m * num_pid_n
    offs_k0 = tl.arange(0, BLOCK_K)
    for tile_id in tl.range(start_pid, num_tiles, NUM_PROGRAMS):
        pid_m, pid_n = _tile_position(tile_id, num_pid_m, num_pid_n, GROUP_M)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        # Rows/columns past the edge read row/column 0 (valid memory); the store masks them.
        safe_m = tl.where(offs_m < M, offs_m, 0).to(tl.int64)
        safe_n = tl.where(offs_n < N, offs_n, 0).to(tl.int64)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for ki in range(k_tiles):  # K always walked in the same BLOCK_K steps: no split-K
            offs_k = (ki * BLOCK_K + offs_k0).to(tl.int64)
            a = tl.load(
                a_ptr + safe_m[:, None] * stride_am + offs_k[None, :] * stride_ak,
                mask=offs_k[None, :] < K,
                other=0.0,
            )
            b = tl.load(
                b_ptr + offs_k[:, None] * stride_bk + safe_n[None, :] * stride_bn,
                mask=offs_k[:, None] < K,
                other=0.0,
            )
            acc = tl.dot(a, b, acc, input_precision=PRECISION)
        if SCALED:
            acc = acc * alpha
        if HAS_BIAS:
            bias = tl.load(bias_ptr + safe_m[:, None] * stride_xm + safe_n[None, :] * stride_xn)
            if SCALED:
                acc += bias.to(tl.float32) * beta
            else:
                acc += bias.to(tl.float32)
        out_m = offs_m.to(tl.int64)
        out_n = offs_n.to(tl.int64)
        tl.store(
            c_ptr + out_m[:, None] * stride_cm + out_n[None, :] * stride_cn,
            acc.to(c_ptr.dtype.element_ty),
            mask=(offs_m[:, None] < M) & (offs_n[None, :] < N),
        )


@triton.jit
def _bmm_kernel(
    a_ptr, b_ptr, c_ptr,
    M, N, K,
    stride_ab, stride_am, stride_ak, stride_bb, stride_bk, stride_bn,
    stride_cb, stride_cm, stride_cn,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """c[i] [M, N] = a[i] [M, K] @ b[i] [K, N]; one program per (matrix, output tile)."""
    pid = tl.program_id(axis=0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    tiles = num_pid_m * num_pid_n
    batch = (pid // tiles).to(tl.int64)
    tile = pid % tiles
    pid_m = tile // num_pid_n
    pid_n = tile % num_pid_n
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    safe_m = tl.where(offs_m < M, offs_m, 0).to(tl.int64)
    safe_n = tl.where(offs_n < N, offs_n, 0).to(tl.int64)
    a_base = a_ptr + batch * stride_ab
    b_base = b_ptr + batch * stride_bb
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = (k0 + tl.arange(0, BLOCK_K)).to(tl.int64)
        a = tl.load(
            a_base + safe_m[:, None] * stride_am + offs_k[None, :] * stride_ak,
            mask=offs_k[None, :] < K,
            other=0.0,
        )
        b = tl.load(
            b_base + offs_k[:, None] * stride_bk + safe_n[None, :] * stride_bn,
            mask=offs_k[:, None] < K,
            other=0.0,
        )
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    tl.store(
        c_ptr + batch * stride_cb + offs_m[:, None].to(tl.int64) * stride_cm
        + offs_n[None, :].to(tl.int64) * stride_cn,
        acc.to(c_ptr.dtype.element_ty),
        mask=(offs_m[:, None] < M) & (offs_n[None, :] < N),
    )  # fmt: skip


@triton.jit
def _softmax_kernel(
    x_ptr, y_ptr, x_row_stride, y_row_stride, n_cols,
    BLOCK: tl.constexpr, LOG: tl.constexpr,
):  # fmt: skip
    """(log_)softmax of one row per program, in fp32, walked in BLOCK-sized pieces."""
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    y_row = y_ptr + row * y_row_stride
    row_max = -float("inf")
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        vals = tl.load(x_row + cols, mask=cols < n_cols, other=-float("inf")).to(tl.float32)
        row_max = tl.maximum(row_max, tl.max(vals, axis=0))
    total = 0.0
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        vals = tl.load(x_row + cols, mask=mask, other=-float("inf")).to(tl.float32)
        total += tl.sum(tl.where(mask, tl.exp(vals - row_max), 0.0), axis=0)
    log_total = tl.log(total)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        vals = tl.load(x_row + cols, mask=mask, other=0.0).to(tl.float32)
        if LOG:
            out = vals - row_max - log_total
        else:
            out = tl.exp(vals - row_max) / total
        tl.store(y_row + cols, out.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _row_sum_kernel(x_ptr, y_ptr, x_row_stride, n_cols, BLOCK: tl.constexpr, MEAN: tl.constexpr):
    """Sum (or mean) of one row per program: fp32, walked in BLOCK-sized pieces."""
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    acc = 0.0
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        vals = tl.load(x_row + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        acc += tl.sum(vals, axis=0)
    if MEAN:
        acc = acc / n_cols
    tl.store(y_ptr + row, acc)  # cast to the output's dtype on store


# -- wrappers: aten signatures ------------------------------------------------------------


def addmm(
    bias: torch.Tensor | None,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    beta: Any = 1,
    alpha: Any = 1,
) -> torch.Tensor:
    """beta * bias + alpha * (a [M, K] @ b [K, N]) with the persistent kernel."""
    if a.dtype not in MATMUL_CONFIGS or a.dtype != b.dtype:
        raise NotImplementedError(f"batch-invariant matmul for {a.dtype} x {b.dtype}")
    m, k = a.shape
    n = b.shape[1]
    c = torch.empty((m, n), device=a.device, dtype=a.dtype)
    if m == 0 or n == 0:
        return c
    x = bias.expand(m, n) if bias is not None else c  # c: an unused placeholder pointer
    num_programs = _num_programs(a.device)
    config = tiling(a.dtype, a.device)
    tiles = triton.cdiv(m, config["BLOCK_M"]) * triton.cdiv(n, config["BLOCK_N"])
    _matmul_persistent_kernel[(min(num_programs, tiles),)](
        a, b, c, x,
        m, n, k,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0), c.stride(1),
        x.stride(0), x.stride(1),
        float(alpha), float(beta),
        GROUP_M=GROUP_M, NUM_PROGRAMS=num_programs,
        HAS_BIAS=bias is not None, SCALED=alpha != 1 or beta != 1, PRECISION=_precision(a.dtype),
        **config,
    )  # fmt: skip
    return c


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [M, K] @ b [K, N] with the persistent kernel."""
    return addmm(None, a, b)


def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [Bt, M, K] @ b [Bt, K, N]; one program per (matrix, tile), fixed tiling."""
    if a.dtype not in BMM_CONFIGS or a.dtype != b.dtype:
        raise NotImplementedError(f"batch-invariant bmm for {a.dtype} x {b.dtype}")
    batch, m, k = a.shape
    n = b.shape[2]
    c = torch.empty((batch, m, n), device=a.device, dtype=a.dtype)
    if c.numel() == 0:
        return c
    config = tiling(a.dtype, a.device, batched=True)
    tiles = triton.cdiv(m, config["BLOCK_M"]) * triton.cdiv(n, config["BLOCK_N"])
    _bmm_kernel[(batch * tiles,)](
        a, b, c,
        m, n, k,
        a.stride(0), a.stride(1), a.stride(2), b.stride(0), b.stride(1), b.stride(2),
        c.stride(0), c.stride(1), c.stride(2),
        PRECISION=_precision(a.dtype),
        **config,
    )  # fmt: skip
    return c


def _softmax_lastdim(x: torch.Tensor, dim: int, half_to_float: bool, log: bool) -> torch.Tensor:
    dim = dim % max(x.dim(), 1)
    moved = x.movedim(dim, -1).contiguous() if x.dim() else x.reshape(1)
    rows = moved.reshape(-1, moved.shape[-1])  # [R, N]
    out_dtype = torch.float32 if half_to_float else x.dtype
    out = torch.empty(rows.shape, dtype=out_dtype, device=x.device)
    if rows.numel():
        _softmax_kernel[(rows.shape[0],)](
            rows, out, rows.stride(0), out.stride(0), rows.shape[1], BLOCK=ROW_BLOCK, LOG=log
        )
    if not x.dim():
        return out.reshape(())
    return out.view(moved.shape).movedim(-1, dim)


def log_softmax(x: torch.Tensor, dim: int, half_to_float: bool) -> torch.Tensor:
    """aten::_log_softmax, one row per program."""
    return _softmax_lastdim(x, dim, half_to_float, log=True)


def softmax(x: torch.Tensor, dim: int, half_to_float: bool) -> torch.Tensor:
    """aten::_softmax, one row per program."""
    return _softmax_lastdim(x, dim, half_to_float, log=False)


def mean_dim(
    x: torch.Tensor, dim: Any, keepdim: bool = False, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """aten::mean.dim: reduced dims laid out last, one program per output."""
    out_dtype = dtype or x.dtype
    if x.dim() == 0:
        return x.to(out_dtype).clone()
    if dim is None or (isinstance(dim, list | tuple) and len(dim) == 0):
        dims = list(range(x.dim()))
    else:
        dims = sorted({d % x.dim() for d in ([dim] if isinstance(dim, int) else dim)})
    kept = [d for d in range(x.dim()) if d not in dims]
    n = 1
    for d in dims:
        n *= x.shape[d]
    out_shape = [x.shape[d] for d in kept]
    rows = x.to(out_dtype).permute(*kept, *dims).reshape(-1, n).contiguous()  # [R, N]
    out = torch.empty(rows.shape[0], dtype=out_dtype, device=x.device)
    if rows.shape[0] and n:
        _row_sum_kernel[(rows.shape[0],)](rows, out, rows.stride(0), n, BLOCK=ROW_BLOCK, MEAN=True)
    elif rows.shape[0]:
        out.fill_(float("nan"))  # mean of nothing, as torch
    result = out.reshape(out_shape)
    if keepdim:
        for d in dims:
            result = result.unsqueeze(d)
    return result


def row_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over the last dim, one program per row (torch's CUDA reduction picks its thread
    layout by the number of outputs)."""
    rows = x.reshape(-1, x.shape[-1]).contiguous()  # [R, N]
    out = torch.empty(rows.shape[0], dtype=x.dtype, device=x.device)
    if rows.numel():
        _row_sum_kernel[(rows.shape[0],)](
            rows, out, rows.stride(0), rows.shape[1], BLOCK=ROW_BLOCK, MEAN=False
        )
    elif rows.shape[0]:
        out.zero_()
    return out.view(x.shape[:-1])


#: aten::scaled_dot_product_attention: one fused kernel for left-padded layouts, the
#: fixed-order attention on the Triton GEMMs for any other mask (triton_attention.py)
scaled_dot_product_attention = aten_sdpa(
    _inference_4d(triton_attention.attention), bmm=bmm, row_sum=row_sum
)


#: aten operator name -> kernel, as registered for the CUDA dispatch key
OVERRIDES = {
    "mm": mm,
    "addmm": addmm,
    "bmm": bmm,
    "mean.dim": mean_dim,
    "_log_softmax": log_softmax,
    "_softmax": softmax,
    "scaled_dot_product_attention": scaled_dot_product_attention,
}
