// facet/kernels/int8_microkernel_avx2.hpp — the AVX2 int8 micro-kernel: vpmaddubsw multiplies
// 32 u8 x s8 pairs and adds neighbouring products into int16, vpmaddwd against ones adds the two
// int16 of each 32-bit lane into int32. Compiled with a per-function target attribute.
//
// vpmaddubsw saturates its int16 sums: two products of u8 (up to 255) and s8 (down to -128) reach
// 2 * 255 * 128 = 65280, far beyond 32767. The int8 GEMM therefore takes activations in [0, 127]
// and weights in [-127, 127]: two products are at most 2 * 127 * 127 = 32258 < 32767, so no sum
// saturates and this kernel equals the portable one exactly. (Weights keep their full int8 range
// because they are fitted per output channel; the seventh activation bit is the one given up.)
// Read next: kernels/int8_microkernel_avx_vnni.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "facet/kernels/cpu_features.hpp"

#if FACET_GEMM_HAVE_X86_KERNELS
#include <immintrin.h>

namespace facet {

/// AVX2 kernel, 4 x 16: 8 accumulators + 2 vectors of B + 1 broadcast of A + ones + 2 products.
struct Int8KernelAvx2 {
    static constexpr std::size_t MR = 4;
    static constexpr std::size_t NR = 16;
    static constexpr const char* name = "avx2";

    /// C (MR x NR, row stride ldc) = [C +] A_panel * B_panel over `groups` groups of four k's.
    __attribute__((target("avx2"))) static void run(std::size_t groups, const std::uint8_t* a,
                                                    const std::int8_t* b, std::int32_t* c,
                                                    std::size_t ldc, bool accumulate) {
        __m256i acc[MR][2];
        for (std::size_t i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
        const __m256i ones = _mm256_set1_epi16(1);
        for (std::size_t g = 0; g < groups; ++g, a += 4 * MR, b += 4 * NR) {
            const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
            const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32));
#pragma GCC unroll 4
            for (std::size_t i = 0; i < MR; ++i) {
                std::int32_t four;  // row i's four activations of this group
                std::memcpy(&four, a + 4 * i, 4);
                const __m256i ai = _mm256_set1_epi32(four);
                const __m256i p0 = _mm256_maddubs_epi16(ai, b0);  // u8 first, s8 second
                const __m256i p1 = _mm256_maddubs_epi16(ai, b1);
                acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(p0, ones));
                acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(p1, ones));
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
