#!/usr/bin/env bash
# Data-parallel training throughput on one machine (docs/distributed.md). Each round runs
# fer train three ways, one after another: 1 process of 1 thread; `mpirun -np 2` with 1 thread
# per process; and 2 independent 1-thread runs at once, without MPI (the machine's own ceiling
# for two processes). Prints every round's training images/s (fer's own figure for each epoch,
# averaged over the epochs), wall time and the test accuracy after the last epoch (reported only,
# to show both ways learn alike), then the medians over the rounds and their ratios.
#
#   bench/distributed.sh FER DATA [ROUNDS] [EPOCHS] [PER_CLASS]
#   bench/distributed.sh build/release/fer data/fer2013 3 1 500
#   bench/distributed.sh build/release/fer - 1 1 8      # DATA "-": fer's synthetic faces (a quick check)
#
# Run it on an otherwise idle machine: every figure shares the cores with whatever else runs,
# and the rounds alternate so that a slow spell of the machine slows all three alike.
set -euo pipefail
fer=$(realpath "$1")
data=$2
rounds=${3:-3}
epochs=${4:-1}
per_class=${5:-500}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
data_args=()
[ "$data" != - ] && data_args=(--data "$(realpath "$data")")
cd "$work"  # no data/fer2013 here: with DATA "-", fer trains on its synthetic faces
args=(train "${data_args[@]}" --epochs "$epochs" --max-per-class "$per_class"
      --max-val-per-class 100 --threads 1 --checkpoint-every 0)
mpirun=(mpirun -np 2 -x OMP_NUM_THREADS)
[ "$(id -u)" = 0 ] && mpirun+=(--allow-run-as-root)

calc() { awk "BEGIN {printf \"%.4f\", $1}"; }
rate() {  # the mean over the epochs of the images/s a run printed
    tr '\r' '\n' < "$1" | sed -n 's/.* - \([0-9.]*\) images\/s .*/\1/p' |
        awk '{s += $1} END {if (NR) printf "%.1f", s / NR; else exit 1}'
}
timed() {  # timed OUT COMMAND...: runs COMMAND; its output, then its wall time, go to OUT
    local out=$1 start
    shift
    start=$(date +%s.%N)
    "$@" > "$out" 2>&1 || { cat "$out"; echo "FAILED: $*" >&2; exit 1; }
    echo "wall $(calc "$(date +%s.%N) - $start")" >> "$out"
}
wall() { sed -n 's/^wall \([0-9.]*\)$/\1/p' "$1"; }
accuracy() {  # the test accuracy after the last epoch, in %, as the run reported it
    sed -n 's/^test accuracy (.*, \([0-9.]*\) after the last epoch.*/\1/p' "$1" |
        awk '{printf "%.2f", 100 * $1} END {if (!NR) printf "-"}'
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "fer train: $epochs epoch(s) of at most $per_class images per class, global batch 64," \
     "1 thread per process, $rounds rounds"
printf '| round | 1 process: images/s | wall s | test %% | mpirun -np 2: images/s | wall s | test %% | 2 independent runs: images/s |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---:|\n'
one_rates="" one_walls="" mpi_rates="" mpi_walls="" pair_rates=""
for round in $(seq 1 "$rounds"); do
    timed "$work/one" "$fer" "${args[@]}" --out "$work/one.d"
    timed "$work/mpi" "${mpirun[@]}" "$fer" "${args[@]}" --out "$work/mpi.d"
    grep -q '(identical)' "$work/mpi" || { cat "$work/mpi"; echo "the processes' weights differ" >&2; exit 1; }
    timed "$work/a" "$fer" "${args[@]}" --out "$work/a.d" &
    timed "$work/b" "$fer" "${args[@]}" --out "$work/b.d"
    wait
    pair=$(calc "$(rate "$work/a") + $(rate "$work/b")")
    printf '| %d | %s | %.1f | %s | %s | %.1f | %s | %.1f |\n' "$round" "$(rate "$work/one")" \
        "$(wall "$work/one")" "$(accuracy "$work/one")" "$(rate "$work/mpi")" "$(wall "$work/mpi")" \
        "$(accuracy "$work/mpi")" "$pair"
    one_rates+=" $(rate "$work/one")" one_walls+=" $(wall "$work/one")"
    mpi_rates+=" $(rate "$work/mpi")" mpi_walls+=" $(wall "$work/mpi")" pair_rates+=" $pair"
done
one=$(echo "$one_rates" | median) two=$(echo "$mpi_rates" | median) pair=$(echo "$pair_rates" | median)
one_wall=$(echo "$one_walls" | median) two_wall=$(echo "$mpi_walls" | median)
printf '| median | %.1f | %.1f | | %.1f | %.1f | | %.1f |\n' "$one" "$one_wall" "$two" "$two_wall" "$pair"
printf '\nmpirun -np 2 against 1 process: %.2fx the images/s, %.2fx in wall time;' \
    "$(calc "$two / $one")" "$(calc "$one_wall / $two_wall")"
printf ' 2 independent runs: %.2fx\n' "$(calc "$pair / $one")"
