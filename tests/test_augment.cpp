// Tests for data/augment.hpp: the invariants of each transform, on images small enough to reason
// about pixel by pixel.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "facet/data/augment.hpp"

using facet::AugmentConfig;
using facet::AugmentParams;
using facet::Padding;

namespace {
constexpr std::size_t H = 6, W = 7;  // not square, so a swapped axis shows

std::vector<std::uint8_t> ramp_bytes() {
    std::vector<std::uint8_t> img(H * W);
    for (std::size_t i = 0; i < img.size(); ++i) img[i] = static_cast<std::uint8_t>(i * 5 + 3);
    return img;
}
std::vector<float> random_floats(std::uint64_t seed, std::size_t n = H * W) {
    facet::Rng rng(seed);
    std::vector<float> v(n);
    for (auto& x : v) x = static_cast<float>(rng.uniform());
    return v;
}
float byte_at(const std::vector<std::uint8_t>& img, std::size_t y, std::size_t x) {
    return static_cast<float>(img[y * W + x]) / 255.0f;
}
}  // namespace

TEST_CASE("no transform is the identity (bytes scaled to [0, 1])") {
    const auto img = ramp_bytes();
    std::vector<float> out(H * W, -1.0f);
    facet::Rng rng(7);
    facet::augment_image(img.data(), H, W, out.data(), AugmentConfig::none(), rng);
    for (std::size_t i = 0; i < out.size(); ++i)
        CHECK(out[i] == static_cast<float>(img[i]) / 255.0f);
    // A zero shift with everything else at its neutral value is the identity for floats too.
    const auto f = random_floats(3);
    facet::apply_augment(f.data(), H, W, out.data(), AugmentParams{}, Padding::Zero);
    CHECK(out == f);
}

TEST_CASE("flip mirrors left-right, and twice is the identity") {
    const auto img = ramp_bytes();
    AugmentParams flip;
    flip.flip = true;
    std::vector<float> once(H * W), twice(H * W);
    facet::apply_augment(img.data(), H, W, once.data(), flip, Padding::Reflect);
    for (std::size_t y = 0; y < H; ++y)
        for (std::size_t x = 0; x < W; ++x) CHECK(once[y * W + x] == byte_at(img, y, W - 1 - x));
    const auto f = random_floats(11);
    facet::apply_augment(f.data(), H, W, once.data(), flip, Padding::Zero);
    facet::apply_augment(once.data(), H, W, twice.data(), flip, Padding::Zero);
    CHECK(twice == f);
}

TEST_CASE("shift moves pixels and pads with zeros or reflections") {
    const auto img = ramp_bytes();
    AugmentParams shift;
    shift.shift_x = 2;
    shift.shift_y = -1;
    std::vector<float> zero(H * W), reflect(H * W);
    facet::apply_augment(img.data(), H, W, zero.data(), shift, Padding::Zero);
    facet::apply_augment(img.data(), H, W, reflect.data(), shift, Padding::Reflect);
    auto mirror = [](long i, long n) { return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i; };
    for (long y = 0; y < static_cast<long>(H); ++y)
        for (long x = 0; x < static_cast<long>(W); ++x) {
            const long sx = x - 2, sy = y + 1;  // content moves right by 2 and up by 1
            const bool inside = sx >= 0 && sy < static_cast<long>(H);
            const std::size_t i = static_cast<std::size_t>(y) * W + static_cast<std::size_t>(x);
            CHECK(zero[i] ==
                  (inside ? byte_at(img, static_cast<std::size_t>(sy), static_cast<std::size_t>(sx))
                          : 0.0f));
            CHECK(reflect[i] == byte_at(img, static_cast<std::size_t>(mirror(sy, H)),
                                        static_cast<std::size_t>(mirror(sx, W))));
        }
}

