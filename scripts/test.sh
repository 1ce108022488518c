#!/usr/bin/env bash
# Runs the test suite on the CPU (sets up .venv first if needed). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/env.sh
VENV="${CDUL_VENV:-.venv}"
export TRITON_INTERPRET=1  # Triton kernels run through the interpreter on the CPU
exec "$VENV/bin/python" -m pytest -q "$@"
