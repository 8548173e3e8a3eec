#!/usr/bin/env bash
# Fails when a C++ source or header of the repository differs from what clang-format makes of it
# with the repository's .clang-format (the style every file follows).
# Usage: format_check.sh SOURCE_DIR. Prints SKIP and exits 0 without clang-format.
set -euo pipefail
source_dir=$1
if ! command -v clang-format > /dev/null; then
  echo "SKIP: clang-format is not installed (Debian: apt-get install clang-format)"
  exit 0
fi
cd "$source_dir"
mapfile -t files < <(find include src tests examples bench -type f \( -name '*.hpp' -o -name '*.cpp' -o -name '*.h' \) | sort)
status=0
for f in "${files[@]}"; do
  if ! clang-format --dry-run --Werror "$f" > /dev/null 2>&1; then
    echo "not formatted: $f (clang-format -i $f)"
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "clang-format: ${#files[@]} files follow .clang-format ($(clang-format --version))"
exit "$status"
