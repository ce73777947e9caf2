"""The kernel probe: which operators are batch-invariant here, with and without the mode.

For each operator the probe runs `op(x)` on a batch and `op(x[s])` on slices s = [:1], [:3],
[5:8] and compares `op(x[s])` with `op(x)[s]` bit for bit, first with the stock kernels, then
inside `set_batch_invariant_mode()`. Two attention rows check what a serving batch needs
beyond row independence: a prompt alone against the same prompt left-padded inside a batch,
for prefill (causal) and for a one-token decode step over the cache. The last column is the
mode-on output's largest error against the operator run in float64 on the same inputs
(closeness, not identity).

    lab probe                       # CPU, fp32
    lab probe --device cuda --dtype bf16
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lab.kernels.mode import set_batch_invariant_mode

#: batch slices compared with the matching rows of the full batch
SLICES = ((0, 1), (0, 3), (5, 8))
BATCH = 33  # odd on purpose: no power-of-two batch hides a remainder path


@dataclass
class ProbeRow:
    """One operator on one device and dtype."""

    op: str
    shape: str
    device: str
    dtype: str
    #: stock kernels: every slice bitwise equal to the batch's rows, and the largest difference
    off_equal: bool
    off_max_diff: float
    #: the same inside set_batch_invariant_mode()
    on_equal: bool
    on_max_diff: float
    #: mode on, full batch: largest |output - float64 reference|
    on_error: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Case:
    op: str
    shape: str
    #: (compute dtype, dtype the inputs are first rounded to) -> (batch output, [(slice
    #: output, index of the matching rows in the batch output)])
    run: Callable[[torch.dtype, torch.dtype], tuple[torch.Tensor, list[Any]]]


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return math.inf
    diff = (a.double() - b.double()).abs()
    diff = diff[~(a.isinf() & b.isinf() & (a == b))]  # -inf == -inf is no difference
    return float(diff.max()) if diff.numel() else 0.0


def _batch_case(
    op: str, shape: str, fn: Callable[..., torch.Tensor], *inputs: torch.Tensor, batched: int = 1
) -> _Case:
    """An op whose first `batched` inputs share a leading batch dim; the rest are weights."""

    def run(dtype: torch.dtype, rounded: torch.dtype) -> tuple[torch.Tensor, list[Any]]:
        xs = [x.to(rounded).to(dtype) for x in inputs]
        full = fn(*xs)
        parts = [
            (fn(*[x[a:b] if i < batched else x for i, x in enumerate(xs)]), slice(a, b))
            for a, b in SLICES
        ]
        return full, parts

    return _Case(op, shape, run)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """transformers' LlamaRMSNorm: in fp32, x * rsqrt(mean(x^2) + eps), then * weight."""
    h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5)
    return weight * h.to(x.dtype)


def _padded_attention_case(decode: bool, device: str) -> _Case:
    """A prompt of 13 tokens alone vs left-padded to 21 in row 0 of a batch of 8 (9 heads,
    3 KV heads, head dim 64: SmolLM2's attention). decode: one new query over the cache."""
    g = torch.Generator().manual_seed(1)
    b, h, hk, t, d, real = 8, 9, 3, 21, 64, 13
    q = torch.randn(b, h, 1 if decode else t, d, generator=g).to(device)
    k = torch.randn(b, hk, t, d, generator=g).to(device)
    v = torch.randn(b, hk, t, d, generator=g).to(device)
    pad = [t - real, 0, 3, 5, 1, 8, 2, 4]
    keys = torch.arange(t, device=device)
    if decode:
        mask = (keys[None, :] >= torch.tensor(pad, device=device)[:, None])[:, None, None, :]
    else:
        causal = keys[None, :] <= keys[:, None]  # [T, S]
        real_key = keys[None, :] >= torch.tensor(pad, device=device)[:, None]  # [B, S]
        mask = (causal[None] & real_key[:, None, :] & real_key[:, :, None])[:, None]

    def run(dtype: torch.dtype, rounded: torch.dtype) -> tuple[torch.Tensor, list[Any]]:
        qq, kk, vv = (x.to(rounded).to(dtype) for x in (q, k, v))
        full = F.scaled_dot_product_attention(
            qq, kk.repeat_interleave(h // hk, 1), vv.repeat_interleave(h // hk, 1), attn_mask=mask
        )
        rows = slice(None) if decode else slice(t - real, None)
        alone = F.scaled_dot_product_attention(
            qq[:1, :, rows],
            kk[:1, :, t - real :],
            vv[:1, :, t - real :],
            is_causal=not decode,
            enable_gqa=True,
        )
        return full, [(alone, (slice(0, 1), slice(None), rows))]

    step = "decode" if decode else "prefill"
    return _Case(f"attention, left-padded {step}", f"{real} tokens alone vs padded to {t}", run)


def _cases(device: str) -> list[_Case]:
    g = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device)

    a576, w1536, bias = randn(BATCH, 576), randn(576, 1536), randn(1536)
    a1536, w576 = randn(BATCH, 1536), randn(1536, 576)
    seq, w_up = randn(BATCH, 7, 576), randn(1536, 576)
    head = randn(49152, 576)
    logits = randn(BATCH, 49152) * 4
    hidden, norm_w = randn(BATCH, 7, 576), randn(576)
    odd = randn(BATCH, 7, 1000) * 3  # 1000: rows end inside a vector
    bq, bk = randn(BATCH, 5, 64), randn(BATCH, 64, 40)
    q, k, v = randn(BATCH, 9, 7, 64), randn(BATCH, 3, 7, 64), randn(BATCH, 3, 7, 64)
    return [
        _batch_case("mm", f"[{BATCH},576]@[576,1536]", torch.mm, a576, w1536),
        _batch_case("mm", f"[{BATCH},1536]@[1536,576]", torch.mm, a1536, w576),
        _batch_case(
            "addmm",
            f"[1536]+[{BATCH},576]@[576,1536]",
            lambda x, w, c: torch.addmm(c, x, w),
            a576,
            w1536,
            bias,
        ),  # fmt: skip
        _batch_case("bmm", f"[{BATCH},5,64]@[{BATCH},64,40]", torch.bmm, bq, bk, batched=2),
        _batch_case("matmul/linear", f"[{BATCH},7,576]->1536", F.linear, seq, w_up),
        _batch_case("linear (LM head)", f"[{BATCH},576]->49152", F.linear, a576, head),
        _batch_case("log_softmax", f"[{BATCH},49152]", lambda x: torch.log_softmax(x, -1), logits),
        _batch_case("softmax", f"[{BATCH},49152]", lambda x: torch.softmax(x, -1), logits),
        _batch_case("mean", f"[{BATCH},49152] dim -1", lambda x: x.mean(-1), logits),
        _batch_case("rms_norm", f"[{BATCH},7,576]", _rms_norm, hidden, norm_w),
        _batch_case("silu", f"[{BATCH},7,1000]", F.silu, odd),
        _batch_case("rsqrt", f"[{BATCH},7,1000]", lambda x: torch.rsqrt(x.abs() + 1e-3), odd),
        _batch_case(
            "attention",
            f"[{BATCH},9,7,64] causal, 3 KV heads",
            lambda q, k, v: F.scaled_dot_product_attention(
                q, k, v, is_causal=True, enable_gqa=True
            ),
            q,
            k,
            v,
            batched=3,
        ),  # fmt: skip
        _padded_attention_case(decode=False, device=device),
        _padded_attention_case(decode=True, device=device),
    ]


