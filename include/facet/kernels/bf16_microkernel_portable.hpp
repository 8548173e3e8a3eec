// facet/kernels/bf16_microkernel_portable.hpp — the bf16 micro-kernel contract, and its plain C++
// version: the reference the AVX512-BF16 kernel is held to, bit for bit but for the sign of a
// zero (vdpbf16ps gives -0 in places where IEEE addition gives +0; no later step can tell).
//
// A micro-kernel computes one MR x NR tile of C (fp32) from an MR-row panel of A and an NR-column
// panel of B, both packed in pairs of bf16 along k (kernels/bf16_pack.hpp), `pairs` pairs deep:
//     acc = accumulate ? C : 0
//     for each pair p:  acc = (acc + a[2p+1] * b[2p+1]) + a[2p] * b[2p]
//     C = acc
// which is what vdpbf16ps does to each fp32 lane: the odd product first, each addition rounded to
// nearest even; a product of two bf16 is exact in fp32. vdpbf16ps also ignores MXCSR: it reads
// subnormal bf16 inputs as zeros and flushes subnormal results to zero, and so does this kernel.
// Because a slice continues the sums of the slice before (accumulate), the result does not depend
// on where k is cut, nor on MR, NR or the thread count: only on the order of the pairs.
// Read next: kernels/bf16_microkernel_avx512.hpp.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace facet {

namespace detail {

/// A bf16 as vdpbf16ps reads it: a subnormal is a zero of the same sign.
inline float bf16_operand(std::uint16_t bits) {
    if ((bits & 0x7f80u) == 0) bits &= 0x8000u;
    return std::bit_cast<float>(std::uint32_t{bits} << 16);
}

/// A sum as vdpbf16ps writes it: a subnormal becomes a zero of the same sign.
inline float flush_subnormal(float x) {
    return std::fpclassify(x) == FP_SUBNORMAL ? std::copysign(0.0f, x) : x;
}

/// One lane of vdpbf16ps: acc + a_odd * b_odd, then + a_even * b_even (lanes as packed: the even
/// k in the low half).
inline float bf16_pair_step(float acc, std::uint32_t a, std::uint32_t b) {
    const float odd = bf16_operand(static_cast<std::uint16_t>(a >> 16)) *
                      bf16_operand(static_cast<std::uint16_t>(b >> 16));
    const float even = bf16_operand(static_cast<std::uint16_t>(a & 0xffffu)) *
                       bf16_operand(static_cast<std::uint16_t>(b & 0xffffu));
    return flush_subnormal(flush_subnormal(flush_subnormal(acc) + odd) + even);
}

}  // namespace detail

/// Portable kernel: 4 x 16 sums.
struct Bf16KernelPortable {
    static constexpr std::size_t MR = 4;
    static constexpr std::size_t NR = 16;
    static constexpr const char* name = "portable";

    /// C (MR x NR, row stride ldc) = [C +] A_panel * B_panel over `pairs` pairs of k's.
    static void run(std::size_t pairs, const std::uint16_t* a, const std::uint16_t* b, float* c,
                    std::size_t ldc, bool accumulate) {
        float acc[MR][NR];
        for (std::size_t i = 0; i < MR; ++i)
            for (std::size_t j = 0; j < NR; ++j) acc[i][j] = accumulate ? c[i * ldc + j] : 0.0f;
        for (std::size_t p = 0; p < pairs; ++p, a += 2 * MR, b += 2 * NR)
            for (std::size_t i = 0; i < MR; ++i) {
                const std::uint32_t ai = a[2 * i] | std::uint32_t{a[2 * i + 1]} << 16;
                for (std::size_t j = 0; j < NR; ++j)
                    acc[i][j] = detail::bf16_pair_step(
                        acc[i][j], ai, b[2 * j] | std::uint32_t{b[2 * j + 1]} << 16);
            }
        for (std::size_t i = 0; i < MR; ++i)
            for (std::size_t j = 0; j < NR; ++j) c[i * ldc + j] = acc[i][j];
    }
};

}  // namespace facet
