"""Batch-invariant kernels (installed as `lab.kernels`, never as the bare name `kernels`,
which belongs to Hugging Face's PyPI package that transformers imports when present).

Empty until the batch-invariant kernels land: the hf backend refuses `batch_invariant=True`
with a clear error rather than running without them.
"""
