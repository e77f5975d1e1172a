#!/usr/bin/env bash
# One active-learning round by hand, as a shell pipeline, on the built-in phantoms.
# `alseg loop` chains exactly these steps (and resumes them); this script shows the pieces.
# stdout of every command is one JSON manifest; progress and tables go to stderr.
set -euo pipefail
ALSEG=${ALSEG:-.venv/bin/alseg}
D=${OUT:-demo/pipeline}
mkdir -p "$D"

# 1. volumes -> dataset store: 64 px slices, masks, scribbles, patient/volume ids, a
#    train/val/test split by patient.
$ALSEG prep phantoms -o "$D/data.zarr" --size 64 --force > "$D/data.json"

# 2. embed every slice (here: raw pixels on a 32 x 32 grid, the "Coreset" baseline; use
#    --encoder ENCODER_DIR from `alseg pretrain` for the paper's GCL embeddings) and pipe
#    the embeddings manifest into select: k-center greedy picks 5 % of the train pool.
#    That selection manifest is piped on as the labelled set (--labeled -) of a second
#    round that grows it to 10 % cumulative.
$ALSEG embed "$D/data.zarr" --encoder pixels -o "$D/pixels.zarr" --device cpu --force \
  | $ALSEG select --method coreset --budget 5% --seed 0 -o "$D/round5.json" --force \
  | $ALSEG select --method coreset --budget 10% --seed 1 --embeddings "$D/pixels.zarr" \
      --labeled - -o "$D/round10.json" --force > /dev/null

# 4. train a (tiny) UNet on the full masks of the selected slices; best-on-validation
#    checkpoint kept. --model dmpls --supervision scribble trains on scribbles instead.
$ALSEG train-seg "$D/data.zarr" --labels "$D/round10.json" -o "$D/model" \
  --iterations 60 --base-channels 4 --device cpu --force > "$D/model.json"

# 5. 3D Dice (and HD95) per test volume at native resolution.
$ALSEG evaluate "$D/data.zarr" --model "$D/model" --split test -o "$D/eval.json" --device cpu --force \
  > /dev/null
echo "pipeline: selection $D/round10.json, model $D/model, evaluation $D/eval.json" >&2
