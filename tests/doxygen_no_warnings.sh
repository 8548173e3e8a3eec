#!/usr/bin/env bash
# Builds the HTML API reference with docs/Doxyfile and fails on any Doxygen warning.
# Usage: doxygen_no_warnings.sh SOURCE_DIR OUTPUT_DIR. Prints SKIP and exits 0 without doxygen.
set -euo pipefail
source_dir=$1 out=$2
if ! command -v doxygen > /dev/null; then
  echo "SKIP: doxygen is not installed (Debian: apt-get install doxygen)"
  exit 0
fi
rm -rf "$out" && mkdir -p "$out"
cd "$source_dir/docs"
# WARN_AS_ERROR=FAIL_ON_WARNINGS reports every warning, then exits non-zero.
status=0
(cat Doxyfile; echo "OUTPUT_DIRECTORY=$out"; echo "WARN_AS_ERROR=FAIL_ON_WARNINGS"; echo "WARN_LOGFILE=$out/warnings.log") | doxygen - || status=$?
if [ "$status" -ne 0 ] || [ -s "$out/warnings.log" ]; then
  echo "Doxygen warnings:"
  cat "$out/warnings.log"
  exit 1
fi
test -f "$out/html/index.html"
echo "doxygen: no warnings, $out/html/index.html"
