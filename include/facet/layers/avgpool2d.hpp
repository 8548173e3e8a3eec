// facet/layers/avgpool2d.hpp — AvgPool2d: the mean of each kernel x kernel window, with optional
// zero padding. Read layers/maxpool2d.hpp first (the same windows); read next:
// layers/global_avgpool2d.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>

#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/core/tensor.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/registry.hpp"

namespace facet {

/// Average pooling over kernel x kernel windows every `stride` pixels, the input padded by `pad`
/// zeros on each side (pad <= kernel / 2, so every window holds at least one real pixel); the
/// output of an H x W plane is ((H + 2 pad - k) / s + 1) x ((W + 2 pad - k) / s + 1).
///
/// count_include_pad (the default, as in PyTorch) divides every window's sum by k * k, padding
/// included, so a border output is pulled towards 0; without it the sum is divided by the number
/// of real pixels in the window (a border output is then the mean of what it sees).
template <typename T>
class AvgPool2d : public Layer<T> {
  public:
    /// Windows of `kernel` x `kernel`, stride `stride` (0: equal to the kernel), `pad` zeros.
    explicit AvgPool2d(std::size_t kernel, std::size_t stride = 0, std::size_t pad = 0,
                       bool count_include_pad = true)
        : kernel_(kernel),
          stride_(stride == 0 ? kernel : stride),
          pad_(pad),
          count_include_pad_(count_include_pad) {
        check(kernel_ > 0, "AvgPool2d: kernel must be positive");
        check(2 * pad_ <= kernel_, "AvgPool2d: pad ", pad_, " is more than half the kernel ",
              kernel_, " (a window could then hold only padding)");
    }

    std::string type() const override { return "AvgPool2d"; }
    std::string describe() const override {
        return detail::concat("AvgPool2d(", kernel_, "x", kernel_, ", stride ", stride_,
                              pad_ ? detail::concat(", pad ", pad_) : "",
                              pad_ && !count_include_pad_ ? ", padding not counted" : "", ")");
    }
    Shape output_shape(const Shape& input) const override {
        check(input.rank() == 3, "AvgPool2d: per-sample input must be (C, H, W), got ",
              input.str());
        check(input[1] + 2 * pad_ >= kernel_ && input[2] + 2 * pad_ >= kernel_,
              "AvgPool2d: ", kernel_, "x", kernel_, " window larger than the padded ",
              input[1] + 2 * pad_, "x", input[2] + 2 * pad_, " input");
        return Shape{input[0], (input[1] + 2 * pad_ - kernel_) / stride_ + 1,
                     (input[2] + 2 * pad_ - kernel_) / stride_ + 1};
    }

    // y[oh, ow] = (1 / d) * sum of x over the window's real pixels, d = k * k, or (without
    // count_include_pad) the number of real pixels in the window.
    void forward(const Tensor<T>& x, Tensor<T>& y) override {
        check(x.rank() == 4, "AvgPool2d: input must be (N, C, H, W), got ", x.shape().str());
        const Shape out = output_shape(sample_shape(x.shape()));
        y.resize(Shape{x.dim(0), out[0], out[1], out[2]});
        const std::size_t H = x.dim(2), W = x.dim(3), OH = out[1], OW = out[2];
        for_planes(x, [&](std::size_t p) {
            const T* in = x.data() + p * H * W;
            T* o = y.data() + p * OH * OW;
            for (std::size_t oh = 0; oh < OH; ++oh)
                for (std::size_t ow = 0; ow < OW; ++ow) {
                    const Window w = window(oh, ow, H, W);
                    T sum = 0;
                    for (std::size_t h = w.h0; h < w.h1; ++h)
                        for (std::size_t c = w.w0; c < w.w1; ++c) sum += in[h * W + c];
                    o[oh * OW + ow] = sum / w.divisor;
                }
        });
    }

    // y is linear in x: dx[i] = sum over the windows holding pixel i of dy[window] / d(window).
    void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        check(dy.shape() == y.shape(), "AvgPool2d::backward: dy is ", dy.shape().str(),
              ", expected the forward output ", y.shape().str());
        dx.resize(x.shape());
        const std::size_t H = x.dim(2), W = x.dim(3), OH = y.dim(2), OW = y.dim(3);
        for_planes(x, [&](std::size_t p) {
            T* d = dx.data() + p * H * W;
            const T* g = dy.data() + p * OH * OW;
            std::fill(d, d + H * W, T(0));
            for (std::size_t oh = 0; oh < OH; ++oh)
                for (std::size_t ow = 0; ow < OW; ++ow) {
                    const Window w = window(oh, ow, H, W);
                    const T share = g[oh * OW + ow] / w.divisor;
                    for (std::size_t h = w.h0; h < w.h1; ++h)
                        for (std::size_t c = w.w0; c < w.w1; ++c) d[h * W + c] += share;
                }
        });
    }

    std::size_t flops(const Shape& input) const override {
        return output_shape(input).size() * kernel_ * kernel_;
    }
    LayerConfig config() const override {
        return {"AvgPool2d",
                {{"kernel", kernel_},
                 {"stride", stride_},
                 {"pad", pad_},
                 {"count_include_pad", count_include_pad_}}};
    }
    /// Rebuilds the layer from config(); stride defaults to the kernel, pad to 0,
    /// count_include_pad to true.
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& c) {
        using detail::config_count;
        const double most = double(std::size_t{1} << 32);
        const std::size_t kernel = config_count(c, "kernel", 1);
        return std::make_unique<AvgPool2d<T>>(kernel, config_count(c, "stride", 1, most, kernel),
                                              config_count(c, "pad", 0, most, 0),
                                              detail::config_flag(c, "count_include_pad", true));
    }

    std::size_t kernel() const { return kernel_; }
    std::size_t stride() const { return stride_; }
    std::size_t pad() const { return pad_; }
    bool count_include_pad() const { return count_include_pad_; }

  private:
    /// Calls body(p) for every plane (image, channel) p of x: the threads take about 32 pieces
    /// as they come free; each plane is pooled on its own, so any split gives the same bits.
    template <typename Body>
    static void for_planes(const Tensor<T>& x, Body&& body) {
        const std::size_t planes = x.dim(0) * x.dim(1);
        parallel_for_dynamic(planes, (planes + 31) / 32,
                             [&](std::size_t, std::size_t begin, std::size_t end) {
                                 for (std::size_t p = begin; p < end; ++p) body(p);
                             });
    }

    /// The real pixels [h0, h1) x [w0, w1) of output (oh, ow)'s window and its divisor.
    struct Window {
        std::size_t h0, h1, w0, w1;
        T divisor;
    };
    Window window(std::size_t oh, std::size_t ow, std::size_t H, std::size_t W) const {
        // Padded coordinates start at -pad; clip the window to the image.
        const std::size_t ph = oh * stride_, pw = ow * stride_;
        Window w;
        w.h0 = ph < pad_ ? 0 : ph - pad_;
        w.h1 = std::min(H, ph + kernel_ - pad_);
        w.w0 = pw < pad_ ? 0 : pw - pad_;
        w.w1 = std::min(W, pw + kernel_ - pad_);
        w.divisor = count_include_pad_ ? T(kernel_ * kernel_) : T((w.h1 - w.h0) * (w.w1 - w.w0));
        return w;
    }

    std::size_t kernel_, stride_, pad_;
    bool count_include_pad_;
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class AvgPool2d<float>;
extern template class AvgPool2d<double>;
#endif

inline const bool avg_pool_2d_registered = register_layer<AvgPool2d>("AvgPool2d");

}  // namespace facet
