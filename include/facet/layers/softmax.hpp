// facet/layers/softmax.hpp — Softmax as a layer, for a model's inference output (probabilities).
// For training use loss/softmax_cross_entropy.hpp instead: the fused loss is cheaper and stable.
// Read next: loss/softmax_cross_entropy.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <memory>
#include <string>

#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/softmax_rows.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/registry.hpp"

namespace facet {

/// y[n, k] = exp(x[n, k] - max_j x[n, j]) / sum_j exp(x[n, j] - max_j x[n, j]) over the classes
/// of each sample; x is (N, K). The forward pass is kernels/softmax_rows.hpp's softmax_rows.
template <typename T>
class Softmax : public Layer<T> {
  public:
    std::string type() const override { return "Softmax"; }
    Shape output_shape(const Shape& input) const override {
        check(input.rank() == 1 && input[0] > 0, "Softmax: per-sample input must be (K), got ",
              input.str());
        return input;
    }

    void forward(const Tensor<T>& x, Tensor<T>& y) override {
        check(x.rank() == 2, "Softmax: input must be (N, K), got ", x.shape().str());
        output_shape(sample_shape(x.shape()));
        softmax_rows(x, y);
    }
    // dy_k/dx_j = y_k (delta_kj - y_j), hence dx_j = y_j (dy_j - sum_k dy_k y_k).
    void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        check(dy.shape() == x.shape() && y.shape() == x.shape(), "Softmax::backward: dy is ",
              dy.shape().str(), ", expected ", x.shape().str());
        dx.resize(x.shape());
        const std::size_t n = x.dim(0), K = x.dim(1);
        for (std::size_t i = 0; i < n; ++i) {
            const T *p = y.data() + i * K, *g = dy.data() + i * K;
            T* d = dx.data() + i * K;
            T dot = 0;
            for (std::size_t k = 0; k < K; ++k) dot += g[k] * p[k];
            for (std::size_t k = 0; k < K; ++k) d[k] = p[k] * (g[k] - dot);
        }
    }
    std::size_t flops(const Shape& input) const override { return 4 * input.size(); }
    LayerConfig config() const override { return {"Softmax", {}}; }
    /// The layer a config describes (registry.hpp); it has no values.
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig&) {
        return std::make_unique<Softmax<T>>();
    }
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class Softmax<float>;
extern template class Softmax<double>;
#endif

inline const bool softmax_registered = register_layer<Softmax>("Softmax");

}  // namespace facet