TEST_CASE("rotation by 90 degrees of a square image permutes pixels") {
    constexpr std::size_t n = 5;
    const auto f = random_floats(5, n * n);
    AugmentParams rot;
    rot.rotation_degrees = 90;
    std::vector<float> out(n * n);
    facet::apply_augment(f.data(), n, n, out.data(), rot, Padding::Zero);
    // Whatever the direction, every output pixel is one source pixel moved by a quarter turn.
    bool clockwise = true, counter = true;
    for (std::size_t y = 0; y < n; ++y)
        for (std::size_t x = 0; x < n; ++x) {
            clockwise &= std::fabs(out[y * n + x] - f[(n - 1 - x) * n + y]) < 1e-5f;
            counter &= std::fabs(out[y * n + x] - f[x * n + (n - 1 - y)]) < 1e-5f;
        }
    CHECK(clockwise != counter);
    // The centre pixel of an odd image stays put under any rotation and scale.
    rot.rotation_degrees = 17;
    rot.scale = 1.08;
    facet::apply_augment(f.data(), n, n, out.data(), rot, Padding::Reflect);
    CHECK(out[2 * n + 2] == doctest::Approx(f[2 * n + 2]).epsilon(1e-6));
}

TEST_CASE("shrinking with zero padding leaves a dark border, keeps the centre") {
    constexpr std::size_t n = 9;
    const std::vector<float> white(n * n, 1.0f);
    AugmentParams shrink;
    shrink.scale = 0.5;
    std::vector<float> out(n * n);
    facet::apply_augment(white.data(), n, n, out.data(), shrink, Padding::Zero);
    CHECK(out[0] == 0.0f);
    CHECK(out[n * n - 1] == 0.0f);
    CHECK(out[4 * n + 4] == 1.0f);
    facet::apply_augment(white.data(), n, n, out.data(), shrink, Padding::Reflect);
    for (float v : out) CHECK(v == doctest::Approx(1.0f));
}

TEST_CASE("brightness and contrast act around mid-gray and are clamped") {
    const std::vector<float> grey(H * W, 0.7f);
    AugmentParams p;
    p.contrast = 1.5;
    p.brightness = 0.1;
    std::vector<float> out(H * W);
    facet::apply_augment(grey.data(), H, W, out.data(), p, Padding::Zero);
    for (float v : out) CHECK(v == doctest::Approx((0.7 - 0.5) * 1.5 + 0.5 + 0.1));
    p.brightness = 0.5;
    facet::apply_augment(grey.data(), H, W, out.data(), p, Padding::Zero);
    for (float v : out) CHECK(v == 1.0f);
}

TEST_CASE("random augmentation stays in [0, 1], and a seed reproduces it") {
    AugmentConfig strong;
    strong.max_shift = 3;
    strong.max_rotation_degrees = 30;
    strong.max_scale = 0.3;
    strong.max_brightness = 0.5;
    strong.max_contrast = 0.9;
    for (Padding padding : {Padding::Zero, Padding::Reflect}) {
        strong.padding = padding;
        const auto img = ramp_bytes();
        std::vector<float> a(H * W), b(H * W), c(H * W);
        bool some_differ = false;
        for (std::uint64_t seed = 0; seed < 50; ++seed) {
            facet::Rng r1(seed), r2(seed), r3(seed + 1000);
            facet::augment_image(img.data(), H, W, a.data(), strong, r1);
            facet::augment_image(img.data(), H, W, b.data(), strong, r2);
            facet::augment_image(img.data(), H, W, c.data(), strong, r3);
            CHECK(a == b);
            some_differ |= a != c;
            for (float v : a) {
                CHECK(v >= 0.0f);
                CHECK(v <= 1.0f);
            }
        }
        CHECK(some_differ);
    }
}

