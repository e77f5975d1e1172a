# Sourced by the ACDC scripts (acdc.sh, figure2.sh, ablation.sh, acdc_semi.sh): checks
# ACDC_DIR, writes the patient split (train 001-060, validation 061-070, test 071-080; data
# README) as a file so it is explicit and identical on every machine, and preps
# $OUT/acdc$SIZE.zarr once. Sets DATA and the scripts' shared defaults (ALSEG, ACDC_DIR, OUT,
# JOBS, THREADS, SEEDS).
ALSEG=${ALSEG:-.venv/bin/alseg}
ACDC_DIR=${ACDC_DIR:-../shared/data/acdc}
OUT=${OUT:-runs/acdc}
JOBS=${JOBS:-1}
# torch threads per job: 1 unless THREADS is set, so the models (which the thread count changes
# in the last float digits) are the same on machines with other core counts
THREADS=${THREADS:-1}
SEEDS=${SEEDS:-}
[ -d "$ACDC_DIR" ] || { echo "$(basename "$0"): $ACDC_DIR not found; set ACDC_DIR=..." >&2; exit 2; }
mkdir -p "$OUT"
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

# existing_runs DIR... (examples/encoders.sh)
source "$(dirname "${BASH_SOURCE[0]}")/encoders.sh"
