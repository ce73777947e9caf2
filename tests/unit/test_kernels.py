"""lab.kernels on the CPU, no model: bitwise batch invariance with the mode on, the negative
controls with it off, accuracy against float64, and the switch's state handling.

Batch invariance is a bitwise claim (torch.equal); closeness to float64 is a numerical one,
with the tolerance stated at each check.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lab.errors import ConfigError
from lab.kernels import (
    active_devices,
    is_batch_invariant_mode,
    kernel_name,
    set_batch_invariant_mode,
)
from lab.kernels import cpu as cpu_kernels
from lab.kernels.attention import fixed_order_attention

BATCHES = (1, 3, 8, 33)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def slices_equal(fn, x: torch.Tensor, *rest: torch.Tensor, batched: int = 1) -> bool:  # type: ignore[no-untyped-def]
    """fn on the first b rows (b in BATCHES) and on rows 5:8 equals fn on the whole batch."""
    xs = (x, *rest)
    full = fn(*xs)

    def part(lo: int, hi: int) -> torch.Tensor:
        return fn(*[t[lo:hi] if i < batched else t for i, t in enumerate(xs)])

    checks = [torch.equal(part(0, b), full[:b]) for b in BATCHES if b <= x.shape[0]]
    checks.append(torch.equal(part(5, 8), full[5:8]))
    return all(checks)


@pytest.fixture
def mode():  # type: ignore[no-untyped-def]
    with set_batch_invariant_mode(device="cpu"):
        yield


# -- matmul ------------------------------------------------------------------------------


@pytest.mark.parametrize("k,n", [(576, 1536), (1536, 576), (576, 192), (64, 40)])
def test_mm_is_bitwise_batch_invariant(mode: None, k: int, n: int) -> None:
    a = torch.randn(33, k, generator=gen())
    w = torch.randn(n, k, generator=gen(1))
    assert slices_equal(lambda x: torch.mm(x, w.t()), a)
    assert slices_equal(lambda x: F.linear(x, w), a)  # linear -> mm with a transposed weight


def test_every_row_count_gives_the_same_rows(mode: None) -> None:
    a = torch.randn(70, 576, generator=gen())
    w = torch.randn(576, 576, generator=gen(1))
    full = a @ w
    assert all(torch.equal(a[:m] @ w, full[:m]) for m in range(1, 71))


def test_lm_head_is_bitwise_batch_invariant(mode: None) -> None:
    # SmolLM2's tied LM head: N = 49152
    head = torch.randn(49152, 576, generator=gen(1))
    assert slices_equal(lambda x: F.linear(x, head), torch.randn(9, 576, generator=gen()))


def test_addmm_and_linear_with_bias(mode: None) -> None:
    a = torch.randn(33, 576, generator=gen())
    w = torch.randn(1536, 576, generator=gen(1))
    bias = torch.randn(1536, generator=gen(2))
    assert slices_equal(lambda x: F.linear(x, w, bias), a)
    assert slices_equal(lambda x: torch.addmm(bias, x, w.t(), beta=0.5, alpha=2.0), a)
    ref = 0.5 * bias.double() + 2.0 * (a.double() @ w.t().double())
    # fp32 with K = 576 and N(0, 1) inputs: outputs ~50, fp32 rounding well under 1e-3
    torch.testing.assert_close(
        torch.addmm(bias, a, w.t(), beta=0.5, alpha=2.0).double(), ref, rtol=0, atol=1e-3
    )


def test_bmm_and_batched_matmul(mode: None) -> None:
    a = torch.randn(33, 5, 64, generator=gen())
    b = torch.randn(33, 64, 40, generator=gen(1))
    assert slices_equal(torch.bmm, a, b, batched=2)
    assert slices_equal(torch.matmul, a, b, batched=2)
    full = torch.bmm(a, b)
    assert torch.equal(torch.bmm(a[:, :1], b), full[:, :1])  # rows within each matrix too
    seq = torch.randn(33, 7, 576, generator=gen(2))
    w = torch.randn(576, 1536, generator=gen(3))
    assert slices_equal(lambda x: torch.matmul(x, w), seq)


def test_tiles_strategy(mode: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # The last resort where no single GEMM call is row-invariant: M cut into [8, K] tiles.
    a = torch.randn(33, 576, generator=gen())
    w = torch.randn(1536, 576, generator=gen(1))
    bias = torch.randn(1536, generator=gen(2))
    monkeypatch.setattr(cpu_kernels, "CPU_MATMUL_STRATEGY", "tiles")
    # Invariant where the self-check says so: MKL's bmm holds on the Xeon's AVX-512 path, not
    # on its AVX2 one (MKL_ENABLE_INSTRUCTIONS=AVX2), where the self-check picks oneDNN.
    if cpu_kernels.rows_invariant("tiles", torch.float32, 576, 1536, True):
        assert slices_equal(lambda x: F.linear(x, w), a)
        assert slices_equal(lambda x: F.linear(x, w, bias), a)
        assert slices_equal(lambda x: torch.addmm(bias, x, w.t(), beta=0.5, alpha=2.0), a)
    ref = 0.5 * bias.double() + 2.0 * (a.double() @ w.t().double())
    torch.testing.assert_close(
        torch.addmm(bias, a, w.t(), beta=0.5, alpha=2.0).double(), ref, rtol=0, atol=1e-3
    )


def row_counts_agree(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> bool:
    """Every row count 1..len(a): F.linear's rows equal the full batch's rows."""
    full = F.linear(a, w, bias)
    return all(torch.equal(F.linear(a[:m], w, bias), full[:m]) for m in range(1, len(a) + 1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_chosen_strategy_is_row_invariant_for_every_row_count(
    mode: None, dtype: torch.dtype
) -> None:
    """Whatever this machine's BLAS does (an Intel Xeon's MKL moves rows 1-8 of a padded fp32
    GEMM and rows 7-32 of bf16 ones, an AMD EPYC's does not), the strategy the self-check
    picks gives every row count 1..37 the same rows, in fp32 and bf16."""
    a = torch.randn(37, 576, generator=gen()).to(dtype)
    w = torch.randn(1536, 576, generator=gen(1)).to(dtype)
    bias = torch.randn(1536, generator=gen(2)).to(dtype)
    assert row_counts_agree(a, w, bias)
    chosen = cpu_kernels.strategy_for(dtype, 576, 1536, True)
    assert chosen in cpu_kernels.candidates(dtype)
    # rows 1..37 at full precision against float64: every strategy computes the same product
    ref = a.double() @ w.t().double() + bias.double()
    tolerance = 1e-3 if dtype == torch.float32 else 1.0
    torch.testing.assert_close(F.linear(a, w, bias).double(), ref, rtol=0, atol=tolerance)


@pytest.mark.parametrize("strategy", ["pad", "onednn", "onednn2", "tiles"])
def test_the_self_check_agrees_with_a_full_check(
    mode: None, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    """The self-check's verdict on a strategy is what a check of every row count finds: it
    never passes a strategy that moves rows here. (Which strategies pass is the machine's:
    "tiles" holds on the Xeon's AVX-512 MKL at this shape but not under MKL's AVX2 code path.)"""
    if strategy.startswith("onednn") and not cpu_kernels.onednn_linear_available():
        pytest.skip("this torch build has no oneDNN linear")
    verdict = cpu_kernels.rows_invariant(strategy, torch.float32, 576, 1536, True)
    monkeypatch.setattr(cpu_kernels, "CPU_MATMUL_STRATEGY", strategy)
    a = torch.randn(41, 576, generator=gen())
    w = torch.randn(1536, 576, generator=gen(1))
    full_check = row_counts_agree(a, w, torch.randn(1536, generator=gen(2)))
    if verdict:
        assert full_check


def test_the_preference_order_follows_the_instruction_set() -> None:
    """The self-check tries the strategies in an order set by the CPU's instruction set (a
    fixed input, never a timing): oneDNN first, then MKL's padded GEMM before tiles on AVX2."""
    onednn = cpu_kernels.onednn_linear_available()
    avx512 = cpu_kernels.candidates(torch.float32, "avx512")
    avx2 = cpu_kernels.candidates(torch.float32, "avx2")
    assert avx512 == (["onednn2", "onednn", "tiles", "pad"] if onednn else ["tiles", "pad"])
    assert avx2 == (["onednn2", "onednn", "pad", "tiles"] if onednn else ["pad", "tiles"])
    assert cpu_kernels.candidates(torch.bfloat16, "avx512") == ["tiles", "pad"]  # fp32 only
    assert cpu_kernels.candidates(torch.float32, "vsx") == avx2  # another ISA: AVX2's order
    assert cpu_kernels.cpu_isa() in cpu_kernels.PREFERENCE
    assert cpu_kernels.candidates(torch.float32) == cpu_kernels.candidates(
        torch.float32, cpu_kernels.cpu_isa()
    )