TEST_CASE("each transform can be switched off on its own") {
    const auto img = ramp_bytes();
    AugmentConfig only_flip = AugmentConfig::none();
    only_flip.flip = true;
    int flipped = 0;
    for (std::uint64_t seed = 0; seed < 40; ++seed) {
        facet::Rng rng(seed);
        std::vector<float> out(H * W);
        facet::augment_image(img.data(), H, W, out.data(), only_flip, rng);
        const bool is_flip = out[0] == byte_at(img, 0, W - 1);
        const bool is_same = out[0] == byte_at(img, 0, 0);
        CHECK(is_flip != is_same);
        flipped += is_flip;
    }
    CHECK(flipped > 5);  // about half of 40
    CHECK(flipped < 35);
    // Switching one transform off leaves the random draws of the others unchanged.
    AugmentConfig all;
    AugmentConfig no_flip = all;
    no_flip.flip = false;
    facet::Rng r1(9), r2(9);
    const AugmentParams a = facet::draw_augment_params(all, r1),
                        b = facet::draw_augment_params(no_flip, r2);
    CHECK(a.shift_x == b.shift_x);
    CHECK(a.rotation_degrees == b.rotation_degrees);
    CHECK(b.flip == false);
}

TEST_CASE("out-of-range settings are refused with the field's name") {
    AugmentConfig c;
    c.max_scale = 1.0;
    facet::Rng rng;
    CHECK_THROWS_WITH_AS(facet::draw_augment_params(c, rng), doctest::Contains("max_scale"),
                         facet::Error);
    c = AugmentConfig{};
    c.max_shift = -1;
    CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("max_shift"), facet::Error);
    c = AugmentConfig{};
    c.max_contrast = 2;
    CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("max_contrast"), facet::Error);
    std::vector<float> out(1);
    const float in = 0;
    CHECK_THROWS_AS(facet::apply_augment(&in, 0, 1, out.data(), AugmentParams{}, Padding::Zero),
                    facet::Error);
}

TEST_CASE("a random crop is the window it names, resized bilinearly to full size") {
    // On a linear image bilinear sampling is exact: the output is the ramp at the source point
    // left + (x + 1/2) side / w - 1/2 (and the same in y, the window's height h side / w).
    constexpr std::size_t w = 12, h = 12;
    std::vector<float> ramp(h * w);
    for (std::size_t y = 0; y < h; ++y)
        for (std::size_t x = 0; x < w; ++x) ramp[y * w + x] = 0.02f * x + 0.03f * y + 0.1f;
    for (const int side : {6, 9, 11})
        for (const double at : {0.0, 0.5, 1.0}) {
            AugmentParams p;
            p.crop_side = side, p.crop_x = at, p.crop_y = 1 - at;
            std::vector<float> out(h * w);
            facet::apply_augment(ramp.data(), h, w, out.data(), p, Padding::Reflect);
            const long room = static_cast<long>(w) - side;
            auto start = [&](double f) {  // 0: first, 1: last, 0.5: the middle position
                return f == 0 ? 0L : f == 1 ? room : (room + 1) / 2;
            };
            const double left = static_cast<double>(start(at)),
                         top = static_cast<double>(start(1 - at)), ratio = double(side) / w;
            for (std::size_t y = 0; y < h; ++y)
                for (std::size_t x = 0; x < w; ++x) {
                    const double sx = left + (x + 0.5) * ratio - 0.5,
                                 sy = top + (y + 0.5) * ratio - 0.5;
                    // Points less than a pixel outside the image are read from its mirror.
                    if (sx < 0 || sy < 0 || sx > w - 1.0 || sy > h - 1.0) continue;
                    CHECK(out[y * w + x] ==
                          doctest::Approx(0.02 * sx + 0.03 * sy + 0.1).epsilon(1e-5));
                }
        }
    // A crop as wide as the image is no crop: pixels copied exactly.
    AugmentParams whole;
    whole.crop_side = static_cast<int>(w);
    std::vector<float> out(h * w);
    facet::apply_augment(ramp.data(), h, w, out.data(), whole, Padding::Reflect);
    CHECK(out == ramp);
    whole.crop_side = static_cast<int>(w) + 1;
    CHECK_THROWS_WITH_AS(
        facet::apply_augment(ramp.data(), h, w, out.data(), whole, Padding::Reflect),
        doctest::Contains("crop side"), facet::Error);
}

