#!/usr/bin/env bash
# Set up .venv if needed, then run the lab's main job on the bundled default model.
# Usage: scripts/demo.sh [lab demo options]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/lab demo "$@"
