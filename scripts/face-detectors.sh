#!/usr/bin/env bash
# Measurements behind docs/faces.md, run through the face tests (test_faces):
#   scripts/face-detectors.sh compare [SCENES]   recall, precision and time per 640x480 scene of
#                                                each detector on composed scenes of FER-2013
#                                                test faces (default 100, seed 11), and what each
#                                                finds on the packaged real photos
#   scripts/face-detectors.sh sweep [SCENES]     each detector's recall and precision over its
#                                                thresholds, on validation scenes (training faces,
#                                                seed 1): how the default thresholds were chosen
#   scripts/face-detectors.sh calibrate [PER_CLASS]   re-derives fer's crop framing
#                                                (examples/fer/face_crop.hpp) from FER-2013's
#                                                training faces (default 150 per class)
# With models/face-verifier.facet (or $FACET_FACE_VERIFIER naming another), compare and sweep also
# measure each detector followed by the face verifier (docs/faces.md, "The face verifier").
# The data set: $FER2013_DIR (a folder with train/<class>/ and test/<class>/), else
# data/fer2013 in the repository; without it the scenes use the synthetic faces and the
# calibration is skipped. Build folder: $FACET_BUILD_DIR (default build/dev, configured with
# -DFACET_BUILD_TESTS=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${FACET_BUILD_DIR:-build/dev}"
cmake --build "$build" --target test_faces
case "${1:-}" in
  compare)
    FACET_FACE_SCENES="${2:-100}" "$build/tests/test_faces" --success=false \
      --test-case='*composed scenes*,*real photos*,*astronaut happy*' ;;
  sweep)
    FACET_FACE_SWEEP=1 FACET_FACE_SPLIT=train FACET_FACE_SEED=1 FACET_FACE_SCENES="${2:-100}" \
      "$build/tests/test_faces" --test-case='*settings sweep*' ;;
  calibrate)
    FACET_CALIBRATION_PER_CLASS="${2:-150}" "$build/tests/test_faces" --test-case='*crop framing*' ;;
  *)
    sed -n '2,16p' "$0"; exit 2 ;;
esac
