// facet/kernels/gemm_common.hpp — what facet's GEMMs share (gemm.hpp's fp32 / fp64 product,
// bf16_gemm.hpp's bf16 one): cache blocking from the CPU's cache sizes, the operand checks, the
// threshold below which one thread is faster, and C = beta * C.
// Read next: kernels/gemm.hpp.
#pragma once

#include <algorithm>
#include <cstddef>

#include "facet/core/error.hpp"
#include "facet/kernels/cpu_features.hpp"

namespace facet::detail {

/// The block sizes of gemm_blocked, in elements.
struct GemmBlockSizes {
    std::size_t kc = 0, nc = 0, mc = 0;
};

/// Cache blocking for elements of `element_size` bytes on a core with `l1d` bytes of L1 data
/// cache and `l2` bytes of L2 (48 KiB and 1 MiB give 384 / 384 / 1536 floats, Zen 5):
///  - KC: one A micro-panel (8 rows x KC) should take about a quarter of L1, leaving room for
///    the B panel streaming through and the C tile; a long KC also amortises the C tile's
///    load/store over many FMAs. KC sets where k is cut, so it alone changes the bits.
///  - NC: the packed B block (KC x NC) lives in L2 and is swept once per A micro-panel; 9/16 of
///    L2 leaves room for the A block passing through and for C.
///  - MC: rows of A packed at once; A is read once per NC block, streaming from L3, so MC only
///    bounds the buffer: four B blocks' worth.
/// NC and MC are multiples of every kernel's MR (4, 6, 8) and NR (8, 16, 24, 48).
inline GemmBlockSizes gemm_block_sizes(std::size_t l1d, std::size_t l2, std::size_t element_size) {
    GemmBlockSizes b;
    b.kc = std::clamp<std::size_t>(l1d / 4 / (8 * element_size) / 8 * 8, 64, 2048);
    b.nc = std::max<std::size_t>(48, l2 * 9 / 16 / (b.kc * element_size) / 48 * 48);
    b.mc = 4 * b.nc;
    return b;
}

/// The blocking gemm() uses for T on this CPU (cpu_caches()), computed once.
template <typename T>
const GemmBlockSizes& gemm_blocking() {
    static const GemmBlockSizes sizes =
        gemm_block_sizes(cpu_caches().l1d, cpu_caches().l2, sizeof(T));
    return sizes;
}

inline std::size_t round_up(std::size_t n, std::size_t multiple) {
    return (n + multiple - 1) / multiple * multiple;
}

/// Splits n into the fewest pieces of at most `block`, of nearly equal size rounded up to a
/// multiple of `unit`: K = 400 becomes 2 x 200 rather than 384 + 16 (short slices are slow).
inline std::size_t even_block(std::size_t n, std::size_t block, std::size_t unit) {
    const std::size_t pieces = (n + block - 1) / block;
    return std::min(block, round_up((n + pieces - 1) / pieces, unit));
}

/// C = beta * C, with beta == 0 writing zeros (the K == 0 or alpha == 0 case).
template <typename T>
void gemm_scale(std::size_t M, std::size_t N, T beta, T* C, std::size_t ldc) {
    for (std::size_t i = 0; i < M; ++i) {
        T* row = C + i * ldc;
        if (beta == T(0))
            std::fill(row, row + N, T(0));
        else if (beta != T(1))
            for (std::size_t j = 0; j < N; ++j) row[j] *= beta;
    }
}

/// Below this many multiply-adds one thread is faster: starting a parallel region costs a few
/// microseconds, which is what ~256k multiply-adds take at full speed.
inline constexpr double gemm_parallel_threshold = 262144.0;

/// Checks one operand: non-null when non-empty, leading dimension at least its column count,
/// and its extent ((rows - 1) * ld + cols elements) representable in size_t.
/// (Takes "is null" rather than the pointer: passing an uninitialised output buffer as a const
/// void* would make GCC warn that it may be read.)
inline void gemm_check_operand(const char* name, bool is_null, std::size_t rows, std::size_t cols,
                               std::size_t ld, const char* ld_name) {
    if (rows == 0 || cols == 0) return;
    check(!is_null, "gemm: ", name, " is a null pointer but has ", rows, " x ", cols, " elements");
    check(ld >= cols, "gemm: ", ld_name, " = ", ld, " is smaller than the ", cols,
          " columns of the stored ", name, " (", rows, " x ", cols, ")");
    checked_add(checked_mul(rows - 1, ld, "gemm: operand extent"), cols, "gemm: operand extent");
}

}  // namespace facet::detail
