#!/usr/bin/env bash
# The main job on a bundled sample, no download needed (sets up .venv first if needed).
# Extra arguments go to cdul-demo (see: .venv/bin/cdul-demo --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/env.sh
VENV="${CDUL_VENV:-.venv}"
exec "$VENV/bin/cdul-demo" "$@"
