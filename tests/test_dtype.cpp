// Tests of the element types (core/dtype.hpp) and tensor conversions (core/convert.hpp): float ->
// f16 / bf16 against known bit patterns (rounding ties, subnormals, overflow, NaN), every 16-bit
// pattern back and forth, int8 quantisation by hand.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "facet/core/convert.hpp"
#include "facet/core/dtype.hpp"
#include "facet/core/tensor.hpp"

using namespace facet;

namespace {
std::uint16_t half_bits(float f) {
    return f16(f).bits;
}
std::uint16_t brain_bits(float f) {
    return bf16(f).bits;
}
float from_bits(std::uint32_t b) {
    return std::bit_cast<float>(b);
}
}  // namespace

TEST_CASE("DType names and sizes") {
    CHECK(std::string(dtype_name(DType::F16)) == "f16");
    CHECK(std::string(dtype_name(DType::BF16)) == "bf16");
    CHECK(dtype_size(DType::F32) == 4);
    CHECK(dtype_size(DType::F64) == 8);
    CHECK(dtype_size(DType::BF16) == 2);
    CHECK(dtype_size(DType::F16) == 2);
    CHECK(dtype_size(DType::I8) == 1);
    CHECK(dtype_from_name("i8") == DType::I8);
    CHECK_THROWS_AS(dtype_from_name("f8"), Error);
    CHECK(dtype_of<float>() == DType::F32);
    CHECK(dtype_of<f16>() == DType::F16);
    CHECK(dtype_of<std::int8_t>() == DType::I8);
    CHECK(sizeof(f16) == 2);
    CHECK(sizeof(bf16) == 2);
}

