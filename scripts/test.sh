#!/usr/bin/env bash
# Set up .venv if needed, then lint and run the whole test suite (real models on the CPU;
# GPU tests run when a CUDA GPU is present and are skipped with a reason otherwise).
# Usage: scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check lab kernels tests scripts
.venv/bin/python -m pytest -q -rs "$@"
