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
# batch size: all 26 trajectories in one forward pass (64) against at most 4 at a time (4)
run vllm-fp32-b64 --backend vllm --dtype fp32 --max-num-seqs 64
run hf-fp32-b64 --backend hf --dtype fp32 --max-num-seqs 64
run vllm-fp32-b4 --backend vllm --dtype fp32 --max-num-seqs 4
run hf-fp32-b4 --backend hf --dtype fp32 --max-num-seqs 4
run vllm-bf16-b64 --backend vllm --dtype bf16 --max-num-seqs 64
# the same question as one lab sweep over 12 of the cases: batch 1 vs 4 rows per engine call,
# fp32 vs bf16, hf vs vllm (8 cells, reference hf fp32 batch 1); its summary ends the log
"$lab" sweep "$here/sweep.yaml" --out "$out/sweep" --no-progress > "$out/sweep.log" 2>&1 || true
python - "$out" <<'PY'
import sys
from lab.agents.divergence import compare_agent_runs, format_divergence
out = sys.argv[1]
pairs = [("vllm-fp32-b64", "vllm-fp32-b4"), ("hf-fp32-b64", "hf-fp32-b4"),
         ("vllm-fp32-b64", "hf-fp32-b64"), ("vllm-fp32-b64", "vllm-bf16-b64")]
for a, b in pairs:
    try:
        print(format_divergence(compare_agent_runs(f"{out}/{a}", f"{out}/{b}")))
    except Exception as exc:  # a run that did not finish
        print(f"{a} vs {b}: not compared ({exc})")
    print()
PY