TEST_CASE("float -> f16: exact values, rounding ties to even, overflow, subnormals, NaN") {
    CHECK(half_bits(1.0f) == 0x3C00);
    CHECK(half_bits(-2.0f) == 0xC000);
    CHECK(half_bits(0.0f) == 0x0000);
    CHECK(half_bits(-0.0f) == 0x8000);
    CHECK(half_bits(0.5f) == 0x3800);
    CHECK(half_bits(65504.0f) == 0x7BFF);  // the largest finite half
    CHECK(half_bits(0.1f) == 0x2E66);
    CHECK(half_bits(1.0f / 3.0f) == 0x3555);
    // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties go to the even mantissa.
    CHECK(half_bits(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);
    CHECK(half_bits(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);
    CHECK(half_bits(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3C01);
    // Overflow: 65519.99 still rounds down to 65504; 65520 is the tie, and goes to infinity.
    CHECK(half_bits(std::nextafter(65520.0f, 0.0f)) == 0x7BFF);
    CHECK(half_bits(65520.0f) == 0x7C00);
    CHECK(half_bits(1e10f) == 0x7C00);
    CHECK(half_bits(-1e10f) == 0xFC00);
    CHECK(half_bits(std::numeric_limits<float>::infinity()) == 0x7C00);
    CHECK(half_bits(-std::numeric_limits<float>::infinity()) == 0xFC00);
    // Subnormals: units of 2^-24.
    CHECK(half_bits(std::ldexp(1.0f, -14)) == 0x0400);  // smallest normal
    CHECK(half_bits(std::ldexp(1023.0f, -24)) == 0x03FF);
    CHECK(half_bits(std::ldexp(1.0f, -24)) == 0x0001);
    CHECK(half_bits(-std::ldexp(1.0f, -24)) == 0x8001);
    CHECK(half_bits(std::ldexp(1.0f, -25)) == 0x0000);  // half a unit: tie, to even 0
    CHECK(half_bits(std::ldexp(1.0f, -25) * 1.0001f) == 0x0001);
    CHECK(half_bits(std::ldexp(3.0f, -25)) == 0x0002);     // 1.5 units: tie, to even 2
    CHECK(half_bits(std::ldexp(5.0f, -25)) == 0x0002);     // 2.5 units: tie, to even 2
    CHECK(half_bits(std::ldexp(2047.0f, -25)) == 0x0400);  // 1023.5 units round up to normal
    CHECK(half_bits(std::numeric_limits<float>::denorm_min()) == 0x0000);
    // NaN stays NaN (exponent all ones, mantissa not zero), with its sign.
    const std::uint16_t nan = half_bits(std::numeric_limits<float>::quiet_NaN());
    CHECK((nan & 0x7C00) == 0x7C00);
    CHECK((nan & 0x03FF) != 0);
    const std::uint16_t low_payload = half_bits(from_bits(0xFF800001u));  // payload in low bits
    CHECK((low_payload & 0x7C00) == 0x7C00);
    CHECK((low_payload & 0x03FF) != 0);
    CHECK((low_payload & 0x8000) != 0);
}

TEST_CASE("f16 -> float is exact, and every f16 survives the round trip") {
    CHECK(static_cast<float>(f16::from_bits(0x3C00)) == 1.0f);
    CHECK(static_cast<float>(f16::from_bits(0x7BFF)) == 65504.0f);
    CHECK(static_cast<float>(f16::from_bits(0x0001)) == std::ldexp(1.0f, -24));
    CHECK(static_cast<float>(f16::from_bits(0x83FF)) == -std::ldexp(1023.0f, -24));
    CHECK(static_cast<float>(f16::from_bits(0x3555)) == 0.333251953125f);
    CHECK(std::isinf(static_cast<float>(f16::from_bits(0xFC00))));
    CHECK(std::isnan(static_cast<float>(f16::from_bits(0x7E00))));
    std::size_t nans = 0, mismatches = 0;
    for (std::uint32_t b = 0; b <= 0xFFFF; ++b) {
        const float v = static_cast<float>(f16::from_bits(static_cast<std::uint16_t>(b)));
        if (std::isnan(v)) {
            ++nans;
            if (!std::isnan(static_cast<float>(f16(v)))) ++mismatches;
        } else if (half_bits(v) != b) {
            ++mismatches;
        }
    }
    CHECK(nans == 2 * 1023);
    CHECK(mismatches == 0);
}

TEST_CASE("float -> bf16: rounding ties to even, overflow, NaN stays NaN") {
    CHECK(brain_bits(1.0f) == 0x3F80);
    CHECK(brain_bits(-2.0f) == 0xC000);
    CHECK(brain_bits(3.14159274f) == 0x4049);             // 0x40490FDB rounds down
    CHECK(brain_bits(from_bits(0x3F808000u)) == 0x3F80);  // tie, even stays
    CHECK(brain_bits(from_bits(0x3F818000u)) == 0x3F82);  // tie, odd goes up
    CHECK(brain_bits(from_bits(0x3F808001u)) == 0x3F81);  // above the tie
    CHECK(brain_bits(from_bits(0x7F7FFFFFu)) == 0x7F80);  // float max rounds to inf
    CHECK(brain_bits(std::numeric_limits<float>::infinity()) == 0x7F80);
    CHECK(brain_bits(from_bits(0x00000001u)) == 0x0000);  // float subnormal, to zero
    CHECK(brain_bits(from_bits(0x00018000u)) == 0x0002);  // subnormal tie, odd goes up
    // A NaN whose payload is only in the dropped bits must not become infinity.
    for (std::uint32_t nan_bits : {0x7F800001u, 0xFF800001u, 0x7FC00000u, 0x7FFFFFFFu}) {
        CAPTURE(nan_bits);
        const bf16 b(from_bits(nan_bits));
        CHECK(std::isnan(static_cast<float>(b)));
        CHECK((b.bits & 0x8000) == ((nan_bits >> 16) & 0x8000));
    }
    std::size_t mismatches = 0;
    for (std::uint32_t b = 0; b <= 0xFFFF; ++b) {
        const float v = static_cast<float>(bf16::from_bits(static_cast<std::uint16_t>(b)));
        if (std::isnan(v) ? !std::isnan(static_cast<float>(bf16(v))) : brain_bits(v) != b)
            ++mismatches;
        if (std::bit_cast<std::uint32_t>(v) != b << 16) ++mismatches;  // widening is exact
    }
    CHECK(mismatches == 0);
}

TEST_CASE("tensors of bf16, f16 and int8; conversions keep the shape") {
    Tensor<float> t(Shape{2, 3});
    const float values[] = {1.0f, -2.0f, 65504.0f, 0.1f, 70000.0f, 1.0f / 3.0f};
    for (std::size_t i = 0; i < 6; ++i) t[i] = values[i];
    const Tensor<f16> h = to_f16(t);
    CHECK(h.shape() == t.shape());
    CHECK(h[0].bits == 0x3C00);
    CHECK(h[2].bits == 0x7BFF);
    CHECK(h[4].bits == 0x7C00);
    const Tensor<float> back = to_float(h);
    CHECK(back[3] == static_cast<float>(f16::from_bits(0x2E66)));
    CHECK(std::isinf(back[4]));
    const Tensor<bf16> b = to_bf16(t);
    CHECK(b[0].bits == 0x3F80);
    CHECK(to_float(b)[1] == -2.0f);
    CHECK(convert<double>(h)[5] == double(static_cast<float>(f16::from_bits(0x3555))));
    Tensor<f16> zeros(Shape{4});
    zeros[1] = f16(5.0f);
    zeros.zero();
    CHECK(zeros[1].bits == 0);
    Tensor<std::int8_t> bytes(Shape{3}, std::int8_t{-7});
    CHECK(bytes[2] == -7);
}

TEST_CASE("int8 quantisation: a scale per outer index, rounding to nearest even, dequantise") {
    Tensor<float> w(Shape{3, 4});
    const float v[] = {1.0f,   -0.25f,  0.1f,   -1.0f,     // max 1: scale 1/127
                       0.0f,   0.0f,    0.0f,   0.0f,      // all zero: scale 0
                       31.75f, -0.125f, 0.375f, 15.875f};  // max 31.75: scale 0.25, exact
    for (std::size_t i = 0; i < 12; ++i) w[i] = v[i];
    const QuantizedTensor q = quantize_int8(w);
    REQUIRE(q.scales.size() == 3);
    CHECK(q.group_size() == 4);
    CHECK(q.scales[0] == 1.0f / 127.0f);
    CHECK(q.scales[1] == 0.0f);
    CHECK(q.scales[2] == 0.25f);
    CHECK(q.values[0] == 127);
    CHECK(q.values[1] == -32);  // -31.75
    CHECK(q.values[2] == 13);   // 12.7
    CHECK(q.values[3] == -127);
    for (std::size_t i = 4; i < 8; ++i) CHECK(q.values[i] == 0);
    CHECK(q.values[8] == 127);
    CHECK(q.values[9] == 0);    // -0.5 units: a tie, to the even 0
    CHECK(q.values[10] == 2);   // 1.5 units: a tie, to the even 2
    CHECK(q.values[11] == 64);  // 63.5 units: a tie, to the even 64
    const Tensor<float> d = dequantize(q);
    CHECK(d.shape() == w.shape());
    for (std::size_t i = 0; i < 12; ++i) {
        CAPTURE(i);
        CHECK(std::abs(d[i] - w[i]) <= q.scales[i / 4] / 2 + 1e-7f);
    }
    CHECK(d[4] == 0.0f);
    Tensor<float> bad(Shape{1, 2});
    bad[1] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_AS(quantize_int8(bad), Error);
}
