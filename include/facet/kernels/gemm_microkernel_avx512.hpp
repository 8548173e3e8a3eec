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
        tile(kc, a, b, NR, c, ldc, alpha, beta);
    }
    /// run() with B read in place: NR columns of a row-major B whose rows are ldb apart, instead
    /// of a packed panel. The same FMAs in the same order, so the same bits; gemm_blocked takes it
    /// for products with few rows, where packing B cost a quarter of the product (Winograd's 36
    /// products of 32 x 32 by 32 x 144).
    __attribute__((target("avx512f,avx2,fma"))) static void run_strided(
        std::size_t kc, const float* a, const float* b, std::size_t ldb, float* c, std::size_t ldc,
        float alpha, float beta) {
        tile(kc, a, b, ldb, c, ldc, alpha, beta);
    }
    /// The body of run (ldb = NR, a packed panel) and run_strided.
    __attribute__((target("avx512f,avx2,fma"), always_inline)) static inline void tile(
        std::size_t kc, const float* a, const float* b, std::size_t ldb, float* c, std::size_t ldc,
        float alpha, float beta) {
        const std::size_t ahead = 8 * ldb;  // prefetch distance: 8 k-steps of B
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
        for (std::size_t k = 0; k < kc; ++k, a += MR, b += ldb) {
            // Never past B's last row: B read in place is a thread's own workspace (im2col's
            // matrix, Winograd's V), and 8 rows past its end can lie another thread's, being
            // written; prefetching those lines makes them bounce between the cores (Conv2d's
            // resize_worker_buffer keeps the hardware prefetchers apart too).
            if (k + 8 < kc) {
                _mm_prefetch(reinterpret_cast<const char*>(b + ahead), _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(b + ahead + 16), _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(b + ahead + 32), _MM_HINT_T0);
            }
            const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16),
                         b2 = _mm512_loadu_ps(b + 32);
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
    /// A partial tile, straight into C: rows x cols (rows <= MR, cols <= NR) of
    /// alpha * A_panel * B_panel + beta * C. Only the ceil(cols / 16) vectors of B that hold
    /// columns are multiplied, and the last is stored through a mask, so a thin product (N = 32
    /// or 36, a 48-wide tile's edge) neither computes the unused columns nor goes through a
    /// scalar copy. Per element the same FMAs in the same order as run(), so the same bits.
    __attribute__((target("avx512f,avx2,fma"))) static void run_edge(std::size_t kc, const float* a,
                                                                     const float* b, float* c,
                                                                     std::size_t ldc, float alpha,
                                                                     float beta, std::size_t rows,
                                                                     std::size_t cols) {
        if (cols > 32)
            edge<3>(kc, a, b, c, ldc, alpha, beta, rows, cols);
        else if (cols > 16)
            edge<2>(kc, a, b, c, ldc, alpha, beta, rows, cols);
        else
            edge<1>(kc, a, b, c, ldc, alpha, beta, rows, cols);
    }
    template <std::size_t V>
    __attribute__((target("avx512f,avx2,fma"), always_inline)) static inline void edge(
        std::size_t kc, const float* a, const float* b, float* c, std::size_t ldc, float alpha,
        float beta, std::size_t rows, std::size_t cols) {
        __m512 acc[MR][V];
#pragma GCC unroll 8
        for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 3
            for (std::size_t j = 0; j < V; ++j) acc[i][j] = _mm512_setzero_ps();
        for (std::size_t k = 0; k < kc; ++k, a += MR, b += NR) {
            __m512 bv[V];
#pragma GCC unroll 3
            for (std::size_t j = 0; j < V; ++j) bv[j] = _mm512_load_ps(b + 16 * j);
#pragma GCC unroll 8
            for (std::size_t i = 0; i < MR; ++i) {
                const __m512 ai = _mm512_set1_ps(a[i]);
#pragma GCC unroll 3
                for (std::size_t j = 0; j < V; ++j)
                    acc[i][j] = _mm512_fmadd_ps(ai, bv[j], acc[i][j]);
            }
        }
        const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
        const auto last = static_cast<__mmask16>((1u << (cols - 16 * (V - 1))) - 1);
        for (std::size_t i = 0; i < rows; ++i) {
            float* ci = c + i * ldc;
#pragma GCC unroll 3
            for (std::size_t j = 0; j < V; ++j) {
                const __mmask16 m = j + 1 < V ? __mmask16(0xFFFF) : last;
                const __m512 scaled = _mm512_mul_ps(va, acc[i][j]);
                _mm512_mask_storeu_ps(
                    ci + 16 * j, m,
                    beta == 0.0f
                        ? scaled
                        : _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, ci + 16 * j), scaled));
            }
        }
    }
    /// One step of dot_tile: 16 k of the four rows of A and of B (lanes outside `m` read as 0)
    /// into the 16 accumulators. The full steps take a constant mask, only the last one a
    /// computed one.
    __attribute__((target("avx512f,avx2,fma"), always_inline)) static inline void dot_tile_step(
        const float* const* a, const float* const* b, std::size_t k, __mmask16 m, __m512* acc) {
        __m512 av[4], bv[4];
#pragma GCC unroll 4
        for (std::size_t i = 0; i < 4; ++i) {
            av[i] = _mm512_maskz_loadu_ps(m, a[i] + k);
            bv[i] = _mm512_maskz_loadu_ps(m, b[i] + k);
        }
#pragma GCC unroll 4
        for (std::size_t i = 0; i < 4; ++i) {
#pragma GCC unroll 4
            for (std::size_t j = 0; j < 4; ++j)
                acc[4 * i + j] = _mm512_fmadd_ps(av[i], bv[j], acc[4 * i + j]);
        }
    }
    /// gemm_dot_rows_applies: every M, N up to 64 (M N / (M + N) up to 32) goes by dot_tile.
    static constexpr std::size_t dot_max_reuse = 32;
    /// A 4 x 4 tile of C = alpha * A * B^T + beta * C as 16 dot products of rows, for products
    /// whose M and N are small and K long (gemm_dot_rows): a0..a3 and b0..b3 are rows of A and
    /// B, K long (a missing row repeats another; only rows x cols of C are stored). No packing:
    /// the 8 rows stream through 16 accumulators, one FMA per pair of rows and 16 k, and a
    /// transpose-and-add tree reduces the 16 vectors to the 16 sums at the end.
    __attribute__((target("avx512f,avx2,fma"))) static void dot_tile(
        std::size_t K, const float* const* a, const float* const* b, float* c, std::size_t ldc,
        float alpha, float beta, std::size_t rows, std::size_t cols) {
        __m512 acc[16];
#pragma GCC unroll 16
        for (std::size_t i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
        std::size_t k = 0;
        for (; k + 16 <= K; k += 16) dot_tile_step(a, b, k, __mmask16(0xFFFF), acc);
        if (k < K) dot_tile_step(a, b, k, static_cast<__mmask16>((1u << (K - k)) - 1), acc);
        // Pairs x, y: per 128-bit block [x0 + x2, x1 + x3, y0 + y2, y1 + y3]. (Shuffles rather
        // than unpacks: GCC 12's unpack intrinsics warn about their own undefined vectors.)
        __m512 pair[8];
#pragma GCC unroll 8
        for (std::size_t i = 0; i < 8; ++i)
            pair[i] = _mm512_add_ps(_mm512_shuffle_ps(acc[2 * i], acc[2 * i + 1], 0x44),
                                    _mm512_shuffle_ps(acc[2 * i], acc[2 * i + 1], 0xEE));
        // Quads: per 128-bit block the four accumulators' partial sums, in order.
        __m512 quad[4];
#pragma GCC unroll 4
        for (std::size_t i = 0; i < 4; ++i)
            quad[i] = _mm512_add_ps(_mm512_shuffle_ps(pair[2 * i], pair[2 * i + 1], 0x88),
                                    _mm512_shuffle_ps(pair[2 * i], pair[2 * i + 1], 0xDD));
        // Across the four 128-bit blocks: block q of the result holds row q's four sums. (The
        // masked form with every lane selected, as the unmasked one warns like the unpacks.)
        const __m512 h01 =
            _mm512_add_ps(_mm512_mask_shuffle_f32x4(quad[0], 0xFFFF, quad[0], quad[1], 0x44),
                          _mm512_mask_shuffle_f32x4(quad[0], 0xFFFF, quad[0], quad[1], 0xEE));
        const __m512 h23 =
            _mm512_add_ps(_mm512_mask_shuffle_f32x4(quad[2], 0xFFFF, quad[2], quad[3], 0x44),
                          _mm512_mask_shuffle_f32x4(quad[2], 0xFFFF, quad[2], quad[3], 0xEE));
        const __m512 sums = _mm512_add_ps(_mm512_mask_shuffle_f32x4(h01, 0xFFFF, h01, h23, 0x88),
                                          _mm512_mask_shuffle_f32x4(h01, 0xFFFF, h01, h23, 0xDD));
        // Row i of the tile is block i of `sums`, moved to the lowest block and stored as a
        // vector, the columns past `cols` masked off. (A scalar loop over the 16 sums took a
        // quarter of the tile's time at K = 144; so did reading the rows back from memory.)
        __m512 row[4];
        row[0] = sums;
        row[1] = _mm512_mask_shuffle_f32x4(sums, 0xFFFF, sums, sums, 1);
        row[2] = _mm512_mask_shuffle_f32x4(sums, 0xFFFF, sums, sums, 2);
        row[3] = _mm512_mask_shuffle_f32x4(sums, 0xFFFF, sums, sums, 3);
        const __mmask16 keep = static_cast<__mmask16>((1u << cols) - 1);
        const __m512 alpha_v = _mm512_set1_ps(alpha), beta_v = _mm512_set1_ps(beta);
#pragma GCC unroll 4
        for (std::size_t i = 0; i < 4; ++i) {
            if (i == rows) break;
            float* ci = c + i * ldc;
            __m512 r = _mm512_mul_ps(alpha_v, row[i]);
            if (beta != 0.0f) r = _mm512_fmadd_ps(beta_v, _mm512_maskz_loadu_ps(keep, ci), r);
            _mm512_mask_storeu_ps(ci, keep, r);
        }
    }
    /// sum_k a[k] * b[k], for gemm's one-row product (gemm_single_row). Four accumulators
    /// hide the FMA latency; the last partial vector is read through a mask.
    __attribute__((target("avx512f,avx2,fma"))) static float dot(std::size_t n, const float* a,
                                                                 const float* b) {
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        std::size_t k = 0;
        for (; k + 64 <= n; k += 64) {
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(b + k), s0);
            s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k + 16), _mm512_loadu_ps(b + k + 16), s1);
            s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k + 32), _mm512_loadu_ps(b + k + 32), s2);
            s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k + 48), _mm512_loadu_ps(b + k + 48), s3);
        }
        for (; k + 16 <= n; k += 16)
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(b + k), s0);
        if (k < n) {
            const auto m = static_cast<__mmask16>((1u << (n - k)) - 1);
            s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + k), _mm512_maskz_loadu_ps(m, b + k),
                                 s1);
        }
        // Summed through memory: GCC 12's _mm512_reduce_add_ps warns about its own undefined
        // vectors (-Wuninitialized).
        alignas(64) float lanes[16];
        _mm512_store_ps(lanes, _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
        float total = 0;
        for (float v : lanes) total += v;
        return total;
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
            if (k + 8 < kc) {  // not past the panel, as in the float kernel
                _mm_prefetch(reinterpret_cast<const char*>(b + ahead), _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(b + ahead + 8), _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(b + ahead + 16), _MM_HINT_T0);
            }
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
    /// sum_k a[k] * b[k], for gemm's one-row product (see the float kernel).
    __attribute__((target("avx512f,avx2,fma"))) static double dot(std::size_t n, const double* a,
                                                                  const double* b) {
        __m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
        std::size_t k = 0;
        for (; k + 32 <= n; k += 32) {
            s0 = _mm512_fmadd_pd(_mm512_loadu_pd(a + k), _mm512_loadu_pd(b + k), s0);
            s1 = _mm512_fmadd_pd(_mm512_loadu_pd(a + k + 8), _mm512_loadu_pd(b + k + 8), s1);
            s2 = _mm512_fmadd_pd(_mm512_loadu_pd(a + k + 16), _mm512_loadu_pd(b + k + 16), s2);
            s3 = _mm512_fmadd_pd(_mm512_loadu_pd(a + k + 24), _mm512_loadu_pd(b + k + 24), s3);
        }
        for (; k + 8 <= n; k += 8)
            s0 = _mm512_fmadd_pd(_mm512_loadu_pd(a + k), _mm512_loadu_pd(b + k), s0);
        if (k < n) {
            const auto m = static_cast<__mmask8>((1u << (n - k)) - 1);
            s1 = _mm512_fmadd_pd(_mm512_maskz_loadu_pd(m, a + k), _mm512_maskz_loadu_pd(m, b + k),
                                 s1);
        }
        alignas(64) double lanes[8];
        _mm512_store_pd(lanes, _mm512_add_pd(_mm512_add_pd(s0, s1), _mm512_add_pd(s2, s3)));
        double total = 0;
        for (double v : lanes) total += v;
        return total;
    }
};

}  // namespace facet
#endif
