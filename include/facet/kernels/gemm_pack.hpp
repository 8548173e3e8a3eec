// facet/kernels/gemm_pack.hpp — packing of GEMM operands into the layouts the micro-kernels read.
//
// A block of op(A) (mc x kc) is stored as ceil(mc/MR) micro-panels of MR rows: inside a panel,
// element (i, k) sits at k*MR + i, so the kernel reads the MR values of one k-step contiguously.
// A block of op(B) (kc x nc) is stored as ceil(nc/NR) micro-panels of NR columns, element (k, j)
// at k*NR + j. Rows (columns) past the edge of the matrix are filled with zeros, so the kernel
// always computes a full MR x NR tile. Transposes are resolved here: the kernel never sees one.
// Read next: kernels/gemm_microkernel_portable.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>

#include "facet/kernels/cpu_features.hpp"

#if FACET_GEMM_HAVE_X86_KERNELS
#include <immintrin.h>
#endif

namespace facet {

/// Whether an operand is used as stored (No) or transposed (Yes).
enum class Trans { No, Yes };

namespace detail {

/// A 64-byte aligned scratch array that only grows; one per thread and role (see gemm_workspace).
template <typename T>
class GemmBuffer {
  public:
    T* reserve(std::size_t n) {
        if (n > capacity_) {
            storage_.reset(static_cast<T*>(::operator new[](n * sizeof(T), std::align_val_t{64})));
            capacity_ = n;
        }
        return storage_.get();
    }

  private:
    struct Free {
        void operator()(T* p) const { ::operator delete[](p, std::align_val_t{64}); }
    };
    std::unique_ptr<T, Free> storage_;
    std::size_t capacity_ = 0;
};

/// The calling thread's packing buffer for A (role 0) or B (role 1). thread_local, so OpenMP
/// threads never share one, and reused across calls, so a training loop allocates only once.
template <typename T>
T* gemm_workspace(int role, std::size_t elements) {
    thread_local GemmBuffer<T> buffers[2];
    return buffers[role].reserve(elements);
}

inline void prefetch_read(const void* p) {
#if FACET_GEMM_HAVE_X86_KERNELS
    _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
#else
    (void)p;
#endif
}

#if FACET_GEMM_HAVE_X86_KERNELS
/// Transposes an 8 x 8 block: dst[c * dst_ld + r] = src[r * src_ld + c] (unpack, shuffle, then
/// swap 128-bit halves: 24 shuffles for 64 floats instead of 64 scalar moves).
__attribute__((target("avx2"))) inline void transpose_block(const float* src, std::size_t src_ld,
                                                            float* dst, std::size_t dst_ld) {
    __m256 r[8], t[8];
    for (std::size_t i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * src_ld);
    for (std::size_t i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);      // r_i0 r_(i+1)0 r_i1 r_(i+1)1 | cols 4, 5
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);  // cols 2, 3 | cols 6, 7
    }
    for (std::size_t i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));      // col 0 | col 4
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));  // col 1 | col 5
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (std::size_t c = 0; c < 4; ++c) {
        _mm256_storeu_ps(dst + c * dst_ld, _mm256_permute2f128_ps(r[c], r[c + 4], 0x20));
        _mm256_storeu_ps(dst + (c + 4) * dst_ld, _mm256_permute2f128_ps(r[c], r[c + 4], 0x31));
    }
}

/// Transposes a 4 x 4 block of doubles, as above.
__attribute__((target("avx2"))) inline void transpose_block(const double* src, std::size_t src_ld,
                                                            double* dst, std::size_t dst_ld) {
    const __m256d r0 = _mm256_loadu_pd(src), r1 = _mm256_loadu_pd(src + src_ld);
    const __m256d r2 = _mm256_loadu_pd(src + 2 * src_ld), r3 = _mm256_loadu_pd(src + 3 * src_ld);
    const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
    const __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
    _mm256_storeu_pd(dst, _mm256_permute2f128_pd(t0, t2, 0x20));
    _mm256_storeu_pd(dst + dst_ld, _mm256_permute2f128_pd(t1, t3, 0x20));
    _mm256_storeu_pd(dst + 2 * dst_ld, _mm256_permute2f128_pd(t0, t2, 0x31));
    _mm256_storeu_pd(dst + 3 * dst_ld, _mm256_permute2f128_pd(t1, t3, 0x31));
}
#endif

/// Block side of transpose_block: 8 floats or 4 doubles (one ymm register).
template <typename T>
inline constexpr std::size_t transpose_lanes = 32 / sizeof(T);

