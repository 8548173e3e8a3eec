// facet/layers/activations.hpp — the element-wise activations ReLU, LeakyReLU and ELU.
// Each keeps any input shape. Read next: layers/maxpool2d.hpp.
#pragma once

#include <cmath>
#include <cstddef>
#include <memory>
#include <string>

#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/core/tensor.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/registry.hpp"

namespace facet {

namespace detail {
/// Calls body(begin, end) over [0, n), split across threads only when n is large enough to pay
/// for waking them (2^15 elements: about ten microseconds of work).
template <typename Body>
void elementwise_for(std::size_t n, Body&& body) {
    parallel_for(n, body, n >= (std::size_t{1} << 15) ? 0 : 1);
}

/// Checks that dy matches x (activations keep their input's shape) and sizes dx.
template <typename T>
void prepare_elementwise_backward(const char* layer, const Tensor<T>& x, const Tensor<T>& dy,
                                  Tensor<T>& dx) {
    check(dy.shape() == x.shape(), layer, "::backward: dy is ", dy.shape().str(), ", expected ",
          x.shape().str());
    dx.resize(x.shape());
}
}  // namespace detail

/// y = max(x, 0).
template <typename T>
class ReLU : public Layer<T> {
  public:
    std::string type() const override { return "ReLU"; }
    Shape output_shape(const Shape& input) const override { return input; }

    void forward(const Tensor<T>& x, Tensor<T>& y) override {
        y.resize(x.shape());
        const T* in = x.data();
        T* out = y.data();
        detail::elementwise_for(x.size(), [&](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; ++i) out[i] = in[i] > T(0) ? in[i] : T(0);
        });
    }
    // dy/dx = 1 where x > 0, else 0 (the subgradient 0 at x = 0, as every framework takes).
    void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        detail::prepare_elementwise_backward("ReLU", x, dy, dx);
        const T *in = x.data(), *g = dy.data();
        T* d = dx.data();
        detail::elementwise_for(x.size(), [&](std::size_t b, std::size_t e) {
            // Loading g[i] before the test lets the compiler turn the select into a vector
            // blend (a load inside the branch keeps the loop scalar and mispredicting).
            for (std::size_t i = b; i < e; ++i) {
                const T gi = g[i];
                d[i] = in[i] > T(0) ? gi : T(0);
            }
        });
    }
    std::size_t flops(const Shape& input) const override { return input.size(); }
    /// Sequential may fold this layer into the layer before it (a batch norm's forward_relu, an
    /// affine epilogue).
    bool is_relu() const override { return true; }
    LayerConfig config() const override { return {"ReLU", {}}; }
    /// The layer a config describes (registry.hpp); it has no values.
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig&) {
        return std::make_unique<ReLU<T>>();
    }
};

/// y = x for x > 0, slope * x otherwise.
template <typename T>
class LeakyReLU : public Layer<T> {
  public:
    /// `slope` multiplies negative inputs (PyTorch's default 0.01).
    explicit LeakyReLU(double slope = 0.01) : slope_(slope) {
        check(std::isfinite(slope), "LeakyReLU: slope must be finite, got ", slope);
    }
    std::string type() const override { return "LeakyReLU"; }
    std::string describe() const override { return detail::concat("LeakyReLU(", slope_, ")"); }
    Shape output_shape(const Shape& input) const override { return input; }

    void forward(const Tensor<T>& x, Tensor<T>& y) override {
        y.resize(x.shape());
        const T* in = x.data();
        T* out = y.data();
        const T s = T(slope_);
        detail::elementwise_for(x.size(), [&](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; ++i) out[i] = in[i] > T(0) ? in[i] : s * in[i];
        });
    }
    // dy/dx = 1 where x > 0, slope otherwise.
    void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        detail::prepare_elementwise_backward("LeakyReLU", x, dy, dx);
        const T *in = x.data(), *g = dy.data();
        T* d = dx.data();
        const T s = T(slope_);
        detail::elementwise_for(x.size(), [&](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; ++i) d[i] = in[i] > T(0) ? g[i] : s * g[i];
        });
    }
    std::size_t flops(const Shape& input) const override { return input.size(); }
    LayerConfig config() const override { return {"LeakyReLU", {{"slope", slope_}}}; }
    /// The layer a config describes (registry.hpp); "slope" defaults to 0.01.
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& c) {
        return std::make_unique<LeakyReLU<T>>(detail::config_real(c, "slope", 0.01));
    }
    double slope() const { return slope_; }

  private:
    double slope_;
};

/// y = x for x > 0, alpha * (exp(x) - 1) otherwise.
template <typename T>
class ELU : public Layer<T> {
  public:
    /// `alpha` is the value negative inputs saturate at, -alpha (PyTorch's default 1).
    explicit ELU(double alpha = 1.0) : alpha_(alpha) {
        check(std::isfinite(alpha) && alpha >= 0, "ELU: alpha must be finite and >= 0, got ",
              alpha);
    }
    std::string type() const override { return "ELU"; }
    std::string describe() const override { return detail::concat("ELU(", alpha_, ")"); }
    Shape output_shape(const Shape& input) const override { return input; }

    void forward(const Tensor<T>& x, Tensor<T>& y) override {
        y.resize(x.shape());
        const T* in = x.data();
        T* out = y.data();
        const T a = T(alpha_);
        detail::elementwise_for(x.size(), [&](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; ++i)
                out[i] = in[i] > T(0) ? in[i] : a * std::expm1(in[i]);
        });
    }
    // dy/dx = 1 where x > 0, alpha * exp(x) = y + alpha otherwise.
    void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        detail::prepare_elementwise_backward("ELU", x, dy, dx);
        check(y.shape() == x.shape(), "ELU::backward: y is ", y.shape().str(), ", expected ",
              x.shape().str());
        const T *in = x.data(), *out = y.data(), *g = dy.data();
        T* d = dx.data();
        const T a = T(alpha_);
        detail::elementwise_for(x.size(), [&](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; ++i) d[i] = in[i] > T(0) ? g[i] : g[i] * (out[i] + a);
        });
    }
    std::size_t flops(const Shape& input) const override { return 4 * input.size(); }
    LayerConfig config() const override { return {"ELU", {{"alpha", alpha_}}}; }
    /// The layer a config describes (registry.hpp); "alpha" defaults to 1.
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& c) {
        return std::make_unique<ELU<T>>(detail::config_real(c, "alpha", 1.0));
    }
    double alpha() const { return alpha_; }

  private:
    double alpha_;
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class ReLU<float>;
extern template class ReLU<double>;
extern template class LeakyReLU<float>;
extern template class LeakyReLU<double>;
extern template class ELU<float>;
extern template class ELU<double>;
#endif

inline const bool relu_registered = register_layer<ReLU>("ReLU");
inline const bool leaky_relu_registered = register_layer<LeakyReLU>("LeakyReLU");
inline const bool elu_registered = register_layer<ELU>("ELU");

}  // namespace facet
