// facet/data/augment.hpp — random, label-preserving changes to one training image: horizontal
// flip, shift (a random crop of the padded image, reflect or zero padding), small rotation and
// scale (bilinear), a random crop resized back to full size, brightness and contrast, and random
// erasing. All drawn from a facet::Rng, so a seed reproduces them. The geometric transforms are
// combined into one inverse mapping, sampled once.
// Read next: data/batch_loader.hpp (applies this to every training sample).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "facet/core/error.hpp"
#include "facet/core/random.hpp"

namespace facet {

/// How pixels outside the image are filled when it is shifted, rotated or shrunk.
enum class Padding {
    Zero,     ///< black
    Reflect,  ///< mirrored about the edge pixel (…, 2, 1 | 0, 1, 2, … ), no visible border
};

/// Which transforms to apply and how strongly; each one is off when its amount is zero / false.
struct AugmentConfig {
    bool flip = true;   ///< mirror left-right with probability 1/2 (faces are symmetric)
    int max_shift = 4;  ///< shift by up to this many pixels in x and y (uniform integers)
    Padding padding = Padding::Reflect;
    double max_rotation_degrees = 10.0;  ///< rotate by a uniform angle in [-max, max]
    double max_scale = 0.1;              ///< scale by a uniform factor in [1 - max, 1 + max]
    double max_brightness = 0.1;  ///< add a uniform offset in [-max, max] (pixel range is [0, 1])
    double max_contrast = 0.2;  ///< multiply the deviation from mid-gray 0.5 by [1 - max, 1 + max]
    /// Random crop: a window of a uniform whole side in [crop_min, crop_max] pixels (of the
    /// width; the height in proportion) at a uniform position inside the image, resized back to
    /// the image's size. 0: off. The network then sees faces enlarged by width / side, so test
    /// them through crops of the same size (fer eval --ten-crop).
    int crop_min = 0, crop_max = 0;
    /// Random erasing (Zhong et al. 2020): with this probability, a rectangle covering a uniform
    /// fraction [erase_min_area, erase_max_area] of the image, its height / width log-uniform in
    /// [1 / erase_max_aspect, erase_max_aspect], is filled with uniform noise in [0, 1].
    double erase_probability = 0;
    double erase_min_area = 0.02, erase_max_area = 1.0 / 3.0;
    double erase_max_aspect = 3.3;

    /// Throws a facet::Error naming the field that is out of range.
    void validate() const {
        check(max_shift >= 0 && max_shift <= 1000, "AugmentConfig: max_shift ", max_shift,
              " outside [0, 1000]");
        check(max_rotation_degrees >= 0 && max_rotation_degrees <= 180,
              "AugmentConfig: max_rotation_degrees ", max_rotation_degrees, " outside [0, 180]");
        check(max_scale >= 0 && max_scale < 1, "AugmentConfig: max_scale ", max_scale,
              " outside [0, 1)");
        check(max_brightness >= 0 && max_brightness <= 1, "AugmentConfig: max_brightness ",
              max_brightness, " outside [0, 1]");
        check(max_contrast >= 0 && max_contrast < 1, "AugmentConfig: max_contrast ", max_contrast,
              " outside [0, 1)");
        check((crop_min == 0 && crop_max == 0) || (crop_min >= 1 && crop_min <= crop_max),
              "AugmentConfig: crop sides [", crop_min, ", ", crop_max,
              "] are neither both 0 (off) nor 1 <= crop_min <= crop_max");
        check(erase_probability >= 0 && erase_probability <= 1, "AugmentConfig: erase_probability ",
              erase_probability, " outside [0, 1]");
        check(erase_min_area > 0 && erase_min_area <= erase_max_area && erase_max_area <= 1,
              "AugmentConfig: erase areas [", erase_min_area, ", ", erase_max_area,
              "] are not 0 < min <= max <= 1");
        check(erase_max_aspect >= 1 && erase_max_aspect <= 100, "AugmentConfig: erase_max_aspect ",
              erase_max_aspect, " outside [1, 100]");
    }