/// dst[k * width + r] = src[r * ld + k] for r < width, k < kc: `width` rows of a row-major matrix
/// become one k-major micro-panel. With `simd` (the CPU has AVX2) full blocks go through
/// transpose_block; `width` must then be a multiple of transpose_lanes<T>.
template <typename T>
void pack_transposed(bool simd, std::size_t width, std::size_t kc, const T* src, std::size_t ld,
                     T* dst) {
    constexpr std::size_t lanes = transpose_lanes<T>;
    std::size_t k0 = 0;
#if FACET_GEMM_HAVE_X86_KERNELS
    if (simd) {
        // `lanes` rows at a time, walking along k: each row is a sequential stream, prefetched
        // a few cache lines ahead (the rows lie far apart, where hardware prefetchers lose track).
        constexpr std::size_t line = 64 / sizeof(T), ahead = 4 * line;
        const std::size_t k_end = kc / lanes * lanes;
        for (std::size_t r0 = 0; r0 < width; r0 += lanes)
            for (std::size_t k = 0; k < k_end; k += lanes) {
                if (k % line == 0 && k + ahead < kc)
                    for (std::size_t r = r0; r < r0 + lanes; ++r)
                        prefetch_read(src + r * ld + k + ahead);
                transpose_block(src + r0 * ld + k, ld, dst + k * width + r0, width);
            }
        k0 = k_end;
    }
#else
    (void)simd;
#endif
    for (std::size_t k = k0; k < kc; ++k)
        for (std::size_t r = 0; r < width; ++r) dst[k * width + r] = src[r * ld + k];
}

/// Packs rows [0, mc) and columns [0, kc) of op(A) into MR-row micro-panels at `packed`.
/// `a` points at element (0, 0) of the block of op(A); lda is the row stride of the stored A.
/// `simd`: the CPU has AVX2 (transposes then use transpose_block).
template <std::size_t MR, typename T>
void pack_a(bool simd, Trans trans, std::size_t mc, std::size_t kc, const T* a, std::size_t lda,
            T* packed) {
    for (std::size_t r0 = 0; r0 < mc; r0 += MR, packed += MR * kc) {
        const std::size_t rows = std::min(MR, mc - r0);
        if (trans == Trans::No && rows == MR && MR % transpose_lanes<T> == 0) {
            pack_transposed(simd, MR, kc, a + r0 * lda, lda, packed);
        } else if (trans == Trans::No) {
            // MR rows of A are read side by side: MR sequential streams, contiguous writes.
            const T* row[MR];
            for (std::size_t i = 0; i < MR; ++i) row[i] = a + (r0 + std::min(i, rows - 1)) * lda;
            for (std::size_t k = 0; k < kc; ++k)
                for (std::size_t i = 0; i < MR; ++i)
                    packed[k * MR + i] = i < rows ? row[i][k] : T(0);
        } else {
            // op(A)(i, k) = A(k, i): each k-step of the panel is a contiguous piece of row k of A.
            for (std::size_t k = 0; k < kc; ++k) {
                const T* src = a + k * lda + r0;
                T* dst = packed + k * MR;
                if (rows == MR) {  // a fixed-length copy the compiler turns into vector moves
                    for (std::size_t i = 0; i < MR; ++i) dst[i] = src[i];
                } else {
                    for (std::size_t i = 0; i < rows; ++i) dst[i] = src[i];
                    for (std::size_t i = rows; i < MR; ++i) dst[i] = T(0);
                }
            }
        }
    }
}

/// Packs rows [0, kc) and columns [0, nc) of op(B) into NR-column micro-panels at `packed`.
/// `b` points at element (0, 0) of the block of op(B); ldb is the row stride of the stored B.
/// `simd`: the CPU has AVX2 (transposes then use transpose_block).
template <std::size_t NR, typename T>
void pack_b(bool simd, Trans trans, std::size_t kc, std::size_t nc, const T* b, std::size_t ldb,
            T* packed) {
    if (trans == Trans::No) {
        // Row k of the block is read once, left to right, and scattered over the panels; the row
        // a few steps ahead is prefetched because B is often far larger than the caches.
        constexpr std::size_t ahead = 4;
        const std::size_t panels = (nc + NR - 1) / NR;
        for (std::size_t k = 0; k < kc; ++k) {
            const T* src = b + k * ldb;
            if (k + ahead < kc)
                for (std::size_t j = 0; j < nc; j += 64 / sizeof(T))
                    prefetch_read(src + ahead * ldb + j);
            for (std::size_t p = 0; p < panels; ++p) {
                T* dst = packed + p * NR * kc + k * NR;
                const std::size_t cols = std::min(NR, nc - p * NR);
                if (cols == NR) {
                    for (std::size_t j = 0; j < NR; ++j) dst[j] = src[p * NR + j];
                } else {
                    for (std::size_t j = 0; j < cols; ++j) dst[j] = src[p * NR + j];
                    for (std::size_t j = cols; j < NR; ++j) dst[j] = T(0);
                }
            }
        }
    } else {
        // op(B)(k, j) = B(j, k): NR rows of B are read side by side, as for A above.
        for (std::size_t c0 = 0; c0 < nc; c0 += NR, packed += NR * kc) {
            const std::size_t cols = std::min(NR, nc - c0);
            if (cols == NR && NR % transpose_lanes<T> == 0) {
                pack_transposed(simd, NR, kc, b + c0 * ldb, ldb, packed);
                continue;
            }
            const T* col[NR];
            for (std::size_t j = 0; j < NR; ++j) col[j] = b + (c0 + std::min(j, cols - 1)) * ldb;
            for (std::size_t k = 0; k < kc; ++k)
                for (std::size_t j = 0; j < NR; ++j)
                    packed[k * NR + j] = j < cols ? col[j][k] : T(0);
        }
    }
}

}  // namespace detail
}  // namespace facet
