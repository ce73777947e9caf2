"""Benchmark lab.kernels on the CPU: each operator and greedy generation, mode on vs off.

The same as `lab bench kernels`; arguments pass through (--cases, --max-tokens, --rounds,
--no-e2e). Ratios are measured side by side in one run.

    .venv/bin/python scripts/bench_kernels.py --rounds 3
"""

from __future__ import annotations

import sys

from lab.cli import main

if __name__ == "__main__":
    sys.argv = ["lab", "bench", "kernels", *sys.argv[1:]]
    main()
