#!/usr/bin/env bash
# ACDC reproductions (`make acdc-quick`, `make acdc-paper`): prep -> loop -> bootstrap.
#   PRESET=quick|paper   SUPERVISION=full|scribble   JOBS=N   ACDC_DIR=...   OUT=runs/acdc
#   METHODS=a,b,...  SEEDS=0,1  (default: the preset's; a later run may add seeds or methods)
# Split by patient (data README): train 001-060, validation 061-070, test 071-080.
# quick: 128 px, methods random, coreset (pixels), gcl-coreset, typiclust, bald,
#        stochastic-batches; budgets 2,3,4,5,10 %; 3 seeds; 1 model per round.
# paper: 256 px, 100 pretraining epochs, 5 models per round, 5 seeds, budgets
#        2,3,4,5,10,15,20,40 %, all methods; for a GPU machine (--device auto).
# Rerunning the same command resumes (finished steps are skipped).
set -euo pipefail
ALSEG=${ALSEG:-.venv/bin/alseg}
PRESET=${PRESET:-quick}
SUPERVISION=${SUPERVISION:-full}
JOBS=${JOBS:-1}
SEEDS=${SEEDS:-}
ACDC_DIR=${ACDC_DIR:-../shared/data/acdc}
OUT=${OUT:-runs/acdc}
[ -d "$ACDC_DIR" ] || { echo "acdc: $ACDC_DIR not found; set ACDC_DIR=..." >&2; exit 2; }
mkdir -p "$OUT"

if [ "$PRESET" = paper ]; then
  SIZE=256; DEVICE=${DEVICE:-auto}
  METHODS=${METHODS:-random,coreset,gcl-coreset,typiclust,coregcn,vaal,bald,variance-ratio,ensemble-entropy,stochastic-batches}
  EXTRA=(--pretrain-epochs 100)
else
  SIZE=128; DEVICE=${DEVICE:-cpu}
  METHODS=${METHODS:-random,coreset,gcl-coreset,typiclust,bald,stochastic-batches}
  EXTRA=(--pretrain-epochs 5)
fi

# the patient split as a file, so it is explicit and identical on every machine
SPLIT="$OUT/split.json"
python3 - "$SPLIT" <<'PY'
import json, sys
split = {f"patient{i:03d}": "train" if i <= 60 else ("val" if i <= 70 else "test") for i in range(1, 81)}
json.dump(split, open(sys.argv[1], "w"), indent=0)
PY

DATA="$OUT/acdc$SIZE.zarr"
if [ ! -e "$DATA" ]; then
  $ALSEG prep "$ACDC_DIR" -o "$DATA" --size "$SIZE" --split-file "$SPLIT" --unannotated 4 > "$DATA.json"
fi

# stochastic-batches scores with an ensemble: it needs --models-per-round >= 2 in quick runs
MPR=$([ "$PRESET" = paper ] && echo 5 || echo 2)
RUN="$OUT/$PRESET-$SUPERVISION"
$ALSEG loop -o "$RUN" --dataset "$DATA" --preset "$PRESET" --supervision "$SUPERVISION" \
  --methods "$METHODS" --pretrain "${EXTRA[@]}" --models-per-round "$MPR" \
  --device "$DEVICE" --jobs "$JOBS" ${SEEDS:+--seeds "$SEEDS"} > "$RUN.loop.json"
$ALSEG bootstrap "$RUN" --force > "$RUN.bootstrap.json"
echo "acdc: table $RUN/bootstrap/table.md, plot $RUN/bootstrap/dice.png" >&2
