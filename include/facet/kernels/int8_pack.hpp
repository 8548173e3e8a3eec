// facet/kernels/int8_pack.hpp — packing for the int8 GEMM (kernels/int8_gemm.hpp): activations
// (unsigned 8-bit, the left operand A, M x K) in MR-row micro-panels and weights (signed 8-bit,
// the right operand, stored N x K as a layer holds them: one row per output channel) in NR-column
// micro-panels. Both are cut along k into groups of four: the unit one 32-bit lane of vpdpbusd
// (and of vpmaddubsw + vpmaddwd) multiplies and sums.
//
// Packed A, one MR-row panel after another, each K4 = K rounded up to 4 deep:
//     for each group g of 4 k's: for each row i < MR: A[i][4g .. 4g+3]     (MR * 4 bytes)
// Packed B, one NR-column panel after another:
//     for each group g:           for each column j < NR: W[j][4g .. 4g+3] (NR * 4 bytes)
// Rows, columns and k's past the matrix are zeros, which add nothing to any sum.
// Read next: kernels/int8_microkernel_portable.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace facet {

/// K rounded up to a whole number of groups of four.
inline std::size_t int8_padded_k(std::size_t K) {
    return (K + 3) / 4 * 4;
}

/// Packs rows [0, rows) of the M x K activations A (row stride lda) into ceil(rows / MR)
/// MR-row panels at `out` (each MR * int8_padded_k(K) bytes).
template <std::size_t MR>
void pack_int8_a(std::size_t rows, std::size_t K, const std::uint8_t* A, std::size_t lda,
                 std::uint8_t* out) {
    const std::size_t groups = int8_padded_k(K) / 4, whole = K / 4;
    for (std::size_t r0 = 0; r0 < rows; r0 += MR, out += MR * 4 * groups)
        for (std::size_t i = 0; i < MR; ++i) {
            // Row r0 + i goes to bytes 4i .. 4i + 3 of each group's MR * 4 bytes.
            std::uint8_t* dst = out + 4 * i;
            if (r0 + i >= rows) {
                for (std::size_t g = 0; g < groups; ++g) std::memset(dst + g * MR * 4, 0, 4);
                continue;
            }
            const std::uint8_t* src = A + (r0 + i) * lda;
            for (std::size_t g = 0; g < whole; ++g) std::memcpy(dst + g * MR * 4, src + 4 * g, 4);
            if (whole < groups)
                for (std::size_t t = 0; t < 4; ++t)
                    dst[whole * MR * 4 + t] = 4 * whole + t < K ? src[4 * whole + t] : 0;
        }
}

/// Packs the N x K weights W (row stride ldw; row j is output column j of the product) into
/// ceil(N / NR) NR-column panels at `out` (each NR * int8_padded_k(K) bytes).
template <std::size_t NR>
void pack_int8_b(std::size_t N, std::size_t K, const std::int8_t* W, std::size_t ldw,
                 std::int8_t* out) {
    const std::size_t groups = int8_padded_k(K) / 4;
    for (std::size_t j0 = 0; j0 < N; j0 += NR)
        for (std::size_t g = 0; g < groups; ++g)
            for (std::size_t j = 0; j < NR; ++j)
                for (std::size_t t = 0; t < 4; ++t) {
                    const std::size_t col = j0 + j, k = 4 * g + t;
                    *out++ = col < N && k < K ? W[col * ldw + k] : std::int8_t{0};
                }
}

}  // namespace facet
