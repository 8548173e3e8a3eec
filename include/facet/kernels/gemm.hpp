// facet/kernels/gemm.hpp — C = alpha * op(A) * op(B) + beta * C, row-major, float and double:
// the kernel that convolutions (through im2col) and dense layers spend their time in.
//
// Structure (Goto / BLIS, as in "Anatomy of High-Performance Matrix Multiplication"):
//   for each block of MC rows of op(A):
//     for each slice of KC along k:         pack op(A) block (MC x KC) in MR-row micro-panels
//       for each block of NC columns:       pack op(B) block (KC x NC) in NR-column micro-panels
//         for each MR-row micro-panel of A:       (stays in L1 across the loop below)
//           for each NR-column micro-panel of B:  (streams from L2)
//             micro-kernel: MR x NR tile of C, sums held in registers
// This is BLIS's loop nest for the column-major product C^T = B^T A^T: the operand the kernel
// broadcasts (A) sits in L1, the one it loads as vectors (B) in L2. Threads each take one
// rectangle of C (never a share of k), so results are bit-identical for any thread count.
// Read first: gemm_pack.hpp and the three micro-kernel headers.
// Read next: kernels/system_summary.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <exception>
#include <type_traits>
#include <vector>

#include "facet/core/context.hpp"
#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/kernels/bf16_gemm.hpp"
#include "facet/kernels/cpu_features.hpp"
#include "facet/kernels/gemm_common.hpp"
#include "facet/kernels/gemm_microkernel_avx2.hpp"
#include "facet/kernels/gemm_microkernel_avx512.hpp"
#include "facet/kernels/gemm_microkernel_portable.hpp"
#include "facet/kernels/gemm_pack.hpp"

#if defined(FACET_HAVE_EIGEN)
#include "facet/kernels/gemm_eigen.hpp"
#endif

