# Sourced by the ACDC scripts (through acdc_data.sh).
# reuse_encoders RUN FULL_RUN: pretraining depends neither on the supervision nor on the
# schedule (GCL's groups and SP-Con's meta-labels come from the volumes, not the masks), so run
# RUN embeds with FULL_RUN's finished encoders (one per seed of $ALL_SEEDS) instead of training
# them again. GCL's: ENCODER becomes --encoder FULL_RUN/encoders/seed{seed} when they are all
# done, or when RUN was begun that way; else it is left as set. A method's own encoders (e.g.
# spcon-coreset's, FULL_RUN/encoders/<method>/seed<k>) are copied seed by seed, done-markers
# included, into a RUN that has not begun that seed's, so the loop finds them done.
reuse_encoders() {
  local run=$1 enc="$2/encoders" ready=1 s own dest
  if [ -e "$run/config.json" ]; then
    grep -q '"encoder": "' "$run/config.json" && ENCODER=(--encoder "$enc/seed{seed}")
  else
    for s in ${ALL_SEEDS//,/ }; do [ -e "$enc/.done/seed$s.json" ] || ready=0; done
    [ "$ready" = 1 ] && ENCODER=(--encoder "$enc/seed{seed}")
  fi
  for own in "$enc"/*/; do
    own=${own%/}; [ -d "$own/.done" ] || continue
    dest="$run/encoders/$(basename "$own")"
    for s in ${ALL_SEEDS//,/ }; do          # seed by seed: a later run may add seeds
      [ -e "$own/.done/seed$s.json" ] || continue
      if [ -e "$dest/seed$s" ] || [ -e "$dest/.done/seed$s.json" ]; then continue; fi
      mkdir -p "$dest/.done"                 # copy, then rename: a killed copy is never taken as done
      rm -rf "$dest/.seed$s.copy" && cp -r "$own/seed$s" "$dest/.seed$s.copy" &&
        mv "$dest/.seed$s.copy" "$dest/seed$s" && cp "$own/.done/seed$s.json" "$dest/.done/"
    done
  done
  return 0
}
