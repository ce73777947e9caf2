"""Benchmarks for n-of-k sampling: the lab's paths against the bare engines, ratios from one run.

The code is lab/bench/sampling.py (parts a-d are described there); arguments pass through.

    .venv/bin/python scripts/bench_sampling.py                      # parts a, b, c
    .venv/bin/python scripts/bench_sampling.py --parts job --job-cases 100 --k 32
"""

from __future__ import annotations

from lab.bench.sampling import main

if __name__ == "__main__":
    main()