namespace facet {

/// Lower-case name of an ISA ("avx512", "avx2", "portable", "auto"), as FACET_GEMM_ISA spells it.
inline const char* gemm_isa_name(GemmIsa isa) {
    switch (isa) {
        case GemmIsa::Avx512:
            return "avx512";
        case GemmIsa::Avx2:
            return "avx2";
        case GemmIsa::Portable:
            return "portable";
        default:
            return "auto";
    }
}

/// True when this build contains the kernel and this CPU can run it.
inline bool gemm_isa_supported(GemmIsa isa) {
    switch (isa) {
        case GemmIsa::Avx512:
            return FACET_GEMM_HAVE_X86_KERNELS && cpu_features().avx512f;
        case GemmIsa::Avx2:
            return FACET_GEMM_HAVE_X86_KERNELS && cpu_features().avx2_fma;
        default:
            return true;
    }
}

/// Selects the micro-kernel of the process default context (Context::gemm_isa for one model's);
/// Auto restores the default. Throws facet::Error when the CPU lacks the instruction set.
/// Not synchronised: call it while no gemm() is running.
inline void set_gemm_isa(GemmIsa isa) {
    check(gemm_isa_supported(isa), "set_gemm_isa: this CPU (or build) has no ", gemm_isa_name(isa),
          " support");
    process_context().gemm_isa = isa;
}

/// The ISA gemm() will use now, from the current context (never Auto).
inline GemmIsa gemm_isa() {
    GemmIsa isa = current_context().gemm_isa;
    if (isa != GemmIsa::Auto) {
        check(gemm_isa_supported(isa), "gemm: the context asks for ", gemm_isa_name(isa),
              " but this CPU (or build) does not support it");
        return isa;
    }
#if defined(FACET_GEMM_FORCE_ISA_avx512)
    isa = GemmIsa::Avx512;
#elif defined(FACET_GEMM_FORCE_ISA_avx2)
    isa = GemmIsa::Avx2;
#elif defined(FACET_GEMM_FORCE_ISA_portable)
    isa = GemmIsa::Portable;
#else
    isa = gemm_isa_supported(GemmIsa::Avx512) ? GemmIsa::Avx512
          : gemm_isa_supported(GemmIsa::Avx2) ? GemmIsa::Avx2
                                              : GemmIsa::Portable;
#endif
    check(gemm_isa_supported(isa), "gemm: the build forces FACET_GEMM_ISA=", gemm_isa_name(isa),
          " but this CPU does not support it");
    return isa;
}

/// Selects who computes gemm() in the process default context. Eigen is only available when
/// FACET_HAVE_EIGEN is defined; otherwise selecting it throws facet::Error. Not synchronised,
/// like set_gemm_isa.
inline void set_gemm_backend(GemmBackend backend) {
#if !defined(FACET_HAVE_EIGEN)
    check(backend != GemmBackend::Eigen,
          "set_gemm_backend: Eigen backend not available (build without FACET_HAVE_EIGEN)");
#endif
    process_context().gemm_backend = backend;
}

/// The backend gemm() uses now, from the current context.
inline GemmBackend gemm_backend() {
    return current_context().gemm_backend;
}

namespace detail {

/// Where gemm_blocked finds the packed (i0, p0) block of A in a whole packed A (see
/// GemmPackedA): blocks of MC rows one after another, each holding its k-slices in turn.
/// mc_max is a multiple of MR, so the blocks before row i0 hold exactly i0 rows.
template <std::size_t MR>
std::size_t packed_a_offset(std::size_t i0, std::size_t mc, std::size_t p0, std::size_t K) {
    return i0 * K + round_up(mc, MR) * p0;
}

/// Elements of the whole of op(A) (M x K) packed for Kernel.
template <typename Kernel>
std::size_t packed_a_size(std::size_t M, std::size_t K) {
    return round_up(M, Kernel::MR) * K;
}

/// Packs the whole of op(A) (M x K) in gemm_blocked's block order, for Kernel.
template <typename Kernel, typename T>
void pack_whole_a(Trans transA, std::size_t M, std::size_t K, const T* A, std::size_t lda,
                  T* packed) {
    constexpr std::size_t MR = Kernel::MR;
    const GemmBlockSizes& blocking = gemm_blocking<T>();
    const std::size_t mc_max = even_block(M, blocking.mc, MR);
    const std::size_t kc_max = even_block(K, blocking.kc, 1);
    for (std::size_t i0 = 0; i0 < M; i0 += mc_max) {
        const std::size_t mc = std::min(mc_max, M - i0);
        for (std::size_t p0 = 0; p0 < K; p0 += kc_max)
            pack_a<MR>(Kernel::simd_packing, transA, mc, std::min(kc_max, K - p0),
                       transA == Trans::No ? A + i0 * lda + p0 : A + p0 * lda + i0, lda,
                       packed + packed_a_offset<MR>(i0, mc, p0, K));
    }
}

/// The most rows of A for which gemm_blocked reads B in place (see there).
inline constexpr std::size_t gemm_b_in_place_max_rows = 128;
/// Up to this many rows B is read in place however wide it is: each element of B then takes
/// part in at most 32 multiply-adds, and packing it (a load, a scattered store) would cost about
/// as long as those. With more rows, a B larger than half of L2 is packed: the A block no longer
/// fits in L1, and reading both operands from L2 is slower than packing (docs/internals/gemm.md).
inline constexpr std::size_t gemm_b_in_place_any_width_rows = 32;

/// Whether gemm_blocked reads B (row-major, not transposed) in place for an M x N product cut
/// into k-slices of kc: whole tiles only (M a multiple of MR, N of NR), and few rows of A.
template <typename T, std::size_t MR, std::size_t NR>
bool gemm_reads_b_in_place(std::size_t M, std::size_t N, std::size_t kc, std::size_t l2) {
    if (M % MR != 0 || N % NR != 0 || M > gemm_b_in_place_max_rows) return false;
    return M <= gemm_b_in_place_any_width_rows ||
           static_cast<double>(kc) * static_cast<double>(N) * sizeof(T) <= 0.5 * l2;
}

/// One thread's share: the whole blocked algorithm on an M x N rectangle of C (A, B and C
/// already point at the rectangle's first row / column). With `prepacked_a` (all of op(A),
/// packed by pack_whole_a) A is neither read nor packed.
template <typename Kernel, typename T>
void gemm_blocked(Trans transA, Trans transB, std::size_t M, std::size_t N, std::size_t K, T alpha,
                  const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C,
                  std::size_t ldc, const T* prepacked_a = nullptr) {
    constexpr std::size_t MR = Kernel::MR, NR = Kernel::NR;
    const GemmBlockSizes& blocking = gemm_blocking<T>();
    const std::size_t mc_max = even_block(M, blocking.mc, MR);
    const std::size_t kc_max = even_block(K, blocking.kc, 1);
    const std::size_t nc_max = even_block(N, blocking.nc, NR);
    T* a_workspace = prepacked_a ? nullptr : gemm_workspace<T>(0, round_up(mc_max, MR) * kc_max);
    // B read in place by the kernel (run_strided) rather than packed: when every tile is whole
    // and A has few rows, so that each packed B element would be used only a few times.
    constexpr bool has_strided = requires {
        &Kernel::run_strided;
    };
    const bool b_in_place = has_strided && transB == Trans::No &&
                            gemm_reads_b_in_place<T, MR, NR>(M, N, kc_max, cpu_caches().l2);
    T* packed_b = b_in_place ? nullptr : gemm_workspace<T>(1, kc_max * round_up(nc_max, NR));
    alignas(64) T edge[MR * NR];  // a partial tile is computed here, then copied to C

    for (std::size_t i0 = 0; i0 < M; i0 += mc_max) {
        const std::size_t mc = std::min(mc_max, M - i0);
        for (std::size_t p0 = 0; p0 < K; p0 += kc_max) {
            const std::size_t kc = std::min(kc_max, K - p0);
            const T beta_slice = p0 == 0 ? beta : T(1);  // later k-slices add to the first
            const T* packed_a = a_workspace;
            if (prepacked_a)
                packed_a = prepacked_a + packed_a_offset<MR>(i0, mc, p0, K);
            else
                pack_a<MR>(Kernel::simd_packing, transA, mc, kc,
                           transA == Trans::No ? A + i0 * lda + p0 : A + p0 * lda + i0, lda,
                           a_workspace);
            if (b_in_place) {
                // Columns outer: each strip of B (kc x NR) comes from memory once and serves
                // every A panel from cache. Rows outer would stream all of B once per A panel,
                // which for a wide B (im2col's 32 x 147456) runs at memory speed.
                if constexpr (has_strided)
                    for (std::size_t jr = 0; jr < N; jr += NR)
                        for (std::size_t ir = 0; ir < mc; ir += MR)
                            Kernel::run_strided(kc, packed_a + ir * kc, B + p0 * ldb + jr, ldb,
                                                C + (i0 + ir) * ldc + jr, ldc, alpha, beta_slice);
                continue;
            }
            for (std::size_t j0 = 0; j0 < N; j0 += nc_max) {
                const std::size_t nc = std::min(nc_max, N - j0);
                pack_b<NR>(Kernel::simd_packing, transB, kc, nc,
                           transB == Trans::No ? B + p0 * ldb + j0 : B + j0 * ldb + p0, ldb,
                           packed_b);
                for (std::size_t ir = 0; ir < mc; ir += MR) {
                    const T* a_panel = packed_a + ir * kc;
                    const std::size_t rows = std::min(MR, mc - ir);
                    for (std::size_t jr = 0; jr < nc; jr += NR) {
                        const T* b_panel = packed_b + jr * kc;
                        const std::size_t cols = std::min(NR, nc - jr);
                        T* c_tile = C + (i0 + ir) * ldc + j0 + jr;
                        if (rows == MR && cols == NR) {
                            Kernel::run(kc, a_panel, b_panel, c_tile, ldc, alpha, beta_slice);
                            continue;
                        }
                        if constexpr (requires { &Kernel::run_edge; }) {
                            Kernel::run_edge(kc, a_panel, b_panel, c_tile, ldc, alpha, beta_slice,
                                             rows, cols);
                            continue;
                        }
                        Kernel::run(kc, a_panel, b_panel, edge, NR, T(1), T(0));
                        for (std::size_t i = 0; i < rows; ++i)
                            for (std::size_t j = 0; j < cols; ++j) {
                                T& c = c_tile[i * ldc + j];
                                c = beta_slice == T(0) ? alpha * edge[i * NR + j]
                                                       : alpha * edge[i * NR + j] + beta_slice * c;
                            }
                    }
                }
            }
        }
    }
}

/// Chooses how `threads` threads tile C: a grid of row_parts x (threads / row_parts)
/// rectangles. Cost model per thread: the multiply-adds of its rectangle (in whole micro-tiles)
/// plus the elements it packs, each weighted like 32 multiply-adds (packing moves about one
/// element per cycle while the kernel does 32 FMAs). Splitting N makes every thread pack all of
/// A, splitting M all of B: the model picks the cheaper, and keeps both threads busy for wide
/// (32 x 147456) and tall (1152 x 144) shapes alike.
template <typename Kernel, typename T>
int gemm_row_parts(std::size_t M, std::size_t N, std::size_t K, int threads) {
    const double row_panels = static_cast<double>((M + Kernel::MR - 1) / Kernel::MR);
    const double col_panels = static_cast<double>((N + Kernel::NR - 1) / Kernel::NR);
    const double k = static_cast<double>(K);
    int best = 1;
    double best_cost = -1;
    for (int rp = 1; rp <= threads; ++rp) {
        if (threads % rp) continue;
        const int cp = threads / rp;
        const double rows = static_cast<double>(Kernel::MR) * std::ceil(row_panels / rp);
        const double cols = static_cast<double>(Kernel::NR) * std::ceil(col_panels / cp);
        const double b_packs = std::ceil(rows / static_cast<double>(gemm_blocking<T>().mc));
        const double cost = rows * cols * k + 32.0 * (rows * k + cols * k * b_packs);
        if (best_cost < 0 || cost < best_cost) best = rp, best_cost = cost;
    }
    return best;
}

/// C (1 x N) = alpha * a * B^T + beta * C with B stored N x K (row stride ldb): a product with a
/// single row, as a dense layer computes at batch 1. The blocked path would pack all of B to use
/// each element once, and its MR-row kernel would compute MR - 1 rows of padding; here each
/// C[j] is one dot product over B's row j, so B is read once, in place. `a` must be contiguous.
/// Threads take contiguous ranges of j, and each dot product is summed the same way whatever the
/// range, so every thread count gives the same bits.
template <typename Kernel, typename T>
void gemm_single_row(std::size_t N, std::size_t K, T alpha, const T* a, const T* B, std::size_t ldb,
                     T beta, T* C) {
    const bool small = static_cast<double>(N) * static_cast<double>(K) < gemm_parallel_threshold;
    parallel_for(
        N,
        [&](std::size_t begin, std::size_t end) {
            for (std::size_t j = begin; j < end; ++j) {
                const T sum = alpha * Kernel::dot(K, a, B + j * ldb);
                C[j] = beta == T(0) ? sum : sum + beta * C[j];
            }
        },
        small ? 1 : 0);
}

/// Whether C = alpha * A * B^T + beta * C goes by dot products of rows (gemm_dot_rows) rather
/// than packing, for a kernel whose dot_tile pays up to `max_reuse` multiply-adds per element
/// (Kernel::dot_max_reuse). A and B must both be stored with K along their rows, M and N at most
/// 64, K at least 128. Packing copies every element once, and pays back only when each element
/// then takes part in many multiply-adds: here M N / (M + N) per element, which must be at most
/// `max_reuse`. And B's rows, read again for every 4 rows of A, must stay in cache with those 4
/// rows: (N + 4) K elements within half the detected L2. Measured, 1 thread, GFLOP/s packed /
/// dot: on an AVX-512 host (1 MiB L2), 32 x 32 x 576 (Winograd's weight gradient on 48 x 48)
/// 90 / 230, 32 x 9 x 2304 (a one-channel conv's weight gradient) 23 / 136, 64 x 64 x 144
/// 149 / 166, while 128 x 128 x 36 211 / 63 and 32 x 288 x 2304 208 / 134 stay packed; on an AVX2
/// host (docs/internals/gemm.md) 32 x 32 x 576 26 / 60, 32 x 9 x 2304 10 / 35, 64 x 64 x 576
/// 48 / 45, and the 64 x 64 products of a training step lost to packing.
template <typename T>
bool gemm_dot_rows_applies(Trans transA, Trans transB, std::size_t M, std::size_t N, std::size_t K,
                           std::size_t max_reuse) {
    return transA == Trans::No && transB == Trans::Yes && M <= 64 && N <= 64 && K >= 128 &&
           M * N <= max_reuse * (M + N) &&
           static_cast<double>(N + 4) * static_cast<double>(K) * sizeof(T) <=
               0.5 * static_cast<double>(cpu_caches().l2);
}

/// Whether gemm() with the kernels of `isa` takes gemm_dot_rows for this product (only kernels
/// with a dot_tile have that path).
template <typename T>
bool gemm_takes_dot_rows(GemmIsa isa, Trans transA, Trans transB, std::size_t M, std::size_t N,
                         std::size_t K) {
#if FACET_GEMM_HAVE_X86_KERNELS
    if constexpr (requires { &GemmKernelAvx512<T>::dot_tile; })
        if (isa == GemmIsa::Avx512)
            return gemm_dot_rows_applies<T>(transA, transB, M, N, K,
                                            GemmKernelAvx512<T>::dot_max_reuse);
    if constexpr (requires { &GemmKernelAvx2<T>::dot_tile; })
        if (isa == GemmIsa::Avx2)
            return gemm_dot_rows_applies<T>(transA, transB, M, N, K,
                                            GemmKernelAvx2<T>::dot_max_reuse);
#endif
    (void)isa, (void)transA, (void)transB, (void)M, (void)N, (void)K;
    return false;
}

/// C (M x N) = alpha * A * B^T + beta * C, A stored M x K and B stored N x K: each 4 x 4 tile of
/// C by Kernel::dot_tile, straight from the rows, nothing packed. Threads take ranges of tile
/// rows; every tile is summed the same way whatever the range, so every thread count gives the
/// same bits.
template <typename Kernel, typename T>
void gemm_dot_rows(std::size_t M, std::size_t N, std::size_t K, T alpha, const T* A,
                   std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
    const bool small = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) <
                       gemm_parallel_threshold;
    parallel_for(
        (M + 3) / 4,
        [&](std::size_t begin, std::size_t end) {
            for (std::size_t i0 = 4 * begin; i0 < std::min(M, 4 * end); i0 += 4) {
                const std::size_t rows = std::min<std::size_t>(4, M - i0);
                const T* a[4];
                for (std::size_t i = 0; i < 4; ++i) a[i] = A + (i0 + std::min(i, rows - 1)) * lda;
                for (std::size_t j0 = 0; j0 < N; j0 += 4) {
                    const std::size_t cols = std::min<std::size_t>(4, N - j0);
                    const T* b[4];  // a missing row repeats the last; its sums are not stored
                    for (std::size_t j = 0; j < 4; ++j)
                        b[j] = B + (j0 + std::min(j, cols - 1)) * ldb;
                    Kernel::dot_tile(K, a, b, C + i0 * ldc + j0, ldc, alpha, beta, rows, cols);
                }
            }
        },
        small ? 1 : 0);
}

/// Runs gemm_blocked on each thread's rectangle of C. With `prepacked_a` the threads split
/// only the columns, since each rectangle must span all of A's packed rows.
template <typename Kernel, typename T>
void gemm_parallel(Trans transA, Trans transB, std::size_t M, std::size_t N, std::size_t K, T alpha,
                   const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C,
                   std::size_t ldc, const T* prepacked_a = nullptr) {
    if (M == 1 && transB == Trans::Yes && !prepacked_a) {
        // A's one row is contiguous unless A is stored transposed (a K x 1 column).
        const T* a = A;
        if (transA == Trans::Yes && lda != 1) {
            T* row = gemm_workspace<T>(0, K);
            for (std::size_t k = 0; k < K; ++k) row[k] = A[k * lda];
            a = row;
        }
        gemm_single_row<Kernel>(N, K, alpha, a, B, ldb, beta, C);
        return;
    }
    if constexpr (requires { &Kernel::dot_tile; }) {
        if (!prepacked_a &&
            gemm_dot_rows_applies<T>(transA, transB, M, N, K, Kernel::dot_max_reuse)) {
            gemm_dot_rows<Kernel>(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            return;
        }
    }
    int threads = in_parallel() ? 1 : num_threads();
    if (2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) <
        2.0 * gemm_parallel_threshold)
        threads = 1;
    if (threads <= 1) {
        gemm_blocked<Kernel>(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                             prepacked_a);
        return;
    }
    const int row_parts = prepacked_a ? 1 : gemm_row_parts<Kernel, T>(M, N, K, threads);
    const int col_parts = threads / row_parts;
    const std::size_t row_panels = (M + Kernel::MR - 1) / Kernel::MR;
    const std::size_t col_panels = (N + Kernel::NR - 1) / Kernel::NR;
    std::exception_ptr failure;
    const Context& context = current_context();
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
#endif
    {
        const ContextScope scope(context);  // the caller's settings on every worker
#if defined(_OPENMP)
        const auto id = static_cast<std::size_t>(omp_get_thread_num());
#else
        const std::size_t id = 0;
#endif
        // Rectangle boundaries fall on micro-panel edges, so only the matrix's own edge has
        // partial tiles.
        const std::size_t r = id / static_cast<std::size_t>(col_parts),
                          c = id % static_cast<std::size_t>(col_parts);
        const auto rp = static_cast<std::size_t>(row_parts),
                   cp = static_cast<std::size_t>(col_parts);
        const std::size_t i_begin = std::min(M, row_panels * r / rp * Kernel::MR);
        const std::size_t i_end = std::min(M, row_panels * (r + 1) / rp * Kernel::MR);
        const std::size_t j_begin = std::min(N, col_panels * c / cp * Kernel::NR);
        const std::size_t j_end = std::min(N, col_panels * (c + 1) / cp * Kernel::NR);
        if (i_begin < i_end && j_begin < j_end) {
            try {
                gemm_blocked<Kernel>(transA, transB, i_end - i_begin, j_end - j_begin, K, alpha,
                                     transA == Trans::No ? A + i_begin * lda : A + i_begin, lda,
                                     transB == Trans::No ? B + j_begin : B + j_begin * ldb, ldb,
                                     beta, C + i_begin * ldc + j_begin, ldc, prepacked_a);
            } catch (...) {
#if defined(_OPENMP)
#pragma omp critical(facet_gemm_failure)
#endif
                failure = std::current_exception();
            }
        }
    }
    if (failure) std::rethrow_exception(failure);
}

/// facet's own product with the kernels of `isa` (checks done by the caller).
template <typename T>
void gemm_facet(GemmIsa isa, Trans transA, Trans transB, std::size_t M, std::size_t N,
                std::size_t K, T alpha, const T* A, std::size_t lda, const T* B, std::size_t ldb,
                T beta, T* C, std::size_t ldc, const T* prepacked_a = nullptr) {
    switch (isa) {
#if FACET_GEMM_HAVE_X86_KERNELS
        case GemmIsa::Avx512:
            gemm_parallel<GemmKernelAvx512<T>>(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta,
                                               C, ldc, prepacked_a);
            return;
        case GemmIsa::Avx2:
            gemm_parallel<GemmKernelAvx2<T>>(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta,
                                             C, ldc, prepacked_a);
            return;
#endif
        default:
            gemm_parallel<GemmKernelPortable<T>>(transA, transB, M, N, K, alpha, A, lda, B, ldb,
                                                 beta, C, ldc, prepacked_a);
    }
}

/// gemm() of floats in a bf16 context: the product by gemm_bf16 (operands rounded to bf16, sums
/// in fp32), then alpha and beta in fp32. The layers' products (alpha 1, beta 0 or 1) need no
/// pass of their own.
inline void gemm_in_bf16(Trans transA, Trans transB, std::size_t M, std::size_t N, std::size_t K,
                         float alpha, const float* A, std::size_t lda, const float* B,
                         std::size_t ldb, float beta, float* C, std::size_t ldc) {
    if (alpha == 1.0f && (beta == 0.0f || beta == 1.0f)) {
        gemm_bf16(transA, transB, M, N, K, A, lda, B, ldb, C, ldc, beta == 1.0f);
        return;
    }
    std::vector<float> product(checked_mul(M, N, "gemm: product size"));
    gemm_bf16(transA, transB, M, N, K, A, lda, B, ldb, product.data(), N);
    for (std::size_t i = 0; i < M; ++i)
        for (std::size_t j = 0; j < N; ++j) {
            float& c = C[i * ldc + j];
            c = alpha * product[i * N + j] + (beta == 0.0f ? 0.0f : beta * c);
        }
}

}  // namespace detail

