# Sourced by the ACDC scripts (through acdc_data.sh).
# existing_runs DIR...: the comma list of those directories that exist, for `alseg loop
# --reuse-encoders` and `--reuse-models`: an encoder that another run finished with the same
# settings and seed (GCL's, an ablation variant's, SP-Con's; pretraining depends neither on the
# supervision nor on the rounds), and a round's model that another run trained with the same
# call (labelled slices, seed, schedule, recipe, threads), are linked instead of trained again.
existing_runs() {
  local out="" dir
  for dir in "$@"; do [ -d "$dir" ] && out="${out:+$out,}$dir"; done
  echo "$out"
}
