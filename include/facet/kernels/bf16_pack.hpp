// facet/kernels/bf16_pack.hpp — packing for the bf16 GEMM (kernels/bf16_gemm.hpp): float operands
// rounded to bf16 (nearest, ties to even: facet::bf16) and laid out in the pairs along k that one
// 32-bit lane of vdpbf16ps multiplies and sums.
//
// Packed A, one MR-row micro-panel after another, each P = ceil(kc / 2) pairs deep:
//     for each pair p: for each row i < MR:    bf16(A[i][2p]), bf16(A[i][2p+1])     (MR lanes)
// Packed B, one NR-column micro-panel after another:
//     for each pair p: for each column j < NR: bf16(B[2p][j]), bf16(B[2p+1][j])     (NR lanes)
// The even k sits in a lane's low half. Rows, columns and the k past the matrix are zeros, which
// add nothing. Transposes are resolved here, as in gemm_pack.hpp.
// Read next: kernels/bf16_microkernel_portable.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "facet/core/dtype.hpp"
#include "facet/kernels/gemm_pack.hpp"

namespace facet {

/// Pairs along k of a slice of `kc` k's.
inline std::size_t bf16_pairs(std::size_t kc) {
    return (kc + 1) / 2;
}

namespace detail {

/// Packs `width` lines of a float matrix into one micro-panel of pairs: line r (a row of op(A),
/// a column of op(B)) has its element k at src[r * line_step + k * k_step].
inline void pack_bf16_panel(std::size_t width, std::size_t lines, std::size_t kc, const float* src,
                            std::size_t line_step, std::size_t k_step, std::uint16_t* out) {
    const std::size_t pairs = bf16_pairs(kc);
    for (std::size_t p = 0; p < pairs; ++p)
        for (std::size_t r = 0; r < width; ++r)
            for (std::size_t t = 0; t < 2; ++t) {
                const std::size_t k = 2 * p + t;
                *out++ = r < lines && k < kc ? bf16::from_float(src[r * line_step + k * k_step])
                                             : std::uint16_t{0};
            }
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

}  // namespace facet
