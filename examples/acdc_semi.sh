#!/usr/bin/env bash
# Does selection still matter when the unlabelled slices are used? (`make acdc-semi`): random
# and gcl-coreset at 2 and 5 %, each trained plainly and with ARCO (the `+arco` round modifier:
# a mean teacher on the pool plus ARCO's pixel contrast), full masks, quick preset, 3 seeds,
# then paired differences against gcl-coreset+arco. Resumable.
#   ACDC_DIR=...  OUT=runs/acdc  JOBS=N  THREADS=1  SEEDS=0,1,2
set -euo pipefail
SIZE=128
source "$(dirname "$0")/acdc_data.sh"
RUN="$OUT/semi"
ALL_SEEDS=${SEEDS:-0,1,2}
# GCL encoders: those the quick runs or the ablation finished are linked, not trained again; a
# run begun with --encoder (the full run's, as results/acdc/semi's seed 2) goes on with it. The
# plain chains' 2 % rounds are acdc-quick full's: linked when done.
REUSE=$(existing_runs "$OUT/quick-full" "$OUT/quick-scribble" "$OUT/ablation")
if grep -qs '"encoder": "' "$RUN/config.json"; then ENCODER=(--encoder "$OUT/quick-full/encoders/seed{seed}")
else
  ENCODER=(--pretrain --pretrain-epochs 5 ${REUSE:+--reuse-encoders "$REUSE"})
fi
$ALSEG loop -o "$RUN" --dataset "$DATA" --preset quick --methods random,gcl-coreset,random+arco,gcl-coreset+arco \
  --budgets 2,5 --seeds "$ALL_SEEDS" "${ENCODER[@]}" ${REUSE:+--reuse-models "$REUSE"} --device cpu --jobs "$JOBS" --threads "$THREADS" \
  > "$RUN.loop.json"
$ALSEG bootstrap "$RUN" -o "$RUN-table" --compare gcl-coreset+arco --force > "$RUN.bootstrap.json"
echo "semi: table $RUN-table/table.md, paired differences $RUN-table/compare.md" >&2
