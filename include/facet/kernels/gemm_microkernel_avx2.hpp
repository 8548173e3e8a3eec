// facet/kernels/gemm_microkernel_avx2.hpp — the AVX2 + FMA micro-kernels (16 ymm registers).
// Compiled with a per-function target attribute, so no -mavx2 flag is needed to build them; the
// driver calls them only when cpu_features() says the CPU has AVX2 and FMA.
// Read next: kernels/gemm_microkernel_avx512.hpp.
#pragma once

#include <cstddef>

#include "facet/kernels/cpu_features.hpp"

#if FACET_GEMM_HAVE_X86_KERNELS
#include <immintrin.h>

namespace facet {

/// AVX2 kernels. float: 4 x 24, 12 accumulators + 3 vectors of B + 1 broadcast of A = all 16 ymm
/// registers, 12 FMAs per 3 loads and 4 broadcasts. MR = 4 divides every M of the fer-cnn-s GEMMs
/// (32, 64, 128, ...), where the classic 6 x 16 wastes a third of its last row panel on M = 32 (and
/// measured 0.77-0.78x OpenBLAS there against 0.87-0.93x with 4 x 24: docs/benchmarks.md).
/// double: the classic 6 x 8.
template <typename T>
struct GemmKernelAvx2;

template <>
struct GemmKernelAvx2<float> {
    static constexpr std::size_t MR = 4;
    static constexpr std::size_t NR = 24;
    static constexpr bool simd_packing = true;  // packing may use AVX2 shuffles
    static constexpr const char* name = "avx2";

    /// C (MR x NR, row stride ldc) = alpha * A_panel * B_panel + beta * C.
    __attribute__((target("avx2,fma"))) static void run(std::size_t kc, const float* a,
                                                        const float* b, float* c, std::size_t ldc,
                                                        float alpha, float beta) {
        constexpr std::size_t V = NR / 8;  // vectors per row
        __m256 acc[MR][V];
#pragma GCC unroll 4
        for (std::size_t i = 0; i < MR; ++i)
            for (std::size_t v = 0; v < V; ++v) acc[i][v] = _mm256_setzero_ps();
        for (std::size_t k = 0; k < kc; ++k, a += MR, b += NR) {
            const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8),
                         b2 = _mm256_load_ps(b + 16);
#pragma GCC unroll 4
            for (std::size_t i = 0; i < MR; ++i) {
                const __m256 ai = _mm256_broadcast_ss(a + i);
                acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
                acc[i][2] = _mm256_fmadd_ps(ai, b2, acc[i][2]);
            }
        }
        const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 4
        for (std::size_t i = 0; i < MR; ++i) {
            float* ci = c + i * ldc;
#pragma GCC unroll 3
            for (std::size_t v = 0; v < V; ++v) {
                const __m256 r = _mm256_mul_ps(va, acc[i][v]);
                _mm256_storeu_ps(
                    ci + 8 * v,
                    beta == 0.0f ? r : _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8 * v), r));
            }
        }
    }
    /// Two rows of A against four of B, 8 k at a time. `Masked`: the last, partial step, whose
    /// lanes outside `m` read as 0 and are never loaded (plain loads elsewhere: a masked load
    /// costs more on some CPUs).
    template <bool Masked>
    __attribute__((target("avx2,fma"), always_inline)) static inline void dot_pair_step(
        const float* a0, const float* a1, const float* const* b, std::size_t k, __m256i m,
        __m256* acc) {
        const __m256 x0 = Masked ? _mm256_maskload_ps(a0 + k, m) : _mm256_loadu_ps(a0 + k);
        const __m256 x1 = Masked ? _mm256_maskload_ps(a1 + k, m) : _mm256_loadu_ps(a1 + k);
#pragma GCC unroll 4
        for (std::size_t j = 0; j < 4; ++j) {
            const __m256 y = Masked ? _mm256_maskload_ps(b[j] + k, m) : _mm256_loadu_ps(b[j] + k);
            acc[j] = _mm256_fmadd_ps(x0, y, acc[j]);
            acc[4 + j] = _mm256_fmadd_ps(x1, y, acc[4 + j]);
        }
    }
    /// gemm_dot_rows_applies: M N / (M + N) up to 24 (32 x 32, 64 x 32) goes by dot_tile; at
    /// 64 x 64 the 4 x 24 packed kernel was as fast in a training step on an AVX2 EPYC.
    static constexpr std::size_t dot_max_reuse = 24;
    /// A 4 x 4 tile of C = alpha * A * B^T + beta * C as 16 dot products of rows, for products
    /// whose M and N are small and K long (gemm_dot_rows); arguments as the AVX-512 kernel's.
    /// 16 accumulators and the 6 rows they read do not fit 16 ymm registers, so the tile goes as
    /// two halves of 2 x 4 (8 accumulators, 2 + 4 rows: 8 FMAs per 6 loads), the second reading
    /// B's four rows again, from L1 or L2. Each half's 8 vectors reduce to its 8 sums by
    /// horizontal adds.
    __attribute__((target("avx2,fma"))) static void dot_tile(std::size_t K, const float* const* a,
                                                             const float* const* b, float* c,
                                                             std::size_t ldc, float alpha,
                                                             float beta, std::size_t rows,
                                                             std::size_t cols) {
        // Lane l of the last step is read when l < K mod 8.
        const __m256i last = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(K % 8)),
                                                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const __m128 alpha_v = _mm_set1_ps(alpha), beta_v = _mm_set1_ps(beta);
        for (std::size_t i0 = 0; i0 < rows; i0 += 2) {
            __m256 acc[8];
#pragma GCC unroll 8
            for (std::size_t j = 0; j < 8; ++j) acc[j] = _mm256_setzero_ps();
            std::size_t k = 0;
            for (; k + 8 <= K; k += 8) dot_pair_step<false>(a[i0], a[i0 + 1], b, k, last, acc);
            if (k < K) dot_pair_step<true>(a[i0], a[i0 + 1], b, k, last, acc);
            for (std::size_t h = 0; h < 2 && i0 + h < rows; ++h) {
                // hadd of hadds: lanes 0-3 and 4-7 hold row i0 + h's four sums over the two
                // 128-bit halves of the accumulators; adding the halves gives them.
                const __m256* r = acc + 4 * h;
                const __m256 q =
                    _mm256_hadd_ps(_mm256_hadd_ps(r[0], r[1]), _mm256_hadd_ps(r[2], r[3]));
                __m128 sums = _mm_add_ps(_mm256_castps256_ps128(q), _mm256_extractf128_ps(q, 1));
                float* ci = c + (i0 + h) * ldc;
                alignas(16) float out[4];
                sums = _mm_mul_ps(alpha_v, sums);
                if (beta != 0.0f) {
                    alignas(16) float old[4] = {};
                    for (std::size_t j = 0; j < cols; ++j) old[j] = ci[j];
                    sums = _mm_fmadd_ps(beta_v, _mm_load_ps(old), sums);
                }
                _mm_store_ps(out, sums);
                for (std::size_t j = 0; j < cols; ++j) ci[j] = out[j];
            }
        }
    }
    /// sum_k a[k] * b[k], for gemm's one-row product (gemm_single_row).
    __attribute__((target("avx2,fma"))) static float dot(std::size_t n, const float* a,
                                                         const float* b) {
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        std::size_t k = 0;
        for (; k + 32 <= n; k += 32) {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), s1);
            s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 16), _mm256_loadu_ps(b + k + 16), s2);
            s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 24), _mm256_loadu_ps(b + k + 24), s3);
        }
        for (; k + 8 <= n; k += 8)
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
        const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        float total = _mm_cvtss_f32(h);
        for (; k < n; ++k) total += a[k] * b[k];
        return total;
    }
};

