#!/usr/bin/env bash
# Copy a loop run's records into DEST: its configuration, every finished chain's selections,
# evaluations, step markers (with their timings) and summaries, but no model weights, encoders
# or zarr stores (embeddings, pseudo-labels): those stay with the run (~50 KB per ACDC round
# instead of ~30 MB).
# `alseg bootstrap DEST` reads the copy as it reads the run, and `alseg loop -o DEST ...`
# resumes from it: finished chains are skipped without their encoders; new seeds or methods
# train from there. A chain with a round unfinished is left out (it would resume without the
# previous round's model).
#   examples/keep_records.sh RUN_DIR DEST_DIR [SEED ...]   (seeds given: only their chains)
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 RUN_DIR DEST_DIR [SEED ...]" >&2; exit 2; }
RUN=$1 DEST=$2; shift 2
[ -e "$RUN/config.json" ] || { echo "$0: $RUN is not a loop run directory (no config.json)" >&2; exit 2; }
BUDGETS=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["budgets"]))' "$RUN/config.json")
PATHS=(./config.json)
[ -e "$RUN/manifest.json" ] && PATHS+=(./manifest.json)
kept=0 left=0
shopt -s nullglob
for chain in "$RUN"/*/seed*/; do
  [ -d "$chain" ] || continue
  name=${chain#"$RUN"/}; name=./${name%/}; seed=${name##*/seed}
  if [ $# -gt 0 ] && [[ " $* " != *" $seed "* ]]; then continue; fi
  rounds=("$chain"round*/)
  [ ${#rounds[@]} -gt 0 ] || continue            # encoders/seed<k>: not a chain
  # finished: every round of the schedule evaluated (a chain killed before its later rounds
  # began has fewer round folders than budgets)
  finished=$([ ${#rounds[@]} -eq "$BUDGETS" ] && echo 1 || echo 0)
  for round in "${rounds[@]}"; do [ -e "$round.done/evaluate.json" ] || finished=0; done
  if [ "$finished" = 1 ]; then PATHS+=("$name"); kept=$((kept + 1)); else left=$((left + 1)); fi
done
mkdir -p "$DEST"
tar -C "$RUN" --exclude=model --exclude='.model.partial' --exclude='*.pt' --exclude='*.png' --exclude='*.zarr' -cf - "${PATHS[@]}" |
  tar -C "$DEST" -xf -
echo "records of $kept finished chains of $RUN in $DEST ($left unfinished left out)" >&2
