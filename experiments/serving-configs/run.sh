#!/usr/bin/env bash
# experiments/serving-configs: one n-of-k run per serving configuration, then lab compare.
# Usage: experiments/serving-configs/run.sh [K] [OUT]   (default K=8, OUT=runs/serving-configs)
# The results in README.md are of K=4 (about 22 min on a loaded 2-core CPU).
# Resumable: run it again after a kill. Timings and load averages go to OUT/timings.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
k=${1:-8}
out=${2:-runs/serving-configs}-k$k
config=experiments/serving-configs/sample.yaml
mkdir -p "$out"
arm() {
  local name=$1
  shift
  local start
  start=$(date +%s)
  echo "== $name: start $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/timings.txt"
  .venv/bin/lab sample "$config" --k "$k" --out "$out/$name" "$@" > /dev/null
  echo "   $name: $(( $(date +%s) - start )) s, load at the end $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/timings.txt"
}
arm vllm-default
arm vllm-tp3 --tp 3
arm vllm-prefix-caching --prefix-caching
arm hf --backend hf
.venv/bin/lab compare "$out/vllm-default" "$out/vllm-tp3" "$out/vllm-prefix-caching" "$out/hf" \
  --out "$out/compare" > "$out/compare.txt"
echo "compared: $out/compare.txt, $out/compare/comparison.html"
