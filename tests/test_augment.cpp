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
