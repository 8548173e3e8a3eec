// facet/kernels/int8_gemm.hpp — the int8 product of quantised layers: C (M x N, int32) =
// A (M x K, u8 activations) * W^T (W: N x K, s8 weights, one row per output channel), with int32
// sums. The structure of gemm.hpp (Goto / BLIS): both operands packed (int8_pack.hpp), the weights
// once per layer (Int8PackedWeights), the activations per call; k cut into slices so that one
// NR-column weight slice stays in L1 while it meets every MR-row activation panel of a row block;
// a register-blocked micro-kernel per instruction set (AVX-512 VNNI, AVX-VNNI, AVX2 and the
// portable reference), chosen at run time from cpu_features() and the context's int8_isa.
// int8_gemm_packing_a lets a caller pack A itself, a block of rows at a time (a convolution packs
// its patches straight from the image).
//
// Integer sums are exact, so every kernel, slice length and thread count gives the same bits; the
// operand ranges that keep it so are activations in [0, 127] and weights in [-127, 127] (see
// int8_microkernel_avx2.hpp), which int8_gemm checks for the weights when they are packed.
// Read first: int8_pack.hpp and the four micro-kernel headers.
// Read next: layers/quantized_conv2d.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "facet/core/context.hpp"
#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/kernels/cpu_features.hpp"
#include "facet/kernels/int8_microkernel_avx2.hpp"
#include "facet/kernels/int8_microkernel_avx512_vnni.hpp"
#include "facet/kernels/int8_microkernel_avx_vnni.hpp"
#include "facet/kernels/int8_microkernel_portable.hpp"
#include "facet/kernels/int8_pack.hpp"

namespace facet {

/// The largest activation code: 7 bits, so that AVX2's int16 pair sums cannot saturate.
inline constexpr int int8_activation_max = 127;
/// The largest weight magnitude: symmetric, so -128 is never used.
inline constexpr int int8_weight_max = 127;
/// The longest k for which no int32 sum can overflow: K * 127 * 127 < 2^31.
inline constexpr std::size_t int8_gemm_max_k = 131072;

/// Lower-case name of an int8 ISA ("avx512-vnni", "avx-vnni", "avx2", "portable", "auto").
inline const char* int8_isa_name(Int8Isa isa) {
    switch (isa) {
        case Int8Isa::Avx512Vnni:
            return "avx512-vnni";
        case Int8Isa::AvxVnni:
            return "avx-vnni";
        case Int8Isa::Avx2:
            return "avx2";
        case Int8Isa::Portable:
            return "portable";
        default:
            return "auto";
    }
}

/// True when this build contains the kernel and this CPU can run it.
inline bool int8_isa_supported(Int8Isa isa) {
    switch (isa) {
        case Int8Isa::Avx512Vnni:
            return FACET_GEMM_HAVE_X86_KERNELS && cpu_features().avx512_vnni;
        case Int8Isa::AvxVnni:
            return FACET_GEMM_HAVE_X86_KERNELS && cpu_features().avx_vnni;
        case Int8Isa::Avx2:
            return FACET_GEMM_HAVE_X86_KERNELS && cpu_features().avx2_fma;
        default:
            return true;
    }
}

/// The ISA the int8 GEMM uses now, from the current context (never Auto): the context's choice,
/// checked, or the best the CPU supports.
inline Int8Isa int8_isa() {
    const Int8Isa asked = current_context().int8_isa;
    if (asked != Int8Isa::Auto) {
        check(int8_isa_supported(asked), "int8 gemm: the context asks for ", int8_isa_name(asked),
              " but this CPU (or build) does not support it");
        return asked;
    }
    for (Int8Isa isa : {Int8Isa::Avx512Vnni, Int8Isa::AvxVnni, Int8Isa::Avx2})
        if (int8_isa_supported(isa)) return isa;
    return Int8Isa::Portable;
}

/// Calls f(Kernel{}) with the micro-kernel struct of `isa` (not Auto; supported by the caller's
/// check).
template <typename F>
decltype(auto) with_int8_kernel(Int8Isa isa, F&& f) {
#if FACET_GEMM_HAVE_X86_KERNELS
    switch (isa) {
        case Int8Isa::Avx512Vnni:
            return f(Int8KernelAvx512Vnni{});
        case Int8Isa::AvxVnni:
            return f(Int8KernelAvxVnni{});
        case Int8Isa::Avx2:
            return f(Int8KernelAvx2{});
        default:
            break;
    }
#endif
    check(isa == Int8Isa::Portable, "int8 gemm: ", int8_isa_name(isa), " is not in this build");
    return f(Int8KernelPortable{});
}

/// Weights (N x K, s8 in [-127, 127]) packed for the kernel of one ISA: a layer packs them once
/// and multiplies every batch with them.
struct Int8PackedWeights {
    Int8Isa isa = Int8Isa::Portable;
    std::size_t n = 0, k = 0;
    std::vector<std::int8_t> data;

