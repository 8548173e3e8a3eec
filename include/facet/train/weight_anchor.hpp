// facet/train/weight_anchor.hpp — WeightAnchor: a callback that pulls the trained weights towards
// reference values, typically the parent model's when fine-tuning, so that the new model stays
// near the one it came from ("L2-SP", Li, Grandvalet & Davoine 2018). It is the penalty
// (strength / 2) * ||w - w_ref||^2 applied apart from the optimiser, as AdamW applies its weight
// decay (which is the same pull towards zero): after every step,
//
//     w <- w - lr * strength * (w - w_ref)
//
// with lr the rate of that step, so the pull follows the schedule. A factor lr * strength of 1
// would put the weights back on the reference at every step; the constructor refuses strengths
// that could go past it.
//
// With per-weight importance I_i (elastic weight consolidation, Kirkpatrick et al. 2017, with
// I the diagonal Fisher information of train/fisher.hpp), the penalty is
// (strength / 2) * sum_i I_i (w_i - ref_i)^2 and the pull on weight i is lr * strength * I_i.
// I is rescaled to a mean of 1 over all the weights, so that a strength means the same average
// pull with or without it, and each weight's factor stops at 1 (back on its reference): the
// weights that matter most are then held, never pushed past their reference.
//
//     trainer.add<WeightAnchor>(model.parameters(), 10.0);  // reference: the values now
//
// Read next: train/trainer.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/layers/layer.hpp"
#include "facet/train/callback.hpp"
#include "facet/train/trainer.hpp"

namespace facet {

/// Pulls `params` towards the values they hold when the callback is made (copied then), by
/// lr * strength of their distance after every step that was not skipped; with `importance` (one
/// tensor per parameter, of its shape, >= 0, not all 0), by lr * strength * I_i for weight i,
/// I rescaled to a mean of 1 and each factor at most 1.
class WeightAnchor : public Callback {
  public:
    WeightAnchor(std::vector<Parameter<float>> params, double strength,
                 std::vector<Tensor<float>> importance = {})
        : params_(std::move(params)), importance_(std::move(importance)), strength_(strength) {
        check(std::isfinite(strength) && strength >= 0,
              "WeightAnchor: strength must be finite and >= 0, got ", strength);
        reference_.reserve(params_.size());
        for (const Parameter<float>& p : params_) {
            check(p.value != nullptr, "WeightAnchor: parameter '", p.name, "' has no value");
            reference_.push_back(*p.value);
        }
        if (!importance_.empty()) rescale_importance();
    }

    void on_step_end(Trainer&, const StepReport& r) override {
        if (r.skipped || strength_ == 0) return;
        const double pull = r.learning_rate * strength_;
        check(!importance_.empty() || pull <= 1, "WeightAnchor: learning rate ", r.learning_rate,
              " x strength ", strength_, " = ", pull,
              " would pull the weights past their reference");
        for (std::size_t i = 0; i < params_.size(); ++i) {
            Tensor<float>& w = *params_[i].value;
            const Tensor<float>& ref = reference_[i];
            check(w.shape() == ref.shape(), "WeightAnchor: parameter '", params_[i].name,
                  "' changed shape from ", ref.shape().str(), " to ", w.shape().str());
            if (importance_.empty()) {
                const auto k = static_cast<float>(pull);
                for (std::size_t j = 0; j < w.size(); ++j) w[j] -= k * (w[j] - ref[j]);
            } else {
                const Tensor<float>& imp = importance_[i];
                for (std::size_t j = 0; j < w.size(); ++j) {
                    const auto k = static_cast<float>(std::min(1.0, pull * double(imp[j])));
                    w[j] -= k * (w[j] - ref[j]);
                }
            }
        }
    }

    double strength() const { return strength_; }
    /// The reference values, in the order of the parameters.
    const std::vector<Tensor<float>>& reference() const { return reference_; }
    /// The per-weight importance rescaled to a mean of 1 (empty: every weight 1).
    const std::vector<Tensor<float>>& importance() const { return importance_; }

  private:
    void rescale_importance() {
        check(importance_.size() == params_.size(), "WeightAnchor: ", importance_.size(),
              " importance tensors for ", params_.size(), " parameters");
        double sum = 0;
        std::size_t count = 0;
        for (std::size_t i = 0; i < params_.size(); ++i) {
            check(importance_[i].shape() == params_[i].value->shape(),
                  "WeightAnchor: the importance of parameter '", params_[i].name, "' has shape ",
                  importance_[i].shape().str(), ", the parameter ",
                  params_[i].value->shape().str());
            for (std::size_t j = 0; j < importance_[i].size(); ++j) {
                const double v = importance_[i][j];
                check(std::isfinite(v) && v >= 0, "WeightAnchor: the importance of parameter '",
                      params_[i].name, "' has the value ", v, " at ", j,
                      " (it must be finite and >= 0)");
                sum += v;
            }
            count += importance_[i].size();
        }
        check(sum > 0, "WeightAnchor: every importance is 0");
        const double scale = static_cast<double>(count) / sum;
        for (Tensor<float>& t : importance_)
            for (std::size_t j = 0; j < t.size(); ++j)
                t[j] = static_cast<float>(double(t[j]) * scale);
    }

    std::vector<Parameter<float>> params_;
    std::vector<Tensor<float>> importance_;
    std::vector<Tensor<float>> reference_;
    double strength_;
};

}  // namespace facet
