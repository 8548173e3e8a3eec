#!/usr/bin/env bash
# The test command of the README: installs what it needs, builds (Release) and runs the suite.
# With FACET_SANITIZE=address,undefined (or thread) in the environment, builds a separate
# sanitizer tree instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# Chromium renders the report, Doxygen checks the API comments; those tests skip without them.
bash scripts/install-deps.sh chromium doxygen || echo "chromium/doxygen not installed: the report render and Doxygen tests will be skipped"
san="${FACET_SANITIZE:-}"
mkdir -p build
dir=build/tests${san:+-${san//,/-}}
type=Release
[ -n "$san" ] && type=RelWithDebInfo
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" -DFACET_BUILD_TESTS=ON -DFACET_BUILD_EXAMPLES=ON \
      -DFACET_SANITIZE="$san" > "$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; exit 1; }
cmake --build "$dir" -j"$(nproc)"
ctest --test-dir "$dir" -j"$(nproc)" --output-on-failure --timeout 900
