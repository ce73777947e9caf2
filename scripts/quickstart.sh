#!/usr/bin/env bash
# Set up .venv if needed, then run the lab's main job on the bundled default model: a small
# determinism sweep and an n-of-k variance report, ending with the path of the HTML report.
# Usage: scripts/quickstart.sh [lab quickstart options]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/lab quickstart "$@"
