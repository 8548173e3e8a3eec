// facet/kernels/gemm_microkernel_avx512.hpp — the AVX-512F micro-kernels (32 zmm registers).
// Compiled with a per-function target attribute, so no -mavx512f flag is needed to build them;
// the driver calls them only when cpu_features() says the CPU has AVX-512F.
// Read next: kernels/gemm_eigen.hpp, then kernels/gemm.hpp (the driver).
#pragma once

#include <cstddef>

#include "facet/kernels/cpu_features.hpp"

#if FACET_GEMM_HAVE_X86_KERNELS
#include <immintrin.h>

namespace facet {

/// AVX-512 kernel: 8 rows x 3 zmm columns (48 floats / 24 doubles).
///  - 24 accumulators + 3 vectors of B + 1 broadcast of A = 28 of the 32 zmm registers.
///  - Per k-step 24 FMAs (12 cycles on two FMA pipes) against 3 loads and 8 broadcasts: the
///    load ports have room to spare, so the FMA pipes set the pace.
///  - MR = 8 divides every M of the fer-cnn-s GEMMs (32, 64, 128, 288, ...) and NR = 48 floats
///    divides every N (147456, 36864, 9216, 2304, 576, 144, 288, 1152): no wasted edge tiles.
/// The B panel streams from L2 while the A panel (8 x kc) stays in L1; B is prefetched a few
/// k-steps ahead, and the tile of C before the loop so its cache misses overlap the FMAs.
template <typename T>
struct GemmKernelAvx512;

template <>
struct GemmKernelAvx512<float> {
    static constexpr std::size_t MR = 8;
    static constexpr std::size_t NR = 48;
    static constexpr bool simd_packing = true;  // packing may use AVX2 shuffles
    static constexpr const char* name = "avx512";

    /// C (MR x NR, row stride ldc) = alpha * A_panel * B_panel + beta * C.
    __attribute__((target("avx512f,avx2,fma"))) static void run(std::size_t kc, const float* a,
                                                                const float* b, float* c,
                                                                std::size_t ldc, float alpha,
                                                                float beta) {
        constexpr std::size_t ahead = 8 * NR;  // prefetch distance: 8 k-steps of B
#pragma GCC unroll 8
        for (std::size_t i = 0; i < MR; ++i) {
            _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 32), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 47), _MM_HINT_T0);
        }
        __m512 acc[MR][3];
#pragma GCC unroll 8
        for (std::size_t i = 0; i < MR; ++i)
            acc[i][0] = acc[i][1] = acc[i][2] = _mm512_setzero_ps();
        for (std::size_t k = 0; k < kc; ++k, a += MR, b += NR) {
            _mm_prefetch(reinterpret_cast<const char*>(b + ahead), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(b + ahead + 16), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(b + ahead + 32), _MM_HINT_T0);
            const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16),
                         b2 = _mm512_load_ps(b + 32);
#pragma GCC unroll 8
            for (std::size_t i = 0; i < MR; ++i) {
                const __m512 ai = _mm512_set1_ps(a[i]);
                acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
                acc[i][2] = _mm512_fmadd_ps(ai, b2, acc[i][2]);
            }
        }
        const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
        for (std::size_t i = 0; i < MR; ++i) {
            float* ci = c + i * ldc;
#pragma GCC unroll 3
            for (std::size_t j = 0; j < 3; ++j) {
                const __m512 scaled = _mm512_mul_ps(va, acc[i][j]);
                _mm512_storeu_ps(ci + 16 * j,
                                 beta == 0.0f
                                     ? scaled
                                     : _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci + 16 * j), scaled));
            }
        }
    }
};

template <>
struct GemmKernelAvx512<double> {
    static constexpr std::size_t MR = 8;
    static constexpr std::size_t NR = 24;
    static constexpr bool simd_packing = true;  // packing may use AVX2 shuffles
    static constexpr const char* name = "avx512";

    /// C (MR x NR, row stride ldc) = alpha * A_panel * B_panel + beta * C.
    __attribute__((target("avx512f,avx2,fma"))) static void run(std::size_t kc, const double* a,
                                                                const double* b, double* c,
                                                                std::size_t ldc, double alpha,
                                                                double beta) {
        constexpr std::size_t ahead = 8 * NR;
#pragma GCC unroll 8
        for (std::size_t i = 0; i < MR; ++i) {
            _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 8), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 23), _MM_HINT_T0);
        }
        __m512d acc[MR][3];
#pragma GCC unroll 8
        for (std::size_t i = 0; i < MR; ++i)
            acc[i][0] = acc[i][1] = acc[i][2] = _mm512_setzero_pd();
        for (std::size_t k = 0; k < kc; ++k, a += MR, b += NR) {
            _mm_prefetch(reinterpret_cast<const char*>(b + ahead), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(b + ahead + 8), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(b + ahead + 16), _MM_HINT_T0);
            const __m512d b0 = _mm512_load_pd(b), b1 = _mm512_load_pd(b + 8),
                          b2 = _mm512_load_pd(b + 16);
#pragma GCC unroll 8
            for (std::size_t i = 0; i < MR; ++i) {
                const __m512d ai = _mm512_set1_pd(a[i]);
                acc[i][0] = _mm512_fmadd_pd(ai, b0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_pd(ai, b1, acc[i][1]);
                acc[i][2] = _mm512_fmadd_pd(ai, b2, acc[i][2]);
            }
        }
        const __m512d va = _mm512_set1_pd(alpha), vb = _mm512_set1_pd(beta);
#pragma GCC unroll 8
        for (std::size_t i = 0; i < MR; ++i) {
            double* ci = c + i * ldc;
#pragma GCC unroll 3
            for (std::size_t j = 0; j < 3; ++j) {
                const __m512d scaled = _mm512_mul_pd(va, acc[i][j]);
                _mm512_storeu_pd(ci + 8 * j,
                                 beta == 0.0
                                     ? scaled
                                     : _mm512_fmadd_pd(vb, _mm512_loadu_pd(ci + 8 * j), scaled));
            }
        }
    }
};

}  // namespace facet
#endif
