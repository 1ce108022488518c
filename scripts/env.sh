#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment from the pinned lock file.
# Idempotent: does nothing when .venv already matches requirements/lock.txt and setup.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${CDUL_VENV:-.venv}"
PY="${PYTHON:-python3}"
want="$(cat requirements/lock.txt setup.py | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.cdul-env"
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 10))'; then
  echo "cdul needs Python >= 3.10 (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3" >&2
  exit 1
fi
echo "setting up $VENV (pinned packages from requirements/lock.txt) ..." >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_install() {
  # this workplace's pip configuration names index folders that may be absent: hide that noise
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2> >(grep -v "^WARNING: Location" >&2)
}
pip_install -r requirements/lock.txt
pip_install --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