    bool empty() const { return n == 0; }
};

/// Packs W (N x K, row stride ldw) for the kernels of `isa` (Auto: int8_isa()). An Error for a
/// weight of -128 (outside the symmetric range the kernels are exact for), for K beyond
/// int8_gemm_max_k or an unsupported ISA.
inline Int8PackedWeights pack_int8_weights(std::size_t N, std::size_t K, const std::int8_t* W,
                                           std::size_t ldw, Int8Isa isa = Int8Isa::Auto) {
    check(K <= int8_gemm_max_k, "int8 gemm: K = ", K, " is beyond ", int8_gemm_max_k,
          " (the int32 sums could overflow)");
    check(ldw >= K, "int8 gemm: weight row stride ", ldw, " < K = ", K);
    for (std::size_t j = 0; j < N; ++j)
        for (std::size_t k = 0; k < K; ++k)
            check(W[j * ldw + k] >= -int8_weight_max, "int8 gemm: weight (", j, ", ", k,
                  ") is -128, outside [-127, 127]");
    Int8PackedWeights p;
    p.isa = isa == Int8Isa::Auto ? int8_isa() : isa;
    check(int8_isa_supported(p.isa), "int8 gemm: this CPU (or build) has no ", int8_isa_name(p.isa),
          " support");
    p.n = N, p.k = K;
    with_int8_kernel(p.isa, [&](auto kernel) {
        using Kernel = decltype(kernel);
        p.data.resize((N + Kernel::NR - 1) / Kernel::NR * Kernel::NR * int8_padded_k(K));
        pack_int8_b<Kernel::NR>(N, K, W, ldw, p.data.data());
    });
    return p;
}

namespace detail {

/// k-groups per slice: 128 groups = 512 k's, so that an NR-column weight slice (512 * NR bytes,
/// 16 KiB for the 32-wide AVX-512 kernel) takes at most half of a 32 KiB L1 data cache.
inline constexpr std::size_t int8_slice_groups = 128;
/// MR-row panels per row block: the activation block one weight slice meets while in L1.
inline constexpr std::size_t int8_block_panels = 16;

/// Below ~256k multiply-adds one thread is faster than starting a parallel region.
inline bool int8_gemm_single_threaded(std::size_t M, std::size_t N, std::size_t K) {
    return double(M) * double(N) * double(K) < 262144.0;
}

/// One MR x NR tile of C (rows x cols of it inside the matrix) over all `groups`, k-slice after
/// k-slice, from its packed A panel `a` and B panel `b`: a whole tile straight into C, a partial
/// one into a tile of its own, then copied.
template <typename Kernel>
void int8_tile(std::size_t groups, const std::uint8_t* a, const std::int8_t* b, std::int32_t* C,
               std::size_t ldc, std::size_t rows, std::size_t cols) {
    constexpr std::size_t MR = Kernel::MR, NR = Kernel::NR;
    alignas(64) std::int32_t edge[MR * NR];
    const bool whole = rows == MR && cols == NR;
    for (std::size_t g0 = 0; g0 < groups; g0 += int8_slice_groups)
        Kernel::run(std::min(int8_slice_groups, groups - g0), a + g0 * 4 * MR, b + g0 * 4 * NR,
                    whole ? C : edge, whole ? ldc : NR, g0 > 0);
    if (!whole)
        for (std::size_t i = 0; i < rows; ++i)
            std::copy(edge + i * NR, edge + i * NR + cols, C + i * ldc);
}

/// The blocked product for one kernel; A already packed (whole).
template <typename Kernel>
void int8_gemm_packed(std::size_t M, std::size_t N, std::size_t K, const std::uint8_t* packed_a,
                      const std::int8_t* packed_b, std::int32_t* C, std::size_t ldc) {
    constexpr std::size_t MR = Kernel::MR, NR = Kernel::NR;
    const std::size_t groups = int8_padded_k(K) / 4;
    const std::size_t row_panels = (M + MR - 1) / MR, col_panels = (N + NR - 1) / NR;
    const std::size_t row_blocks = (row_panels + int8_block_panels - 1) / int8_block_panels;
    const bool small = int8_gemm_single_threaded(M, N, K);
    parallel_for(
        row_blocks * col_panels,
        [&](std::size_t begin, std::size_t end) {
            for (std::size_t task = begin; task < end; ++task) {
                const std::size_t q = task % col_panels, block = task / col_panels;
                const std::size_t p_begin = block * int8_block_panels;
                const std::size_t p_end = std::min(row_panels, p_begin + int8_block_panels);
                const std::size_t j0 = q * NR, cols = std::min(NR, N - j0);
                const std::int8_t* b_panel = packed_b + q * NR * 4 * groups;
                // Whole tiles k-slice by k-slice, so that a slice of the weights stays in L1
                // while it meets every panel of the block.
                for (std::size_t g0 = 0; g0 < groups; g0 += int8_slice_groups) {
                    const std::size_t gs = std::min(int8_slice_groups, groups - g0);
                    for (std::size_t p = p_begin; p < p_end; ++p) {
                        const std::size_t i0 = p * MR, rows = std::min(MR, M - i0);
                        const std::uint8_t* a = packed_a + p * groups * 4 * MR;
                        if (rows == MR && cols == NR)
                            Kernel::run(gs, a + g0 * 4 * MR, b_panel + g0 * 4 * NR,
                                        C + i0 * ldc + j0, ldc, g0 > 0);
                        else if (g0 == 0)  // a partial tile, all its slices at once
                            int8_tile<Kernel>(groups, a, b_panel, C + i0 * ldc + j0, ldc, rows,
                                              cols);
                    }
                }
            }
        },
        small ? 1 : 0);
}

/// A per-thread buffer for the packed activations, grown as needed.
inline std::vector<std::uint8_t>& int8_a_workspace() {
    thread_local std::vector<std::uint8_t> workspace;
    return workspace;
}

}  // namespace detail

/// C (M x N, int32, row stride ldc) = A * W^T: A is M x K u8 activations in [0, 127] (row stride
/// lda), W the weights packed by pack_int8_weights (N x K). Runs the kernels the weights were
/// packed for; multithreaded over facet::num_threads(), the same bits for any thread count and
/// any ISA. An Error for activations above 127 or mismatched sizes.
inline void int8_gemm(std::size_t M, std::size_t N, std::size_t K, const std::uint8_t* A,
                      std::size_t lda, const Int8PackedWeights& W, std::int32_t* C,
                      std::size_t ldc) {
    check(W.n == N && W.k == K, "int8 gemm: weights packed as ", W.n, " x ", W.k,
          ", product needs ", N, " x ", K);
    check(lda >= K && ldc >= N, "int8 gemm: row strides lda = ", lda, ", ldc = ", ldc,
          " too small for K = ", K, ", N = ", N);
    if (M == 0 || N == 0) return;
    check(A != nullptr && C != nullptr, "int8 gemm: null operand");
    // One OR over each row (it vectorises) finds a code above 127 by its top bit.
    for (std::size_t i = 0; i < M; ++i) {
        std::uint8_t bits = 0;
        for (std::size_t k = 0; k < K; ++k) bits |= A[i * lda + k];
        if (bits & 0x80u)
            for (std::size_t k = 0; k < K; ++k)
                check(A[i * lda + k] <= int8_activation_max, "int8 gemm: activation (", i, ", ", k,
                      ") is ", int(A[i * lda + k]), ", above ", int8_activation_max);
    }
    with_int8_kernel(W.isa, [&](auto kernel) {
        using Kernel = decltype(kernel);
        std::vector<std::uint8_t>& packed_a = detail::int8_a_workspace();
        packed_a.resize((M + Kernel::MR - 1) / Kernel::MR * Kernel::MR * int8_padded_k(K));
        pack_int8_a<Kernel::MR>(M, K, A, lda, packed_a.data());
        detail::int8_gemm_packed<Kernel>(M, N, K, packed_a.data(), W.data.data(), C, ldc);
    });
}

/// int8_gemm for a caller that packs A itself, straight from its own layout (a convolution packs
/// its patches without unrolling them first), one block of rows at a time, so that the packed
/// block stays in cache for every column panel: `pack_a(mr, row_begin, row_end, out)` fills
/// ceil((row_end - row_begin) / MR) MR-row panels at `out` in pack_int8_a's layout with rows
/// [row_begin, row_end) of A, for `mr` = std::integral_constant<std::size_t, MR> of W's kernel.
/// It is called from several threads at once, for disjoint rows. The codes are the caller's to
/// keep in [0, 127]; they are not checked here.
template <typename PackA>
void int8_gemm_packing_a(std::size_t M, std::size_t N, std::size_t K, PackA&& pack_a,
                         const Int8PackedWeights& W, std::int32_t* C, std::size_t ldc) {
    check(W.n == N && W.k == K, "int8 gemm: weights packed as ", W.n, " x ", W.k,
          ", product needs ", N, " x ", K);
    check(ldc >= N, "int8 gemm: row stride ldc = ", ldc, " too small for N = ", N);
    if (M == 0 || N == 0) return;
    with_int8_kernel(W.isa, [&](auto kernel) {
        using Kernel = decltype(kernel);
        constexpr std::size_t MR = Kernel::MR, NR = Kernel::NR;
        const std::size_t groups = int8_padded_k(K) / 4;
        const std::size_t row_panels = (M + MR - 1) / MR, col_panels = (N + NR - 1) / NR;
        // Blocks of up to int8_block_panels panels, at least two per thread when there are rows
        // enough, so that the threads share the work evenly.
        const bool small = detail::int8_gemm_single_threaded(M, N, K);
        const std::size_t threads = small ? 1 : static_cast<std::size_t>(num_threads());
        const std::size_t per_block =
            std::clamp<std::size_t>(row_panels / (2 * threads), 1, detail::int8_block_panels);
        const std::size_t blocks = (row_panels + per_block - 1) / per_block;
        parallel_for(
            blocks,
            [&](std::size_t begin, std::size_t end) {
                std::vector<std::uint8_t>& block_a = detail::int8_a_workspace();
                block_a.resize(per_block * MR * 4 * groups);
                for (std::size_t block = begin; block < end; ++block) {
                    const std::size_t p_begin = block * per_block;
                    const std::size_t p_end = std::min(row_panels, p_begin + per_block);
                    pack_a(std::integral_constant<std::size_t, MR>{}, p_begin * MR,
                           std::min(M, p_end * MR), block_a.data());
                    for (std::size_t q = 0; q < col_panels; ++q)
                        for (std::size_t p = p_begin; p < p_end; ++p) {
                            const std::size_t i0 = p * MR, j0 = q * NR;
                            detail::int8_tile<Kernel>(
                                groups, block_a.data() + (p - p_begin) * groups * 4 * MR,
                                W.data.data() + q * NR * 4 * groups, C + i0 * ldc + j0, ldc,
                                std::min(MR, M - i0), std::min(NR, N - j0));
                        }
                }
            },
            small ? 1 : 0);
    });
}

/// The same product without packed weights (packs W for `isa` first; Auto: int8_isa()).
inline void int8_gemm(std::size_t M, std::size_t N, std::size_t K, const std::uint8_t* A,
                      std::size_t lda, const std::int8_t* W, std::size_t ldw, std::int32_t* C,
                      std::size_t ldc, Int8Isa isa = Int8Isa::Auto) {
    int8_gemm(M, N, K, A, lda, pack_int8_weights(N, K, W, ldw, isa), C, ldc);
}

/// The definition, for tests: C[i][j] = sum_k A[i][k] * W[j][k], one multiply-add at a time.
inline void int8_gemm_reference(std::size_t M, std::size_t N, std::size_t K, const std::uint8_t* A,
                                std::size_t lda, const std::int8_t* W, std::size_t ldw,
                                std::int32_t* C, std::size_t ldc) {
    for (std::size_t i = 0; i < M; ++i)
        for (std::size_t j = 0; j < N; ++j) {
            std::int32_t sum = 0;
            for (std::size_t k = 0; k < K; ++k)
                sum += std::int32_t{A[i * lda + k]} * std::int32_t{W[j * ldw + k]};
            C[i * ldc + j] = sum;
        }
}

}  // namespace facet
