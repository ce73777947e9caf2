#!/usr/bin/env bash
# The GPU checks, prepared for a lent CUDA machine (the `device` tool: its python3 has torch,
# triton, transformers, sentence-transformers and pytest; it cannot reach the internet, so
# nothing is downloaded). The models are built there (scripts/gpu_models.py): a random-weight
# Llama of SmolLM2-135M's shape with a byte-level tokenizer, and all-MiniLM-L6-v2 from an fp16
# copy in .gpu_carry/ (name it in the device call's carry) or a random-weight encoder of its
# shape. Then: pytest tests/gpu (Triton kernels bitwise and against float64, the hf backend in
# batch-invariant mode alone vs inside a padded batch of 8), `lab probe` on cuda in fp32 and
# bf16, `lab bench kernels` on cuda in fp32 and bf16 (operators and generation, mode off vs
# on), and `lab bench embeddings` on cuda (1,600 texts: one batched pass vs a per-case loop).
# Five files in $OUT (the device tool returns at most eight): gpu.txt, pytest_gpu.log,
# probe.txt, bench_kernels.txt, embeddings.txt.
#
#   bash scripts/gpu_check.sh          # ~4-6 minutes on an H200, much of it Triton compiling
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu_check}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD"
started=$(date +%s)
stamp() { echo "== $1 ($(( $(date +%s) - started )) s)"; }
{
  stamp "install"
  python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -5
  if ! python3 -c "import lab.kernels" 2>/dev/null; then
    # An older setuptools there cannot build this pyproject: run from the tree instead, with
    # kernels/ linked where the package maps it (this copy of the tree is the device's own).
    echo "editable install failed; running from the source tree"
    ln -sfn ../kernels lab/kernels
  fi
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 - <<'PY'
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "|", torch.cuda.get_device_name(0))
p = torch.cuda.get_device_properties(0)
print("SMs", p.multi_processor_count, "| shared memory per block (opt-in)",
      getattr(p, "shared_memory_per_block_optin", "?"))
for name in ("triton", "transformers", "sentence_transformers", "tokenizers", "click", "yaml",
             "numpy", "scipy", "pyarrow", "jsonschema", "langid", "httpx", "lab"):
    try:
        m = importlib.import_module(name)
        print(f"  {name} {getattr(m, '__version__', 'ok')}")
    except Exception as exc:  # noqa: BLE001
        print(f"  {name} MISSING: {exc}")
PY
  stamp "models"
  python3 scripts/gpu_models.py /tmp/gpu_models 2>&1 | grep -v "Writing model shards\|Loading weights"
} 2>&1 | tee "$out/gpu.txt"
status=0
stamp "pytest tests/gpu" | tee -a "$out/gpu.txt"
timeout 300 python3 -m pytest -q -rs -p no:cacheprovider tests/gpu -k "not interpreter" 2>&1 \
  | tee "$out/pytest_gpu.log" || status=1
stamp "probe" | tee -a "$out/gpu.txt"
for dtype in fp32 bf16; do
  echo "## lab probe --device cuda --dtype $dtype"
  timeout 120 python3 -m lab.cli probe --device cuda --dtype "$dtype" 2>&1
done | tee "$out/probe.txt"
stamp "bench kernels" | tee -a "$out/gpu.txt"
for dtype in fp32 bf16; do
  echo "## lab bench kernels --device cuda --dtype $dtype (generation: SmolLM2-shaped, random weights)"
  timeout 180 python3 -m lab.cli bench kernels --device cuda --dtype "$dtype" --rounds 3 \
    --model /tmp/gpu_models/smollm2-shaped 2>&1 | grep -v "Loading weights"
done | tee "$out/bench_kernels.txt"
stamp "bench embeddings" | tee -a "$out/gpu.txt"
timeout 180 python3 -m lab.cli bench embeddings --device cuda --embedder /tmp/gpu_models/minilm \
  --cases 50 --k 32 2>&1 | grep -v "Loading weights" | tee "$out/embeddings.txt"
stamp "done, status $status" | tee -a "$out/gpu.txt"
exit "$status"