def test_packed_weights_follow_in_place_updates_and_new_tensors(mode: None) -> None:
    if cpu_kernels.strategy_for(torch.float32, 64, 32, True) not in cpu_kernels.ONEDNN_TILES:
        pytest.skip("the packed-weight cache belongs to the oneDNN strategy, not chosen here")
    x = torch.randn(3, 64, generator=gen())
    w = torch.randn(32, 64, generator=gen(1))
    before = F.linear(x, w)
    w.mul_(2.0)  # in place: the cached packed copy must not be reused
    torch.testing.assert_close(F.linear(x, w), 2.0 * before, rtol=1e-6, atol=1e-5)
    del w
    other = torch.randn(32, 64, generator=gen(2))  # may reuse the freed memory and id
    torch.testing.assert_close(
        F.linear(x, other), (x.double() @ other.t().double()).float(), rtol=0, atol=1e-4
    )


def test_matmul_accuracy_against_float64(mode: None) -> None:
    a = torch.randn(33, 1536, generator=gen())
    w = torch.randn(1536, 576, generator=gen(1))
    ref = a.double() @ w.double()
    # fp32, K = 1536: outputs ~40; a summation error far below 5e-4 (measured ~5e-5)
    torch.testing.assert_close((a @ w).double(), ref, rtol=0, atol=5e-4)
    assert not torch.isnan(a @ w).any()