/// True when gemm() of T computes in bf16 now: T is float and the current context's precision
/// is Precision::Bf16. Doubles always compute in fp64.
template <typename T>
bool gemm_computes_in_bf16() {
    return std::is_same_v<T, float> && current_context().precision == Precision::Bf16;
}

/// Row-major GEMM: C (M x N, row stride ldc) = alpha * op(A) * op(B) + beta * C, where op(A) is
/// M x K and op(B) is K x N. A is stored M x K (lda >= K) when transA == No, K x M (lda >= M) when
/// Yes; likewise B. beta == 0 overwrites C without reading it (NaNs in C are not propagated);
/// K == 0 or alpha == 0 gives C = beta * C without reading A or B. C must not overlap A or B.
/// Multithreaded over facet::num_threads() (single-threaded inside a parallel region); the same
/// inputs give bit-identical results on every call and for every thread count (facet backend).
/// In a context whose precision is Precision::Bf16, a float product rounds op(A) and op(B) to
/// bf16 and sums in fp32 (gemm_bf16, kernels/bf16_gemm.hpp), whatever the backend: that is how
/// the convolutions and dense layers train and infer in bf16.
/// Throws facet::Error on null pointers, too-small leading dimensions or overflowing sizes.
template <typename T>
void gemm(Trans transA, Trans transB, std::size_t M, std::size_t N, std::size_t K, T alpha,
          const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "gemm: float or double");
    const bool ta = transA == Trans::Yes, tb = transB == Trans::Yes;
    detail::gemm_check_operand("C", C == nullptr, M, N, ldc, "ldc");
    if (M == 0 || N == 0) return;
    if (K == 0 || alpha == T(0)) {
        detail::gemm_scale(M, N, beta, C, ldc);
        return;
    }
    detail::gemm_check_operand("A", A == nullptr, ta ? K : M, ta ? M : K, lda, "lda");
    detail::gemm_check_operand("B", B == nullptr, tb ? N : K, tb ? K : N, ldb, "ldb");

    if constexpr (std::is_same_v<T, float>) {
        if (gemm_computes_in_bf16<T>()) {
            detail::gemm_in_bf16(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            return;
        }
    }
    if (gemm_backend() == GemmBackend::Eigen) {
#if defined(FACET_HAVE_EIGEN)
        detail::gemm_eigen(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
#else
        throw Error("gemm: Eigen backend selected but FACET_HAVE_EIGEN is not defined here");
#endif
    }
    detail::gemm_facet(gemm_isa(), transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/// op(A) packed once for many products with different right-hand sides: a convolution's
/// weights, multiplied by every image of a batch. gemm() re-packs A on every call, which for
/// the late fer-cnn-s layers (128 x 1152 weights against 144 output pixels per image) is about
/// as much data as it packs of B; multiply() skips that, and gives gemm()'s bits.
/// The packing is for the ISA selected when pack() ran. The source A must stay alive and
/// unchanged while the packing is used: when the ISA, the backend or the precision has changed
/// since (or the context computes in bf16), multiply() computes the plain gemm() with the source.
template <typename T>
class GemmPackedA {
  public:
    /// Packs op(A) (M x K; A stored K x M when transA == Yes), with the checks of gemm().
    void pack(Trans transA, std::size_t M, std::size_t K, const T* A, std::size_t lda) {
        const bool ta = transA == Trans::Yes;
        detail::gemm_check_operand("A", A == nullptr, ta ? K : M, ta ? M : K, lda, "lda");
        trans_ = transA, M_ = M, K_ = K, A_ = A, lda_ = lda, isa_ = gemm_isa();
        panels_.clear();
        if (M == 0 || K == 0 || gemm_backend() == GemmBackend::Eigen || gemm_computes_in_bf16<T>())
            return;
        switch (isa_) {
#if FACET_GEMM_HAVE_X86_KERNELS
            case GemmIsa::Avx512:
                return pack_for<GemmKernelAvx512<T>>();
            case GemmIsa::Avx2:
                return pack_for<GemmKernelAvx2<T>>();
#endif
            default:
                return pack_for<GemmKernelPortable<T>>();
        }
    }

    std::size_t rows() const {
        return M_;
    }
    std::size_t depth() const {
        return K_;
    }

    /// C (M x N) = alpha * op(A) * op(B) + beta * C, with op(A) as packed; see gemm().
    void multiply(Trans transB, std::size_t N, T alpha, const T* B, std::size_t ldb, T beta, T* C,
                  std::size_t ldc) const {
        // A one-row product with B transposed, or a thin one with long rows, takes one of gemm()'s
        // dot-product paths, not the packed one.
        const bool usable = !panels_.empty() && isa_ == gemm_isa() &&
                            gemm_backend() == GemmBackend::Facet && !gemm_computes_in_bf16<T>() &&
                            alpha != T(0) && !(M_ == 1 && transB == Trans::Yes) &&
                            !detail::gemm_takes_dot_rows<T>(isa_, trans_, transB, M_, N, K_);
        if (!usable) {
            gemm(trans_, transB, M_, N, K_, alpha, A_, lda_, B, ldb, beta, C, ldc);
            return;
        }
        const bool tb = transB == Trans::Yes;
        detail::gemm_check_operand("C", C == nullptr, M_, N, ldc, "ldc");
        detail::gemm_check_operand("B", B == nullptr, tb ? N : K_, tb ? K_ : N, ldb, "ldb");
        if (N == 0) return;
        detail::gemm_facet(isa_, trans_, transB, M_, N, K_, alpha, A_, lda_, B, ldb, beta, C, ldc,
                           panels_.data());
    }

  private:
    template <typename Kernel>
    void pack_for() {
        panels_.resize(detail::packed_a_size<Kernel>(M_, K_));
        detail::pack_whole_a<Kernel>(trans_, M_, K_, A_, lda_, panels_.data());
    }

    Trans trans_ = Trans::No;
    std::size_t M_ = 0, K_ = 0, lda_ = 0;
    const T* A_ = nullptr;
    GemmIsa isa_ = GemmIsa::Portable;
    std::vector<T> panels_;
};

}  // namespace facet
