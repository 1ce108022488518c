#!/usr/bin/env bash
# One benchmark of the CDUL paper end to end (sets up .venv first if needed):
#   bash scripts/reproduce.sh voc2012|voc2007|coco2014|nuswide DATASET_ROOT [--out DIR] [--smoke]
# Rerun the same command to resume; OUT/results.md holds the table. --help lists the options.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
(cd "$here" && bash scripts/env.sh)
exec "${CDUL_VENV:-$here/.venv}/bin/python" -m cdul.reproduce "$@"
