// facet/kernels/int8_prepare.hpp — the data movement around the int8 GEMM of a convolution
// (layers/quantized_conv2d.hpp): quantising floats to codes, turning C planes of codes into
// channels-last rows, and the 4 x 4 transpose of 32-bit groups that packing four pixels' patches
// into a GEMM panel is. At batch 1 these cost a third of what the GEMM itself does, so each has a
// vector path; the plain loop beside it is the reference, and the tests hold the vector path to it
// bit for bit.
//
// - quantize_codes: round(x / scale) + zero point, clamped to [0, 127], as the plain loop of
//   ActivationQuantization::quantize; the same loop compiled for AVX2 (8 floats wide instead of
//   SSE2's 4). Only multiplies and adds that are not contracted, so the bits are the same.
// - planes_to_channels_last: 16 x 16 blocks of bytes transposed with SSE2 unpacks (the x86-64
//   baseline), the rest by the plain loop.
// - interleave_four_rows: four rows of 32-bit groups into one run, group by group (row 0's group
//   q, row 1's, row 2's, row 3's, then group q + 1): 4 x 4 transposes of 32-bit lanes, in SSE2.
// Read next: layers/quantized_conv2d.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "facet/kernels/cpu_features.hpp"

#if FACET_GEMM_HAVE_X86_KERNELS
#include <immintrin.h>
#endif

namespace facet {

namespace detail {

/// The reference: codes[i] = clamp(x[i] * inverse + offset, 0.5, top) truncated; offset is the
/// zero point + 0.5 (round half up) and top 127.5, so the truncation lands in [0, 127]; a NaN
/// gives 0. A truncation rather than nearbyint, so that the loop vectorises. Always inlined, so
/// that the AVX2 version below is this loop compiled for AVX2.
template <typename T>
[[gnu::always_inline]] inline void quantize_codes_reference(const T* x, std::size_t n,
                                                            std::uint8_t* codes, float inverse,
                                                            float offset, float top) {
    for (std::size_t i = 0; i < n; ++i) {
        float v = static_cast<float>(x[i]) * inverse + offset;
        v = v > 0.5f ? v : 0.5f;  // also NaN
        v = v < top ? v : top;
        codes[i] = static_cast<std::uint8_t>(static_cast<int>(v));
    }
}

#if FACET_GEMM_HAVE_X86_KERNELS
/// The reference loop compiled for AVX2 (no FMA in the target, so nothing is contracted).
__attribute__((target("avx2"))) inline void quantize_codes_avx2(const float* x, std::size_t n,
                                                                std::uint8_t* codes, float inverse,
                                                                float offset, float top) {
    quantize_codes_reference(x, n, codes, inverse, offset, top);
}
#endif

/// The reference: hwc[i * C + c] = planes[c * HW + i], for the channels from c_begin and the
/// pixels in [i_begin, i_end) (all of both by default).
inline void planes_to_channels_last_reference(const std::uint8_t* planes, std::size_t C,
                                              std::size_t HW, std::uint8_t* hwc,
                                              std::size_t c_begin = 0, std::size_t i_begin = 0,
                                              std::size_t i_end = std::size_t(-1)) {
    // Blocks of pixels whose rows stay in L1 while each plane's part is read once.
    constexpr std::size_t block = 64;
    i_end = std::min(i_end, HW);
    for (std::size_t b = i_begin; b < i_end; b += block) {
        const std::size_t b1 = std::min(i_end, b + block);
        for (std::size_t c = c_begin; c < C; ++c)
            for (std::size_t i = b; i < b1; ++i) hwc[i * C + c] = planes[c * HW + i];
    }
}

#if FACET_GEMM_HAVE_X86_KERNELS
/// 16 rows of 16 bytes (row r at src + r * src_stride) written as 16 columns (column r at
/// dst + r, rows dst_stride apart): four rounds of unpacks, each doubling the run of bytes that
/// stay together.
inline void transpose_16x16_bytes(const std::uint8_t* src, std::size_t src_stride,
                                  std::uint8_t* dst, std::size_t dst_stride) {
    __m128i a[16], b[16];
    for (int r = 0; r < 16; ++r)
        a[r] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + r * src_stride));
    for (int r = 0; r < 8; ++r) {  // bytes of rows r and r + 8 interleaved
        b[2 * r] = _mm_unpacklo_epi8(a[r], a[r + 8]);
        b[2 * r + 1] = _mm_unpackhi_epi8(a[r], a[r + 8]);
    }
    for (int r = 0; r < 8; ++r) {
        a[2 * r] = _mm_unpacklo_epi8(b[r], b[r + 8]);
        a[2 * r + 1] = _mm_unpackhi_epi8(b[r], b[r + 8]);
    }
    for (int r = 0; r < 8; ++r) {
        b[2 * r] = _mm_unpacklo_epi8(a[r], a[r + 8]);
        b[2 * r + 1] = _mm_unpackhi_epi8(a[r], a[r + 8]);
    }
    for (int r = 0; r < 8; ++r) {
        a[2 * r] = _mm_unpacklo_epi8(b[r], b[r + 8]);
        a[2 * r + 1] = _mm_unpackhi_epi8(b[r], b[r + 8]);
    }
    for (int r = 0; r < 16; ++r)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + r * dst_stride), a[r]);
}
#endif

