#!/usr/bin/env bash
# The recipe ingredients of docs/results.md, each alone against the default recipe, judged on the
# validation split only (the 10 % of Training that fer train holds out; the test split chooses
# nothing):
#
#   scripts/recipe-ablation.sh [OUT_DIR]
#
# Every setting trains fer-cnn-s for $EPOCHS epochs (default 12) of the default recipe plus its
# own flags, seed 1, $THREADS threads each (default 1), $JOBS runs at a time (default 2). Then it
# prints each run's best and last validation accuracy, and evaluates the random-crop model through
# crops. Environment: FER (default build/release/fer), DATA (default data/fer2013), SETTINGS (one
# "name: flags" per line; the default list is below), TEACHER (the model distilled by the
# distillation setting, trained on the same data; default the 30-epoch model shipped until
# d215a42, taken from git) and TEACHER2 (the distillation-ensemble setting's other member with
# TEACHER; default models/fer.facet).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/recipe-ablation}"
mkdir -p "$out"
if [ -z "${TEACHER:-}" ]; then
  git show d215a42:models/fer.facet >"$out/teacher-30-epochs.facet"
  TEACHER="$out/teacher-30-epochs.facet"
fi
fer="${FER:-build/release/fer}"
data="${DATA:-data/fer2013}"
epochs="${EPOCHS:-12}"
threads="${THREADS:-1}"
jobs="${JOBS:-2}"
teacher="$TEACHER"
teacher2="${TEACHER2:-models/fer.facet}"
settings="${SETTINGS:-
base:
nesterov: --optimizer nesterov --lr 0.01 --weight-decay 0.0005 --schedule plateau --plateau-patience 2
crop: --crop 40:44
erase: --erase 0.5
mixup: --mixup 0.2
cutmix: --cutmix 1
nosmooth: --label-smoothing 0
distill: --teacher $teacher --distill 0.5
distill-ensemble: --teacher $teacher --teacher $teacher2 --distill 0.5}"

run() {  # run NAME FLAGS...
  local name="$1"
  shift
  "$fer" train --data "$data" --epochs "$epochs" --threads "$threads" --out "$out/$name" "$@" \
    >"$out/$name.log" 2>&1 || echo "$name failed: see $out/$name.log"
}
while IFS= read -r line; do
  [ -z "$line" ] && continue
  name="${line%%:*}"
  read -r -a flags <<<"${line#*:}"
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 5; done
  run "$name" "${flags[@]}" &
done <<<"$settings"
wait

/usr/bin/python3 - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
for name in sorted(os.listdir(out)):
    log = os.path.join(out, name, "log.jsonl")
    if not os.path.exists(log):
        continue
    epochs = [json.loads(l) for l in open(log) if l.strip()]
    epochs = [e for e in epochs if "val_acc" in e and "epoch" in e]
    if not epochs:
        continue
    best = max(epochs, key=lambda e: e["val_acc"])
    print(f"{name:10s} best validation {100 * best['val_acc']:.2f} % (epoch {best['epoch']}), "
          f"last {100 * epochs[-1]['val_acc']:.2f} %, "
          f"{sum(e['seconds'] for e in epochs) / 60:.0f} min")
EOF
if [ -f "$out/crop/model.facet" ]; then
  for view in "--center-crop 42" "--ten-crop 42"; do
    # shellcheck disable=SC2086
    echo "crop, $view: $("$fer" eval --model "$out/crop/model.facet" --data "$data" --split val \
      $view --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["accuracy"])')"
  done
fi