template <>
struct GemmKernelAvx2<double> {
    static constexpr std::size_t MR = 6;
    static constexpr std::size_t NR = 8;
    static constexpr bool simd_packing = true;  // packing may use AVX2 shuffles
    static constexpr const char* name = "avx2";

    /// C (MR x NR, row stride ldc) = alpha * A_panel * B_panel + beta * C.
    __attribute__((target("avx2,fma"))) static void run(std::size_t kc, const double* a,
                                                        const double* b, double* c, std::size_t ldc,
                                                        double alpha, double beta) {
        __m256d acc[MR][2];
#pragma GCC unroll 6
        for (std::size_t i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_pd();
        for (std::size_t k = 0; k < kc; ++k, a += MR, b += NR) {
            const __m256d b0 = _mm256_load_pd(b), b1 = _mm256_load_pd(b + 4);
#pragma GCC unroll 6
            for (std::size_t i = 0; i < MR; ++i) {
                const __m256d ai = _mm256_broadcast_sd(a + i);
                acc[i][0] = _mm256_fmadd_pd(ai, b0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_pd(ai, b1, acc[i][1]);
            }
        }
        const __m256d va = _mm256_set1_pd(alpha), vb = _mm256_set1_pd(beta);
#pragma GCC unroll 6
        for (std::size_t i = 0; i < MR; ++i) {
            double* ci = c + i * ldc;
            if (beta == 0.0) {
                _mm256_storeu_pd(ci, _mm256_mul_pd(va, acc[i][0]));
                _mm256_storeu_pd(ci + 4, _mm256_mul_pd(va, acc[i][1]));
            } else {
                _mm256_storeu_pd(
                    ci, _mm256_fmadd_pd(vb, _mm256_loadu_pd(ci), _mm256_mul_pd(va, acc[i][0])));
                _mm256_storeu_pd(ci + 4, _mm256_fmadd_pd(vb, _mm256_loadu_pd(ci + 4),
                                                         _mm256_mul_pd(va, acc[i][1])));
            }
        }
    }
    /// sum_k a[k] * b[k], for gemm's one-row product (gemm_single_row).
    __attribute__((target("avx2,fma"))) static double dot(std::size_t n, const double* a,
                                                          const double* b) {
        __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
        std::size_t k = 0;
        for (; k + 16 <= n; k += 16) {
            s0 = _mm256_fmadd_pd(_mm256_loadu_pd(a + k), _mm256_loadu_pd(b + k), s0);
            s1 = _mm256_fmadd_pd(_mm256_loadu_pd(a + k + 4), _mm256_loadu_pd(b + k + 4), s1);
            s2 = _mm256_fmadd_pd(_mm256_loadu_pd(a + k + 8), _mm256_loadu_pd(b + k + 8), s2);
            s3 = _mm256_fmadd_pd(_mm256_loadu_pd(a + k + 12), _mm256_loadu_pd(b + k + 12), s3);
        }
        for (; k + 4 <= n; k += 4)
            s0 = _mm256_fmadd_pd(_mm256_loadu_pd(a + k), _mm256_loadu_pd(b + k), s0);
        const __m256d s = _mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3));
        const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
        double total = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
        for (; k < n; ++k) total += a[k] * b[k];
        return total;
    }
};

}  // namespace facet
#endif