TEST_CASE("random crops and erasing: drawn in range, and the older draws unchanged") {
    AugmentConfig old_config, config;
    config.crop_min = 40, config.crop_max = 44;
    config.erase_probability = 0.3;
    std::vector<int> sides(45, 0);
    int erased = 0;
    const int draws = 4000;
    for (int i = 0; i < draws; ++i) {
        facet::Rng r1(100 + i), r2(100 + i);
        const AugmentParams a = facet::draw_augment_params(old_config, r1),
                            b = facet::draw_augment_params(config, r2);
        REQUIRE(a.flip == b.flip);
        REQUIRE(a.shift_x == b.shift_x);
        REQUIRE(a.shift_y == b.shift_y);
        REQUIRE(a.rotation_degrees == b.rotation_degrees);
        REQUIRE(a.scale == b.scale);
        REQUIRE(a.brightness == b.brightness);
        REQUIRE(a.contrast == b.contrast);
        CHECK(a.crop_side == 0);
        CHECK_FALSE(a.erase);
        REQUIRE(b.crop_side >= 40);
        REQUIRE(b.crop_side <= 44);
        ++sides[static_cast<std::size_t>(b.crop_side)];
        REQUIRE(b.erase_area >= config.erase_min_area);
        REQUIRE(b.erase_area <= config.erase_max_area);
        REQUIRE(b.erase_aspect >= 1 / config.erase_max_aspect - 1e-12);
        REQUIRE(b.erase_aspect <= config.erase_max_aspect + 1e-12);
        erased += b.erase;
    }
    for (int s = 40; s <= 44; ++s) CHECK(sides[static_cast<std::size_t>(s)] > draws / 5 - 150);
    // Binomial(4000, 0.3): standard deviation 29.
    CHECK(erased > 1200 - 150);
    CHECK(erased < 1200 + 150);
}

TEST_CASE("random erasing fills one rectangle of the drawn area and shape with noise") {
    constexpr std::size_t h = 40, w = 30;
    const std::vector<float> gray(h * w, 0.5f);
    AugmentParams p;
    p.erase = true, p.erase_area = 0.2, p.erase_aspect = 2.0, p.erase_x = 1.0, p.erase_y = 0.0;
    p.erase_seed = 77;
    std::vector<float> out(h * w);
    facet::apply_augment(gray.data(), h, w, out.data(), p, Padding::Reflect);
    // area 240 pixels, height / width 2: 22 x 11 (rounded), at the top right.
    const long eh = std::lround(std::sqrt(240.0 * 2)), ew = std::lround(std::sqrt(240.0 / 2));
    std::size_t changed = 0;
    for (std::size_t y = 0; y < h; ++y)
        for (std::size_t x = 0; x < w; ++x) {
            const bool inside = static_cast<long>(y) < eh && static_cast<long>(x) >= long(w) - ew;
            const float v = out[y * w + x];
            if (!inside) REQUIRE(v == 0.5f);
            if (inside) {
                REQUIRE(v >= 0.0f);
                REQUIRE(v <= 1.0f);
            }
            changed += v != 0.5f;
        }
    CHECK(changed == static_cast<std::size_t>(eh * ew));  // noise never lands on 0.5 exactly here
    // The same seed, the same noise; another seed, other noise.
    std::vector<float> again(h * w), other(h * w);
    facet::apply_augment(gray.data(), h, w, again.data(), p, Padding::Reflect);
    CHECK(again == out);
    p.erase_seed = 78;
    facet::apply_augment(gray.data(), h, w, other.data(), p, Padding::Reflect);
    CHECK(other != out);
    // Settings out of range name their field.
    AugmentConfig c;
    c.crop_min = 44, c.crop_max = 40;
    CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("crop"), facet::Error);
    c = AugmentConfig{};
    c.erase_probability = 1.5;
    CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("erase_probability"), facet::Error);
    c = AugmentConfig{};
    c.erase_min_area = 0.5, c.erase_max_area = 0.4;
    CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("erase areas"), facet::Error);
}
