// facet/kernels/bf16_gemm.hpp — the bf16 product for mixed precision: C (M x N, fp32) =
// [C +] bf16(op(A)) * bf16(op(B)), the operands rounded to bf16 as they are packed
// (bf16_pack.hpp) and every sum kept in fp32. The structure of gemm.hpp (Goto / BLIS): for each
// block of rows of op(A) and each k-slice, pack the A block; for each block of columns, pack the
// B block; a register-blocked micro-kernel per instruction set (AVX512-BF16 and the portable
// reference; AMX-BF16 tiles, and their plain twin when asked for) computes the tiles, chosen at
// run time from cpu_features(), a first-use check of the AMX kernel and the context's bf16_isa.
// Threads each take a rectangle of C.
//
// Each tile continues its sums from one k-slice to the next (the micro-kernel contract in
// bf16_microkernel_portable.hpp), so every kernel, blocking and thread count gives the same
// values (the sign of a zero aside), but for the AMX kernel, whose tile unit may sum in an order
// of its own (within that order's error of the others).
// Against the exact product of the fp32 operands, the error is that of rounding each operand to
// bf16 (8 significant bits) plus fp32 summation: docs/internals/gemm.md derives the bound the
// tests use.
// Read first: bf16_pack.hpp and the two micro-kernel headers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "facet/core/context.hpp"
#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/core/random.hpp"
#include "facet/kernels/bf16_microkernel_amx.hpp"
#include "facet/kernels/bf16_microkernel_avx512.hpp"
#include "facet/kernels/bf16_microkernel_portable.hpp"
#include "facet/kernels/bf16_pack.hpp"
#include "facet/kernels/cpu_features.hpp"
#include "facet/kernels/gemm_common.hpp"
#include "facet/kernels/gemm_pack.hpp"

