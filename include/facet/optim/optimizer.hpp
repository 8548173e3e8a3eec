// facet/optim/optimizer.hpp — the base of all optimisers and the state they save for resuming.
// An optimiser is bound to a model's parameters (value, gradient, decay flag; see layers/layer.hpp)
// and applies one update per step() from the gradients the last backward pass assigned.
// Read next: optim/sgd.hpp, optim/adam.hpp, then optim/schedule.hpp and optim/clip.hpp.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/core/tensor.hpp"
#include "facet/layers/layer.hpp"

namespace facet {

/// Everything an optimiser needs to continue a run exactly: its hyper-parameters and step count as
/// named numbers, and its per-parameter buffers (momentum, moments) named "<parameter>.<buffer>".
template <typename T>
struct OptimizerState {
    std::string type;
    std::vector<std::pair<std::string, double>> scalars;
    std::vector<std::pair<std::string, Tensor<T>>> tensors;

    /// The number stored under `key`, or an Error naming the optimiser type and the key.
    double scalar(const std::string& key) const {
        for (const auto& [k, v] : scalars)
            if (k == key) return v;
        throw Error(detail::concat("optimizer state ", type, ": missing value '", key, "'"));
    }
    /// The tensor stored under `key`, checked to have `shape`; an Error when missing or different.
    const Tensor<T>& tensor(const std::string& key, const Shape& shape) const {
        for (const auto& [k, t] : tensors)
            if (k == key) {
                check(t.shape() == shape, "optimizer state ", type, ": '", key, "' has shape ",
                      t.shape().str(), ", the parameter has ", shape.str());
                return t;
            }
        throw Error(detail::concat("optimizer state ", type, ": missing buffer '", key, "'"));
    }
};

/// The base of SGD, Adam and AdamW.
template <typename T>
class Optimizer {
  public:
    /// Binds the optimiser to `params`; their names must be unique (state is saved by name).
    Optimizer(std::vector<Parameter<T>> params, double learning_rate) : params_(std::move(params)) {
        set_learning_rate(learning_rate);
        for (std::size_t i = 0; i < params_.size(); ++i) {
            const Parameter<T>& p = params_[i];
            check(p.value && p.grad, "optimizer: parameter '", p.name,
                  "' has no value or gradient tensor");
            for (std::size_t j = 0; j < i; ++j)
                check(params_[j].name != p.name, "optimizer: two parameters are named '", p.name,
                      "'");
        }
    }
    virtual ~Optimizer() = default;
    Optimizer(const Optimizer&) = delete;
    Optimizer& operator=(const Optimizer&) = delete;

    /// The name saved in checkpoints: "SGD", "Adam" or "AdamW".
    virtual std::string type() const = 0;
    /// Applies one update to every parameter from its current gradient.
    virtual void step() = 0;
    /// Hyper-parameters, step count and buffers, for a training checkpoint.
    virtual OptimizerState<T> state() const = 0;
    /// Restores what state() saved; an Error when the type or any buffer's name or shape differs.
    virtual void load_state(const OptimizerState<T>& state) = 0;

    /// The learning rate of the next step (a schedule sets it before every step).
    double learning_rate() const { return learning_rate_; }
    /// Sets the learning rate of the next steps; must be finite and >= 0.
    void set_learning_rate(double lr) {
        check(std::isfinite(lr) && lr >= 0,
              "optimizer: learning rate must be finite and >= 0, got ", lr);
        learning_rate_ = lr;
    }
    /// How many steps have been taken (restored by load_state).
    std::size_t steps() const { return steps_; }
    /// The parameters this optimiser updates.
    const std::vector<Parameter<T>>& parameters() const { return params_; }

  protected:
    /// Checks that every gradient still matches its value; layers resize both together.
    void check_gradients() const {
        for (const Parameter<T>& p : params_)
            check(p.grad->shape() == p.value->shape(), type(), ": gradient of '", p.name,
                  "' has shape ", p.grad->shape().str(), ", the value has ",
                  p.value->shape().str());
    }
    /// Zero buffers shaped like every parameter (momentum, moments).
    std::vector<Tensor<T>> zeros_like_parameters() const {
        std::vector<Tensor<T>> buffers;
        buffers.reserve(params_.size());
        for (const Parameter<T>& p : params_) buffers.emplace_back(p.value->shape());
        return buffers;
    }
    /// Checks the type in a saved state before anything is restored from it.
    void check_state_type(const OptimizerState<T>& state) const {
        check(state.type == type(), "optimizer: cannot load the state of a ", state.type,
              " optimizer into ", type());
    }
    /// Calls body(begin, end) over [0, n) in parallel for large tensors; element-wise updates
    /// do not depend on the split, so the result is the same for every thread count.
    template <typename Body>
    static void for_elements(std::size_t n, Body&& body) {
        constexpr std::size_t serial_below = 1 << 15;  // thread start-up costs more below this
        if (n < serial_below) {
            if (n) body(std::size_t{0}, n);
        } else {
            parallel_for(n, body);
        }
    }

    std::vector<Parameter<T>> params_;
    double learning_rate_ = 0;
    std::size_t steps_ = 0;
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class Optimizer<float>;
extern template class Optimizer<double>;
#endif

}  // namespace facet
