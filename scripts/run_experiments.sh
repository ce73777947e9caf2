#!/usr/bin/env bash
# Run the CPU-scale determinism experiments under experiments/ (resumable; results in runs/).
# Usage: scripts/run_experiments.sh [name ...]   (default: all CPU configs)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
configs=(experiments/feynman/config.yaml experiments/sglang-tests/single.yaml
         experiments/sglang-tests/mixed.yaml experiments/sglang-tests/prefix.yaml
         experiments/fp32-or-death/config.yaml experiments/tar-at-n/config.yaml
         experiments/feynman-serving/config.yaml)
for config in "${configs[@]}"; do
  if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$(basename "$(dirname "$config")")"; then
    continue
  fi
  echo "== $config"
  /usr/bin/time -f "wall %e s" .venv/bin/lab sweep "$config" --no-progress
done
