// fer/video_detector.hpp — how `fer video` shrinks frames before detection without losing faces:
// each back-end (vision/detectors.hpp) sees faces from its model's window up, reliably from a
// few windows up; a frame can be reduced until a face of --min-face pixels is that small, and no
// further.
// Read next: fer/video.hpp.
#pragma once

#include <cmath>
#include <string>

#include <facet/core/error.hpp>
#include <facet/vision/detectors.hpp>

namespace fer {

/// The side in pixels of the smallest face back-end `name` finds: its model's window (OpenCV's
/// frontal-face Haar cascade 24, its LBP cascade 45, dlib's HOG detector 80).
inline int detector_window(const std::string& name) {
    const std::string n =
        name.empty() || name == "default" ? facet::vision::default_face_detector() : name;
    if (n == "opencv") return 24;
    if (n == "opencv-lbp") return 45;
    if (n == "dlib") return 80;
    facet::vision::make_face_detector(n);  // throws, naming the detectors this build has
    throw facet::Error("video: no window size known for the face detector '" + n + "'");
}

/// How many windows wide a face must be for the detector to find it as reliably as at full size.
/// Measured for the Haar cascade on fer video-bench's 640 x 480 video (3 FER-2013 faces of 96
/// pixels, 150 frames): shrunk so the faces were 2 windows wide it found 2.15 faces per frame, at
/// 2.5 windows and at full size all 3. Applied to every back-end.
inline constexpr double reliable_windows = 2.5;

/// The longer side a frame of `longer_side` pixels can be shrunk to before detection so that a
/// face of `min_face` pixels is still reliable_windows of the detector's windows wide: no face the
/// full frame would give is lost, and the detector scans fewer pixels by the square of the
/// shrink. 0 (full size) when no shrinking is possible.
inline double lossless_detect_size(const std::string& name, int min_face, int longer_side) {
    const double scale = reliable_windows * detector_window(name) / min_face;
    return scale < 1 && longer_side > 0 ? std::ceil(longer_side * scale) : 0.0;
}

}  // namespace fer
