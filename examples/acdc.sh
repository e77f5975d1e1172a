#!/usr/bin/env bash
# ACDC reproductions (`make acdc-quick`, `make acdc-paper`): prep -> loop -> bootstrap.
#   PRESET=quick|paper   SUPERVISION=full|scribble   JOBS=N   THREADS=1   ACDC_DIR=...   OUT=runs/acdc
#   METHODS=a,b,...  SEEDS=0,1  (default: the preset's; a later run may add seeds or methods)
# Split by patient (data README): train 001-060, validation 061-070, test 071-080.
# quick: 128 px, methods random, coreset (pixels), gcl-coreset, typiclust, bald,
#        stochastic-batches, spcon-coreset (its own SP-Con encoder per seed) and
#        gcl-coreset+knn-prop (Belharbi's k-NN propagation, its defaults); budgets
#        2,3,4,5,10 %; 3 seeds; GCL (and SP-Con) encoders of 5 epochs at the store's 128 px;
#        a 16-channel UNet/DMPLS per round, 300 iterations warm-started from the previous
#        round's model, AdamW at lr 1e-3, class-balanced CE, degenerate models retried
#        from another seed (the loop's quick preset); 1 model per round, 2 for stochastic-batches (which scores with an
#        ensemble; the preset's ensemble_models: its reported model is the better of the 2 on
#        validation, a small advantage the table states).
# paper: 256 px, 100 pretraining epochs, 5 models per round, 5 seeds, budgets
#        2,3,4,5,10,15,20,40 %, all methods; for a GPU machine (--device auto).
# Rerunning the same command resumes (finished steps are skipped).
set -euo pipefail
PRESET=${PRESET:-quick}
SUPERVISION=${SUPERVISION:-full}
if [ "$PRESET" = paper ]; then
  SIZE=256; DEVICE=${DEVICE:-auto}
  METHODS=${METHODS:-random,coreset,gcl-coreset,typiclust,coregcn,vaal,bald,variance-ratio,ensemble-entropy,stochastic-batches}
  EXTRA=(--pretrain-epochs 100)
else
  SIZE=128; DEVICE=${DEVICE:-cpu}
  METHODS=${METHODS:-random,coreset,gcl-coreset,typiclust,bald,stochastic-batches,spcon-coreset,gcl-coreset+knn-prop}
  EXTRA=(--pretrain-epochs 5)
fi

source "$(dirname "$0")/acdc_data.sh"

RUN="$OUT/$PRESET-$SUPERVISION"
OTHER=$([ "$SUPERVISION" = scribble ] && echo full || echo scribble)
# encoders the other supervision's run or the ablation finished, and rounds the ablation or the
# semi run trained with the same call (the weak coreset and gcl-coreset chains, 2 % rounds), are
# linked, not trained again
REUSE=$(existing_runs "$OUT/$PRESET-$OTHER" "$OUT/ablation" "$OUT/semi")
$ALSEG loop -o "$RUN" --dataset "$DATA" --preset "$PRESET" --supervision "$SUPERVISION" \
  --methods "$METHODS" --pretrain "${EXTRA[@]}" ${REUSE:+--reuse-encoders "$REUSE" --reuse-models "$REUSE"} --device "$DEVICE" \
  --jobs "$JOBS" --threads "$THREADS" ${SEEDS:+--seeds "$SEEDS"} > "$RUN.loop.json"
$ALSEG bootstrap "$RUN" -o "$RUN-table" --force > "$RUN.bootstrap.json"
echo "acdc: table $RUN-table/table.md, plot $RUN-table/dice.png, stage times $RUN-table/timings.md" >&2
