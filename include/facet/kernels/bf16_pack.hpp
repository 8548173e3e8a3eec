// facet/kernels/bf16_pack.hpp — packing for the bf16 GEMM (kernels/bf16_gemm.hpp): float operands
// rounded to bf16 (nearest, ties to even: facet::bf16) and laid out in the pairs along k that one
// 32-bit lane of vdpbf16ps multiplies and sums.
//
// Packed A, one MR-row micro-panel after another, each P = ceil(kc / 2) pairs deep:
//     for each pair p: for each row i < MR:    bf16(A[i][2p]), bf16(A[i][2p+1])     (MR lanes)
// Packed B, one NR-column micro-panel after another:
//     for each pair p: for each column j < NR: bf16(B[2p][j]), bf16(B[2p+1][j])     (NR lanes)
// The even k sits in a lane's low half. Rows, columns and the k past the matrix are zeros, which
// add nothing. Transposes are resolved here, as in gemm_pack.hpp. The AMX kernels read A in
// blocks of 16 pairs per row instead (pack_bf16_a_tiles).
// Read next: kernels/bf16_microkernel_portable.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "facet/core/context.hpp"
#include "facet/core/dtype.hpp"
#include "facet/kernels/cpu_features.hpp"
#include "facet/kernels/gemm_pack.hpp"

#if FACET_GEMM_HAVE_X86_KERNELS
#include <immintrin.h>
#endif

