#!/usr/bin/env bash
# An annotation campaign on ACDC images as a new user runs it (`make campaign-acdc`): the ED
# frames of patients 041-060 stand in for a hospital's unlabelled scans and patient 071 for a
# new scan; the annotator is simulated by copying the requested slices of the hidden masks into
# the exported label templates. Every step is timed (OUT/times.txt).
#   ACDC_DIR=../shared/data/acdc  OUT=runs/campaign  ALSEG=.venv/bin/alseg
set -euo pipefail
ALSEG=${ALSEG:-.venv/bin/alseg}
PY=${PY:-.venv/bin/python}
ACDC_DIR=$(cd "${ACDC_DIR:-../shared/data/acdc}" && pwd)
OUT=$(realpath -m "${OUT:-runs/campaign}")
rm -rf "$OUT" && mkdir -p "$OUT/raw"
for i in $(seq 41 60); do p=$(printf patient%03d "$i"); cp "$ACDC_DIR/$p/${p}_frame01.nii.gz" "$OUT/raw/"; done
step() { local s; s=$(date +%s.%N); "$@"; printf '%-14s %6.1f s\n' "$2" "$(echo "$(date +%s.%N) - $s" | bc)" >> "$OUT/times.txt"; }
annotate() {   # the simulated annotator: paint the requested slices from the hidden masks
  "$PY" - "$ACDC_DIR" "$1" <<'PY'
import csv, sys
import nibabel as nib, numpy as np
acdc, export = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(f"{export}/tasks.csv")))
for vol in {r["volume"] for r in rows}:
    gt = np.asarray(nib.load(f"{acdc}/{vol.split('_')[0]}/{vol}_gt.nii.gz").dataobj)
    tpl = nib.load(f"{export}/labels/{vol}.nii.gz")
    arr = np.asarray(tpl.dataobj).copy()
    for r in rows:
        if r["volume"] == vol:
            k = int(r["index0"]); arr[..., k] = gt[..., k]
    nib.save(nib.Nifti1Image(arr, tpl.affine), f"{export}/labels/{vol}.nii.gz")
PY
}
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }   # absolute, symlinks kept (a venv's python)
A=$(abs "$ALSEG"); PY=$(abs "$PY")
cd "$OUT"
step "$A" prep --images raw -o pool.zarr --size 128 --classes background,RV,MYO,LV > prep.json
step "$A" pretrain pool.zarr -o enc --epochs 2 --size 64 > enc.json
step "$A" embed pool.zarr --encoder enc -o emb.zarr > emb.json
step "$A" select --method gcl-coreset --budget 5% -e emb.zarr -o sel1.json < /dev/null > /dev/null
step "$A" export sel1.json -o round1 > /dev/null
annotate round1
step "$A" import-labels pool.zarr round1/labels/*.nii.gz --selection sel1.json -o lab1.json > /dev/null
step "$A" train-seg pool.zarr -l lab1.json -o model1 --iterations 300 --val-split none --optimizer adamw \
  --lr 1e-3 --class-weights balanced > model1.json
step "$A" select --method gcl-coreset --budget 8% -e emb.zarr -l lab1.json -o sel2.json > /dev/null
cp "$ACDC_DIR/patient071/patient071_frame01.nii.gz" new.nii.gz
step "$A" predict model1 new.nii.gz -o pred --overlays 4 > pred.json
"$PY" - "$ACDC_DIR" <<'PY' | tee -a times.txt
import sys
import nibabel as nib, numpy as np
p = np.asarray(nib.load("pred/new.nii.gz").dataobj)
g = np.asarray(nib.load(f"{sys.argv[1]}/patient071/patient071_frame01_gt.nii.gz").dataobj)
d = [2 * ((p == c) & (g == c)).sum() / max(1, (p == c).sum() + (g == c).sum()) for c in (1, 2, 3)]
print("predict Dice on patient071 ED (RV, MYO, LV): " + " / ".join(f"{x:.3f}" for x in d) + f", mean {np.mean(d):.3f}")
PY
cat times.txt >&2
