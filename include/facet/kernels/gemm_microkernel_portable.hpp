// facet/kernels/gemm_microkernel_portable.hpp — the micro-kernel contract, and its plain C++
// version (any CPU; the compiler vectorises it for the baseline instruction set).
//
// A micro-kernel computes one MR x NR tile of C from an MR-row micro-panel of packed A and an
// NR-column micro-panel of packed B (see gemm_pack.hpp), both kc deep:
//     C = alpha * (Apanel * Bpanel) + beta * C,   and beta == 0 writes C without reading it.
// It keeps the MR x NR sums in registers for the whole k loop: that is where GEMM's speed comes
// from. Every kernel is a struct with MR, NR and a static run(); the driver is templated on it.
// Read next: kernels/gemm_microkernel_avx2.hpp.
#pragma once

#include <cstddef>

namespace facet {

/// Portable kernel: 4 x 8 keeps 32 sums, few enough for the compiler to hold them in the 16
/// vector registers of baseline x86-64 (or NEON's 32).
template <typename T>
struct GemmKernelPortable {
    static constexpr std::size_t MR = 4;
    static constexpr std::size_t NR = 8;
    static constexpr bool simd_packing = false;  // packing may use AVX2 shuffles
    static constexpr const char* name = "portable";

    /// C (MR x NR, row stride ldc) = alpha * A_panel * B_panel + beta * C.
    static void run(std::size_t kc, const T* a, const T* b, T* c, std::size_t ldc, T alpha,
                    T beta) {
        T acc[MR][NR] = {};
        for (std::size_t k = 0; k < kc; ++k, a += MR, b += NR)
            for (std::size_t i = 0; i < MR; ++i)
                for (std::size_t j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
        for (std::size_t i = 0; i < MR; ++i)
            for (std::size_t j = 0; j < NR; ++j)
                c[i * ldc + j] =
                    beta == T(0) ? alpha * acc[i][j] : alpha * acc[i][j] + beta * c[i * ldc + j];
    }
    /// sum_k a[k] * b[k], for gemm's one-row product (gemm_single_row): 16 independent partial
    /// sums, which the compiler may keep in vector registers (one running sum would be a serial
    /// chain it must not reorder).
    static T dot(std::size_t n, const T* a, const T* b) {
        constexpr std::size_t lanes = 16;
        T acc[lanes] = {};
        std::size_t k = 0;
        for (; k + lanes <= n; k += lanes)
            for (std::size_t l = 0; l < lanes; ++l) acc[l] += a[k + l] * b[k + l];
        T total = 0;
        for (std::size_t l = 0; l < lanes; ++l) total += acc[l];
        for (; k < n; ++k) total += a[k] * b[k];
        return total;
    }
};

}  // namespace facet
