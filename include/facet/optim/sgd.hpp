// facet/optim/sgd.hpp — stochastic gradient descent with optional (Nesterov) momentum and L2
// weight decay, with the same update rule as PyTorch's torch.optim.SGD (dampening 0).
// Read next: optim/adam.hpp.
#pragma once

#include <string>
#include <vector>

#include "facet/optim/optimizer.hpp"

namespace facet {

/// Hyper-parameters of SGD.
struct SgdOptions {
    double learning_rate = 0.01;
    double momentum = 0.0;      ///< mu in [0, 1); 0 disables the velocity buffer
    bool nesterov = false;      ///< look-ahead momentum; needs momentum > 0
    double weight_decay = 0.0;  ///< L2 coefficient, applied to parameters with decay == true only
};

/// SGD. For every parameter w with gradient g:
///   g <- g + weight_decay * w                (if the parameter decays)
///   v <- momentum * v + g                    (v starts at 0, so the first v is g)
///   d <- g + momentum * v  (Nesterov)  or  d <- v  (classical)   or  d <- g  (no momentum)
///   w <- w - lr * d
template <typename T>
class SGD : public Optimizer<T> {
  public:
    /// Binds to `params`; an Error when an option is out of range.
    SGD(std::vector<Parameter<T>> params, const SgdOptions& options = {})
        : Optimizer<T>(std::move(params), options.learning_rate), options_(options) {
        check(options.momentum >= 0 && options.momentum < 1,
              "SGD: momentum must be in [0, 1), got ", options.momentum);
        check(!options.nesterov || options.momentum > 0,
              "SGD: Nesterov momentum needs momentum > 0");
        check(options.weight_decay >= 0, "SGD: weight decay must be >= 0, got ",
              options.weight_decay);
        if (options_.momentum > 0) velocity_ = this->zeros_like_parameters();
    }

    std::string type() const override { return "SGD"; }
    const SgdOptions& options() const { return options_; }

    void step() override {
        this->check_gradients();
        const T lr = static_cast<T>(this->learning_rate_);
        const T mu = static_cast<T>(options_.momentum);
        for (std::size_t i = 0; i < this->params_.size(); ++i) {
            const Parameter<T>& p = this->params_[i];
            T* w = p.value->data();
            const T* grad = p.grad->data();
            T* v = velocity_.empty() ? nullptr : velocity_[i].data();
            const T decay = p.decay ? static_cast<T>(options_.weight_decay) : T(0);
            const bool nesterov = options_.nesterov;
            this->for_elements(p.value->size(), [&](std::size_t begin, std::size_t end) {
                for (std::size_t k = begin; k < end; ++k) {
                    const T g = grad[k] + decay * w[k];
                    T d = g;
                    if (v) {
                        v[k] = mu * v[k] + g;
                        d = nesterov ? g + mu * v[k] : v[k];
                    }
                    w[k] -= lr * d;
                }
            });
        }
        ++this->steps_;
    }

    OptimizerState<T> state() const override {
        OptimizerState<T> s;
        s.type = type();
        s.scalars = {{"learning_rate", this->learning_rate_},
                     {"momentum", options_.momentum},
                     {"nesterov", options_.nesterov ? 1.0 : 0.0},
                     {"weight_decay", options_.weight_decay},
                     {"steps", static_cast<double>(this->steps_)}};
        for (std::size_t i = 0; i < velocity_.size(); ++i)
            s.tensors.emplace_back(this->params_[i].name + ".velocity", velocity_[i]);
        return s;
    }

    void load_state(const OptimizerState<T>& s) override {
        this->check_state_type(s);
        SgdOptions restored;
        restored.learning_rate = s.scalar("learning_rate");
        restored.momentum = s.scalar("momentum");
        restored.nesterov = s.scalar("nesterov") != 0.0;
        restored.weight_decay = s.scalar("weight_decay");
        const double steps = s.scalar("steps");
        check(steps >= 0 && steps == std::floor(steps), "SGD state: bad step count ", steps);
        check(restored.momentum >= 0 && restored.momentum < 1, "SGD state: momentum ",
              restored.momentum, " out of range");
        std::vector<Tensor<T>> velocity;
        if (restored.momentum > 0)
            for (const Parameter<T>& p : this->params_)
                velocity.push_back(s.tensor(p.name + ".velocity", p.value->shape()));
        // Everything is validated: only now change this optimiser.
        this->set_learning_rate(restored.learning_rate);
        options_ = restored;
        velocity_ = std::move(velocity);
        this->steps_ = static_cast<std::size_t>(steps);
    }

  private:
    SgdOptions options_;
    std::vector<Tensor<T>> velocity_;
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class SGD<float>;
extern template class SGD<double>;
#endif

}  // namespace facet
