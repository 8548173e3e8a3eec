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
///
/// Distillation (set_teacher): sample n's target becomes (1 - a_n) q_n + a_n t_n, where t_n is a
/// teacher's probability row and a_n in [0, 1] its share, and the loss is the mean over n of
/// -sum_k target_nk log p_nk. A teacher's rows carry what the teacher believes about every class,
/// so matching them keeps a fine-tuned model close to its parent where no label says how.
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
        check(teacher_share_.empty() || teacher_.shape() == logits.shape(),
              "SoftmaxCrossEntropy: the teacher's probabilities are ", teacher_.shape().str(),
              ", the logits ", logits.shape().str());
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
            double sample =
                (1 - smoothing_) * wy * (log_sum - double(z[y])) + smoothing_ / double(K) * smooth;
            if (!teacher_share_.empty()) {  // weights are all 1 here (set_teacher checks)
                const T* t = teacher_.data() + n * K;
                double against_teacher = 0;  // -sum_k t_k log p_k
                for (std::size_t k = 0; k < K; ++k)
                    against_teacher += double(t[k]) * (log_sum - double(z[k]));
                const double a = teacher_share_[n];
                sample = (1 - a) * sample + a * against_teacher;
            }
            total += sample;
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
    // (d(-log p_j)/dz_k = p_k - [k == j]). Unweighted this is (p - q) / N; with a teacher's
    // share a_n it is ((1 - a_n) (p - q) + a_n (p - t_n)) / N = (p - target_n) / N.
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
            const T* t = teacher_share_.empty() ? nullptr : teacher_.data() + n * K;
            const double a = t ? teacher_share_[n] : 0.0;
            for (std::size_t k = 0; k < K; ++k) {
                const double target = eps_k * weight(k) + (k == y ? (1 - smoothing_) * wy : 0.0);
                double g = c * double(p[k]) - target;
                if (t) g = (1 - a) * g + a * (double(p[k]) - double(t[k]));
                d[k] = T(g / normaliser_);
            }
        }
    }

    /// Distils from a teacher in every forward() until clear_teacher(): `teacher` (N, K) holds
    /// each sample's teacher probabilities (rows of non-negative numbers summing to 1) and
    /// share[n] in [0, 1] how much of sample n's target they make (0: the label alone). The
    /// logits must then be (N, K). Not with class weights.
    void set_teacher(Tensor<T> teacher, std::vector<double> share) {
        check(weights_.empty(), "SoftmaxCrossEntropy::set_teacher: not with class weights");
        check(teacher.rank() == 2 && teacher.dim(0) == share.size(),
              "SoftmaxCrossEntropy::set_teacher: ", share.size(), " shares for teacher rows ",
              teacher.shape().str());
        const std::size_t K = teacher.dim(1);
        for (std::size_t n = 0; n < share.size(); ++n) {
            check(share[n] >= 0 && share[n] <= 1, "SoftmaxCrossEntropy::set_teacher: share ",
                  share[n], " of sample ", n, " is outside [0, 1]");
            double sum = 0;
            for (std::size_t k = 0; k < K; ++k) {
                const double v = double(teacher(n, k));
                check(v >= 0 && v <= 1, "SoftmaxCrossEntropy::set_teacher: teacher probability ", v,
                      " of sample ", n, " is outside [0, 1]");
                sum += v;
            }
            check(std::abs(sum - 1) < 1e-3, "SoftmaxCrossEntropy::set_teacher: the teacher's row ",
                  n, " sums to ", sum, ", not 1");
        }
        teacher_ = std::move(teacher);
        teacher_share_ = std::move(share);
    }
    /// Back to the labels alone.
    void clear_teacher() {
        teacher_ = Tensor<T>();
        teacher_share_.clear();
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
    double normaliser_ = 1;              // sum_n w_y of the last forward
    Tensor<T> teacher_;                  // (N, K) teacher probabilities, with
    std::vector<double> teacher_share_;  // each sample's share of them (empty: no teacher)
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class SoftmaxCrossEntropy<float>;
extern template class SoftmaxCrossEntropy<double>;
#endif

}  // namespace facet
