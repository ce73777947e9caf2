"""Benchmarks behind `lab bench`: ratios measured side by side in one run, never asserted in
tests. embeddings.py: the diversity embedder, one batched pass against a per-case loop and
across batch sizes. layercast.py: fp32 / bf16 / LayerCast memory, speed and batch movement."""