    /// A configuration that changes nothing.
    static AugmentConfig none() {
        AugmentConfig c;
        c.flip = false;
        c.max_shift = 0;
        c.max_rotation_degrees = 0;
        c.max_scale = 0;
        c.max_brightness = 0;
        c.max_contrast = 0;
        return c;
    }
};

/// The random draws of one augmentation, kept separate so a test can apply chosen values.
struct AugmentParams {
    bool flip = false;
    int shift_x = 0, shift_y = 0;
    double rotation_degrees = 0, scale = 1;
    double brightness = 0, contrast = 1;
    /// The crop window's side in pixels (0: no crop) and its position: left = crop_x *
    /// (width - side) rounded down to whole pixels, likewise the top (0: left/top edge, 1:
    /// right/bottom edge, 0.5: centred).
    int crop_side = 0;
    double crop_x = 0.5, crop_y = 0.5;
    bool erase = false;
    double erase_area = 0, erase_aspect = 1;  ///< fraction of the image; height / width
    double erase_x = 0, erase_y = 0;          ///< position, as crop_x and crop_y
    std::uint64_t erase_seed = 0;             ///< seeds the noise that fills the rectangle
};

/// Draws one set of parameters. Every draw is made whatever the configuration, so turning one
/// transform off does not change the random values of the others.
inline AugmentParams draw_augment_params(const AugmentConfig& config, Rng& rng) {
    config.validate();
    AugmentParams p;
    const bool flip = rng.uniform() < 0.5;
    const auto span = static_cast<std::uint64_t>(2 * config.max_shift + 1);
    const int sx = static_cast<int>(rng.below(span)) - config.max_shift;
    const int sy = static_cast<int>(rng.below(span)) - config.max_shift;
    const double angle = rng.uniform(-1, 1), scale = rng.uniform(-1, 1);
    const double brightness = rng.uniform(-1, 1), contrast = rng.uniform(-1, 1);
    p.flip = config.flip && flip;
    p.shift_x = sx;
    p.shift_y = sy;
    p.rotation_degrees = angle * config.max_rotation_degrees;
    p.scale = 1 + scale * config.max_scale;
    p.brightness = brightness * config.max_brightness;
    p.contrast = 1 + contrast * config.max_contrast;
    // Drawn after the older transforms' values, so adding these left those unchanged.
    const std::uint64_t side_draw = rng.next_u64();
    p.crop_x = rng.uniform(), p.crop_y = rng.uniform();
    if (config.crop_max > 0)
        p.crop_side = config.crop_min +
                      static_cast<int>(side_draw % static_cast<std::uint64_t>(config.crop_max -
                                                                              config.crop_min + 1));
    p.erase = rng.uniform() < config.erase_probability;
    p.erase_area = rng.uniform(config.erase_min_area, config.erase_max_area);
    const double log_aspect = std::log(config.erase_max_aspect);
    p.erase_aspect = std::exp(rng.uniform(-log_aspect, log_aspect));
    p.erase_x = rng.uniform(), p.erase_y = rng.uniform();
    p.erase_seed = rng.next_u64();
    return p;
}

namespace detail {
/// Index i mapped into [0, n) by mirroring about the edge pixels (n >= 1).
inline long reflect_index(long i, long n) {
    if (n == 1) return 0;
    const long period = 2 * (n - 1);
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - i;
}

template <typename Src>
float pixel_value(const Src* in, long x, long y, long w, long h, Padding padding) {
    if (x < 0 || y < 0 || x >= w || y >= h) {
        if (padding == Padding::Zero) return 0.0f;
        x = reflect_index(x, w);
        y = reflect_index(y, h);
    }
    const Src v = in[y * w + x];
    if constexpr (std::is_same_v<Src, std::uint8_t>)
        return static_cast<float>(v) / 255.0f;
    else
        return static_cast<float>(v);
}

/// The first of `extent` positions of a window of `size` in [0, length - size] at fraction
/// `at` in [0, 1]: every whole position equally likely for a uniform `at`, 1 the last one.
inline long window_start(double at, long size, long length) {
    const long room = length - size;
    return std::min(room, static_cast<long>(std::floor(at * static_cast<double>(room + 1))));
}
}  // namespace detail

/// Applies the transforms `p` to one height x width image. uint8 input is scaled to [0, 1];
/// float input is taken to be in [0, 1] already. Output is float in [0, 1].
///
/// Each output pixel q is pulled from the source point  c + A^-1 (q - c - shift)  (c the image
/// centre, A = rotation * scale, then mirrored in x when flipping), sampled bilinearly. With an
/// integer shift and no rotation or scale this lands exactly on source pixels, so pure shifts and
/// flips copy values unchanged.
template <typename Src>
void apply_augment(const Src* in, std::size_t height, std::size_t width, float* out,
                   const AugmentParams& p, Padding padding) {
    static_assert(std::is_same_v<Src, std::uint8_t> || std::is_same_v<Src, float>,
                  "augment images of uint8 or float");
    check(height > 0 && width > 0, "apply_augment: empty image");
    const auto w = static_cast<long>(width), h = static_cast<long>(height);
    check(p.crop_side >= 0 && p.crop_side <= w, "apply_augment: crop side ", p.crop_side,
          " outside [0, ", w, "] (the image's width)");
    const double cx = 0.5 * static_cast<double>(w - 1), cy = 0.5 * static_cast<double>(h - 1);
    const double radians = p.rotation_degrees * 3.14159265358979323846 / 180.0;
    // Inverse of rotation-then-scale: rotate by -angle, divide by scale.
    const double c = std::cos(radians) / p.scale, s = std::sin(radians) / p.scale;
    // The crop window (side x side * h / w) maps output pixel centres onto its own, first:
    // x' = left + (x + 1/2) * side / w - 1/2.
    const bool crop = p.crop_side > 0 && p.crop_side < w;
    const double crop_ratio = crop ? static_cast<double>(p.crop_side) / static_cast<double>(w) : 1;
    const long crop_h = crop ? std::max(1L, std::lround(crop_ratio * static_cast<double>(h))) : h;
    const double crop_left =
        crop ? static_cast<double>(detail::window_start(p.crop_x, p.crop_side, w)) : 0;
    const double crop_top =
        crop ? static_cast<double>(detail::window_start(p.crop_y, crop_h, h)) : 0;
    const bool exact = p.rotation_degrees == 0 && p.scale == 1 && !crop;
    for (long y = 0; y < h; ++y)
        for (long x = 0; x < w; ++x) {
            const double xc = crop ? crop_left + (static_cast<double>(x) + 0.5) * crop_ratio - 0.5
                                   : static_cast<double>(x);
            const double yc = crop ? crop_top + (static_cast<double>(y) + 0.5) * crop_ratio - 0.5
                                   : static_cast<double>(y);
            const double u = xc - p.shift_x - cx;
            const double v = yc - p.shift_y - cy;
            double sx = exact ? u : c * u + s * v;
            const double sy = (exact ? v : -s * u + c * v) + cy;
            if (p.flip) sx = -sx;
            sx += cx;
            float value;
            if (exact) {
                value = detail::pixel_value(in, std::lround(sx), std::lround(sy), w, h, padding);
            } else {
                const double fx0 = std::floor(sx), fy0 = std::floor(sy);
                const auto x0 = static_cast<long>(fx0), y0 = static_cast<long>(fy0);
                const auto ax = static_cast<float>(sx - fx0), ay = static_cast<float>(sy - fy0);
                const float top = (1 - ax) * detail::pixel_value(in, x0, y0, w, h, padding) +
                                  ax * detail::pixel_value(in, x0 + 1, y0, w, h, padding);
                const float bottom = (1 - ax) * detail::pixel_value(in, x0, y0 + 1, w, h, padding) +
                                     ax * detail::pixel_value(in, x0 + 1, y0 + 1, w, h, padding);
                value = (1 - ay) * top + ay * bottom;
            }
            if (p.contrast != 1 || p.brightness != 0)
                value = static_cast<float>((value - 0.5) * p.contrast + 0.5 + p.brightness);
            out[y * w + x] = std::clamp(value, 0.0f, 1.0f);
        }
    if (p.erase) {
        // Height / width = aspect and height * width = area: h = sqrt(area * aspect).
        const double area = p.erase_area * static_cast<double>(h * w);
        const long eh = std::clamp(std::lround(std::sqrt(area * p.erase_aspect)), 1L, h);
        const long ew = std::clamp(std::lround(std::sqrt(area / p.erase_aspect)), 1L, w);
        const long top = detail::window_start(p.erase_y, eh, h);
        const long left = detail::window_start(p.erase_x, ew, w);
        Rng noise(p.erase_seed);
        for (long y = top; y < top + eh; ++y)
            for (long x = left; x < left + ew; ++x)
                out[y * w + x] = static_cast<float>(noise.uniform());
    }
}

/// Draws parameters from `rng` and applies them (see draw_augment_params and apply_augment).
template <typename Src>
void augment_image(const Src* in, std::size_t height, std::size_t width, float* out,
                   const AugmentConfig& config, Rng& rng) {
    apply_augment(in, height, width, out, draw_augment_params(config, rng), config.padding);
}

}  // namespace facet
