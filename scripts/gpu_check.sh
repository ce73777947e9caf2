#!/usr/bin/env bash
# The GPU checks, prepared for a lent CUDA machine (the `device` tool: its python3 has torch,
# triton, transformers and pytest, and it cannot reach the internet, so nothing is downloaded):
# the Triton kernels' tests (tests/gpu: bitwise batch invariance, float64 accuracy, a tiny
# random-weight Llama through the hf backend), `lab probe` on cuda, and the operator benchmark
# with the mode on against off. Logs go to $OUT when set (the device tool returns that folder).
#
#   bash scripts/gpu_check.sh          # ~3-5 minutes on an H100, most of it Triton compiling
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu_check}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if ! python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$out/install.log" 2>&1; then
  echo "installing the lab failed:"; tail -20 "$out/install.log"; exit 1
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
  | tee -a "$out/gpu.txt"
status=0
python3 -m pytest -q -rs tests/gpu 2>&1 | tee "$out/pytest_gpu.log" || status=1
for dtype in fp32 bf16; do
  python3 -m lab.cli probe --device cuda --dtype "$dtype" 2>&1 | tee "$out/probe_$dtype.txt"
done
for dtype in fp32 bf16; do
  python3 -m lab.cli bench kernels --device cuda --dtype "$dtype" --no-e2e --repeats 5 2>&1 \
    | tee "$out/bench_kernels_$dtype.txt"
done
exit "$status"
