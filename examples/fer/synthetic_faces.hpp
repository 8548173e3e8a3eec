// fer/synthetic_faces.hpp — a procedurally drawn, seeded stand-in for FER-2013: 48 x 48
// cartoon faces showing the seven expressions through mouth curve and opening, eyebrow height
// and slant, and eye openness, at a random position, size, tilt, brightness and noise, and with a
// random expression intensity (weak expressions drift towards neutral), so the task is learnable
// but not trivial. It lets the whole pipeline run on a machine without the real data set; the
// splits are named "synthetic-train" and "synthetic-test" so no result is mistaken for FER-2013.
// Read next: fer_csv.hpp (the real data set's CSV release).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <facet/core/error.hpp>
#include <facet/core/parallel.hpp>
#include <facet/core/random.hpp>
#include <facet/data/dataset.hpp>

#include "emotions.hpp"

namespace fer {

/// Sizes and seed of the synthetic data set (classes are balanced).
struct SyntheticFaceOptions {
    std::size_t train_per_class = 600;
    std::size_t test_per_class = 150;
    std::uint64_t seed = 2013;
    double noise =
        0.04;  ///< standard deviation of the pixel noise, in [0, 1] units (jittered x0.5-1.5)
};

namespace detail {

/// The shape parameters of one face, in face units (face half-height = 1, y pointing down).
struct FaceShape {
    double eye_open = 0.75;                         ///< eye height / eye width
    double brow_inner = -0.42, brow_outer = -0.42;  ///< eyebrow end heights
    double mouth_y = 0.45, mouth_half_width = 0.30;
    double mouth_bend = 0.0;  ///< > 0: corners up (smile), < 0: corners down
    double mouth_skew = 0.0;  ///< raises one corner (disgust's sneer)
    double mouth_open = 0.0;  ///< half-height of an open mouth (0: closed line)
    double mouth_open_width = 0.0;
    double nose_wrinkle = 0.0;  ///< darkness of the wrinkles beside the nose
};

/// The fully expressed shape of each class, in Kaggle order.
inline FaceShape expression_shape(int expression) {
    FaceShape s;
    switch (expression) {
        case 0:  // angry: brows pulled down to the centre, narrowed eyes, pressed lips turned down
            s.eye_open = 0.5, s.brow_inner = -0.24, s.brow_outer = -0.46;
            s.mouth_bend = -0.06, s.mouth_half_width = 0.26;
            break;
        case 1:  // disgust: lowered brows, squint, a one-sided sneer, wrinkled nose
            s.eye_open = 0.4, s.brow_inner = -0.30, s.brow_outer = -0.38;
            s.mouth_bend = -0.08, s.mouth_skew = 0.16, s.mouth_half_width = 0.26;
            s.nose_wrinkle = 0.6;
            break;
        case 2:  // fear: brows raised with the inner ends up, wide eyes, mouth stretched open
            s.eye_open = 1.15, s.brow_inner = -0.62, s.brow_outer = -0.50;
            s.mouth_open = 0.10, s.mouth_open_width = 0.27, s.mouth_bend = -0.04;
            break;
        case 3:  // happy: a wide smile, eyes slightly narrowed by the cheeks
            s.eye_open = 0.5, s.brow_inner = -0.46, s.brow_outer = -0.46;
            s.mouth_bend = 0.20, s.mouth_half_width = 0.40;
            break;
        case 4:  // sad: inner brow ends raised, mouth corners down
            s.eye_open = 0.6, s.brow_inner = -0.54, s.brow_outer = -0.36;
            s.mouth_bend = -0.16, s.mouth_half_width = 0.28;
            break;
        case 5:  // surprise: brows high, eyes wide open, a round open mouth
            s.eye_open = 1.25, s.brow_inner = -0.66, s.brow_outer = -0.64;
            s.mouth_open = 0.17, s.mouth_open_width = 0.13;
            break;
        default:  // neutral
            break;
    }
    return s;
}

/// `from` moved a fraction t of the way to `to`, field by field.
inline FaceShape blend(const FaceShape& from, const FaceShape& to, double t) {
    auto mix = [t](double a, double b) { return a + t * (b - a); };
    FaceShape s;
    s.eye_open = mix(from.eye_open, to.eye_open);
    s.brow_inner = mix(from.brow_inner, to.brow_inner);
    s.brow_outer = mix(from.brow_outer, to.brow_outer);
    s.mouth_y = mix(from.mouth_y, to.mouth_y);
    s.mouth_half_width = mix(from.mouth_half_width, to.mouth_half_width);
    s.mouth_bend = mix(from.mouth_bend, to.mouth_bend);
    s.mouth_skew = mix(from.mouth_skew, to.mouth_skew);
    s.mouth_open = mix(from.mouth_open, to.mouth_open);
    s.mouth_open_width = mix(from.mouth_open_width, to.mouth_open_width);
    s.nose_wrinkle = mix(from.nose_wrinkle, to.nose_wrinkle);
    return s;
}

/// Signed distance (negative inside) to an axis-aligned ellipse, approximate but smooth.
inline double ellipse_distance(double x, double y, double cx, double cy, double rx, double ry) {
    const double nx = (x - cx) / rx, ny = (y - cy) / ry;
    return (std::sqrt(nx * nx + ny * ny) - 1.0) * std::min(rx, ry);
}

/// Distance to the segment from (ax, ay) to (bx, by).
inline double segment_distance(double x, double y, double ax, double ay, double bx, double by) {
    const double dx = bx - ax, dy = by - ay;
    const double t =
        std::clamp(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0);
    const double ex = x - ax - t * dx, ey = y - ay - t * dy;
    return std::sqrt(ex * ex + ey * ey);
}

}  // namespace detail

/// Draws one 48 x 48 face showing `expression` (Kaggle label 0..6) into `out`, with every random
/// choice (pose, size, lighting, intensity, noise) taken from `rng`.
inline void render_synthetic_face(int expression, facet::Rng& rng, std::uint8_t* out,
                                  double noise = 0.04) {
    facet::check(expression >= 0 && expression < fer_num_classes,
                 "render_synthetic_face: expression ", expression, " outside [0, ", fer_num_classes,
                 ")");
    constexpr double side = static_cast<double>(fer_image_side);
    // Pose and lighting.
    const double radius = rng.uniform(15.0, 21.0);  // face half-height in pixels
    const double cx = side / 2 + rng.uniform(-3, 3), cy = side / 2 + rng.uniform(-2, 3);
    const double tilt = rng.uniform(-0.18, 0.18);   // radians, about +-10 degrees
    const double aspect = rng.uniform(0.74, 0.90);  // face width / height
    const double background = rng.uniform(0.05, 0.95);
    const double gradient = rng.uniform(-0.15, 0.15);
    double skin = rng.uniform(0.35, 0.85);
    if (std::fabs(skin - background) < 0.15)
        skin = background > 0.5 ? background - 0.3 : background + 0.3;
    const double feature = std::max(0.0, skin - rng.uniform(0.3, 0.5));  // eyes, brows, mouth
    const double light = rng.uniform(-0.12, 0.12);                       // shading from one side
    const double sigma = noise * rng.uniform(0.5, 1.5);

    // Expression: a random intensity between neutral and the full expression, plus jitter.
    detail::FaceShape shape =
        detail::blend(detail::expression_shape(6), detail::expression_shape(expression),
                      expression == 6 ? 0.0 : rng.uniform(0.55, 1.1));
    shape.eye_open *= rng.uniform(0.85, 1.15);
    shape.brow_inner += rng.normal(0, 0.025);
    shape.brow_outer += rng.normal(0, 0.025);
    shape.mouth_bend += rng.normal(0, 0.025);
    shape.mouth_y += rng.uniform(-0.05, 0.05);
    shape.mouth_half_width *= rng.uniform(0.85, 1.15);
    if (rng.uniform() < 0.5) shape.mouth_skew = -shape.mouth_skew;  // sneer on either side
    const double eye_x = rng.uniform(0.30, 0.38), eye_y = rng.uniform(-0.22, -0.12);
    const double eye_w = rng.uniform(0.11, 0.15);
    const double line = rng.uniform(0.05, 0.075);  // half-thickness of brows and lips

    const double cos_t = std::cos(tilt), sin_t = std::sin(tilt);
    const double pixel = 1.0 / radius;  // one pixel in face units: the anti-aliasing width
    auto paint = [pixel](double& value, double distance, double colour) {
        const double coverage = std::clamp(0.5 - distance / pixel, 0.0, 1.0);
        value += coverage * (colour - value);
    };
    for (std::size_t py = 0; py < fer_image_side; ++py)
        for (std::size_t px = 0; px < fer_image_side; ++px) {
            const double dx = (static_cast<double>(px) + 0.5 - cx) / radius;
            const double dy = (static_cast<double>(py) + 0.5 - cy) / radius;
            const double u = cos_t * dx + sin_t * dy, v = -sin_t * dx + cos_t * dy;  // face frame
            double value = background + gradient * (static_cast<double>(py) / side - 0.5);
            paint(value, detail::ellipse_distance(u, v, 0, 0, aspect, 1.0), skin + light * u);
            for (double side_sign : {-1.0, 1.0}) {
                const double ex = side_sign * eye_x;
                paint(value,
                      detail::ellipse_distance(u, v, ex, eye_y, eye_w, eye_w * shape.eye_open),
                      feature);
                const double brow_in = side_sign * 0.10, brow_out = side_sign * 0.48;
                paint(value,
                      detail::segment_distance(u, v, brow_in, shape.brow_inner, brow_out,
                                               shape.brow_outer) -
                          line,
                      feature);
                if (shape.nose_wrinkle > 0.05)
                    paint(value,
                          detail::segment_distance(u, v, side_sign * 0.10, 0.02, side_sign * 0.17,
                                                   0.14) -
                              0.5 * line,
                          skin + shape.nose_wrinkle * (feature - skin));
            }
            paint(value, detail::segment_distance(u, v, 0.0, 0.0, 0.0, 0.18) - 0.5 * line,
                  skin + 0.5 * (feature - skin));  // nose
            // Mouth: a bent, possibly skewed line y(x) = y0 - bend (x / w)^2 - skew x / w,
            // drawn as a polyline; an open mouth is a dark ellipse instead.
            double mouth = 1e9;
            const int pieces = 8;
            for (int i = 0; i < pieces; ++i) {
                const double a = -1.0 + 2.0 * i / pieces, b = -1.0 + 2.0 * (i + 1) / pieces;
                const double w = shape.mouth_half_width;
                const double ya = shape.mouth_y - shape.mouth_bend * a * a - shape.mouth_skew * a;
                const double yb = shape.mouth_y - shape.mouth_bend * b * b - shape.mouth_skew * b;
                mouth = std::min(mouth, detail::segment_distance(u, v, a * w, ya, b * w, yb));
            }
            if (shape.mouth_open < 0.04) paint(value, mouth - line, feature);
            if (shape.mouth_open > 0.02)
                paint(value,
                      detail::ellipse_distance(u, v, 0, shape.mouth_y, shape.mouth_open_width,
                                               shape.mouth_open),
                      feature * 0.5);
            value += sigma * rng.normal();
            out[py * fer_image_side + px] =
                static_cast<std::uint8_t>(std::clamp(std::lround(value * 255.0), 0L, 255L));
        }
}

namespace detail {
inline facet::Dataset synthetic_split(const std::string& name, std::size_t per_class,
                                      std::uint64_t seed, double noise) {
    facet::Dataset d;
    d.split = name;
    d.source = "synthetic faces (seed " + std::to_string(seed) + ")";
    d.height = d.width = fer_image_side;
    d.class_names = fer_class_name_list();
    const std::size_t n = facet::checked_mul(per_class, fer_num_classes, "synthetic faces");
    d.labels.resize(n);
    d.pixels.resize(facet::checked_mul(n, fer_image_pixels, "synthetic faces"));
    facet::parallel_for(n, [&](std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) {
            // One generator per image, seeded by its index, so the thread count does not matter.
            facet::Rng rng(seed * 0x9e3779b97f4a7c15ULL + i);
            const int label = static_cast<int>(i % fer_num_classes);
            d.labels[i] = label;
            render_synthetic_face(label, rng, d.pixels.data() + i * fer_image_pixels, noise);
        }
    });
    return d;
}
}  // namespace detail

/// A balanced synthetic data set with the splits "synthetic-train" and "synthetic-test" (drawn
/// from different seeds), labelled in the canonical FER order. The same options give the same
/// pixels on every machine.
inline facet::DataSplits make_synthetic_faces(const SyntheticFaceOptions& options = {}) {
    facet::check(options.train_per_class > 0, "make_synthetic_faces: train_per_class must be > 0");
    facet::check(options.noise >= 0 && options.noise <= 1, "make_synthetic_faces: noise ",
                 options.noise, " outside [0, 1]");
    facet::DataSplits result;
    result.splits.push_back(detail::synthetic_split("synthetic-train", options.train_per_class,
                                                    options.seed * 2 + 1, options.noise));
    if (options.test_per_class > 0)
        result.splits.push_back(detail::synthetic_split("synthetic-test", options.test_per_class,
                                                        options.seed * 2 + 2, options.noise));
    return result;
}

}  // namespace fer
