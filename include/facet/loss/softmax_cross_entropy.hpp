// facet/loss/softmax_cross_entropy.hpp — the fused softmax + cross-entropy loss used for training
// classifiers: numerically stable (log-sum-exp), averaged over the batch, with optional label
// smoothing and per-class weights following PyTorch's conventions.
// Read next: model/gradient_check.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/softmax_rows.hpp"

namespace facet {

/// Cross-entropy of softmax(logits) against integer labels. For sample n with label y, class
/// weights w (all 1 by default), smoothing eps and K classes, with log p = log_softmax(z):
///
///   loss = [ (1 - eps) * sum_n w_y * (-log p_ny) + (eps / K) * sum_n sum_k w_k * (-log p_nk) ]
///          / sum_n w_y
///
/// which is PyTorch's CrossEntropyLoss(weight, label_smoothing) with reduction 'mean'. Without
/// weights the denominator is N, and the loss is the mean of -sum_k q_nk log p_nk with the
/// smoothed target q = (1 - eps) * onehot(y) + eps / K.
template <typename T>
class SoftmaxCrossEntropy {
  public:
    /// `label_smoothing` in [0, 1]; `class_weights` empty (all 1) or one non-negative weight per
    /// class.
    explicit SoftmaxCrossEntropy(double label_smoothing = 0.0,
                                 std::vector<double> class_weights = {})
        : smoothing_(label_smoothing), weights_(std::move(class_weights)) {
        check(label_smoothing >= 0 && label_smoothing <= 1,
              "SoftmaxCrossEntropy: label_smoothing must lie in [0, 1], got ", label_smoothing);
        for (std::size_t k = 0; k < weights_.size(); ++k)
            check(std::isfinite(weights_[k]) && weights_[k] >= 0,
                  "SoftmaxCrossEntropy: weight of class ", k, " must be finite and >= 0, got ",
                  weights_[k]);
    }

    /// The mean loss of `logits` (N, K) against `labels` (N values in [0, K)). Keeps the
    /// probabilities (see probabilities()) and what backward() needs.
    T forward(const Tensor<T>& logits, std::span<const int> labels) {
        check(logits.rank() == 2, "SoftmaxCrossEntropy: logits must be (N, K), got ",
              logits.shape().str());
        const std::size_t N = logits.dim(0), K = logits.dim(1);
        check(N > 0 && K > 0, "SoftmaxCrossEntropy: empty logits ", logits.shape().str());
        check(labels.size() == N, "SoftmaxCrossEntropy: ", labels.size(), " labels for a batch of ",
              N);
        check(weights_.empty() || weights_.size() == K, "SoftmaxCrossEntropy: ", weights_.size(),
              " class weights for ", K, " classes");
        for (std::size_t n = 0; n < N; ++n)
            check(labels[n] >= 0 && std::size_t(labels[n]) < K, "SoftmaxCrossEntropy: label ",
                  labels[n], " of sample ", n, " is outside [0, ", K, ")");
        labels_.assign(labels.begin(), labels.end());
        probs_.resize(logits.shape());
        double total = 0;
        normaliser_ = 0;
        for (std::size_t n = 0; n < N; ++n) {
            const T* z = logits.data() + n * K;
            T* p = probs_.data() + n * K;
            // log p_k = z_k - log sum_j exp(z_j), the log-sum computed stably by softmax_row.
            const double log_sum = softmax_row(z, p, K);
            double smooth = 0;  // sum_k w_k * (-log p_k)
            for (std::size_t k = 0; k < K; ++k) smooth -= weight(k) * (double(z[k]) - log_sum);
            const std::size_t y = std::size_t(labels[n]);
            const double wy = weight(y);
            total +=
                (1 - smoothing_) * wy * (log_sum - double(z[y])) + smoothing_ / double(K) * smooth;
            normaliser_ += wy;
        }
        check(normaliser_ > 0, "SoftmaxCrossEntropy: the labels of this batch all have weight 0");
        return T(total / normaliser_);
    }
    /// forward() with the labels as a vector.
    T forward(const Tensor<T>& logits, const std::vector<int>& labels) {
        return forward(logits, std::span<const int>(labels.data(), labels.size()));
    }

    // dloss/dz_nk = [ c_n p_nk - t_nk ] / sum_n w_y, the "probs minus target" of the fused pair,
    // with
    //   c_n  = (1 - eps) w_y + (eps / K) sum_j w_j   (the total weight sample n puts on log p)
    //   t_nk = (1 - eps) w_y [k == y] + (eps / K) w_k
    // (d(-log p_j)/dz_k = p_k - [k == j]). Unweighted this is (p - q) / N.
    /// Assigns the gradient of the last forward's loss with respect to its logits.
    void backward(Tensor<T>& dlogits) const {
        check(!labels_.empty(), "SoftmaxCrossEntropy::backward called before forward");
        const std::size_t N = probs_.dim(0), K = probs_.dim(1);
        dlogits.resize(probs_.shape());
        double weight_sum_all = 0;
        for (std::size_t k = 0; k < K; ++k) weight_sum_all += weight(k);
        const double eps_k = smoothing_ / double(K);
        for (std::size_t n = 0; n < N; ++n) {
            const std::size_t y = std::size_t(labels_[n]);
            const double wy = weight(y);
            const double c = (1 - smoothing_) * wy + eps_k * weight_sum_all;
            const T* p = probs_.data() + n * K;
            T* d = dlogits.data() + n * K;
            for (std::size_t k = 0; k < K; ++k) {
                const double target = eps_k * weight(k) + (k == y ? (1 - smoothing_) * wy : 0.0);
                d[k] = T((c * double(p[k]) - target) / normaliser_);
            }
        }
    }

    /// softmax(logits) of the last forward, (N, K).
    const Tensor<T>& probabilities() const { return probs_; }
    double label_smoothing() const { return smoothing_; }
    const std::vector<double>& class_weights() const { return weights_; }

  private:
    double weight(std::size_t k) const { return weights_.empty() ? 1.0 : weights_[k]; }

    double smoothing_;
    std::vector<double> weights_;
    Tensor<T> probs_;
    std::vector<int> labels_;
    double normaliser_ = 1;  // sum_n w_y of the last forward
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class SoftmaxCrossEntropy<float>;
extern template class SoftmaxCrossEntropy<double>;
#endif

}  // namespace facet
