#!/usr/bin/env bash
# Crash-safe training, tested on the real program (docs/reliability.md, "Crash-safe training"):
#  1. an uninterrupted `fer train` run: the reference bytes;
#  2. the same run killed with SIGKILL again and again, half of the kills at random moments and
#     half the moment a checkpoint's temporary file appears (so during the checkpoint write), and
#     continued each time with --resume: every resume must start from an intact checkpoint (load
#     verifies size and CRC-32 and refuses NaN) at a step where one was written, and the end must
#     be the reference's model.facet and checkpoint.facet, byte for byte;
#  3. SIGINT: the run stops after its current step with status 130 and a checkpoint that --resume
#     finishes into the same bytes;
#  4. divergence: an absurd learning rate ends with one "non-finite ..." error line naming the step
#     and the layer, and leaves model.facet and checkpoint.facet as they were.
# usage: crash_resume.sh FER WORKDIR [KILLS]       (CRASH_SEED=N repeats a run's kill moments)
set -euo pipefail
fer=$(realpath "$1")
work=$2
kills=${3:-6}
seed=${CRASH_SEED:-$$}
RANDOM=$seed
echo "kill moments drawn with CRASH_SEED=$seed"
rm -rf "$work"
mkdir -p "$work"
cd "$work"  # no data/fer2013 here: fer uses its built-in synthetic faces

# 3 epochs of 11 steps (42 images, batch 4), a checkpoint every 2 steps and at each epoch's end:
# long enough that 6 kills, each letting the run get at most about 6 steps further, cannot reach
# the end.
every=2
steps_per_epoch=11
args=(train --epochs 3 --batch 4 --threads 2 --seed 11 --max-per-class 6 --max-val-per-class 4
      --checkpoint-every "$every")

fail() {
    echo "FAIL: $*"
    exit 1
}

# A sleep without a process per call: read times out on a pipe nobody writes to.
exec 9<> <(:)
nap() { read -r -t "$1" -u 9 || true; }

# Progress lines (one per step) a run has printed so far; 0 before its first.
steps_printed() {
    local n
    n=$(grep -c "^ *[0-9]*/$steps_per_epoch \[" "$1" 2> /dev/null) || true
    echo "${n:-0}"
}

"$fer" "${args[@]}" --out straight > straight.txt 2>&1 || { cat straight.txt; fail "uninterrupted run"; }
echo "uninterrupted run: $(grep -c '^Epoch' straight.txt) epochs"

