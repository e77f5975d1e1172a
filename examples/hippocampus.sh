#!/usr/bin/env bash
# MSD Hippocampus at quick settings (`make hippocampus-quick`): prep -> loop -> bootstrap with
# paired differences against gcl-coreset. Settings: examples/hippocampus.toml. Resumable:
# rerunning skips finished steps.
#   HIPPO_DIR=../shared/data/hippocampus  OUT=runs/hippocampus  JOBS=N  SEEDS=0,1  METHODS=a,b
set -euo pipefail
ALSEG=${ALSEG:-.venv/bin/alseg}
HIPPO_DIR=${HIPPO_DIR:-../shared/data/hippocampus}
OUT=${OUT:-runs/hippocampus}
JOBS=${JOBS:-1}
[ -d "$HIPPO_DIR" ] || { echo "$(basename "$0"): $HIPPO_DIR not found; set HIPPO_DIR=..." >&2; exit 2; }
mkdir -p "$OUT"
DATA="$OUT/hippocampus64.zarr"
# one subject per volume: prep's seeded split by patient is a split by volume here
[ -e "$DATA" ] || $ALSEG prep "$HIPPO_DIR" -o "$DATA" --size 64 --classes background,anterior,posterior \
  > "$DATA.json"
RUN="$OUT/quick-full"
$ALSEG loop -o "$RUN" --config examples/hippocampus.toml --dataset "$DATA" --jobs "$JOBS" \
  ${SEEDS:+--seeds "$SEEDS"} ${METHODS:+--methods "$METHODS"} > "$RUN.loop.json"
$ALSEG bootstrap "$RUN" -o "$RUN-table" --compare gcl-coreset --force > "$RUN.bootstrap.json"
echo "hippocampus: table $RUN-table/table.md, paired differences $RUN-table/compare.md" >&2
