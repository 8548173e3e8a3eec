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
//     trainer.add<WeightAnchor>(model.parameters(), 10.0);  // reference: the values now
//
// Read next: train/trainer.hpp.
#pragma once

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
/// lr * strength of their distance after every step that was not skipped.
class WeightAnchor : public Callback {
  public:
    WeightAnchor(std::vector<Parameter<float>> params, double strength)
        : params_(std::move(params)), strength_(strength) {
        check(std::isfinite(strength) && strength >= 0,
              "WeightAnchor: strength must be finite and >= 0, got ", strength);
        reference_.reserve(params_.size());
        for (const Parameter<float>& p : params_) {
            check(p.value != nullptr, "WeightAnchor: parameter '", p.name, "' has no value");
            reference_.push_back(*p.value);
        }
    }

    void on_step_end(Trainer&, const StepReport& r) override {
        if (r.skipped || strength_ == 0) return;
        const double pull = r.learning_rate * strength_;
        check(pull <= 1, "WeightAnchor: learning rate ", r.learning_rate, " x strength ", strength_,
              " = ", pull, " would pull the weights past their reference");
        const auto k = static_cast<float>(pull);
        for (std::size_t i = 0; i < params_.size(); ++i) {
            Tensor<float>& w = *params_[i].value;
            const Tensor<float>& ref = reference_[i];
            check(w.shape() == ref.shape(), "WeightAnchor: parameter '", params_[i].name,
                  "' changed shape from ", ref.shape().str(), " to ", w.shape().str());
            for (std::size_t j = 0; j < w.size(); ++j) w[j] -= k * (w[j] - ref[j]);
        }
    }

    double strength() const { return strength_; }
    /// The reference values, in the order of the parameters.
    const std::vector<Tensor<float>>& reference() const { return reference_; }

  private:
    std::vector<Parameter<float>> params_;
    std::vector<Tensor<float>> reference_;
    double strength_;
};

}  // namespace facet
