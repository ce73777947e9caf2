#!/usr/bin/env bash
# A shorter GPU pass after a kernel change (no embeddings): install, the SmolLM2-shaped model,
# pytest tests/gpu, lab probe and lab bench kernels on cuda in fp32 and bf16; logs in $OUT.
#   bash scripts/gpu_recheck.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu_recheck}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD"
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1
python3 -c "import lab.kernels" 2>/dev/null || ln -sfn ../kernels lab/kernels
python3 -c "from pathlib import Path; from lab.tinymodels import build_causal_lm; build_causal_lm(Path('/tmp/gpu_models/smollm2-shaped'))" >/dev/null 2>&1
timeout 200 python3 -m pytest -q -rs -p no:cacheprovider tests/gpu -k "not interpreter" 2>&1 | tee "$out/pytest_gpu.log"
for dtype in fp32 bf16; do
  echo "## lab probe --device cuda --dtype $dtype"
  timeout 60 python3 -m lab.cli probe --device cuda --dtype "$dtype" 2>&1
done | tee "$out/probe.txt"
for dtype in fp32 bf16; do
  echo "## lab bench kernels --device cuda --dtype $dtype (SmolLM2-shaped, random weights)"
  timeout 120 python3 -m lab.cli bench kernels --device cuda --dtype "$dtype" --rounds 3 \
    --model /tmp/gpu_models/smollm2-shaped 2>&1 | grep -v "Loading weights"
done | tee "$out/bench_kernels.txt"
