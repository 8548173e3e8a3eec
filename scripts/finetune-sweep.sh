#!/usr/bin/env bash
# How fer finetune's defaults were chosen (docs/results.md, "Learning from corrections"): each
# setting fine-tunes PARENT on the same corrections and is judged on validation data only, never
# on the test split:
# - the new domain: camera --camera-seed 2 (not camera 1, which the experiment reports on), its
#   corrections and its validation faces drawn, disjoint, from the training split;
# - what is forgotten: the parent's own validation hold-out (fer eval --split val).
#
#   scripts/finetune-sweep.sh PARENT.facet [OUT_DIR]
#
# Environment: FER (default build/release/fer), DATA (default data/fer2013), K (corrections,
# default 500), THREADS (default 0: all cores), SETTINGS (one setting per line, as fer finetune
# options, whose defaults apply otherwise: a soup of --runs 3 unless a setting says --runs 1; the
# default list is below), CONTROL=1 (the corrections are the training faces
# unchanged, not camera 2's: what fine-tuning costs the old faces when there is nothing new to
# learn).
set -euo pipefail
cd "$(dirname "$0")/.."
parent="${1:?usage: scripts/finetune-sweep.sh PARENT.facet [OUT_DIR]}"
out="${2:-runs/finetune-sweep}"
fer="${FER:-build/release/fer}"
data="${DATA:-data/fer2013}"
k="${K:-500}"
threads="${THREADS:-0}"
settings="${SETTINGS:-
--lr 0.0003
--lr 0.001
--lr 0.0003 --epochs 16
--lr 0.001 --epochs 16
--lr 0.0003 --rehearsal 1
--lr 0.001 --rehearsal 5
--lr 0.0003 --epochs 16 --rehearsal 1
--lr 0.0006 --epochs 16
--lr 0.0006}"
mkdir -p "$out"

rm -rf "$out/corrections" "$out/domain-val"
control=()
[[ "${CONTROL:-0}" == 1 ]] && control=(--no-camera)
"$fer" shift --data "$data" --split train --count "$k" --camera-seed 2 "${control[@]}" \
  --out "$out/corrections"
"$fer" shift --data "$data" --split train --count 2000 --skip "$k" --camera-seed 2 \
  --out "$out/domain-val"

accuracies() {  # accuracies MODEL DATA [--split NAME] -> "parent_percent model_percent"
  local model="$1" on="$2"
  shift 2
  "$fer" eval --compare "$parent" "$model" --data "$on" "$@" --threads "$threads" --json |
    jq -r '"\((.old.accuracy * 10000 | round) / 100) \((.new.accuracy * 10000 | round) / 100)"'
}

echo "| setting | camera-2 validation faces % | parent's validation split % |"
echo "|---|---:|---:|"
n=0
while read -r setting; do
  [[ -z "$setting" ]] && continue
  n=$((n + 1))
  # shellcheck disable=SC2086
  "$fer" finetune --model "$parent" --corrections "$out/corrections" --data "$data" \
    --out "$out/model-$n.facet" --threads "$threads" $setting > "$out/finetune-$n.log"
  read -r domain_before domain_after < <(accuracies "$out/model-$n.facet" "$out/domain-val")
  read -r val_before val_after < <(accuracies "$out/model-$n.facet" "$data" --split val)
  [[ $n -eq 1 ]] && echo "| parent | $domain_before | $val_before |"
  echo "| \`$setting\` | $domain_after | $val_after |"
done <<< "$settings"