namespace facet {

/// Lower-case name of a bf16 ISA ("avx512-bf16", "portable", "auto").
inline const char* bf16_isa_name(Bf16Isa isa) {
    switch (isa) {
        case Bf16Isa::Avx512Bf16:
            return "avx512-bf16";
        case Bf16Isa::Portable:
            return "portable";
        case Bf16Isa::Amx:
            return "amx-bf16";
        case Bf16Isa::AmxReference:
            return "amx-reference";
        default:
            return "auto";
    }
}

/// True when this build contains the kernel and this CPU can run it.
inline bool bf16_isa_supported(Bf16Isa isa) {
    if (isa == Bf16Isa::Avx512Bf16)
        return FACET_GEMM_HAVE_X86_KERNELS && cpu_features().avx512_bf16;
#if FACET_GEMM_HAVE_X86_KERNELS
    if (isa == Bf16Isa::Amx) return cpu_features().amx_bf16 && amx_tiles_permitted();
#else
    if (isa == Bf16Isa::Amx) return false;
#endif
    return true;
}

namespace detail {

/// Pairs of k the kernel's packed panels are padded to a multiple of (1 but for the AMX ones).
template <typename Kernel>
constexpr std::size_t bf16_pair_block() {
    if constexpr (requires { Kernel::pair_block; }) return Kernel::pair_block;
    return 1;
}

/// Whether the kernel reads A packed by pack_bf16_a_tiles (the AMX ones) rather than pack_bf16_a.
template <typename Kernel>
constexpr bool bf16_a_tiles() {
    if constexpr (requires { Kernel::a_tiles; }) return Kernel::a_tiles;
    return false;
}

/// Loads a kernel's per-thread state (AMX: the tile configuration) for its lifetime, if it has
/// any.
template <typename Kernel>
struct Bf16KernelScope {
    Bf16KernelScope() {
        if constexpr (requires { Kernel::begin(); }) Kernel::begin();
    }
    ~Bf16KernelScope() {
        if constexpr (requires { Kernel::end(); }) Kernel::end();
    }
    Bf16KernelScope(const Bf16KernelScope&) = delete;
    Bf16KernelScope& operator=(const Bf16KernelScope&) = delete;
};

/// The blocking for packed bf16 (2-byte) operands, from this CPU's caches (gemm_block_sizes).
inline const GemmBlockSizes& bf16_gemm_blocking() {
    static const GemmBlockSizes sizes =
        gemm_block_sizes(cpu_caches().l1d, cpu_caches().l2, sizeof(std::uint16_t));
    return sizes;
}

/// One thread's rectangle of C (A, B and C point at its first row / column), for one kernel.
template <typename Kernel>
void gemm_bf16_blocked(Trans transA, Trans transB, std::size_t M, std::size_t N, std::size_t K,
                       const float* A, std::size_t lda, const float* B, std::size_t ldb, float* C,
                       std::size_t ldc, bool accumulate) {
    constexpr std::size_t MR = Kernel::MR, NR = Kernel::NR;
    constexpr std::size_t pair_block = bf16_pair_block<Kernel>();
    const GemmBlockSizes& blocking = bf16_gemm_blocking();
    const std::size_t mc_max = even_block(M, blocking.mc, MR);
    // Whole pairs in every slice (whole blocks of pairs but in the last).
    const std::size_t kc_max = even_block(K, blocking.kc, 2 * pair_block);
    const std::size_t nc_max = even_block(N, blocking.nc, NR);
    const std::size_t pairs_max = round_up(bf16_pairs(kc_max), pair_block);
    std::uint16_t* packed_a =
        gemm_workspace<std::uint16_t>(0, round_up(mc_max, MR) * 2 * pairs_max);
    std::uint16_t* packed_b =
        gemm_workspace<std::uint16_t>(1, round_up(nc_max, NR) * 2 * pairs_max);
    alignas(64) float edge[MR * NR];  // a partial tile is computed here, then copied to C
    const Bf16KernelScope<Kernel> kernel_scope;

    for (std::size_t i0 = 0; i0 < M; i0 += mc_max) {
        const std::size_t mc = std::min(mc_max, M - i0);
        for (std::size_t p0 = 0; p0 < K; p0 += kc_max) {
            const std::size_t kc = std::min(kc_max, K - p0);
            const std::size_t pairs = round_up(bf16_pairs(kc), pair_block);
            const bool load = accumulate || p0 > 0;  // later slices continue the sums
            const float* a_block = transA == Trans::No ? A + i0 * lda + p0 : A + p0 * lda + i0;
            if constexpr (bf16_a_tiles<Kernel>())
                pack_bf16_a_tiles<MR>(transA, mc, kc, a_block, lda, packed_a, pairs);
            else
                pack_bf16_a<MR>(transA, mc, kc, a_block, lda, packed_a);
            for (std::size_t j0 = 0; j0 < N; j0 += nc_max) {
                const std::size_t nc = std::min(nc_max, N - j0);
                const float* b_block = transB == Trans::No ? B + p0 * ldb + j0 : B + j0 * ldb + p0;
                if constexpr (pair_block == 1) {
                    pack_bf16_b<NR>(transB, kc, nc, b_block, ldb, packed_b);
                } else {  // panel by panel, each followed by its zero pairs
                    const std::size_t packed = 2 * NR * bf16_pairs(kc), panel = 2 * NR * pairs;
                    for (std::size_t c0 = 0; c0 < nc; c0 += NR) {
                        std::uint16_t* out = packed_b + c0 / NR * panel;
                        pack_bf16_b<NR>(transB, kc, std::min(NR, nc - c0),
                                        transB == Trans::No ? b_block + c0 : b_block + c0 * ldb,
                                        ldb, out);
                        std::fill(out + packed, out + panel, std::uint16_t{0});
                    }
                }
                for (std::size_t ir = 0; ir < mc; ir += MR) {
                    const std::size_t rows = std::min(MR, mc - ir);
                    for (std::size_t jr = 0; jr < nc; jr += NR) {
                        const std::size_t cols = std::min(NR, nc - jr);
                        const std::uint16_t* a_panel = packed_a + ir * 2 * pairs;
                        const std::uint16_t* b_panel = packed_b + jr * 2 * pairs;
                        float* c_tile = C + (i0 + ir) * ldc + j0 + jr;
                        if (rows == MR && cols == NR) {
                            Kernel::run(pairs, a_panel, b_panel, c_tile, ldc, load);
                            continue;
                        }
                        if (load)
                            for (std::size_t i = 0; i < rows; ++i)
                                std::copy(c_tile + i * ldc, c_tile + i * ldc + cols, edge + i * NR);
                        Kernel::run(pairs, a_panel, b_panel, edge, NR, load);
                        for (std::size_t i = 0; i < rows; ++i)
                            std::copy(edge + i * NR, edge + i * NR + cols, c_tile + i * ldc);
                    }
                }
            }
        }
    }
}

/// The product with one kernel: C split into one rectangle per thread, along N in whole
/// NR-column panels when N has enough of them, else along M in MR-row panels.
template <typename Kernel>
void gemm_bf16_parallel(Trans transA, Trans transB, std::size_t M, std::size_t N, std::size_t K,
                        const float* A, std::size_t lda, const float* B, std::size_t ldb, float* C,
                        std::size_t ldc, bool accumulate) {
    constexpr std::size_t MR = Kernel::MR, NR = Kernel::NR;
    const bool small = double(M) * double(N) * double(K) < gemm_parallel_threshold;
    const int threads = small || in_parallel() ? 1 : std::max(1, num_threads());
    const std::size_t col_panels = (N + NR - 1) / NR, row_panels = (M + MR - 1) / MR;
    const bool split_columns = col_panels >= static_cast<std::size_t>(threads);
    parallel_for(
        static_cast<std::size_t>(threads),
        [&](std::size_t begin, std::size_t end) {
            for (std::size_t part = begin; part < end; ++part) {
                const std::size_t parts = static_cast<std::size_t>(threads);
                const std::size_t panels = split_columns ? col_panels : row_panels;
                const std::size_t unit = split_columns ? NR : MR;
                const std::size_t extent = split_columns ? N : M;
                const std::size_t from = std::min(extent, panels * part / parts * unit);
                const std::size_t to = std::min(extent, panels * (part + 1) / parts * unit);
                if (from >= to) continue;
                if (split_columns)
                    gemm_bf16_blocked<Kernel>(transA, transB, M, to - from, K, A, lda,
                                              transB == Trans::No ? B + from : B + from * ldb, ldb,
                                              C + from, ldc, accumulate);
                else
                    gemm_bf16_blocked<Kernel>(transA, transB, to - from, N, K,
                                              transA == Trans::No ? A + from * lda : A + from, lda,
                                              B, ldb, C + from * ldc, ldc, accumulate);
            }
        },
        threads);
}

/// Whether kernel `Fast` computes what kernel `Reference` does, on operands that leave partial
/// tiles and a partial block of pairs (37 x 45 x 70): every element within the error of adding the
/// same terms in another order, 2 gamma_(K+1) of the sum of their magnitudes. One thread, some
/// microseconds.
template <typename Fast, typename Reference>
bool bf16_kernels_agree() {
    constexpr std::size_t M = 37, N = 45, K = 70;
    std::vector<float> a(M * K), b(K * N), fast(M * N), reference(M * N);
    Rng rng(2024);
    for (float& x : a) x = static_cast<float>(rng.uniform(-1.0, 1.0));
    for (float& x : b) x = static_cast<float>(rng.uniform(-1.0, 1.0));
    gemm_bf16_blocked<Fast>(Trans::No, Trans::No, M, N, K, a.data(), K, b.data(), N, fast.data(), N,
                            false);
    gemm_bf16_blocked<Reference>(Trans::No, Trans::No, M, N, K, a.data(), K, b.data(), N,
                                 reference.data(), N, false);
    const double v = 0x1p-24, gamma = double(K + 1) * v / (1 - double(K + 1) * v);
    for (std::size_t i = 0; i < M; ++i)
        for (std::size_t j = 0; j < N; ++j) {
            double magnitude = 0;
            for (std::size_t k = 0; k < K; ++k)
                magnitude += std::fabs(double(bf16_operand(bf16::from_float(a[i * K + k]))) *
                                       double(bf16_operand(bf16::from_float(b[k * N + j]))));
            if (!(std::fabs(double(fast[i * N + j]) - double(reference[i * N + j])) <=
                  2 * gamma * magnitude))
                return false;
        }
    return true;
}

/// Whether this CPU has AMX-BF16 tiles and the AMX kernel agreed with its plain twin at its first
/// use (checked once per process): Auto takes it only then.
inline bool amx_passes_check() {
#if FACET_GEMM_HAVE_X86_KERNELS
    static const bool passes = bf16_isa_supported(Bf16Isa::Amx) &&
                               bf16_kernels_agree<Bf16KernelAmx, Bf16KernelAmxReference>();
    return passes;
#else
    return false;
#endif
}

}  // namespace detail

/// The ISA the bf16 GEMM uses now, from the current context (never Auto): the context's choice,
/// checked, or the best the CPU supports: AMX-BF16 when it passes its first-use check
/// (detail::amx_passes_check), else AVX512-BF16, else the portable kernel.
inline Bf16Isa bf16_isa() {
    const Bf16Isa asked = current_context().bf16_isa;
    if (asked != Bf16Isa::Auto) {
        check(bf16_isa_supported(asked), "bf16 gemm: the context asks for ", bf16_isa_name(asked),
              " but this CPU (or build) does not support it");
        return asked;
    }
    if (detail::amx_passes_check()) return Bf16Isa::Amx;
    return bf16_isa_supported(Bf16Isa::Avx512Bf16) ? Bf16Isa::Avx512Bf16 : Bf16Isa::Portable;
}

/// C (M x N, fp32, row stride ldc) = [C +] bf16(op(A)) * bf16(op(B)), where op(A) is M x K and
/// op(B) is K x N (A stored K x M when transA == Yes, likewise B), the operands rounded to bf16
/// (nearest, ties to even) and the products summed in fp32 in k order, pair by pair, as
/// vdpbf16ps does. Every blocking and thread count gives the same bits, and every ISA the same
/// values (the sign of a zero aside) but AMX, which is within the error of another summation
/// order. Throws facet::Error on null pointers, too-small leading dimensions or an ISA the CPU
/// lacks.
inline void gemm_bf16(Trans transA, Trans transB, std::size_t M, std::size_t N, std::size_t K,
                      const float* A, std::size_t lda, const float* B, std::size_t ldb, float* C,
                      std::size_t ldc, bool accumulate = false) {
    const bool ta = transA == Trans::Yes, tb = transB == Trans::Yes;
    detail::gemm_check_operand("C", C == nullptr, M, N, ldc, "ldc");
    if (M == 0 || N == 0) return;
    if (K == 0) {
        if (!accumulate) detail::gemm_scale(M, N, 0.0f, C, ldc);
        return;
    }
    detail::gemm_check_operand("A", A == nullptr, ta ? K : M, ta ? M : K, lda, "lda");
    detail::gemm_check_operand("B", B == nullptr, tb ? N : K, tb ? K : N, ldb, "ldb");
    switch (bf16_isa()) {
#if FACET_GEMM_HAVE_X86_KERNELS
        case Bf16Isa::Avx512Bf16:
            detail::gemm_bf16_parallel<Bf16KernelAvx512>(transA, transB, M, N, K, A, lda, B, ldb, C,
                                                         ldc, accumulate);
            return;
        case Bf16Isa::Amx:
            detail::gemm_bf16_parallel<Bf16KernelAmx>(transA, transB, M, N, K, A, lda, B, ldb, C,
                                                      ldc, accumulate);
            return;
#endif
        case Bf16Isa::AmxReference:
            detail::gemm_bf16_parallel<Bf16KernelAmxReference>(transA, transB, M, N, K, A, lda, B,
                                                               ldb, C, ldc, accumulate);
            return;
        default:
            detail::gemm_bf16_parallel<Bf16KernelPortable>(transA, transB, M, N, K, A, lda, B, ldb,
                                                           C, ldc, accumulate);
    }
}

}  // namespace facet
