#!/usr/bin/env bash
# The README's first command: phantoms -> a tiny active-learning loop -> table.
set -euo pipefail
ALSEG=${ALSEG:-.venv/bin/alseg}
OUT=${OUT:-demo}
mkdir -p "$OUT"
$ALSEG prep phantoms -o "$OUT/data.zarr" --size 64 --force
