"""Benchmarks behind `lab bench`: ratios measured side by side in one run, never asserted in
tests (tests assert behaviour, not wall-clock time).

sweep.py       sweep machinery overhead over the engine's own generation time (lab bench sweep)
backends.py    engine start and greedy tokens/s at batch 1 and 16, per backend (lab bench backends)
kernels.py     cost of the batch-invariant kernels, per operator and end to end (lab bench kernels)
embeddings.py  the diversity embedder: one batched pass vs a per-case loop, by batch size
               (lab bench embeddings)
sampling.py    n-of-k sampling against the bare engines, and the whole job by stage
               (scripts/bench_sampling.py)
"""
