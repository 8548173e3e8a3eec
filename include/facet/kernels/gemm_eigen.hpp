// facet/kernels/gemm_eigen.hpp — the same GEMM computed by Eigen's matrix product, so that
// facet::gemm() can be switched to Eigen at run time (set_gemm_backend) for comparison.
// Only included when FACET_HAVE_EIGEN is defined (and then it must be defined in every
// translation unit of the program, since gemm() is inline).
// Read next: kernels/gemm.hpp.
#pragma once

#include <cstddef>

// GCC 12 with -march=native (AVX-512) reports false -Wmaybe-uninitialized warnings from inside
// Eigen's GEMM kernels wherever a product is instantiated; silence them for this header only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Core>

#include "facet/kernels/gemm_pack.hpp"

namespace facet::detail {

/// C = alpha * op(A) * op(B) + beta * C through Eigen, on strided row-major maps (no copies).
/// Eigen uses as many OpenMP threads as omp_get_max_threads(), which set_num_threads() sets for
/// the calling thread; a context's own thread count (core/context.hpp) does not reach Eigen.
template <typename T>
void gemm_eigen(Trans transA, Trans transB, std::size_t M, std::size_t N, std::size_t K, T alpha,
                const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C,
                std::size_t ldc) {
    using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using ConstMap = Eigen::Map<const Matrix, Eigen::Unaligned, Eigen::OuterStride<>>;
    using Map = Eigen::Map<Matrix, Eigen::Unaligned, Eigen::OuterStride<>>;
    const auto idx = [](std::size_t n) { return static_cast<Eigen::Index>(n); };
    const bool ta = transA == Trans::Yes, tb = transB == Trans::Yes;
    ConstMap a(A, idx(ta ? K : M), idx(ta ? M : K), Eigen::OuterStride<>(idx(lda)));
    ConstMap b(B, idx(tb ? N : K), idx(tb ? K : N), Eigen::OuterStride<>(idx(ldb)));
    Map c(C, idx(M), idx(N), Eigen::OuterStride<>(idx(ldc)));
    const auto multiply = [&](const auto& op_a, const auto& op_b) {
        if (beta == T(0)) {
            c.noalias() = alpha * (op_a * op_b);  // assigns: NaNs already in C do not survive
        } else {
            if (beta != T(1)) c *= beta;
            c.noalias() += alpha * (op_a * op_b);
        }
    };
    if (ta && tb)
        multiply(a.transpose(), b.transpose());
    else if (ta)
        multiply(a.transpose(), b);
    else if (tb)
        multiply(a, b.transpose());
    else
        multiply(a, b);
}

}  // namespace facet::detail

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
