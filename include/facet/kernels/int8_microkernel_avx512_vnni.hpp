// facet/kernels/int8_microkernel_avx512_vnni.hpp — the AVX-512 VNNI int8 micro-kernel:
// vpdpbusd on 512-bit registers (Cascade Lake, Ice Lake, Zen 4 and later), sixteen int32 lanes
// each summing four u8 x s8 products per instruction. Compiled with a per-function target
// attribute; called only when cpu_features() reports avx512_vnni.
// Read next: kernels/int8_gemm.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "facet/kernels/cpu_features.hpp"

#if FACET_GEMM_HAVE_X86_KERNELS
#include <immintrin.h>

namespace facet {

/// AVX-512 VNNI kernel, 8 x 32: 16 accumulators + 2 vectors of B + 1 broadcast of A (19 of the
/// 32 zmm registers).
struct Int8KernelAvx512Vnni {
    static constexpr std::size_t MR = 8;
    static constexpr std::size_t NR = 32;
    static constexpr const char* name = "avx512-vnni";

    /// C (MR x NR, row stride ldc) = [C +] A_panel * B_panel over `groups` groups of four k's.
    __attribute__((target("avx512f,avx512vnni"))) static void run(std::size_t groups,
                                                                  const std::uint8_t* a,
                                                                  const std::int8_t* b,
                                                                  std::int32_t* c, std::size_t ldc,
                                                                  bool accumulate) {
        __m512i acc[MR][2];
        for (std::size_t i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_si512();
        for (std::size_t g = 0; g < groups; ++g, a += 4 * MR, b += 4 * NR) {
            const __m512i b0 = _mm512_loadu_si512(b);
            const __m512i b1 = _mm512_loadu_si512(b + 64);
#pragma GCC unroll 8
            for (std::size_t i = 0; i < MR; ++i) {
                std::int32_t four;
                std::memcpy(&four, a + 4 * i, 4);
                const __m512i ai = _mm512_set1_epi32(four);
                acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], ai, b0);  // u8 ai, s8 b0
                acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], ai, b1);
            }
        }
        for (std::size_t i = 0; i < MR; ++i)
            for (std::size_t h = 0; h < 2; ++h) {
                std::int32_t* out = c + i * ldc + 16 * h;
                const __m512i v =
                    accumulate ? _mm512_add_epi32(_mm512_loadu_si512(out), acc[i][h]) : acc[i][h];
                _mm512_storeu_si512(out, v);
            }
    }
};

}  // namespace facet
#endif