def test_integer_matmul_is_untouched(mode: None) -> None:
    a = torch.randint(-5, 5, (3, 4))
    b = torch.randint(-5, 5, (4, 2))
    assert torch.equal(torch.mm(a, b), (a.double() @ b.double()).long())


# -- reductions, softmax, norms, elementwise ---------------------------------------------


def test_softmax_and_log_softmax(mode: None) -> None:
    x = torch.randn(33, 49152, generator=gen()) * 4
    assert slices_equal(lambda t: torch.log_softmax(t, -1), x)
    assert slices_equal(lambda t: torch.softmax(t, -1), x)
    y = torch.randn(6, 33, 100, generator=gen(1))
    assert slices_equal(lambda t: torch.softmax(t, 1), y)  # a non-last dim
    # fp32 log-softmax over 49152 logits of scale ~4: errors ~1e-5 at most
    torch.testing.assert_close(
        torch.log_softmax(x, -1).double(), torch.log_softmax(x.double(), -1), rtol=0, atol=1e-4
    )
    half = torch.randn(5, 300, generator=gen(2)).bfloat16()
    out = torch._log_softmax(half, -1, True)  # half_to_float
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.log_softmax(half.float(), -1), rtol=0, atol=1e-5)


def test_mean(mode: None) -> None:
    x = torch.randn(33, 49152, generator=gen())
    assert slices_equal(lambda t: t.mean(-1), x)
    assert slices_equal(lambda t: t.mean(-1, keepdim=True), x)
    y = torch.randn(33, 7, 20, generator=gen(1))
    assert slices_equal(lambda t: t.mean((1, 2)), y)
    assert slices_equal(lambda t: t.mean(1, keepdim=True), y)
    assert y.mean((1, 2)).shape == (33,)
    assert y.mean(1, keepdim=True).shape == (33, 1, 20)
    assert y.mean(-1, dtype=torch.float64).dtype == torch.float64
    # fp32 means of 49152 N(0, 1) values: |mean| ~ 5e-3, summation error ~1e-9
    torch.testing.assert_close(x.mean(-1).double(), x.double().mean(-1), rtol=0, atol=1e-7)
    torch.testing.assert_close(y.mean((0, 2)).double(), y.double().mean((0, 2)), rtol=0, atol=1e-6)


