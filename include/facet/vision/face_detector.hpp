// facet/vision/face_detector.hpp — the face detector interface: a detector takes an 8-bit gray
// picture and returns each face's box, its confidence and (when the detector has them) its facial
// landmarks. This header has no link dependency; the back-ends that implement it do, and only a
// program that opts in includes them (vision/opencv_detector.hpp, vision/dlib_detector.hpp,
// chosen by name in vision/detectors.hpp).
// Read next: vision/align.hpp (cuts a face out of the picture, upright, at a chosen framing).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace facet::vision {

/// An axis-aligned rectangle in pixels: (x, y) is its top-left corner.
struct Rect {
    int x = 0, y = 0, width = 0, height = 0;
};

/// A point in pixels (sub-pixel precision).
struct Point {
    float x = 0, y = 0;
};

/// One face a detector found.
struct DetectedFace {
    Rect box;                      ///< in pixels of the image given to detect()
    float score = 0;               ///< detector confidence, larger is surer (detector's own scale)
    std::vector<Point> landmarks;  ///< empty, or the detector's landmarks (dlib: 68, iBUG order)
};

/// A read-only view of 8-bit gray pixels: row y starts at pixels + y * stride.
struct GrayView {
    const std::uint8_t* pixels = nullptr;
    int width = 0, height = 0;
    std::size_t stride = 0;
};

/// What every back-end honours.
struct DetectorOptions {
    int min_face = 40;        ///< smallest face looked for, in pixels of the given image: the
                              ///< side of its square from forehead to chin, as OpenCV's Haar
                              ///< cascade boxes a face (dlib's box is about 0.8 of it)
    double downscale_to = 0;  ///< detect on a copy whose longer side is at most this many pixels
                              ///< (0: full size); boxes and landmarks are mapped back
    /// The score a face must reach, on the back-end's own scale (dlib: SVM margin, 0 at dlib's
    /// own threshold; OpenCV: the last stage's sum). Lower finds more faces, and more false ones.
    /// NaN: the back-end's default, chosen on validation scenes (docs/faces.md).
    double threshold = std::numeric_limits<double>::quiet_NaN();
    /// OpenCV: how many overlapping windows a face needs (detectMultiScale's minNeighbors);
    /// 0: the back-end's default.
    int min_neighbors = 0;
    /// OpenCV: the ratio between the window sizes scanned (detectMultiScale's scaleFactor), above
    /// 1; larger scans fewer sizes, faster, and frames faces more coarsely. 0: the back-end's
    /// default (1.1).
    double scale_step = 0;
};

/// A face detector. Implementations are not thread-safe: give each thread its own.
class FaceDetector {
  public:
    virtual ~FaceDetector() = default;
    /// The back-end's name, as make_face_detector() takes it (e.g. "opencv", "dlib").
    virtual std::string name() const = 0;
    /// Every face found in `image`, most confident first.
    virtual std::vector<DetectedFace> detect(const GrayView& image) = 0;
};

/// Intersection over union of two rectangles (0 when either is empty).
inline double iou(const Rect& a, const Rect& b) {
    const long long x0 = std::max(a.x, b.x), y0 = std::max(a.y, b.y);
    const long long x1 =
        std::min(static_cast<long long>(a.x) + a.width, static_cast<long long>(b.x) + b.width);
    const long long y1 =
        std::min(static_cast<long long>(a.y) + a.height, static_cast<long long>(b.y) + b.height);
    const long long inter = std::max(0LL, x1 - x0) * std::max(0LL, y1 - y0);
    const long long area_a = static_cast<long long>(a.width) * a.height,
                    area_b = static_cast<long long>(b.width) * b.height;
    const long long uni = area_a + area_b - inter;
    return uni > 0 && area_a > 0 && area_b > 0 ? static_cast<double>(inter) / uni : 0.0;
}

/// A view of a whole contiguous gray buffer of width x height pixels.
inline GrayView gray_view(const std::uint8_t* pixels, int width, int height) {
    return {pixels, width, height, static_cast<std::size_t>(width)};
}

}  // namespace facet::vision
