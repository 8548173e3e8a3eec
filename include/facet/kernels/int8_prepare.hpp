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
// - epilogue_to_planes: the GEMM's int32 sums, one row of channels per pixel, to float planes
//   (NCHW) through the layer's scale, bias and ReLU: 8 x 8 blocks transposed in AVX2 registers,
//   then eight pixels of one channel converted at once, with the reference's multiply and add
//   (no FMA), so the bits are the same.
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

/// What epilogue_to_planes computes for channel o: y = float(sum - zero_point * weight_sum[o]) *
/// multiplier[o] + bias[o], then max(y, 0) with `relu`.
struct EpiloguePlanes {
    std::int32_t zero_point;
    const std::int32_t* weight_sum;
    const float* multiplier;
    const float* bias;
    bool relu;

    float operator()(std::size_t o, std::int32_t sum) const {
        const float y =
            static_cast<float>(sum - zero_point * weight_sum[o]) * multiplier[o] + bias[o];
        return relu && !(y > 0.0f) ? 0.0f : y;
    }
};

/// The reference: planes[o * P + p] = e(o, sums[p * OC + o]) for the pixels in [p_begin, P) and
/// the channels in [o_begin, OC) (all of both by default), pixels taken in blocks whose sums stay
/// in L1 while each plane's part is written.
template <typename T>
void epilogue_to_planes_reference(const std::int32_t* sums, std::size_t P, std::size_t OC,
                                  const EpiloguePlanes& e, T* planes, std::size_t o_begin = 0,
                                  std::size_t p_begin = 0) {
    constexpr std::size_t block = 32;
    for (std::size_t p0 = p_begin; p0 < P; p0 += block) {
        const std::size_t p1 = std::min(P, p0 + block);
        for (std::size_t o = o_begin; o < OC; ++o)
            for (std::size_t p = p0; p < p1; ++p)
                planes[o * P + p] = static_cast<T>(e(o, sums[p * OC + o]));
    }
}

#if FACET_GEMM_HAVE_X86_KERNELS
/// Whole blocks of 8 pixels x 8 channels: the block's eight rows of sums transposed in registers
/// (unpacks of 32- and 64-bit lanes, then 128-bit halves exchanged), so that each register holds
/// one channel's eight pixels, converted and stored as eight floats of its plane.
__attribute__((target("avx2"))) inline void epilogue_to_planes_avx2(const std::int32_t* sums,
                                                                    std::size_t P, std::size_t OC,
                                                                    const EpiloguePlanes& e,
                                                                    float* planes) {
    const std::size_t P8 = P / 8 * 8, OC8 = OC / 8 * 8;
    const __m256 zero = _mm256_setzero_ps();
    for (std::size_t p = 0; p < P8; p += 8)
        for (std::size_t o = 0; o < OC8; o += 8) {
            __m256i r[8];
            for (int i = 0; i < 8; ++i)
                r[i] =
                    _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sums + (p + i) * OC + o));
            __m256i t[8], u[8], c[8];
            for (int i = 0; i < 8; i += 2) {
                t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
                t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
            }
            for (int i = 0; i < 8; i += 4) {
                u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
                u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
                u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
                u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
            }
            for (int i = 0; i < 4;
                 ++i) {  // u[i]: channels i and i + 4 of pixels 0-3, u[i + 4]: 4-7
                c[i] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x20);
                c[i + 4] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x31);
            }
            for (int i = 0; i < 8; ++i) {
                const std::size_t ch = o + static_cast<std::size_t>(i);
                const __m256i shifted =
                    _mm256_sub_epi32(c[i], _mm256_set1_epi32(e.zero_point * e.weight_sum[ch]));
                __m256 y =
                    _mm256_mul_ps(_mm256_cvtepi32_ps(shifted), _mm256_set1_ps(e.multiplier[ch]));
                y = _mm256_add_ps(y, _mm256_set1_ps(e.bias[ch]));
                if (e.relu) y = _mm256_max_ps(y, zero);  // max(NaN or -0, 0) is +0, as !(y > 0)
                _mm256_storeu_ps(planes + ch * P + p, y);
            }
        }
    // The channels past the last 8 for the whole-block pixels, then every channel of the rest.
    for (std::size_t p = 0; p < P8; ++p)
        for (std::size_t o = OC8; o < OC; ++o) planes[o * P + p] = e(o, sums[p * OC + o]);
    epilogue_to_planes_reference(sums, P, OC, e, planes, 0, P8);
}
#endif

}  // namespace detail

/// planes[o * P + p] = e(o, sums[p * OC + o]): the int32 sums of P pixels (rows of OC channels)
/// through the epilogue into OC planes of P values.
template <typename T>
void epilogue_to_planes(const std::int32_t* sums, std::size_t P, std::size_t OC,
                        const detail::EpiloguePlanes& e, T* planes) {
#if FACET_GEMM_HAVE_X86_KERNELS
    if constexpr (std::is_same_v<T, float>)
        if (cpu_features().avx2_fma) return detail::epilogue_to_planes_avx2(sums, P, OC, e, planes);
#endif
    detail::epilogue_to_planes_reference(sums, P, OC, e, planes);
}

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