def test_llama_rms_norm(mode: None) -> None:
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    norm = LlamaRMSNorm(576, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(576, generator=gen(1)))
    x = torch.randn(33, 7, 576, generator=gen())
    with torch.inference_mode():
        assert slices_equal(norm, x)
        assert slices_equal(norm, x[:, :1])  # a decode step: one position per row
        out = norm(x).double()
    xd = x.double()
    ref = norm.weight.double() * xd * torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)  # fp32, outputs ~3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_elementwise_tails(mode: None, dtype: torch.dtype) -> None:
    # rows of 1000: the flat tensor's scalar tail lands in a different row per batch size
    x = (torch.randn(33, 7, 1000, generator=gen()) * 3).to(dtype)
    for fn in (F.silu, torch.sigmoid, F.gelu, lambda t: torch.rsqrt(t.abs() + 1e-3)):
        assert slices_equal(fn, x)
    torch.testing.assert_close(F.silu(x), F.silu(x.double()).to(dtype))


# -- attention ---------------------------------------------------------------------------


def left_padded(lengths: list[int], t: int, decode: bool = False) -> torch.Tensor:
    """transformers' sdpa mask for a left-padded batch: bool [B, 1, T|1, T]."""
    keys = torch.arange(t)
    real = keys[None, :] >= torch.tensor([t - n for n in lengths])[:, None]  # [B, T]
    if decode:
        return real[:, None, None, :]
    causal = keys[None, :] <= keys[:, None]
    return (causal[None] & real[:, None, :] & real[:, :, None])[:, None]