def _compare(full: torch.Tensor, parts: list[tuple[torch.Tensor, Any]]) -> tuple[bool, float]:
    equal, worst = True, 0.0
    for part, index in parts:
        rows = full[index]
        equal = equal and torch.equal(part, rows)
        worst = max(worst, _max_diff(part, rows))
    return equal, worst


def operators() -> list[str]:
    """The operator names the probe knows (its rows, in order, without repeats)."""
    return list(dict.fromkeys(case.op for case in _cases("cpu")))


def probe(
    device: str = "cpu", dtype: str = "float32", ops: list[str] | None = None
) -> list[ProbeRow]:
    """Probe the operators (all, or those named in `ops`) on `device` in `dtype` ("float32",
    "bfloat16", "float16")."""
    torch_dtype = getattr(torch, dtype)
    rows = []
    with torch.inference_mode():
        for case in _cases(device):
            if ops is not None and case.op not in ops:
                continue
            with set_batch_invariant_mode(False):
                off_full, off_parts = case.run(torch_dtype, torch_dtype)
                # the same (rounded) inputs, computed in float64: the kernels' own error
                reference, _ = case.run(torch.float64, torch_dtype)
            with set_batch_invariant_mode(True, device=device):
                on_full, on_parts = case.run(torch_dtype, torch_dtype)
            off_equal, off_diff = _compare(off_full, off_parts)
            on_equal, on_diff = _compare(on_full, on_parts)
            rows.append(
                ProbeRow(
                    op=case.op,
                    shape=case.shape,
                    device=device,
                    dtype=dtype,
                    off_equal=off_equal,
                    off_max_diff=off_diff,
                    on_equal=on_equal,
                    on_max_diff=on_diff,
                    on_error=_max_diff(on_full, reference),
                )
            )
    return rows


def format_probe(rows: list[ProbeRow]) -> str:
    """The probe as a text table."""
    if not rows:
        return ""
    head = (
        f"{'operator':32} {'shape':38} {'mode off':>8} {'max|diff|':>9}  "
        f"{'mode on':>8} {'max|diff|':>9}  {'err vs fp64':>11}"
    )
    device = rows[0].device
    if device.startswith("cuda"):
        where = torch.cuda.get_device_name(device)
    else:
        where = f"CPU, {torch.backends.cpu.get_cpu_capability()}"
    lines = [
        f"device {device} ({where}), torch {torch.__version__}, dtype {rows[0].dtype}; "
        f"slices {list(SLICES)} vs the batch",
        head,
    ]
    for r in rows:
        lines.append(
            f"{r.op:32} {r.shape:38} {'bitwise' if r.off_equal else 'DIFFERS':>8} "
            f"{r.off_max_diff:9.2e}  {'bitwise' if r.on_equal else 'DIFFERS':>8} "
            f"{r.on_max_diff:9.2e}  {r.on_error:11.2e}"
        )
    if not device.startswith("cuda"):
        from lab.kernels.cpu import chosen_strategies

        chosen = ", ".join(f"{shape}: {s}" for shape, s in chosen_strategies().items())
        lines.append(f"CPU matmul strategy per shape (self-checked on this machine): {chosen}")
    return "\n".join(lines)
