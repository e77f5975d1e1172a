#!/usr/bin/env bash
# The paper's ablation (table 4) on ACDC at the quick settings (`make ablation`):
# examples/ablation.toml's 11 rows (Coreset on pixels, then Coreset on encoders trained with
# each loss combination), weak supervision, 2-5 %, 3 seeds; the table's "mean" column is the
# paper's mDICE, and each row's paired differences against NT-Xent only go to compare.md.
# Resumable: rerunning skips finished steps.
#   ACDC_DIR=...  OUT=runs/acdc  JOBS=N  THREADS=1  SEEDS=0,1,2
set -euo pipefail
SIZE=128
source "$(dirname "$0")/acdc_data.sh"
RUN="$OUT/ablation"
# the ntxent-patient-volume row's encoders are acdc-quick's GCL ones, and its rounds and the
# pixel Coreset row's repeat acdc-quick weak's gcl-coreset and coreset chains: linked when done
REUSE=$(existing_runs "$OUT/quick-full" "$OUT/quick-scribble" "$OUT/semi")
$ALSEG loop -o "$RUN" --config examples/ablation.toml --dataset "$DATA" --device cpu --jobs "$JOBS" \
  --threads "$THREADS" ${REUSE:+--reuse-encoders "$REUSE" --reuse-models "$REUSE"} ${SEEDS:+--seeds "$SEEDS"} > "$RUN.loop.json"
$ALSEG bootstrap "$RUN" -o "$RUN-table" --compare ntxent --force > "$RUN.bootstrap.json"
echo "ablation: table $RUN-table/table.md (the mean column is table 4's mDICE), paired differences" \
  "against NT-Xent only $RUN-table/compare.md" >&2
