// facet/layers/global_avgpool2d.hpp — GlobalAvgPool2d: each channel's mean over the whole plane,
// (N, C, H, W) -> (N, C), the usual head of a residual network before its dense layer.
// Read layers/avgpool2d.hpp first; read next: layers/grouped_conv2d.hpp.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/core/tensor.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/registry.hpp"

namespace facet {

/// y[n, c] = the mean of x[n, c, :, :].
template <typename T>
class GlobalAvgPool2d : public Layer<T> {
  public:
    std::string type() const override { return "GlobalAvgPool2d"; }
    Shape output_shape(const Shape& input) const override {
        check(input.rank() == 3, "GlobalAvgPool2d: per-sample input must be (C, H, W), got ",
              input.str());
        return Shape{input[0]};
    }

    // y[n, c] = (1 / HW) * sum_{h, w} x[n, c, h, w], summed in double per plane.
    void forward(const Tensor<T>& x, Tensor<T>& y) override {
        check(x.rank() == 4, "GlobalAvgPool2d: input must be (N, C, H, W), got ", x.shape().str());
        const std::size_t planes = x.dim(0) * x.dim(1), HW = x.dim(2) * x.dim(3);
        y.resize(Shape{x.dim(0), x.dim(1)});
        parallel_for(planes, [&](std::size_t b, std::size_t e) {
            for (std::size_t p = b; p < e; ++p) {
                const T* in = x.data() + p * HW;
                double sum = 0;
                for (std::size_t i = 0; i < HW; ++i) sum += double(in[i]);
                y.data()[p] = static_cast<T>(sum / double(HW));
            }
        });
    }

    // dy/dx[n, c, h, w] = 1 / HW for y[n, c] and 0 for every other output: dx = dy / HW spread
    // over the plane.
    void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        check(dy.shape() == y.shape(), "GlobalAvgPool2d::backward: dy is ", dy.shape().str(),
              ", expected ", y.shape().str());
        const std::size_t planes = x.dim(0) * x.dim(1), HW = x.dim(2) * x.dim(3);
        dx.resize(x.shape());
        parallel_for(planes, [&](std::size_t b, std::size_t e) {
            for (std::size_t p = b; p < e; ++p) {
                const T share = dy.data()[p] / T(HW);
                T* d = dx.data() + p * HW;
                for (std::size_t i = 0; i < HW; ++i) d[i] = share;
            }
        });
    }

    std::size_t flops(const Shape& input) const override { return input.size(); }
    LayerConfig config() const override { return {"GlobalAvgPool2d", {}}; }
    /// Rebuilds the layer from config() (no hyper-parameters).
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& /*config*/) {
        return std::make_unique<GlobalAvgPool2d<T>>();
    }
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class GlobalAvgPool2d<float>;
extern template class GlobalAvgPool2d<double>;
#endif

inline const bool global_avg_pool_2d_registered =
    register_layer<GlobalAvgPool2d>("GlobalAvgPool2d");

}  // namespace facet
