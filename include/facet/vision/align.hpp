// facet/vision/align.hpp — cutting a face out of a picture: a similarity transform (rotation,
// uniform scale, shift) from the crop to the picture, sampled bilinearly with border replication
// (and averaged over several samples per crop pixel when shrinking, so a large face does not
// alias); the transform that frames a face's box, or its eyes, at a chosen place in a square crop;
// the eye centres of 68 iBUG landmarks. Dependency-free; the framing constants of a particular
// data set belong to the program (fer: examples/fer/face_crop.hpp).
// Read next: vision/detectors.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/vision/face_detector.hpp"

namespace facet::vision {

/// A similarity transform taking continuous crop coordinates to continuous picture coordinates
/// (pixel (i, j) covers [i, i + 1) x [j, j + 1), its centre at (i + 0.5, j + 0.5)):
///     x' = a x - b y + tx,   y' = b x + a y + ty.
/// sqrt(a^2 + b^2) is the picture pixels per crop pixel; atan2(b, a) the rotation.
struct Similarity {
    double a = 1, b = 0, tx = 0, ty = 0;
    /// Where the crop point `p` falls in the picture.
    Point apply(Point p) const {
        return {static_cast<float>(a * p.x - b * p.y + tx),
                static_cast<float>(b * p.x + a * p.y + ty)};
    }
    /// Picture pixels per crop pixel.
    double scale() const { return std::hypot(a, b); }
};

/// Fills out[out_height][out_width] with the picture seen through `crop_to_picture`: each crop
/// pixel is the mean of k x k bilinear samples spread over its footprint, k = ceil(scale) (capped
/// at 16), so shrinking averages like an area filter; points outside the picture take the nearest
/// border pixel.
inline void warp_similarity(const GrayView& picture, const Similarity& crop_to_picture,
                            std::uint8_t* out, int out_width, int out_height) {
    check(picture.pixels != nullptr && picture.width > 0 && picture.height > 0 &&
              picture.stride >= static_cast<std::size_t>(picture.width),
          "warp_similarity: empty or malformed picture view");
    check(out_width > 0 && out_height > 0, "warp_similarity: bad crop size ", out_width, "x",
          out_height);
    const double scale = crop_to_picture.scale();
    check(std::isfinite(scale) && scale > 0 && std::isfinite(crop_to_picture.tx) &&
              std::isfinite(crop_to_picture.ty),
          "warp_similarity: degenerate transform");
    const int k = static_cast<int>(std::clamp(std::ceil(scale - 1e-9), 1.0, 16.0));
    const double last_x = picture.width - 1, last_y = picture.height - 1;
    auto pixel = [&](int x, int y) {
        return static_cast<double>(picture.pixels[static_cast<std::size_t>(y) * picture.stride +
                                                  static_cast<std::size_t>(x)]);
    };
    for (int j = 0; j < out_height; ++j)
        for (int i = 0; i < out_width; ++i) {
            double sum = 0;
            for (int v = 0; v < k; ++v)
                for (int u = 0; u < k; ++u) {
                    const Point p = crop_to_picture.apply({static_cast<float>(i + (u + 0.5) / k),
                                                           static_cast<float>(j + (v + 0.5) / k)});
                    // Continuous coordinates to pixel-centre coordinates, clamped to the border.
                    const double x = std::clamp(p.x - 0.5, 0.0, last_x);
                    const double y = std::clamp(p.y - 0.5, 0.0, last_y);
                    const int x0 = static_cast<int>(x), y0 = static_cast<int>(y);
                    const int x1 = std::min(x0 + 1, picture.width - 1),
                              y1 = std::min(y0 + 1, picture.height - 1);
                    const double fx = x - x0, fy = y - y0;
                    sum += (1 - fy) * ((1 - fx) * pixel(x0, y0) + fx * pixel(x1, y0)) +
                           fy * ((1 - fx) * pixel(x0, y1) + fx * pixel(x1, y1));
                }
            out[static_cast<std::size_t>(j) * static_cast<std::size_t>(out_width) +
                static_cast<std::size_t>(i)] =
                static_cast<std::uint8_t>(std::clamp(std::lround(sum / (k * k)), 0L, 255L));
        }
}

/// Where a face sits in a square crop relative to a detector's box (all in units of the box width).
struct BoxFraming {
    double side = 1;      ///< crop side / box width
    double centre_x = 0;  ///< (crop centre - box centre) / box width, x
    double centre_y = 0;  ///< (crop centre - box centre) / box width, y
};

/// Where a face sits in a square crop relative to its eyes: upright (eyes level), the eyes'
/// midpoint at half the width and at `eyes_y` of the height, the eyes `1 / side` of the side apart.
struct EyeFraming {
    double side = 2.5;     ///< crop side / distance between the eye centres
    double eyes_y = 0.35;  ///< height of the eyes' midpoint, as a fraction of the side from the top
};

/// The transform that frames `box` in a crop of out_side x out_side pixels (no rotation).
inline Similarity box_crop_transform(const Rect& box, const BoxFraming& framing, int out_side) {
    check(box.width > 0 && box.height > 0 && out_side > 0 && framing.side > 0,
          "box_crop_transform: empty box or bad framing");
    const double w = box.width;
    const double side = framing.side * w;
    const double cx = box.x + 0.5 * w + framing.centre_x * w;
    const double cy = box.y + 0.5 * box.height + framing.centre_y * w;
    const double s = side / out_side;
    return {s, 0, cx - 0.5 * side, cy - 0.5 * side};
}

/// The transform that puts the eyes level and framed as `framing` says in a crop of
/// out_side x out_side pixels. `left` and `right` are the eyes as seen in the picture.
inline Similarity eye_crop_transform(Point left, Point right, const EyeFraming& framing,
                                     int out_side) {
    const double dx = right.x - left.x, dy = right.y - left.y;
    const double distance = std::hypot(dx, dy);
    check(distance > 0 && std::isfinite(distance) && out_side > 0 && framing.side > 0,
          "eye_crop_transform: the eyes coincide or the framing is bad");
    const double s = framing.side * distance / out_side;  // picture pixels per crop pixel
    const double a = s * dx / distance, b = s * dy / distance;
    // The crop point (out_side / 2, eyes_y * out_side) lands on the eyes' midpoint.
    const double u = 0.5 * out_side, v = framing.eyes_y * out_side;
    const double mx = 0.5 * (left.x + right.x), my = 0.5 * (left.y + right.y);
    return {a, b, mx - (a * u - b * v), my - (b * u + a * v)};
}

/// The centres of the two eyes (as seen: left one first) from 68 iBUG landmarks (points 36-41
/// outline the eye on the picture's left, 42-47 the other), in continuous picture coordinates;
/// nothing for another landmark count.
inline std::optional<std::pair<Point, Point>> eye_centres(const std::vector<Point>& landmarks) {
    if (landmarks.size() != 68) return std::nullopt;
    auto mean = [&](std::size_t first) {
        Point c;
        for (std::size_t i = first; i < first + 6; ++i)
            c.x += landmarks[i].x, c.y += landmarks[i].y;
        // Landmarks are pixel indices (centre of pixel i at i); +0.5 makes them continuous.
        return Point{c.x / 6 + 0.5f, c.y / 6 + 0.5f};
    };
    return std::make_pair(mean(36), mean(42));
}

}  // namespace facet::vision
