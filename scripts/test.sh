#!/usr/bin/env bash
# Runs the test suite on the CPU (sets up .venv first if needed). Extra arguments go to pytest:
#   bash scripts/test.sh                        # every test
#   bash scripts/test.sh --quick                # the quick lane: -m "not slow", no end-to-end runs
#   bash scripts/test.sh tests/test_store.py    # one file
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/env.sh
VENV="${CDUL_VENV:-.venv}"
export TRITON_INTERPRET=1  # Triton kernels run through the interpreter on the CPU
args=()
for a in "$@"; do
  if [ "$a" = "--quick" ]; then args+=(-m "not slow"); else args+=("$a"); fi
done
exec "$VENV/bin/python" -m pytest -q "${args[@]}"
