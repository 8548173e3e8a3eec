// facet/kernels/gemm.hpp — C = alpha * op(A) * op(B) + beta * C, row-major, float and double.
// PLACEHOLDER implementation (simple loops): the Goto/BLIS kernel replaces the body of gemm()
// while keeping this exact signature.
#pragma once

#include <cstddef>

#include "facet/core/error.hpp"

namespace facet {

/// Whether an operand is used as stored (No) or transposed (Yes).
enum class Trans { No, Yes };

/// Row-major GEMM: C (M x N, row stride ldc) = alpha * op(A) * op(B) + beta * C, where op(A) is
/// M x K and op(B) is K x N. A is stored M x K (lda >= K) when transA == No, K x M (lda >= M) when
/// Yes; likewise B. beta == 0 overwrites C without reading it (NaNs in C are not propagated).
template <typename T>
void gemm(Trans transA, Trans transB, std::size_t M, std::size_t N, std::size_t K, T alpha,
          const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
    for (std::size_t i = 0; i < M; ++i)
        for (std::size_t j = 0; j < N; ++j) {
            T acc = 0;
            for (std::size_t k = 0; k < K; ++k) {
                const T a = transA == Trans::No ? A[i * lda + k] : A[k * lda + i];
                const T b = transB == Trans::No ? B[k * ldb + j] : B[j * ldb + k];
                acc += a * b;
            }
            C[i * ldc + j] = alpha * acc + (beta == T(0) ? T(0) : beta * C[i * ldc + j]);
        }
}

}  // namespace facet
