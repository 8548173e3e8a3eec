// facet/layers/flatten.hpp — Flatten: (N, C, H, W) -> (N, C*H*W), the bridge from the
// convolutional part of a network to its dense part. Read next: layers/dense.hpp.
#pragma once

#include <cstring>
#include <memory>
#include <string>

#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/registry.hpp"

namespace facet {

/// Reshapes each sample to one feature vector; the NCHW order of the elements is kept.
template <typename T>
class Flatten : public Layer<T> {
  public:
    std::string type() const override { return "Flatten"; }
    Shape output_shape(const Shape& input) const override { return Shape{input.size()}; }

    // y = x with the per-sample extents merged (a copy, so y owns its storage).
    void forward(const Tensor<T>& x, Tensor<T>& y) override {
        check(x.rank() >= 1, "Flatten: input needs a batch extent");
        y.resize(Shape{x.dim(0), x.shape().inner_size()});
        if (x.size()) std::memcpy(y.data(), x.data(), x.size() * sizeof(T));
    }
    // dx = dy with the per-sample shape of x restored.
    void backward(const Tensor<T>& x, const Tensor<T>& /*y*/, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        check(dy.size() == x.size() && dy.rank() == 2 && dy.dim(0) == x.dim(0),
              "Flatten::backward: dy is ", dy.shape().str(), ", expected (", x.dim(0), ", ",
              x.shape().inner_size(), ")");
        dx.resize(x.shape());
        if (x.size()) std::memcpy(dx.data(), dy.data(), x.size() * sizeof(T));
    }
    LayerConfig config() const override { return {"Flatten", {}}; }
    /// The layer a config describes (registry.hpp); it has no values.
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig&) {
        return std::make_unique<Flatten<T>>();
    }
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class Flatten<float>;
extern template class Flatten<double>;
#endif

inline const bool flatten_registered = register_layer<Flatten>("Flatten");

}  // namespace facet
