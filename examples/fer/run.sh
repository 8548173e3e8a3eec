#!/usr/bin/env bash
# The main job of the README: installs what it needs, builds fer (Release), trains the default
# recipe, evaluates the best model and writes the HTML report.
#   data: data/fer2013 (folder or symlink) or data/fer2013.csv when present, otherwise the built-in
#         synthetic cartoon faces (labelled as such in every output). For a copy elsewhere, link it
#         (ln -s /path/to/fer2013 data/fer2013): train, eval and report all read it there.
#   Extra arguments go to `fer train` (e.g. --epochs 5).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/install-deps.sh
mkdir -p build
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DFACET_BUILD_TESTS=OFF -DFACET_BUILD_EXAMPLES=ON \
      > build/release.configure.log 2>&1 || { cat build/release.configure.log; exit 1; }
cmake --build build/release --target fer -j"$(nproc)"
fer=build/release/fer
out=runs/default
$fer train --out "$out" "$@"
$fer eval --model "$out/model.facet"
$fer report --run "$out" -o "$out/report.html"
echo "model: $out/model.facet   log: $out/log.jsonl   report: $out/report.html"