namespace facet {

/// Pairs along k of a slice of `kc` k's.
inline std::size_t bf16_pairs(std::size_t kc) {
    return (kc + 1) / 2;
}

namespace detail {

/// Packs `width` lines of a float matrix into one micro-panel of pairs: line r (a row of op(A),
/// a column of op(B)) has its element k at src[r * line_step + k * k_step]. The plain loop: the
/// reference the vector versions below are held to, bit for bit.
inline void pack_bf16_panel_reference(std::size_t width, std::size_t lines, std::size_t kc,
                                      const float* src, std::size_t line_step, std::size_t k_step,
                                      std::uint16_t* out) {
    const std::size_t pairs = bf16_pairs(kc);
    for (std::size_t p = 0; p < pairs; ++p)
        for (std::size_t r = 0; r < width; ++r)
            for (std::size_t t = 0; t < 2; ++t) {
                const std::size_t k = 2 * p + t;
                *out++ = r < lines && k < kc ? bf16::from_float(src[r * line_step + k * k_step])
                                             : std::uint16_t{0};
            }
}

#if FACET_GEMM_HAVE_X86_KERNELS
// Shifts and narrowing go through their zero-masking forms with every lane selected: the plain
// intrinsics start from an undefined vector, which GCC 12 reports as maybe uninitialised.
__attribute__((target("avx512f"), always_inline)) inline __m512i shift_right16(__m512i x) {
    return _mm512_maskz_srli_epi32(static_cast<__mmask16>(0xffff), x, 16);
}
__attribute__((target("avx512f"), always_inline)) inline __m512i shift_left16(__m512i x) {
    return _mm512_maskz_slli_epi32(static_cast<__mmask16>(0xffff), x, 16);
}

/// bf16::from_float on 16 floats at once, each result in the low half of its 32-bit lane: the
/// same integer rounding (add 0x7fff plus the kept part's lowest bit) and the same quiet NaN.
__attribute__((target("avx512f"), always_inline)) inline __m512i bf16_round16(__m512 x) {
    const __m512i bits = _mm512_castps_si512(x);
    const __m512i lsb = _mm512_and_si512(shift_right16(bits), _mm512_set1_epi32(1));
    const __m512i rounded =
        shift_right16(_mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(
        _mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    const __m512i quiet = _mm512_or_si512(shift_right16(bits), _mm512_set1_epi32(0x40));
    return _mm512_mask_mov_epi32(rounded, nan, quiet);
}

/// The lines are contiguous across (line_step == 1: B as stored, A transposed): for each pair,
/// two rows of 16 lines are rounded and interleaved, the odd k shifted into the high halves.
__attribute__((target("avx512f"))) inline void pack_bf16_panel_across(
    std::size_t width, std::size_t lines, std::size_t kc, const float* src, std::size_t k_step,
    std::uint16_t* out) {
    const std::size_t pairs = bf16_pairs(kc);
    auto* lanes = reinterpret_cast<std::uint32_t*>(out);  // one pair per 32-bit lane
    for (std::size_t p = 0; p < pairs; ++p, lanes += width) {
        const float* even = src + 2 * p * k_step;
        const bool has_odd = 2 * p + 1 < kc;
        for (std::size_t r0 = 0; r0 < width; r0 += 16) {
            const std::size_t in = r0 < lines ? std::min<std::size_t>(16, lines - r0) : 0;
            const auto load = static_cast<__mmask16>((1u << in) - 1);
            const auto store =
                static_cast<__mmask16>((1u << std::min<std::size_t>(16, width - r0)) - 1);
            const __m512i lo = bf16_round16(_mm512_maskz_loadu_ps(load, even + r0));
            const __m512i hi = has_odd
                                   ? bf16_round16(_mm512_maskz_loadu_ps(load, even + k_step + r0))
                                   : _mm512_setzero_si512();
            _mm512_mask_storeu_epi32(lanes + r0, store, _mm512_or_si512(lo, shift_left16(hi)));
        }
    }
}

/// The lines are contiguous along k (k_step == 1: A as stored, B transposed): 16 floats of a line
/// are 8 neighbouring pairs, rounded and narrowed to 16 bits each; eight lines' pairs form an
/// 8 x 8 block of 32-bit lanes, turned by transpose_block so that each pair's lines are contiguous.
__attribute__((target("avx512f,avx2"))) inline void pack_bf16_panel_along(
    std::size_t width, std::size_t lines, std::size_t kc, const float* src, std::size_t line_step,
    std::uint16_t* out) {
    const std::size_t pairs = bf16_pairs(kc);
    auto* lanes = reinterpret_cast<float*>(out);  // a pair's 32 bits moved as a float's
    alignas(32) std::uint32_t block[8][8];
    alignas(32) float turned[8][8];
    for (std::size_t r0 = 0; r0 < width; r0 += 8)
        for (std::size_t p0 = 0; p0 < pairs; p0 += 8) {
            const std::size_t k0 = 2 * p0, in = std::min<std::size_t>(16, kc - k0);
            const auto load = static_cast<__mmask16>((1u << in) - 1);
            for (std::size_t r = 0; r < 8; ++r) {
                const __m512 x = r0 + r < lines
                                     ? _mm512_maskz_loadu_ps(load, src + (r0 + r) * line_step + k0)
                                     : _mm512_setzero_ps();
                _mm256_store_si256(
                    reinterpret_cast<__m256i*>(block[r]),
                    _mm512_maskz_cvtepi32_epi16(static_cast<__mmask16>(0xffff), bf16_round16(x)));
            }
            const std::size_t count = std::min<std::size_t>(8, pairs - p0);
            if (count == 8) {
                transpose_block(reinterpret_cast<const float*>(&block[0][0]), 8,
                                lanes + p0 * width + r0, width);
                continue;
            }
            transpose_block(reinterpret_cast<const float*>(&block[0][0]), 8, &turned[0][0], 8);
            for (std::size_t q = 0; q < count; ++q)
                std::copy(turned[q], turned[q] + 8, lanes + (p0 + q) * width + r0);
        }
}
#endif

/// One micro-panel of pairs (see pack_bf16_panel_reference), by a vector path when the CPU has
/// AVX-512 and the lines are contiguous one way or the other; the bits are the reference's.
inline void pack_bf16_panel(std::size_t width, std::size_t lines, std::size_t kc, const float* src,
                            std::size_t line_step, std::size_t k_step, std::uint16_t* out) {
#if FACET_GEMM_HAVE_X86_KERNELS
    if (cpu_features().avx512f && current_context().wide_loops) {
        if (line_step == 1) return pack_bf16_panel_across(width, lines, kc, src, k_step, out);
        if (k_step == 1 && width % 8 == 0)
            return pack_bf16_panel_along(width, lines, kc, src, line_step, out);
    }
#endif
    pack_bf16_panel_reference(width, lines, kc, src, line_step, k_step, out);
}

}  // namespace detail

/// Packs rows [0, mc) and k's [0, kc) of op(A) into MR-row panels of pairs at `out`
/// (each 2 * MR * bf16_pairs(kc) values). `a` points at element (0, 0) of the block of op(A).
template <std::size_t MR>
void pack_bf16_a(Trans trans, std::size_t mc, std::size_t kc, const float* a, std::size_t lda,
                 std::uint16_t* out) {
    const bool t = trans == Trans::Yes;
    for (std::size_t r0 = 0; r0 < mc; r0 += MR, out += 2 * MR * bf16_pairs(kc))
        detail::pack_bf16_panel(MR, std::min(MR, mc - r0), kc, t ? a + r0 : a + r0 * lda,
                                t ? 1 : lda, t ? lda : 1, out);
}

/// Packs k's [0, kc) and columns [0, nc) of op(B) into NR-column panels of pairs at `out`
/// (each 2 * NR * bf16_pairs(kc) values). `b` points at element (0, 0) of the block of op(B).
template <std::size_t NR>
void pack_bf16_b(Trans trans, std::size_t kc, std::size_t nc, const float* b, std::size_t ldb,
                 std::uint16_t* out) {
    const bool t = trans == Trans::Yes;
    for (std::size_t c0 = 0; c0 < nc; c0 += NR, out += 2 * NR * bf16_pairs(kc))
        detail::pack_bf16_panel(NR, std::min(NR, nc - c0), kc, t ? b + c0 * ldb : b + c0,
                                t ? ldb : 1, t ? 1 : ldb, out);
}

/// Packs rows [0, mc) and k's [0, kc) of op(A) for the AMX kernels
/// (kernels/bf16_microkernel_amx.hpp): MR-row panels, each `pairs` pairs deep (at least
/// bf16_pairs(kc), a multiple of 16; the pairs past kc are zeros) and laid out by blocks of 16
/// pairs: for each block, for each row, its 16 pairs, one tile row of 64 bytes. A plain loop.
template <std::size_t MR>
void pack_bf16_a_tiles(Trans trans, std::size_t mc, std::size_t kc, const float* a, std::size_t lda,
                       std::uint16_t* out, std::size_t pairs) {
    constexpr std::size_t block = 16;
    const bool t = trans == Trans::Yes;
    for (std::size_t r0 = 0; r0 < mc; r0 += MR)
        for (std::size_t q = 0; q < pairs / block; ++q)
            for (std::size_t i = 0; i < MR; ++i)
                for (std::size_t k = 2 * block * q; k < 2 * block * (q + 1); ++k) {
                    const std::size_t row = r0 + i;
                    *out++ = row < mc && k < kc
                                 ? bf16::from_float(t ? a[k * lda + row] : a[row * lda + k])
                                 : std::uint16_t{0};
                }
}

}  // namespace facet
