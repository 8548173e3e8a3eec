// fer/face_crop.hpp — how fer cuts a face found in a photo into a 48 x 48 crop framed like
// FER-2013's: upright and framed by the eyes when the detector gives landmarks (dlib), else by
// the detector's box; the framing constants measured on FER-2013's own training faces, and the
// measurement itself (calibrate_framing), which tests/test_faces.cpp re-runs.
#pragma once

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include <facet/data/dataset.hpp>
#include <facet/data/image.hpp>
#include <facet/vision/align.hpp>
#include <facet/vision/face_detector.hpp>

#include "emotions.hpp"

namespace fer {

namespace vision = facet::vision;

/// The side of a crop the network takes.
inline constexpr int crop_side = static_cast<int>(fer::fer_image_side);

/// FER-2013's framing relative to each detector's box: medians of calibrate_framing over the
/// first 150 training faces of each class (1050; test_faces' "crop framing" case re-derives them).
/// dlib's is measured as fer runs it, on the picture enlarged so a 40-px face fills its window.
inline vision::BoxFraming fer_box_framing(const std::string& detector) {
    if (detector == "dlib") return {1.110, -0.026, -0.099};
    if (detector == "opencv-lbp") return {1.512, 0.004, -0.100};
    return {1.016, -0.003, 0.000};  // opencv (Haar)
}

/// FER-2013's framing relative to the eyes (dlib's 68 landmarks), measured the same way (768 of
/// the 1050 faces had landmarks; their eye line tilts by -0.4 degrees at the median).
inline vision::EyeFraming fer_eye_framing() {
    return {2.716, 0.394};
}

/// How a face is framed for the network: by the detector's box (with its calibrated framing), or
/// upright and framed by the eyes when the detector gives landmarks. On the validation scenes of
/// docs/faces.md the box crops of dlib's faces classified as well as the data set's own crops, and
/// 2 to 3 points better than the eye crops, so the box is the default.
enum class CropFraming { box, eyes };

/// The 48 x 48 crop of `face` in `picture`, framed as `framing` says (by the box when the face has
/// no landmarks), with the framing of the detector that found it.
inline std::vector<std::uint8_t> fer_face_crop(const vision::GrayView& picture,
                                               const vision::DetectedFace& face,
                                               const std::string& detector,
                                               CropFraming framing = CropFraming::box) {
    std::vector<std::uint8_t> crop(static_cast<std::size_t>(crop_side * crop_side));
    const auto eyes =
        framing == CropFraming::eyes ? vision::eye_centres(face.landmarks) : std::nullopt;
    const vision::Similarity transform =
        eyes ? vision::eye_crop_transform(eyes->first, eyes->second, fer_eye_framing(), crop_side)
             : vision::box_crop_transform(face.box, fer_box_framing(detector), crop_side);
    vision::warp_similarity(picture, transform, crop.data(), crop_side, crop_side);
    return crop;
}

/// What calibrate_framing measured.
struct FramingCalibration {
    std::size_t images = 0;        ///< faces tried
    std::size_t found = 0;         ///< of which the detector found one
    std::size_t with_eyes = 0;     ///< of those, with 68 landmarks
    vision::BoxFraming box;        ///< medians over the faces found
    vision::EyeFraming eyes;       ///< medians over the faces with landmarks
    double eyes_x = 0.5;           ///< median eyes' midpoint across the crop (0.5: centred)
    double eye_angle_degrees = 0;  ///< median tilt of the eye line (FER-2013 faces are upright)
};

/// The picture calibrate_framing shows the detector for one 48 x 48 face: enlarged `zoom` times
/// (bilinear) so the face is well above any detector's smallest size, then padded on every side
/// by `pad` pixels that repeat the border, so the face is not touching the picture's edge.
inline facet::GrayImage enlarge_and_pad(const std::uint8_t* face, std::size_t side,
                                        std::size_t zoom, std::size_t pad) {
    const std::size_t big = side * zoom;
    std::vector<std::uint8_t> enlarged(big * big);
    facet::resize_gray(face, side, side, enlarged.data(), big, big);
    facet::GrayImage out;
    out.width = out.height = big + 2 * pad;
    out.pixels.resize(out.width * out.height);
    for (std::size_t y = 0; y < out.height; ++y)
        for (std::size_t x = 0; x < out.width; ++x) {
            const std::size_t sx = std::clamp<std::ptrdiff_t>(
                std::ptrdiff_t(x) - std::ptrdiff_t(pad), 0, std::ptrdiff_t(big) - 1);
            const std::size_t sy = std::clamp<std::ptrdiff_t>(
                std::ptrdiff_t(y) - std::ptrdiff_t(pad), 0, std::ptrdiff_t(big) - 1);
            out.pixels[y * out.width + x] = enlarged[sy * big + sx];
        }
    return out;
}

/// Measures where FER-2013 puts a face in its 48 x 48 frame, relative to `detector`'s box (and
/// eyes, when it gives landmarks): each of the first `max_images` faces of `faces` is enlarged
/// and padded (enlarge_and_pad), the detector's most confident face whose centre lies in the
/// middle half of the frame is mapped back to the 48 x 48 frame, and the box-to-crop scale and
/// offset (and eye distance and height) are taken; the medians are the framing.
inline FramingCalibration calibrate_framing(vision::FaceDetector& detector,
                                            const facet::Dataset& faces, std::size_t max_images) {
    constexpr std::size_t zoom = 4, pad = 96;
    const double side = static_cast<double>(faces.width);
    facet::check(faces.width == faces.height && faces.width > 0,
                 "calibrate_framing: the faces must be square");
    FramingCalibration c;
    std::vector<double> box_side, box_cx, box_cy, eye_side, eye_y, eye_x, eye_angle;
    for (std::size_t i = 0; i < std::min(max_images, faces.size()); ++i) {
        ++c.images;
        const facet::GrayImage picture = enlarge_and_pad(faces.image(i), faces.width, zoom, pad);
        const auto found = detector.detect(vision::gray_view(picture.pixels.data(),
                                                             static_cast<int>(picture.width),
                                                             static_cast<int>(picture.height)));
        auto to_frame = [&](double v) { return (v - pad) / zoom; };  // picture -> 48 x 48 frame
        for (const vision::DetectedFace& f : found) {
            const double w = f.box.width / double(zoom);
            const double cx = to_frame(f.box.x + 0.5 * f.box.width),
                         cy = to_frame(f.box.y + 0.5 * f.box.height);
            if (std::abs(cx - side / 2) > side / 4 || std::abs(cy - side / 2) > side / 4) continue;
            ++c.found;
            box_side.push_back(side / w);
            box_cx.push_back((side / 2 - cx) / w);
            box_cy.push_back((side / 2 - cy) / w);
            if (const auto eyes = vision::eye_centres(f.landmarks)) {
                ++c.with_eyes;
                const double lx = to_frame(eyes->first.x), ly = to_frame(eyes->first.y),
                             rx = to_frame(eyes->second.x), ry = to_frame(eyes->second.y);
                const double distance = std::hypot(rx - lx, ry - ly);
                eye_side.push_back(side / distance);
                eye_y.push_back(0.5 * (ly + ry) / side);
                eye_x.push_back(0.5 * (lx + rx) / side);
                eye_angle.push_back(std::atan2(ry - ly, rx - lx) * 180 / M_PI);
            }
            break;  // the most confident central face only
        }
    }
    auto median = [](std::vector<double> v) {
        if (v.empty()) return 0.0;
        std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(v.size() / 2), v.end());
        return v[v.size() / 2];
    };
    c.box = {median(box_side), median(box_cx), median(box_cy)};
    c.eyes = {median(eye_side), median(eye_y)};
    c.eyes_x = median(eye_x);
    c.eye_angle_degrees = median(eye_angle);
    return c;
}

}  // namespace fer
