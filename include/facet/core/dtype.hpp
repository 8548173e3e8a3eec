// facet/core/dtype.hpp — element types: the DType tag (names and sizes) and the 16-bit storage
// types bf16 and f16, with their conversions from and to float rounded to nearest, ties to even.
// They store weights compactly (model files, core/convert.hpp); arithmetic stays in float.
// Read next: core/tensor.hpp, core/convert.hpp.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "facet/core/error.hpp"

namespace facet {

/// An element type, as a model file stores it (the values are the file's tags).
enum class DType : std::uint8_t { F32 = 0, F64 = 1, BF16 = 2, F16 = 3, I8 = 4 };

/// "f32", "f64", "bf16", "f16" or "i8".
inline const char* dtype_name(DType t) {
    switch (t) {
        case DType::F32:
            return "f32";
        case DType::F64:
            return "f64";
        case DType::BF16:
            return "bf16";
        case DType::F16:
            return "f16";
        case DType::I8:
            return "i8";
    }
    return "unknown";
}

/// Bytes per element.
inline std::size_t dtype_size(DType t) {
    switch (t) {
        case DType::F32:
            return 4;
        case DType::F64:
            return 8;
        case DType::BF16:
        case DType::F16:
            return 2;
        case DType::I8:
            return 1;
    }
    throw Error(detail::concat("dtype_size: unknown element type ", int(t)));
}

/// The DType named `name` (as dtype_name gives it), or an Error listing the names.
inline DType dtype_from_name(const std::string& name) {
    for (DType t : {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I8})
        if (name == dtype_name(t)) return t;
    throw Error(detail::concat("unknown element type '", name, "' (f32, f64, bf16, f16, i8)"));
}

/// bfloat16: float's sign, exponent and top 7 mantissa bits. Storage only: convert to float to
/// compute. Converting a float rounds to nearest, ties to even; a NaN stays a NaN.
struct bf16 {
    std::uint16_t bits = 0;

    constexpr bf16() = default;
    explicit bf16(float f) : bits(from_float(f)) {}
    /// The value with these bits.
    static constexpr bf16 from_bits(std::uint16_t b) {
        bf16 v;
        v.bits = b;
        return v;
    }
    explicit operator float() const { return std::bit_cast<float>(std::uint32_t{bits} << 16); }
    friend bool operator==(bf16 a, bf16 b) { return a.bits == b.bits; }

    static std::uint16_t from_float(float f) {
        const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
        // A NaN whose payload sits in the dropped bits would round or truncate to infinity: keep
        // the sign and the top bits, and set the quiet bit.
        if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
        // Adding 0x7fff, plus 1 when the kept part is odd, carries into the kept part exactly
        // when the dropped half is above one half, or is one half and the kept part is odd.
        const std::uint32_t rounded = x + 0x7fffu + ((x >> 16) & 1u);
        return static_cast<std::uint16_t>(rounded >> 16);
    }
};

/// IEEE 754 binary16 (half precision): 1 sign, 5 exponent, 10 mantissa bits; largest finite
/// value 65504, subnormals down to 2^-24. Storage only. Converting a float rounds to nearest,
/// ties to even, to a subnormal or to infinity where the value lies; a NaN stays a NaN.
struct f16 {
    std::uint16_t bits = 0;

    constexpr f16() = default;
    explicit f16(float f) : bits(from_float(f)) {}
    static constexpr f16 from_bits(std::uint16_t b) {
        f16 v;
        v.bits = b;
        return v;
    }
    explicit operator float() const { return to_float(bits); }
    friend bool operator==(f16 a, f16 b) { return a.bits == b.bits; }

    static std::uint16_t from_float(float f) {
        const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
        const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
        const std::uint32_t ax = x & 0x7fffffffu;
        if (ax >= 0x7f800000u)  // infinity, or NaN (quiet, with the top of the payload)
            return static_cast<std::uint16_t>(
                sign | (ax == 0x7f800000u ? 0x7c00u : 0x7e00u | ((ax >> 13) & 0x3ffu)));
        if (ax >= 0x477ff000u)  // 65520 and up round to infinity
            return static_cast<std::uint16_t>(sign | 0x7c00u);
        if (ax < 0x38800000u) {  // below 2^-14: a subnormal or zero
            // The result counts units of 2^-24: round(m * 2^(e - 150) * 2^24), m with its
            // leading 1. Float subnormals (e = 0) and anything below 2^-25 round to zero.
            const std::uint32_t e = ax >> 23;
            if (e < 102) return sign;
            const std::uint32_t m = (ax & 0x7fffffu) | 0x800000u;
            const std::uint32_t shift = 126 - e;  // 14 to 24
            return static_cast<std::uint16_t>(sign | round_shift(m, shift));
        }
        // A normal half: rebias the exponent, round the 23-bit mantissa to 10 bits (a carry
        // into the exponent is the correct result).
        const std::uint32_t h = ((ax >> 23) - 112) << 10 | ((ax & 0x7fffffu) >> 13);
        const std::uint32_t rest = ax & 0x1fffu;
        const std::uint32_t up = rest > 0x1000u || (rest == 0x1000u && (h & 1u)) ? 1u : 0u;
        return static_cast<std::uint16_t>(sign | (h + up));
    }
    static float to_float(std::uint16_t h) {
        const std::uint32_t sign = std::uint32_t{h & 0x8000u} << 16;
        const std::uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
        if (e == 0) {  // zero or subnormal: m * 2^-24, exact in float
            const float v = std::ldexp(static_cast<float>(m), -24);
            return sign ? -v : v;
        }
        if (e == 31) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13));
        return std::bit_cast<float>(sign | ((e + 112) << 23) | (m << 13));
    }

  private:
    /// m / 2^shift rounded to nearest, ties to even.
    static std::uint32_t round_shift(std::uint32_t m, std::uint32_t shift) {
        const std::uint32_t q = m >> shift, rest = m & ((1u << shift) - 1),
                            half = 1u << (shift - 1);
        return q + (rest > half || (rest == half && (q & 1u)) ? 1u : 0u);
    }
};

/// Whether Tensor<T> may hold T: float and double (which layers compute in), bf16, f16 and
/// int8 (which store weights).
template <typename T>
inline constexpr bool is_tensor_element_v =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, bf16> ||
    std::is_same_v<T, f16> || std::is_same_v<T, std::int8_t>;

/// The DType of an element type.
template <typename T>
constexpr DType dtype_of() {
    static_assert(is_tensor_element_v<T>, "dtype_of: not a tensor element type");
    if constexpr (std::is_same_v<T, float>)
        return DType::F32;
    else if constexpr (std::is_same_v<T, double>)
        return DType::F64;
    else if constexpr (std::is_same_v<T, bf16>)
        return DType::BF16;
    else if constexpr (std::is_same_v<T, f16>)
        return DType::F16;
    else
        return DType::I8;
}

}  // namespace facet
