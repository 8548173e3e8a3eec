// facet/core/eigen_interop.hpp — 2-D Eigen views of facet tensors, without copies.
// Optional: include it only where Eigen is available (tests, benchmarks, the Eigen GEMM backend).
#pragma once

#include <Eigen/Core>

#include "facet/core/tensor.hpp"

namespace facet {

template <typename T>
using EigenRowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// The tensor as a row-major rows x cols matrix, rows = outer extent, cols = everything else.
/// (Unaligned: a slice() of a batch need not start on a 64-byte boundary.)
template <typename T>
Eigen::Map<EigenRowMatrix<T>, Eigen::Unaligned> as_eigen(Tensor<T>& t) {
    check(t.rank() >= 1, "as_eigen: rank-0 tensor");
    return {t.data(), static_cast<Eigen::Index>(t.dim(0)),
            static_cast<Eigen::Index>(t.shape().inner_size())};
}
template <typename T>
Eigen::Map<const EigenRowMatrix<T>, Eigen::Unaligned> as_eigen(const Tensor<T>& t) {
    check(t.rank() >= 1, "as_eigen: rank-0 tensor");
    return {t.data(), static_cast<Eigen::Index>(t.dim(0)),
            static_cast<Eigen::Index>(t.shape().inner_size())};
}

}  // namespace facet
