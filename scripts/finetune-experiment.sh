#!/usr/bin/env bash
# The experiment behind docs/results.md's "Learning from corrections": how much fer finetune
# gains on faces from another camera, and what it costs on FER-2013's test split.
#
#   scripts/finetune-experiment.sh PARENT.facet [OUT_DIR]
#
# 1. The new domain: fer shift turns faces into what camera --camera-seed (default 1) would see
#    (examples/fer/domain_shift.hpp). Its held-out faces are the whole test split, shifted; they
#    and the test split are only evaluated, never used to choose anything.
# 2. For K = 50, 200, 1000: K shifted faces of the training split (one seeded random order, so
#    the smaller sets are part of the larger ones) become a corrections folder, and fer finetune
#    adapts PARENT to them with its defaults (3 rehearsal faces of the training split per
#    correction, the mean of the weights of epochs 4 to 8, every correction trained on, the
#    mean of three such runs).
# 3. Each model is compared with the parent (fer eval --compare) on the shifted test faces and
#    on the test split; the table is printed in Markdown.
#
# Environment: FER (the fer program, default build/release/fer), DATA (default data/fer2013),
# CAMERA (default 1), KS (default "50 200 1000"), THREADS (default 0: all cores), FINETUNE_ARGS
# (extra fer finetune options) and FINETUNE_ARGS_<K> (instead of FINETUNE_ARGS for that K). Each
# comparison is also kept as JSON (OUT_DIR/compare-<K>-domain.json, compare-<K>-test.json).
set -euo pipefail
cd "$(dirname "$0")/.."
parent="${1:?usage: scripts/finetune-experiment.sh PARENT.facet [OUT_DIR]}"
out="${2:-runs/finetune-experiment}"
fer="${FER:-build/release/fer}"
data="${DATA:-data/fer2013}"
camera="${CAMERA:-1}"
threads="${THREADS:-0}"
mkdir -p "$out"

# fer eval --compare gives the parent's and the fine-tuned model's accuracy in one pass.
compare() {  # compare MODEL DATA JSON_FILE [SPLIT] -> "parent_percent model_percent"
  local split=()
  [[ $# -gt 3 ]] && split=(--split "$4")
  "$fer" eval --compare "$parent" "$1" --data "$2" "${split[@]}" --threads "$threads" --json |
    tee "$3" | jq -r '"\((.old.accuracy * 10000 | round) / 100) \((.new.accuracy * 10000 | round) / 100)"'
}

rm -rf "$out/domain-test"
"$fer" shift --data "$data" --split test --camera-seed "$camera" --out "$out/domain-test"

rows=()
for k in ${KS:-50 200 1000}; do
  rm -rf "$out/corrections-$k"
  "$fer" shift --data "$data" --split train --count "$k" --camera-seed "$camera" \
    --out "$out/corrections-$k"
  start=$(date +%s)
  extra_name="FINETUNE_ARGS_$k"
  extra="${!extra_name:-${FINETUNE_ARGS:-}}"
  # shellcheck disable=SC2086
  "$fer" finetune --model "$parent" --corrections "$out/corrections-$k" --data "$data" \
    --out "$out/model-$k.facet" --threads "$threads" $extra | tee "$out/finetune-$k.log"
  seconds=$(($(date +%s) - start))
  read -r domain_before domain_after < <(compare "$out/model-$k.facet" "$out/domain-test" \
    "$out/compare-$k-domain.json")
  read -r test_before test_after < <(compare "$out/model-$k.facet" "$data" \
    "$out/compare-$k-test.json" test)
  [[ ${#rows[@]} -eq 0 ]] && rows+=("| parent | - | $domain_before | $test_before | - |")
  rows+=("| fine-tuned | $k | $domain_after | $test_after | $seconds |")
done

echo
echo "| model | corrections K | shifted test faces (camera $camera) % | test split % | fine-tuning s |"
echo "|---|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
