#!/usr/bin/env bash
# Prints one table of docs/benchmarks.md as markdown, measured on this machine now:
#   bash scripts/bench_tables.sh TOPIC [--rounds N] [--dry-run]
# TOPIC: machine, gemm, convstack, layers, pytorch, threads or memory (bench/bench_tables.py
# says what each measures). Installs the Debian packages the topic needs, builds what it runs
# (Release, in build/bench and build/bench-native) and prints the table on stdout; build output
# goes to stderr. --dry-run prints the header line and the commands without building or running.
# Run on a quiet machine: other work on the cores shows in every figure.
set -euo pipefail
cd "$(dirname "$0")/.."
topic="${1:-}"
packages=(python3)
case "$topic" in
  gemm) packages+=(libopenblas-pthread-dev) ;;                        # OpenBLAS beside facet and Eigen
  convstack | pytorch) packages+=(python3-torch libopenblas0-pthread) ;;  # PyTorch on OpenBLAS, not the reference BLAS
  memory) packages+=(time) ;;
esac
if [[ " $* " != *" --dry-run "* ]]; then
  bash scripts/install-deps.sh "${packages[@]}" >&2
fi
exec python3 bench/bench_tables.py "$@"
