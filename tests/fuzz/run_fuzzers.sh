#!/usr/bin/env bash
# Builds facet's libFuzzer targets in build/fuzz (clang, -fsanitize=fuzzer,address,undefined),
# writes their seed corpus with facet's own writers (make_fuzz_corpus) and runs each fuzzer for
# SECONDS (default 60), one after the other. Fails on any crash, leak, timeout, out-of-memory or
# sanitizer report; the input that caused it is kept in build/fuzz/artifacts/<target>/.
# Usage: tests/fuzz/run_fuzzers.sh [SECONDS]      (docs/reliability.md, "Fuzzing")
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
bash scripts/install-deps.sh clang libclang-rt-14-dev
dir=build/fuzz
mkdir -p "$dir"
cmake -S . -B "$dir" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DFACET_BUILD_FUZZERS=ON -DFACET_BUILD_TESTS=OFF -DFACET_BUILD_EXAMPLES=OFF \
      -DFACET_WITH_OPENMP=OFF > "$dir/configure.log" 2>&1 || { cat "$dir/configure.log"; exit 1; }
nice -n 19 cmake --build "$dir" -j2
rm -rf "$dir/seeds"
"$dir/tests/fuzz/make_fuzz_corpus" "$dir/seeds"

# target, corpus kind, largest input tried (the seeds are 0.2-15 KB; a FER CSV row is 4.6-9 KB)
targets=("fuzz_csv_dataset csv 65536" "fuzz_image image 32768" "fuzz_model_file model 16384")
failed=0
mkdir -p "$dir/logs"
for t in "${targets[@]}"; do
  read -r name kind max_len <<<"$t"
  corpus="$dir/corpus/$kind"  # grows from run to run; new inputs are written here
  mkdir -p "$corpus" "$dir/artifacts/$name"
  # Inputs that once failed (tests/fuzz/regressions/<kind>/) run first, every time.
  regressions=()
  [ -d "tests/fuzz/regressions/$kind" ] && regressions=("tests/fuzz/regressions/$kind")
  log="$dir/logs/$name.log"
  if nice -n 19 "$dir/tests/fuzz/$name" -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 \
       -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$dir/artifacts/$name/" \
       "$corpus" "$dir/seeds/$kind" "${regressions[@]}" > "$log" 2>&1; then
    echo "$name: no crash in ${seconds} s: $(grep -E '^#[0-9]+' "$log" | tail -1)"
  else
    echo "$name: FAILED (log: $log)"
    grep -E -A30 'ERROR|runtime error|deadly signal|out-of-memory|timeout' "$log" | head -60
    failed=1
  fi
done
exit "$failed"
