// facet/kernels/softmax_rows.hpp — the one softmax of facet: probabilities from rows of class
// scores (logits), computed stably, and the class each row scores highest. The Softmax layer,
// SoftmaxCrossEntropy and Sequential::predict all call softmax_row, so a model's probabilities are
// the same bits whichever of them produced them. Read next: layers/softmax.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"

namespace facet {

/// The type softmax_row computes in: double, or T when T is wider.
template <typename T>
using SoftmaxAccumulator = decltype(T() + 0.0);

/// Writes p[k] = exp(z[k]) / sum_j exp(z[j]) for the K scores of one row and returns
/// log sum_j exp(z[j]). Computed in double (float scores too) as exp(z[k] - log_sum) with
/// log_sum = m + log sum_j exp(z[j] - m), m the largest score: no exp() can overflow, and the loss
/// reuses log_sum for log p[k] = z[k] - log_sum.
template <typename T>
SoftmaxAccumulator<T> softmax_row(const T* z, T* p, std::size_t K) {
    using Acc = SoftmaxAccumulator<T>;
    const Acc m = static_cast<Acc>(*std::max_element(z, z + K));
    Acc sum = 0;
    for (std::size_t k = 0; k < K; ++k) sum += std::exp(static_cast<Acc>(z[k]) - m);
    const Acc log_sum = m + std::log(sum);
    for (std::size_t k = 0; k < K; ++k)
        p[k] = static_cast<T>(std::exp(static_cast<Acc>(z[k]) - log_sum));
    return log_sum;
}

/// softmax_row over every row of `scores` (N, K) into `probabilities` (resized to (N, K)).
template <typename T>
void softmax_rows(const Tensor<T>& scores, Tensor<T>& probabilities) {
    check(scores.rank() == 2 && scores.dim(1) > 0, "softmax: scores must be (N, K), got ",
          scores.shape().str());
    probabilities.resize(scores.shape());
    const std::size_t n = scores.dim(0), K = scores.dim(1);
    for (std::size_t i = 0; i < n; ++i)
        softmax_row(scores.data() + i * K, probabilities.data() + i * K, K);
}

/// The index of the largest of K scores (the first one on a tie).
template <typename T>
int argmax_row(const T* scores, std::size_t K) {
    return static_cast<int>(std::max_element(scores, scores + K) - scores);
}

/// The predicted class of each row of `scores` (N, K): logits or probabilities alike.
template <typename T>
std::vector<int> predicted_classes(const Tensor<T>& scores) {
    check(scores.rank() == 2, "predicted_classes: scores must be (N, classes), got ",
          scores.shape().str());
    const std::size_t n = scores.dim(0), K = scores.dim(1);
    std::vector<int> predicted(n);
    for (std::size_t i = 0; i < n; ++i) predicted[i] = argmax_row(scores.data() + i * K, K);
    return predicted;
}

}  // namespace facet
