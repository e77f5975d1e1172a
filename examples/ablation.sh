#!/usr/bin/env bash
# The paper's ablation (table 4) on ACDC at the quick settings (`make ablation`):
# examples/ablation.toml's 11 rows (Coreset on pixels, then Coreset on encoders trained with
# each loss combination), weak supervision, 2-5 %, 3 seeds; the table's "mean" column is the
# paper's mDICE. Resumable: rerunning skips finished steps.
#   ACDC_DIR=...  OUT=runs/acdc  JOBS=N  SEEDS=0,1,2
set -euo pipefail
ALSEG=${ALSEG:-.venv/bin/alseg}
ACDC_DIR=${ACDC_DIR:-../shared/data/acdc}
OUT=${OUT:-runs/acdc}
JOBS=${JOBS:-1}
[ -d "$ACDC_DIR" ] || { echo "ablation: $ACDC_DIR not found; set ACDC_DIR=..." >&2; exit 2; }
mkdir -p "$OUT"
SPLIT="$OUT/split.json"
python3 - "$SPLIT" <<'PY'
import json, sys
split = {f"patient{i:03d}": "train" if i <= 60 else ("val" if i <= 70 else "test") for i in range(1, 81)}
json.dump(split, open(sys.argv[1], "w"), indent=0)
PY
DATA="$OUT/acdc128.zarr"
[ -e "$DATA" ] || $ALSEG prep "$ACDC_DIR" -o "$DATA" --size 128 --split-file "$SPLIT" --unannotated 4 > "$DATA.json"
RUN="$OUT/ablation"
$ALSEG loop -o "$RUN" --config examples/ablation.toml --dataset "$DATA" --device cpu --jobs "$JOBS" \
  ${SEEDS:+--seeds "$SEEDS"} > "$RUN.loop.json"
$ALSEG bootstrap "$RUN" -o "$RUN-table" --force > "$RUN.bootstrap.json"
echo "ablation: table $RUN-table/table.md (the mean column is table 4's mDICE)" >&2