def qkv(b: int, t: int, s: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = gen(seed)
    return (
        torch.randn(b, 9, t, 64, generator=g),
        torch.randn(b, 3, s, 64, generator=g),
        torch.randn(b, 3, s, 64, generator=g),
    )


def repeat(x: torch.Tensor) -> torch.Tensor:
    return x.repeat_interleave(3, dim=1)  # what transformers does when it passes a mask


def sdpa_fixed_order(*args, **kwargs) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The vectorised (CUDA) algorithm on the CPU GEMMs, with sdpa's signature."""
    mask = kwargs.pop("attn_mask", None)
    causal = kwargs.pop("is_causal", False)
    return fixed_order_attention(
        *args, mask, 0.0, causal, None, kwargs.pop("enable_gqa", False),
        bmm=cpu_kernels.bmm, row_sum=cpu_kernels.row_sum,
    )  # fmt: skip


SDPAS = {"per-sequence (cpu)": F.scaled_dot_product_attention, "fixed-order": sdpa_fixed_order}


@pytest.mark.parametrize("impl", SDPAS)
def test_attention_batch_slices(mode: None, impl: str) -> None:
    sdpa = SDPAS[impl]
    q, k, v = qkv(33, 7, 7)

    def causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return sdpa(q, k, v, is_causal=True, enable_gqa=True)

    assert slices_equal(causal, q, k, v, batched=3)
    ref = F.scaled_dot_product_attention(
        q.double(), k.double(), v.double(), is_causal=True, enable_gqa=True
    )
    # fp32 softmax-weighted means of N(0, 1) values over <= 7 keys: errors ~1e-7
    torch.testing.assert_close(causal(q, k, v).double(), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("impl", SDPAS)
@pytest.mark.parametrize("length", [1, 13, 64, 70, 130])
def test_attention_prompt_alone_equals_prompt_left_padded(
    mode: None, impl: str, length: int
) -> None:
    # row 0 holds the prompt, left-padded to t; other rows have other lengths
    sdpa = SDPAS[impl]
    t = length + 9
    lengths = [length, t, 3, t - 5, 1, 20, t - 1, 7]
    q, k, v = qkv(len(lengths), t, t, seed=length)
    mask = left_padded(lengths, t)
    batch = sdpa(q, repeat(k), repeat(v), attn_mask=mask)
    alone = sdpa(
        q[:1, :, -length:], k[:1, :, -length:], v[:1, :, -length:], is_causal=True, enable_gqa=True
    )
    assert torch.equal(alone[0], batch[0, :, -length:])
    ref = F.scaled_dot_product_attention(
        q.double(), repeat(k).double(), repeat(v).double(), attn_mask=mask
    )
    real = mask[:, 0].any(-1)  # [B, T] queries that see a key; padding queries return 0
    torch.testing.assert_close(
        batch.double().permute(0, 2, 1, 3)[real], ref.permute(0, 2, 1, 3)[real], rtol=0, atol=1e-5
    )
    assert torch.equal(
        batch.permute(0, 2, 1, 3)[~real], torch.zeros_like(batch.permute(0, 2, 1, 3)[~real])
    )


@pytest.mark.parametrize("impl", SDPAS)
@pytest.mark.parametrize("length", [1, 13, 100])
def test_attention_decode_alone_equals_decode_left_padded(
    mode: None, impl: str, length: int
) -> None:
    sdpa = SDPAS[impl]
    s = length + 11
    lengths = [length, s, 2, s - 3, 40 if s > 40 else 1]
    q, k, v = qkv(len(lengths), 1, s, seed=length)
    batch = sdpa(q, repeat(k), repeat(v), attn_mask=left_padded(lengths, s, decode=True))
    alone = sdpa(q[:1], k[:1, :, -length:], v[:1, :, -length:], enable_gqa=True)
    assert torch.equal(alone[0], batch[0])


@pytest.mark.parametrize("impl", SDPAS)
def test_attention_right_padding_and_float_masks(mode: None, impl: str) -> None:
    sdpa = SDPAS[impl]
    q, k, v = qkv(4, 1, 30)
    real = torch.arange(30)[None, :] < torch.tensor([12, 30, 5, 20])[:, None]  # right padding
    batch = sdpa(q, repeat(k), repeat(v), attn_mask=real[:, None, None, :])
    alone = sdpa(q[:1], k[:1, :, :12], v[:1, :, :12], enable_gqa=True)
    assert torch.equal(alone[0], batch[0])
    additive = torch.zeros(4, 1, 1, 30).masked_fill(~real[:, None, None, :], float("-inf"))
    ref = F.scaled_dot_product_attention(
        q.double(), repeat(k).double(), repeat(v).double(), attn_mask=additive.double()
    )
    out = sdpa(q, repeat(k), repeat(v), attn_mask=additive)
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-5)


def test_attention_bf16(mode: None) -> None:
    q, k, v = (x.bfloat16() for x in qkv(8, 21, 21))
    lengths = [13, 21, 3, 16, 1, 20, 8, 5]
    batch = F.scaled_dot_product_attention(
        q, repeat(k), repeat(v), attn_mask=left_padded(lengths, 21)
    )
    alone = F.scaled_dot_product_attention(
        q[:1, :, -13:], k[:1, :, -13:], v[:1, :, -13:], is_causal=True, enable_gqa=True
    )
    assert batch.dtype == torch.bfloat16
    assert torch.equal(alone[0], batch[0, :, -13:])


# -- negative controls: the same checks with the mode off -------------------------------


# Naturally invariant on this CPU, so not asserted to differ: log_softmax / softmax over the
# last dim (ATen reduces one row at a time), RMSNorm on [B, T, 576] (576-wide rows reduce
# alone), fp32 rsqrt (no scalar-tail difference).


def test_mode_off_matmul_differs() -> None:
    assert not is_batch_invariant_mode()
    a = torch.randn(64, 576, generator=gen())
    w = torch.randn(576, 576, generator=gen(1))
    assert not torch.equal(torch.mm(a[:1], w), torch.mm(a, w)[:1])  # GEMV vs GEMM path
    b = torch.randn(33, 1536, generator=gen(2))
    w2 = torch.randn(1536, 576, generator=gen(3))
    assert not torch.equal(torch.mm(b[:1], w2), torch.mm(b, w2)[:1])
    # bmm: AMD EPYC's MKL moves a matrix's rows with the batch, an Intel Xeon's does not;
    # the mode pins it either way (test_bmm_and_batched_matmul), so no control here.


def test_mode_off_reductions_and_tails_differ() -> None:
    x = torch.randn(4, 49152, generator=gen(4))
    assert not torch.equal(x[:1].mean(-1), x.mean(-1)[:1])  # one row splits across threads
    e = torch.randn(33, 7, 1000, generator=gen(5)) * 3
    assert not slices_equal(F.silu, e)  # the scalar tail


def test_mode_off_padded_attention_differs() -> None:
    # Which of prefill / decode moves depends on the ISA (AVX-512 here: both; with ATen
    # limited to AVX2 only decode), so the control asks for at least one.
    q, k, v = qkv(8, 21, 21)
    lengths = [13, 21, 3, 16, 1, 20, 8, 5]
    mask = left_padded(lengths, 21)
    batch = F.scaled_dot_product_attention(q, repeat(k), repeat(v), attn_mask=mask)
    alone = F.scaled_dot_product_attention(
        q[:1, :, -13:], k[:1, :, -13:], v[:1, :, -13:], is_causal=True, enable_gqa=True
    )
    step_mask = left_padded(lengths, 21, decode=True)
    step = F.scaled_dot_product_attention(q[:, :, -1:], repeat(k), repeat(v), attn_mask=step_mask)
    step_alone = F.scaled_dot_product_attention(
        q[:1, :, -1:], k[:1, :, -13:], v[:1, :, -13:], enable_gqa=True
    )
    prefill_same = torch.equal(alone[0], batch[0, :, -13:])
    decode_same = torch.equal(step_alone[0], step[0])
    assert not (prefill_same and decode_same)


# -- the switch --------------------------------------------------------------------------


def mm_invariant() -> bool:
    a = torch.randn(64, 576, generator=gen())
    w = torch.randn(576, 576, generator=gen(1))
    return torch.equal(torch.mm(a[:1], w), torch.mm(a, w)[:1])


def test_mode_turns_on_and_off() -> None:
    assert not is_batch_invariant_mode()
    with set_batch_invariant_mode(device="cpu"):
        assert is_batch_invariant_mode()
        assert active_devices() == ("cpu",)
        assert mm_invariant()
    assert not is_batch_invariant_mode()
    assert active_devices() == ()
    assert not mm_invariant()  # the stock kernel is back


def test_nesting_restores_each_level() -> None:
    with set_batch_invariant_mode(device="cpu"):
        with set_batch_invariant_mode(device="cpu"):  # on inside on
            assert is_batch_invariant_mode()
        assert is_batch_invariant_mode() and mm_invariant()
        with set_batch_invariant_mode(False):  # off inside on
            assert not is_batch_invariant_mode()
            assert not mm_invariant()
            with set_batch_invariant_mode(device="cpu"):  # on inside off inside on
                assert mm_invariant()
            assert not mm_invariant()
        assert is_batch_invariant_mode() and mm_invariant()
    assert not is_batch_invariant_mode()
    with set_batch_invariant_mode(False):  # off inside off
        assert not is_batch_invariant_mode()
    assert not is_batch_invariant_mode()


def test_exception_inside_restores_state() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with set_batch_invariant_mode(device="cpu"):
            raise RuntimeError("boom")
    assert not is_batch_invariant_mode() and not mm_invariant()
    with set_batch_invariant_mode(device="cpu"):
        with pytest.raises(RuntimeError, match="boom"):
            with set_batch_invariant_mode(False):
                raise RuntimeError("boom")
        assert is_batch_invariant_mode() and mm_invariant()
    assert not is_batch_invariant_mode()


def test_unknown_device_and_kernel_names() -> None:
    with pytest.raises(ValueError, match="no batch-invariant kernels"):
        with set_batch_invariant_mode(device="tpu"):
            pass
    assert not is_batch_invariant_mode()
    with set_batch_invariant_mode(device="cpu"):
        with pytest.raises(ValueError):
            with set_batch_invariant_mode(device="tpu"):
                pass
        assert active_devices() == ("cpu",) and mm_invariant()  # the outer mode survives
    assert kernel_name("cpu") == "lab.kernels/cpu"
    with pytest.raises(ConfigError):
        kernel_name("tpu")


def test_probe_reports_invariance() -> None:
    from lab.kernels.probe import format_probe, probe

    rows = probe("cpu", "float32", ops=["mm", "attention, left-padded decode"])
    assert [r.op for r in rows] == ["mm", "mm", "attention, left-padded decode"]
    assert all(r.on_equal and r.on_max_diff == 0.0 for r in rows)
    assert not all(r.off_equal for r in rows)  # the negative control shows up
    assert all(r.on_error < 1e-3 for r in rows)
    assert "DIFFERS" in format_probe(rows) and "bitwise" in format_probe(rows)
    assert not is_batch_invariant_mode()


def test_attention_plan_follows_in_place_mask_edits(mode: None) -> None:
    # One analysis of the mask serves every layer of a forward pass; editing the mask in
    # place (inference tensors have no version counter) must not reuse a stale one.
    q, k, v = qkv(4, 1, 30)
    with torch.inference_mode():
        mask = left_padded([30, 12, 5, 20], 30, decode=True).clone()
        first = F.scaled_dot_product_attention(q, repeat(k), repeat(v), attn_mask=mask)
        mask[1, ..., :25] = False  # row 1 now sees its last 5 keys only
        second = F.scaled_dot_product_attention(q, repeat(k), repeat(v), attn_mask=mask)
        alone = F.scaled_dot_product_attention(
            q[1:2], k[1:2, :, -5:], v[1:2, :, -5:], enable_gqa=True
        )
        mask[2, ..., :] = False
        mask[2, ..., 10:15] = True  # the same number of visible keys, elsewhere
        third = F.scaled_dot_product_attention(q, repeat(k), repeat(v), attn_mask=mask)
        moved = F.scaled_dot_product_attention(
            q[2:3], k[2:3, :, 10:15], v[2:3, :, 10:15], enable_gqa=True
        )
    assert torch.equal(first[0], second[0])
    assert torch.equal(second[1], alone[0]) and not torch.equal(first[1], second[1])
    assert torch.equal(third[2], moved[0])


def test_probe_command() -> None:
    from click.testing import CliRunner

    from lab.cli import cli

    result = CliRunner().invoke(cli, ["probe", "--op", "mean", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "mean" in result.output and "DIFFERS" in result.output and "bitwise" in result.output
    result = CliRunner().invoke(cli, ["probe", "--op", "nope"])
    assert result.exit_code != 0


def test_bench_kernels_avx2_reruns_the_bench_limited_to_avx2() -> None:
    """`lab bench kernels --avx2`: the operators timed here, then again in a child process
    whose torch, oneDNN and MKL are limited to AVX2 (its self-check line says AVX2 and the
    AVX2 preference order). Timings are printed, never asserted."""
    import subprocess
    import sys

    args = ["bench", "kernels", "--no-e2e", "--no-strategies", "--rounds", "1", "--avx2"]
    out = subprocess.run(
        [sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    here, marker, limited = out.stdout.partition("limited to AVX2 (a child process):")
    assert marker and "linear 576->1536, 1 row (alone)" in here
    assert "CPU AVX2 (preference order avx2: " in limited
    assert "linear 576->1536, 1 row (alone)" in limited
