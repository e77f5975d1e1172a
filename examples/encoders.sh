# Sourced by the ACDC scripts (through acdc_data.sh).
# reuse_encoders RUN FULL_RUN: pretraining depends neither on the supervision nor on the
# schedule (GCL's groups and SP-Con's meta-labels come from the volumes, not the masks), so run
# RUN embeds with FULL_RUN's finished encoders (one per seed of $ALL_SEEDS) instead of training
# them again. GCL's: ENCODER becomes --encoder FULL_RUN/encoders/seed{seed} when they are all
# done, or when RUN was begun that way; else it is left as set. A method's own encoders (e.g.
# spcon-coreset's, FULL_RUN/encoders/<method>/) are copied, done-markers included, into a RUN
# that has none yet, so the loop finds them done.
reuse_encoders() {
  local run=$1 enc="$2/encoders" ready=1 s own
  if [ -e "$run/config.json" ]; then
    grep -q '"encoder": "' "$run/config.json" && ENCODER=(--encoder "$enc/seed{seed}")
  else
    for s in ${ALL_SEEDS//,/ }; do [ -e "$enc/.done/seed$s.json" ] || ready=0; done
    [ "$ready" = 1 ] && ENCODER=(--encoder "$enc/seed{seed}")
  fi
  for own in "$enc"/*/; do
    own=${own%/}; [ -d "$own/.done" ] || continue
    [ -e "$run/encoders/$(basename "$own")" ] && continue
    ready=1
    for s in ${ALL_SEEDS//,/ }; do [ -e "$own/.done/seed$s.json" ] || ready=0; done
    [ "$ready" = 1 ] && mkdir -p "$run/encoders" && cp -r "$own" "$run/encoders/"
  done
  return 0
}