# --- 2. SIGKILL at random moments and during checkpoint writes, then --resume -----------------
out=killed
mid_write=0
last_resumed=-1
for ((k = 1; k <= kills; ++k)); do
    resume=()
    [ -f "$out/checkpoint.facet" ] && resume=(--resume)
    # The file exists before the run starts: the background shell may open it only later.
    : > "run$k.txt"
    "$fer" "${args[@]}" --out "$out" "${resume[@]}" > "run$k.txt" 2>&1 &
    pid=$!
    if ((${#resume[@]})); then
        # The resume has loaded (and so verified) the checkpoint once it says where it stands.
        while kill -0 "$pid" 2> /dev/null && ! grep -q '^resumed from' "run$k.txt"; do nap 0.01; done
        line=$(grep '^resumed from' "run$k.txt") || { cat "run$k.txt"; fail "resume $k did not start"; }
        step=${line##*step }
        # Checkpoints are written every $every steps and at epoch ends: nowhere else.
        ((step % every == 0 || step % steps_per_epoch == 0)) || fail "resumed at step $step"
        ((step >= last_resumed)) || fail "resumed at step $step, before the previous $last_resumed"
        last_resumed=$step
        echo "run $k: $line"
    else
        echo "run $k: no checkpoint yet, starting afresh"
    fi
    if ((k % 2 == 0)); then
        # Let this run write a checkpoint of its own first (else it would never get further),
        # then kill it the moment the next checkpoint's temporary file appears: mid-write.
        while kill -0 "$pid" 2> /dev/null && (($(steps_printed "run$k.txt") < every + 1)); do
            nap 0.005
        done
        while kill -0 "$pid" 2> /dev/null; do
            if compgen -G "$out/checkpoint.facet.tmp.*" > /dev/null; then
                kill -KILL "$pid"
                break
            fi
            nap 0.001
        done
        how="during a checkpoint write"
    else
        # A random moment: after 1 to 4 steps (the progress line is printed after each
        # step), then 0 to 0.3 s into whatever comes next (a step, a write, validation).
        target=$((RANDOM % 4 + 1))
        while kill -0 "$pid" 2> /dev/null && (($(steps_printed "run$k.txt") < target)); do
            nap 0.005
        done
        nap "0.$(printf %03d $((RANDOM % 300)))"
        kill -KILL "$pid" 2> /dev/null || true
        how="at a random moment"
    fi
    status=0
    wait "$pid" 2> /dev/null || status=$?  # (no "Killed" notice from the shell)
    if ((status == 0 && k > 5)); then  # only with many KILLS: the run got to its end first
        echo "run $k: finished before its kill; stopping after $((k - 1)) kills"
        kills=$((k - 1))
        break
    fi
    ((status == 137)) || { cat "run$k.txt"; fail "run $k ended with status $status before the kill"; }
    left=$(compgen -G "$out/*.tmp.*" || true)
    if [ -n "$left" ]; then
        ((++mid_write))
        how="$how (left $(basename $left): the write was cut short)"
    fi
    echo "run $k: SIGKILL $how"
done
((mid_write >= 1)) || fail "no kill landed inside a write (all $kills were before or after one)"

"$fer" "${args[@]}" --out "$out" --resume > final.txt 2>&1 || { cat final.txt; fail "final resume"; }
grep '^resumed from\|^removed' final.txt
for f in model.facet checkpoint.facet; do
    cmp "straight/$f" "$out/$f" || fail "$f differs from the uninterrupted run's"
done
[ -z "$(compgen -G "$out/*.tmp.*" || true)" ] || fail "temporary files left behind"
[ "$(grep -c '^{"epoch":' "$out/log.jsonl")" -eq 3 ] || fail "log.jsonl should have 3 epoch records"
echo "after $kills kills ($mid_write inside a write): model.facet and checkpoint.facet are the uninterrupted run's, byte for byte"

# --- 3. SIGINT: stop after the current step, save, status 130; --resume finishes the run ----------
: > sigint.txt
"$fer" "${args[@]}" --out sigint > sigint.txt 2>&1 &
pid=$!
while kill -0 "$pid" 2> /dev/null && ! grep -q '^Epoch 2/' sigint.txt; do nap 0.01; done
kill -INT "$pid"
status=0
wait "$pid" || status=$?
((status == 130)) || { cat sigint.txt; fail "SIGINT: status $status, expected 130"; }
grep -q 'interrupted .*checkpoint saved' sigint.txt || { cat sigint.txt; fail "SIGINT: no 'checkpoint saved'"; }
grep 'interrupted' sigint.txt
"$fer" "${args[@]}" --out sigint --resume > sigint_resume.txt 2>&1 || { cat sigint_resume.txt; fail "resume after SIGINT"; }
cmp straight/model.facet sigint/model.facet || fail "SIGINT: the resumed model differs"
echo "SIGINT: status 130, checkpoint saved, resumed to the same model.facet"

# --- 4. divergence: one error line naming step and layer; the files keep their bytes ------------
cp -r straight diverge
status=0
"$fer" "${args[@]}" --out diverge --optimizer sgd --lr 1e6 --schedule constant --checkpoint-every 0 \
    > diverge.txt 2> diverge.err || status=$?
((status == 1)) || { cat diverge.txt diverge.err; fail "divergence: status $status, expected 1"; }
[ "$(wc -l < diverge.err)" -eq 1 ] || { cat diverge.err; fail "divergence: not one error line"; }
grep -Eq '^fer: error: non-finite (loss|gradient) .*at step [0-9]+: .*layer [0-9]+ ' diverge.err ||
    { cat diverge.err; fail "divergence: the message does not name the step and the layer"; }
cat diverge.err
for f in model.facet checkpoint.facet; do
    cmp "straight/$f" "diverge/$f" || fail "divergence: $f was overwritten"
done
echo "divergence: stopped with that message; model.facet and checkpoint.facet unchanged"
echo "PASS"
