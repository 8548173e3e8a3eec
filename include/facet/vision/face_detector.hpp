// facet/vision/face_detector.hpp — the face-detection interface: a gray image view in, boxes
// (with a score and optional landmarks) out. Dependency-free; the back-ends that implement it
// (OpenCV, dlib) live in their own opt-in headers.
// Read next: vision/tracker.hpp, which follows the boxes across the frames of a video.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace facet::vision {

/// An axis-aligned box in pixels: top-left corner and size.
struct Rect {
    int x = 0, y = 0, width = 0, height = 0;
};

/// A point in pixels (sub-pixel precision).
struct Point {
    float x = 0, y = 0;
};

/// One face found in an image.
struct DetectedFace {
    Rect box;                      ///< the face's box in the image's pixels
    float score = 0;               ///< the detector's confidence (scale depends on the back-end)
    std::vector<Point> landmarks;  ///< eyes, nose, mouth, ... when the back-end finds them
};

/// An 8-bit gray image the caller owns: row r starts at pixels + r * stride.
struct GrayView {
    const std::uint8_t* pixels = nullptr;
    int width = 0, height = 0;
    std::size_t stride = 0;
};

/// Settings every back-end understands.
struct DetectorOptions {
    int min_face = 40;        ///< smallest face side to find, in pixels of the full image
    double downscale_to = 0;  ///< > 0: detect on a copy whose longer side is this many pixels
};

/// A face detector. Not thread-safe: use one per thread.
class FaceDetector {
  public:
    virtual ~FaceDetector() = default;
    /// A short name of the back-end and its model, for logs.
    virtual std::string name() const = 0;
    /// The faces in `image`, boxes in its pixels.
    virtual std::vector<DetectedFace> detect(const GrayView& image) = 0;
};

}  // namespace facet::vision
