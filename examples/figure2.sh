#!/usr/bin/env bash
# The paper's figure 2 on ACDC at the quick settings (`make figure2`): Dice against annotation
# cost for slice-based AL with full masks and with scribbles (gcl-coreset; a scribbled slice
# costs 1/15 of a mask) and random whole volumes with a 3D U-Net trained from scratch (a
# volume costs its slices). Three loop runs, then one bootstrap over them: its dice-cost.png
# is the figure. Resumable; the slice runs are the same as `make acdc-quick`'s gcl-coreset
# chains and reuse them when that has run (same run directories).
#   ACDC_DIR=...  OUT=runs/acdc  JOBS=N  THREADS=1  SEEDS=0,1,2
set -euo pipefail
SIZE=128
source "$(dirname "$0")/acdc_data.sh"
COMMON=(--dataset "$DATA" --preset quick --device cpu --jobs "$JOBS" --threads "$THREADS" ${SEEDS:+--seeds "$SEEDS"})
# slice-based, full masks and scribbles: the paper's method (the weak run links the full run's
# encoders instead of training its own)
$ALSEG loop -o "$OUT/quick-full" --methods gcl-coreset --pretrain --pretrain-epochs 5 "${COMMON[@]}" \
  > "$OUT/quick-full.figure2.json"
$ALSEG loop -o "$OUT/quick-scribble" --methods gcl-coreset --supervision scribble --pretrain --pretrain-epochs 5 \
  --reuse-encoders "$OUT/quick-full" "${COMMON[@]}" > "$OUT/quick-scribble.figure2.json"
# whole volumes at random, 3D U-Net; budgets up to 40 % of the slices (figure 2's range)
$ALSEG loop -o "$OUT/volume-full" --methods random --unit volume --model unet3d --budgets 2,5,10,20,40 \
  "${COMMON[@]}" > "$OUT/volume-full.figure2.json"
$ALSEG bootstrap "$OUT/quick-full" "$OUT/quick-scribble" "$OUT/volume-full" -o "$OUT/figure2" --force \
  > "$OUT/figure2.json"
echo "figure2: $OUT/figure2/dice-cost.png (table: $OUT/figure2/table.md)" >&2
