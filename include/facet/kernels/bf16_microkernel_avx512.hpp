// facet/kernels/bf16_microkernel_avx512.hpp — the AVX512-BF16 micro-kernel: vdpbf16ps on
// 512-bit registers (Cooper Lake, Sapphire Rapids, Zen 4 and later), sixteen fp32 lanes each
// adding two bf16 products per instruction. Compiled with a per-function target attribute;
// called only when cpu_features() reports avx512_bf16.
// Read next: kernels/bf16_gemm.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "facet/kernels/cpu_features.hpp"

#if FACET_GEMM_HAVE_X86_KERNELS
#include <immintrin.h>

namespace facet {

/// AVX512-BF16 kernel, 8 x 48: 24 accumulators + 3 vectors of B + 1 broadcast of A (28 of the
/// 32 zmm registers), as the fp32 AVX-512 kernel; each instruction covers two k's.
struct Bf16KernelAvx512 {
    static constexpr std::size_t MR = 8;
    static constexpr std::size_t NR = 48;
    static constexpr const char* name = "avx512-bf16";

    /// C (MR x NR, row stride ldc) = [C +] A_panel * B_panel over `pairs` pairs of k's.
    __attribute__((target("avx512f,avx512bf16"))) static void run(std::size_t pairs,
                                                                  const std::uint16_t* a,
                                                                  const std::uint16_t* b, float* c,
                                                                  std::size_t ldc,
                                                                  bool accumulate) {
        __m512 acc[MR][3];
#pragma GCC unroll 8
        for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 3
            for (std::size_t j = 0; j < 3; ++j)
                acc[i][j] =
                    accumulate ? _mm512_loadu_ps(c + i * ldc + 16 * j) : _mm512_setzero_ps();
        for (std::size_t p = 0; p < pairs; ++p, a += 2 * MR, b += 2 * NR) {
            _mm_prefetch(reinterpret_cast<const char*>(b + 16 * NR), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(b + 16 * NR + 32), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(b + 16 * NR + 64), _MM_HINT_T0);
            const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b);
            const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + 32);
            const __m512bh b2 = (__m512bh)_mm512_loadu_si512(b + 64);
#pragma GCC unroll 8
            for (std::size_t i = 0; i < MR; ++i) {
                std::int32_t pair;
                std::memcpy(&pair, a + 2 * i, 4);
                const __m512bh ai = (__m512bh)_mm512_set1_epi32(pair);
                acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
                acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
                acc[i][2] = _mm512_dpbf16_ps(acc[i][2], ai, b2);
            }
        }
#pragma GCC unroll 8
        for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 3
            for (std::size_t j = 0; j < 3; ++j) _mm512_storeu_ps(c + i * ldc + 16 * j, acc[i][j]);
    }
};

}  // namespace facet
#endif
