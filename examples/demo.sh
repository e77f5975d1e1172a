#!/usr/bin/env bash
# `make demo`: phantoms -> a tiny active-learning loop -> the bootstrap table.
# random vs coreset (raw pixels) vs gcl-coreset (the paper's method: k-center greedy on a
# GCL encoder trained once per seed), 2 seeds, 3 rounds (5, 10, 20 % of the pool), tiny
# UNets. A few minutes on 2 CPU cores. Rerunning resumes (finished steps are skipped).
set -euo pipefail
ALSEG=${ALSEG:-.venv/bin/alseg}
OUT=${OUT:-demo}
JOBS=${JOBS:-2}
mkdir -p "$OUT"

# 1. a dataset store of synthetic 3D volumes (12 patients x 2 frames, 64 px), split by patient
if [ ! -e "$OUT/data.zarr" ]; then
  $ALSEG prep phantoms -o "$OUT/data.zarr" --size 64 > "$OUT/data.json"
fi

# 2. the experiment: every round writes demo/run/<method>/seed<k>/round<pct>/
#    {selection.json, model/, eval.json}; the manifest (kind "loop") goes to stdout.
$ALSEG loop -o "$OUT/run" --dataset "$OUT/data.zarr" --config examples/demo.toml \
  --jobs "$JOBS" > "$OUT/loop.json"

# 3. mean Dice +- paired bootstrap error (appendix D) per method and budget: table on
#    stderr; CSV, Markdown, JSON and a PNG plot in demo/run/bootstrap/.
$ALSEG bootstrap "$OUT/run" --force > "$OUT/bootstrap.json"
# 4. the pictures (`alseg plot`): predictions vs ground truth (the paper's figure 3), t-SNE
#    maps of the pixel and GCL embeddings with gcl-coreset's picks marked (figure 4), and the
#    slices gcl-coreset asked to annotate in its second round.
mkdir -p "$OUT/figures"
$ALSEG plot overlay "$OUT/data.zarr" --run "$OUT/run" --methods random,gcl-coreset --budgets 5,20 \
  -o "$OUT/figures/overlay.png" --force > /dev/null
$ALSEG plot map "$OUT/run/embeddings/pixels.zarr" "$OUT/run/embeddings/seed0.zarr" \
  --selection "$OUT/run/gcl-coreset/seed0/round20/selection.json" -o "$OUT/figures/map.png" --force > /dev/null
$ALSEG plot montage "$OUT/run/gcl-coreset/seed0/round10/selection.json" -o "$OUT/figures/montage.png" \
  --force > /dev/null
echo "demo: table in $OUT/run/bootstrap/table.md, plot in $OUT/run/bootstrap/dice.png, pictures in $OUT/figures/" >&2
