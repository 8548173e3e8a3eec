// facet/layers/merge_layer.hpp — MergeLayer: the base of layers with several inputs (Add, Concat),
// which only a Graph can feed. Read layers/layer.hpp first; read next: layers/add.hpp, then
// model/graph.hpp.
//
// The contract, beside Layer's:
//  * merged_shape(inputs) gives the per-sample output shape for the per-sample shapes of the
//    inputs, in the order the graph node lists them, or throws facet::Error when they do not fit.
//  * forward_merge(xs, y) resizes y and assigns it from the tensors *xs[0], *xs[1], ...
//  * backward_merge(xs, y, dy, dxs) follows forward_merge on the same inputs; it *assigns*
//    *dxs[k] = dL/d(xs[k]) for every k (resizing each like its input) and every parameter
//    gradient. The dxs are distinct tensors even when two inputs are the same tensor (Add(x, x)):
//    the graph sums them afterwards, as for any tensor used twice.
//  * With one input a merge layer is an ordinary Layer: forward(x, y) is forward_merge({&x}, y).
#pragma once

#include <cstddef>
#include <vector>

#include "facet/core/tensor.hpp"
#include "facet/layers/layer.hpp"

namespace facet {

/// A layer of one or more inputs of the same batch size, e.g. Add or Concat.
template <typename T>
class MergeLayer : public Layer<T> {
  public:
    /// Per-sample output shape for the per-sample input shapes; throws facet::Error when they do
    /// not fit (the message names the input that does not).
    virtual Shape merged_shape(const std::vector<Shape>& inputs) const = 0;
    /// Resizes y and assigns it from *xs[0], *xs[1], ...
    virtual void forward_merge(const std::vector<const Tensor<T>*>& xs, Tensor<T>& y) = 0;
    /// Assigns *dxs[k] = dL/d(*xs[k]) for every input k, given dy = dL/dy.
    virtual void backward_merge(const std::vector<const Tensor<T>*>& xs, const Tensor<T>& y,
                                const Tensor<T>& dy, const std::vector<Tensor<T>*>& dxs) = 0;
    /// Floating-point operations of one forward pass for one sample.
    virtual std::size_t merge_flops(const std::vector<Shape>& /*inputs*/) const { return 0; }

    Shape output_shape(const Shape& input) const override {
        return merged_shape(std::vector<Shape>{input});
    }
    void forward(const Tensor<T>& x, Tensor<T>& y) override { forward_merge({&x}, y); }
    void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        backward_merge({&x}, y, dy, {&dx});
    }
    std::size_t flops(const Shape& input) const override {
        return merge_flops(std::vector<Shape>{input});
    }
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class MergeLayer<float>;
extern template class MergeLayer<double>;
#endif

}  // namespace facet
