"""Batch-invariant kernels (installed as `lab.kernels`, never as the bare name `kernels`,
which belongs to Hugging Face's PyPI package that transformers imports when present).

    from lab.kernels import set_batch_invariant_mode
    with set_batch_invariant_mode():
        ...  # matmuls, norms, softmax and attention give the same bits for a row in any batch

Modules: mode.py (the switch), cpu.py (CPU kernels), attention.py (padding-invariant attention),
triton_ops.py (CUDA kernels; imports triton only when CUDA is asked for), triton_attention.py
(the fused padding-invariant attention kernel for CUDA), probe.py (`lab probe`),
bench.py (`lab bench kernels`).
"""

from lab.kernels.mode import (
    active_devices,
    is_batch_invariant_mode,
    kernel_name,
    set_batch_invariant_mode,
)

__all__ = ["active_devices", "is_batch_invariant_mode", "kernel_name", "set_batch_invariant_mode"]