/// The reference: out[(q * 4 + r) * 4 .. + 3] = rows[r][4 q .. 4 q + 3], for q < groups, r < 4.
inline void interleave_four_rows_reference(const std::uint8_t* const rows[4], std::size_t groups,
                                           std::uint8_t* out, std::size_t q0 = 0) {
    for (std::size_t q = q0; q < groups; ++q)
        for (std::size_t r = 0; r < 4; ++r) std::memcpy(out + (q * 4 + r) * 4, rows[r] + 4 * q, 4);
}

}  // namespace detail

/// codes[i] = round(x[i] / scale) + zero point, clamped to [0, 127] (a NaN gives 0), given
/// inverse = 1 / scale, offset = zero point + 0.5 and top = 127.5.
template <typename T>
void quantize_codes(const T* x, std::size_t n, std::uint8_t* codes, float inverse, float offset,
                    float top) {
#if FACET_GEMM_HAVE_X86_KERNELS
    if constexpr (std::is_same_v<T, float>)
        if (cpu_features().avx2_fma)
            return detail::quantize_codes_avx2(x, n, codes, inverse, offset, top);
#endif
    detail::quantize_codes_reference(x, n, codes, inverse, offset, top);
}

/// C planes of HW codes (planes[c * HW + i]) to HW rows of C codes (hwc[i * C + c]).
inline void planes_to_channels_last(const std::uint8_t* planes, std::size_t C, std::size_t HW,
                                    std::uint8_t* hwc) {
#if FACET_GEMM_HAVE_X86_KERNELS
    const std::size_t C16 = C / 16 * 16, HW16 = HW / 16 * 16;
    for (std::size_t i = 0; i < HW16; i += 16)
        for (std::size_t c = 0; c < C16; c += 16)
            detail::transpose_16x16_bytes(planes + c * HW + i, HW, hwc + i * C + c, C);
    // The channels past the last 16 for the whole-block pixels, then every channel of the rest.
    detail::planes_to_channels_last_reference(planes, C, HW, hwc, C16, 0, HW16);
    detail::planes_to_channels_last_reference(planes, C, HW, hwc, 0, HW16);
#else
    detail::planes_to_channels_last_reference(planes, C, HW, hwc);
#endif
}

/// Four rows of `groups` 32-bit groups interleaved group by group:
/// out[(q * 4 + r) * 4 .. + 3] = rows[r][4 q .. 4 q + 3].
inline void interleave_four_rows(const std::uint8_t* const rows[4], std::size_t groups,
                                 std::uint8_t* out) {
    std::size_t q = 0;
#if FACET_GEMM_HAVE_X86_KERNELS
    for (; q + 4 <= groups; q += 4) {  // groups q .. q + 3 of each row: a 4 x 4 transpose
        __m128i r[4];
        for (int i = 0; i < 4; ++i)
            r[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i] + 4 * q));
        const __m128i r01_lo = _mm_unpacklo_epi32(r[0], r[1]),
                      r23_lo = _mm_unpacklo_epi32(r[2], r[3]);
        const __m128i r01_hi = _mm_unpackhi_epi32(r[0], r[1]),
                      r23_hi = _mm_unpackhi_epi32(r[2], r[3]);
        auto* o = reinterpret_cast<__m128i*>(out + q * 16);
        _mm_storeu_si128(o, _mm_unpacklo_epi64(r01_lo, r23_lo));
        _mm_storeu_si128(o + 1, _mm_unpackhi_epi64(r01_lo, r23_lo));
        _mm_storeu_si128(o + 2, _mm_unpacklo_epi64(r01_hi, r23_hi));
        _mm_storeu_si128(o + 3, _mm_unpackhi_epi64(r01_hi, r23_hi));
    }
#endif
    detail::interleave_four_rows_reference(rows, groups, out, q);
}

}  // namespace facet
