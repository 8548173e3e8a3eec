#!/usr/bin/env bash
# The test command of the README: installs what it needs, builds (Release) and runs the suite.
# With FACET_SANITIZE=address,undefined (or thread) in the environment, builds a separate
# sanitizer tree instead. FACET_SANITIZE=thread builds with clang and libomp (whose OpenMP tool,
# archer, makes ThreadSanitizer understand OpenMP) and runs only the tests labelled "threaded".
# Optional: FACET_CTEST_LABEL=LABEL runs only the tests with that label; FACET_BUILD_DIR=DIR
# builds in DIR instead of build/tests[-<sanitizers>].
# FER-2013: the tests that read the real data set (test_data_fer2013, test_fer_fer2013) use
# data/fer2013 when it is there (a folder or a symlink to the image-folder release, train/ and
# test/), or the folder named by FER2013_DIR=DIR; without either, ctest reports them "Skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# Chromium renders the report, Doxygen checks the API comments; those tests skip without them.
bash scripts/install-deps.sh chromium doxygen || echo "chromium/doxygen not installed: the report render and Doxygen tests will be skipped"
# Real photographs for the face tests (skimage's astronaut, OpenCV's samples, matplotlib's portrait of Grace
# Hopper); skipped without them.
bash scripts/install-deps.sh python3-skimage opencv-doc python-matplotlib-data || echo "python3-skimage/opencv-doc/python-matplotlib-data not installed: the real-photo face tests will be skipped"
san="${FACET_SANITIZE:-}"
label="${FACET_CTEST_LABEL:-}"
compiler=()
if [[ "$san" == *thread* ]]; then
  # GCC's libgomp is not built for TSan and makes it report races inside OpenMP that are not there.
  bash scripts/install-deps.sh clang-14 libomp-14-dev libclang-rt-14-dev
  compiler=(-DCMAKE_CXX_COMPILER=clang++-14)
  label="${label:-threaded}"
fi
mkdir -p build
dir="${FACET_BUILD_DIR:-build/tests${san:+-${san//,/-}}}"
type=Release
examples=ON
if [ -n "$san" ]; then
  type=RelWithDebInfo
  # The fer program and the doc examples are built and run by the Release pass; under the
  # sanitizers fer's code runs in-process in test_fer, test_finetune and test_onnx, and leaving the
  # programs (and test_faces / test_video, which need fer) out keeps CI inside its time budget.
  examples=OFF
fi
# Sanitizer trees keep line tables only (-g1): reports name file and line, and the build is faster.
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DFACET_BUILD_TESTS=ON -DFACET_BUILD_EXAMPLES="$examples" \
      -DFACET_SANITIZE="$san" "${compiler[@]}" > "$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; exit 1; }
targets=()
[ "$label" = threaded ] && targets=(--target threaded_tests)  # build only what that pass runs
cmake --build "$dir" -j"$(nproc)" "${targets[@]}"
# Sanitizer passes leave out the tests labelled release_only (tests/CMakeLists.txt says which).
exclude=()
[ -n "$san" ] && exclude=(-LE '^release_only$')
ctest --test-dir "$dir" -j"$(nproc)" --output-on-failure --timeout 900 ${label:+-L "^${label}\$"} "${exclude[@]}"
