// facet/kernels/int8_microkernel_avx_vnni.hpp — the AVX-VNNI int8 micro-kernel (the VEX-encoded
// vpdpbusd on 256-bit registers, Alder Lake and later): one instruction multiplies the four
// u8 x s8 pairs of each 32-bit lane and adds them to the lane's int32 sum, without the int16 step
// of AVX2. Compiled with a per-function target attribute; called only when cpu_features() reports
// avx_vnni. Read next: kernels/int8_microkernel_avx512_vnni.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "facet/kernels/cpu_features.hpp"

#if FACET_GEMM_HAVE_X86_KERNELS
#include <immintrin.h>

namespace facet {

/// AVX-VNNI kernel, 6 x 16: 12 accumulators + 2 vectors of B + 1 broadcast of A (15 of 16 ymm).
struct Int8KernelAvxVnni {
    static constexpr std::size_t MR = 6;
    static constexpr std::size_t NR = 16;
    static constexpr const char* name = "avx-vnni";

    /// C (MR x NR, row stride ldc) = [C +] A_panel * B_panel over `groups` groups of four k's.
    __attribute__((target("avx2,avxvnni"))) static void run(std::size_t groups,
                                                            const std::uint8_t* a,
                                                            const std::int8_t* b, std::int32_t* c,
                                                            std::size_t ldc, bool accumulate) {
        __m256i acc[MR][2];
        for (std::size_t i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
        for (std::size_t g = 0; g < groups; ++g, a += 4 * MR, b += 4 * NR) {
            const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
            const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32));
#pragma GCC unroll 6
            for (std::size_t i = 0; i < MR; ++i) {
                std::int32_t four;
                std::memcpy(&four, a + 4 * i, 4);
                const __m256i ai = _mm256_set1_epi32(four);
                acc[i][0] = _mm256_dpbusd_avx_epi32(acc[i][0], ai, b0);  // u8 ai, s8 b0
                acc[i][1] = _mm256_dpbusd_avx_epi32(acc[i][1], ai, b1);
            }
        }
        for (std::size_t i = 0; i < MR; ++i)
            for (std::size_t h = 0; h < 2; ++h) {
                auto* out = reinterpret_cast<__m256i*>(c + i * ldc + 8 * h);
                const __m256i v =
                    accumulate ? _mm256_add_epi32(_mm256_loadu_si256(out), acc[i][h]) : acc[i][h];
                _mm256_storeu_si256(out, v);
            }
    }
};

}  // namespace facet
#endif
