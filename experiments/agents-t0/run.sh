#!/usr/bin/env bash
# T=0 agent sweep: does batch size, engine or dtype change a greedy trajectory, at which step
# and token, with what top-1/top-2 margin there? Each run: 26 bundled agent cases, k=1.
#   bash experiments/agents-t0/run.sh [OUT_DIR]      (default runs/agents-t0)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-runs/agents-t0}
lab=${LAB:-lab}
run() {  # NAME, then lab sample flags
  local name=$1; shift
  "$lab" sample "$here/base.yaml" --out "$out/$name" "$@" > "$out/$name.log" 2>&1 || true
}
mkdir -p "$out"
run vllm-fp32-b64 --backend vllm --dtype fp32 --max-num-seqs 64
run vllm-fp32-b1 --backend vllm --dtype fp32 --max-num-seqs 1
run hf-fp32-b64 --backend hf --dtype fp32 --max-num-seqs 64
run hf-fp32-b1 --backend hf --dtype fp32 --max-num-seqs 1
run vllm-bf16-b64 --backend vllm --dtype bf16 --max-num-seqs 64
python - "$out" <<'PY'
import sys
from lab.agents.divergence import compare_agent_runs, format_divergence
out = sys.argv[1]
pairs = [("vllm-fp32-b64", "vllm-fp32-b1"), ("hf-fp32-b64", "hf-fp32-b1"),
         ("vllm-fp32-b64", "hf-fp32-b64"), ("vllm-fp32-b64", "vllm-bf16-b64")]
for a, b in pairs:
    try:
        print(format_divergence(compare_agent_runs(f"{out}/{a}", f"{out}/{b}")))
    except Exception as exc:  # a run that did not finish
        print(f"{a} vs {b}: not compared ({exc})")
    print()
PY
