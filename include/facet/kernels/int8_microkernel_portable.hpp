// facet/kernels/int8_microkernel_portable.hpp — the int8 micro-kernel contract, and its plain
// C++ version: the reference every SIMD kernel is held to, bit for bit.
//
// A micro-kernel computes one MR x NR tile of the int32 product C = A * W^T from an MR-row panel
// of packed activations (u8) and an NR-column panel of packed weights (s8), `groups` groups of
// four k's deep (kernels/int8_pack.hpp):
//     C = A_panel * B_panel          (accumulate == false)
//     C = C + A_panel * B_panel      (accumulate == true; the k-slices after the first)
// Integer sums are exact and associative, so every kernel, blocking and thread count gives the
// same bits, as long as no partial sum saturates: int8_gemm.hpp keeps activations in [0, 127]
// for that reason (see int8_microkernel_avx2.hpp).
// Read next: kernels/int8_microkernel_avx2.hpp.
#pragma once

#include <cstddef>
#include <cstdint>

namespace facet {

/// Portable kernel: 4 x 8 int32 sums, few enough for the compiler to keep in registers.
struct Int8KernelPortable {
    static constexpr std::size_t MR = 4;
    static constexpr std::size_t NR = 8;
    static constexpr const char* name = "portable";

    /// C (MR x NR, row stride ldc) = [C +] A_panel * B_panel over `groups` groups of four k's.
    static void run(std::size_t groups, const std::uint8_t* a, const std::int8_t* b,
                    std::int32_t* c, std::size_t ldc, bool accumulate) {
        std::int32_t acc[MR][NR] = {};
        for (std::size_t g = 0; g < groups; ++g, a += 4 * MR, b += 4 * NR)
            for (std::size_t i = 0; i < MR; ++i)
                for (std::size_t j = 0; j < NR; ++j)
                    for (std::size_t t = 0; t < 4; ++t)
                        acc[i][j] += std::int32_t{a[4 * i + t]} * std::int32_t{b[4 * j + t]};
        for (std::size_t i = 0; i < MR; ++i)
            for (std::size_t j = 0; j < NR; ++j)
                c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
    }
};

}  // namespace facet
