// facet/layers/add.hpp — Add: the element-wise sum of any number of inputs of one shape, the join
// of a residual block (y = F(x) + x). Read layers/merge_layer.hpp first; read next:
// layers/concat.hpp.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/layers/activations.hpp"
#include "facet/layers/merge_layer.hpp"
#include "facet/layers/registry.hpp"

namespace facet {

/// y = x_0 + x_1 + ... + x_{n-1}, summed in that order; every input has the same shape.
template <typename T>
class Add : public MergeLayer<T> {
  public:
    std::string type() const override { return "Add"; }

    Shape merged_shape(const std::vector<Shape>& inputs) const override {
        check(!inputs.empty(), "Add: needs at least one input");
        for (std::size_t k = 1; k < inputs.size(); ++k)
            check(inputs[k] == inputs[0], "Add: input ", k, " has shape ", inputs[k].str(),
                  ", input 0 has ", inputs[0].str(), " (all inputs must have the same shape)");
        return inputs[0];
    }

    void forward_merge(const std::vector<const Tensor<T>*>& xs, Tensor<T>& y) override {
        check_batches(xs, "forward");
        y.resize(xs[0]->shape());
        T* out = y.data();
        detail::elementwise_for(y.size(), [&](std::size_t b, std::size_t e) {
            const T* first = xs[0]->data();
            for (std::size_t i = b; i < e; ++i) out[i] = first[i];
            for (std::size_t k = 1; k < xs.size(); ++k) {
                const T* in = xs[k]->data();
                for (std::size_t i = b; i < e; ++i) out[i] += in[i];
            }
        });
    }

    // dy/dx_k = 1 for every k, so each input receives dy unchanged: dx_k = dy.
    void backward_merge(const std::vector<const Tensor<T>*>& xs, const Tensor<T>& /*y*/,
                        const Tensor<T>& dy, const std::vector<Tensor<T>*>& dxs) override {
        check(dxs.size() == xs.size(), "Add::backward: ", xs.size(), " inputs but ", dxs.size(),
              " gradients");
        check(dy.shape() == xs[0]->shape(), "Add::backward: dy is ", dy.shape().str(),
              ", expected ", xs[0]->shape().str());
        for (Tensor<T>* dx : dxs) {
            dx->resize(dy.shape());
            const T* g = dy.data();
            T* d = dx->data();
            detail::elementwise_for(dy.size(), [&](std::size_t b, std::size_t e) {
                for (std::size_t i = b; i < e; ++i) d[i] = g[i];
            });
        }
    }

    std::size_t merge_flops(const std::vector<Shape>& inputs) const override {
        return inputs.empty() ? 0 : (inputs.size() - 1) * inputs[0].size();
    }
    LayerConfig config() const override { return {"Add", {}}; }

    /// Rebuilds the layer from config() (Add has no hyper-parameters).
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& /*config*/) {
        return std::make_unique<Add<T>>();
    }

  private:
    static void check_batches(const std::vector<const Tensor<T>*>& xs, const char* who) {
        check(!xs.empty(), "Add::", who, ": no inputs");
        for (std::size_t k = 1; k < xs.size(); ++k)
            check(xs[k]->shape() == xs[0]->shape(), "Add::", who, ": input ", k, " is ",
                  xs[k]->shape().str(), ", input 0 is ", xs[0]->shape().str());
    }
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class Add<float>;
extern template class Add<double>;
#endif

inline const bool add_registered = register_layer<Add>("Add");

}  // namespace facet
