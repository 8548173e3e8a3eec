#!/usr/bin/env bash
# `mpirun -np 2 fer train` on the synthetic faces (docs/distributed.md):
#  1. both processes end with the same weights (fer prints the CRC-32 of each one's);
#  2. a second run gives the same bytes: model.facet, checkpoint.facet and the weights;
#  3. a run stopped inside an epoch (--max-steps) and continued with --resume ends with the
#     uninterrupted run's weights;
#  4. only rank 0 wrote files: one log, whose epochs are the run's.
# usage: mpi_fer_train.sh FER WORKDIR MPIRUN [MPIRUN OPTIONS...]
set -euo pipefail
fer=$(realpath "$1")
work=$2
shift 2
mpirun=("$@")
rm -rf "$work"
mkdir -p "$work"
cd "$work"  # no data/fer2013 here: fer uses its built-in synthetic faces

# 7 classes x 8 images, global batch 8 (4 a process): 7 steps an epoch, 14 in all.
args=(train --epochs 2 --batch 8 --threads 1 --seed 5 --max-per-class 8 --max-val-per-class 4
      --checkpoint-every 0)

fail() {
    echo "FAIL: $*"
    exit 1
}

run() {  # run NAME [EXTRA FLAGS...]: trains into NAME/, output in NAME.txt
    local name=$1
    shift
    "${mpirun[@]}" "$fer" "${args[@]}" --out "$name" "$@" > "$name.txt" 2>&1 ||
        { cat "$name.txt"; fail "$name: mpirun -np 2 fer train failed"; }
}
weights() {  # the CRC-32 line of a run, checked to show 2 identical processes
    local line
    line=$(grep '^weights on the 2 processes: crc32 ' "$1.txt") ||
        { cat "$1.txt"; fail "$1: no line with the processes' weights"; }
    [[ "$line" == *"(identical)" ]] || fail "$1: $line"
    echo "${line#weights on the 2 processes: crc32 }"
}

run first
grep -q '^data-parallel: 2 processes' first.txt || { cat first.txt; fail "first: not data-parallel"; }
echo "first run: weights $(weights first)"
# The test split is evaluated in shards (one per process) whose totals rank 0 reports.
grep -q '^test accuracy (28 images, ' first.txt || { cat first.txt; fail "first: no test report over all 28 images"; }

run second
[ "$(weights second)" = "$(weights first)" ] || fail "second run: other weights than the first"
cmp first/model.facet second/model.facet || fail "model.facet differs between two runs"
cmp first/checkpoint.facet second/checkpoint.facet || fail "checkpoint.facet differs between two runs"
echo "second run: same weights, same model.facet and checkpoint.facet"

run stopped --max-steps 10  # inside epoch 2
grep -q 'reached --max-steps at step 10' stopped.txt || { cat stopped.txt; fail "stopped: no mid-epoch stop"; }
run stopped --resume
grep -q '^resumed from .* step 10' stopped.txt || { cat stopped.txt; fail "stopped: did not resume at step 10"; }
[ "$(weights stopped)" = "$(weights first)" ] || fail "resumed run: other weights than the uninterrupted run"
echo "stopped at step 10 and resumed: the uninterrupted run's weights"

epochs=$(grep -c '^{"epoch":' first/log.jsonl || true)
[ "$epochs" = 2 ] || { cat first/log.jsonl; fail "first/log.jsonl holds $epochs epoch records, not 2"; }
[ "$(ls first)" = "$(printf 'checkpoint.facet\nlog.jsonl\nmodel.facet')" ] || fail "unexpected files: $(ls first)"
echo "PASS"
