// facet/layers/conv2d.hpp — Conv2d: the 2-D convolution layer. It holds the weights and the
// bias and asks its ConvPlan (kernels/conv_plan.hpp) for the passes: im2col + GEMM per image,
// Winograd's F(4x4, 3x3) and F(2x2, 3x3) for 3x3 stride-1 layers, the GEMM on the image itself
// for 1x1 ones, images split over threads. Read layers/dense.hpp first (the same product without
// patches) and kernels/conv_plan.hpp for how each pass is computed. Read next:
// layers/batchnorm.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/random.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/conv_plan.hpp"
#include "facet/kernels/im2col.hpp"
#include "facet/kernels/vector_loops.hpp"
#include "facet/layers/channel_affine.hpp"
#include "facet/layers/init.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/registry.hpp"

namespace facet {

/// Everything that defines a Conv2d, for kernels that are not square or strides that differ
/// between the axes. Conv2d's short constructor covers the square case.
struct Conv2dOptions {
    std::size_t in_channels = 1, out_channels = 1;
    std::size_t kernel_h = 3, kernel_w = 3;
    std::size_t stride_h = 1, stride_w = 1;
    std::size_t pad_h = 0, pad_w = 0;
    bool bias = true;
    std::uint64_t seed = 1;  ///< seeds the He-normal initialisation of the weights
};

/// A 2-D convolution (cross-correlation, as in every framework). x is (N, C, H, W), weight is
/// (OC, C, kh, kw), bias is (OC), y is (N, OC, OH, OW).
///
/// Each image is unrolled by im2col into a (C*kh*kw) x (OH*OW) matrix `col`; then
/// y_n = W * col_n is one GEMM that writes straight into NCHW. The layer's ConvPlan chooses how
/// (a 3x3 stride-1 layer with at least 16 input channels by Winograd's F(4x4, 3x3), or
/// F(2x2, 3x3) in a context with winograd_tile 2; a 1x1 stride-1 one reads the image itself),
/// shares the batch among the threads and keeps the workspaces; the results equal im2col's up to
/// rounding (docs/internals/convolution.md derives all of them). A context with winograd off
/// (set_winograd(false)) computes every convolution by im2col.
template <typename T>
class Conv2d : public Layer<T> {
  public:
    /// Winograd needs this many input channels (output channels for the input gradient).
    static constexpr std::size_t winograd_min_channels = ConvPlan<T>::winograd_min_channels;
    /// The weight gradient by Winograd needs this many input and output channels.
    static constexpr std::size_t winograd_weights_min_channels =
        ConvPlan<T>::winograd_weights_min_channels;

    /// A square convolution: `kernel` x `kernel`, the same stride and zero padding on both axes.
    Conv2d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel,
           std::size_t stride = 1, std::size_t pad = 0, bool bias = true, std::uint64_t seed = 1)
        : Conv2d(Conv2dOptions{in_channels, out_channels, kernel, kernel, stride, stride, pad, pad,
                               bias, seed}) {}

    /// Any rectangular convolution.
    explicit Conv2d(const Conv2dOptions& o) : opt_(o) {
        check(o.in_channels > 0 && o.out_channels > 0, "Conv2d: channels must be positive, got ",
              o.in_channels, "->", o.out_channels);
        check(o.kernel_h > 0 && o.kernel_w > 0, "Conv2d: kernel must be positive, got ", o.kernel_h,
              "x", o.kernel_w);
        check(o.stride_h > 0 && o.stride_w > 0, "Conv2d: stride must be positive, got ", o.stride_h,
              "x", o.stride_w);
        const Shape wshape{o.out_channels, o.in_channels, o.kernel_h, o.kernel_w};
        weight_.resize(wshape);
        weight_grad_.resize(wshape);
        if (o.bias) {
            bias_.resize(Shape{o.out_channels});
            bias_grad_.resize(Shape{o.out_channels});
        }
        Rng rng(o.seed);
        reset_parameters(rng);
    }

    /// Re-draws the weights (He normal, fan_in = C*kh*kw) from `rng` and zeroes the bias.
    void reset_parameters(Rng& rng) {
        he_normal(weight_, rng);
        bias_.zero();
    }

    std::string type() const override { return "Conv2d"; }
    std::string describe() const override {
        return detail::concat(
            "Conv2d(", opt_.in_channels, "->", opt_.out_channels, ", ", opt_.kernel_h, "x",
            opt_.kernel_w, ", stride ", opt_.stride_h,
            opt_.stride_h == opt_.stride_w ? "" : detail::concat("x", opt_.stride_w), ", pad ",
            opt_.pad_h, opt_.pad_h == opt_.pad_w ? "" : detail::concat("x", opt_.pad_w),
            opt_.bias ? "" : ", no bias", ")");
    }
    Shape output_shape(const Shape& input) const override {
        const ConvGeometry g = geometry(input);
        return Shape{opt_.out_channels, g.out_h(), g.out_w()};
    }

    bool absorbs_output_affine() const override { return true; }
    void absorb_output_affine(const ChannelAffine<T>& affine) override {
        fold_affine_into_weights(affine, weight_, bias_, opt_.bias);
        if (!opt_.bias) {
            bias_grad_.resize(Shape{opt_.out_channels});
            opt_.bias = true;
        }
    }

    // y[n] = W * im2col(x[n]) + b: (OC x K) * (K x P), K = C*kh*kw, P = OH*OW.
    void forward(const Tensor<T>& x, Tensor<T>& y) override { forward_affine(x, y, nullptr); }
    bool applies_affine_epilogue() const override { return true; }

    /// forward(), then, when `affine` is given, that map on each output channel of each image
    /// right after the image's GEMM, while its output is still in cache: an eval-mode batch norm
    /// (and ReLU) after this layer for one pass over cached data instead of two over memory.
    /// Sequential::predict uses it.
    void forward_affine(const Tensor<T>& x, Tensor<T>& y, const ChannelAffine<T>* affine) override {
        check(!affine || affine->channels() == opt_.out_channels,
              "Conv2d::forward_affine: ", affine ? affine->channels() : 0,
              " channels in the map, the layer has ", opt_.out_channels);
        check(x.rank() == 4, "Conv2d: input must be (N, C, H, W), got ", x.shape().str());
        const ConvGeometry g = geometry(sample_shape(x.shape()));
        y.resize(Shape{x.dim(0), opt_.out_channels, g.out_h(), g.out_w()});
        plan_.forward(g, opt_.out_channels, weight_.data(), x.data(), x.dim(0), y.data(),
                      [&](T* block, std::size_t ld, std::size_t cols) {
                          finish_output(block, ld, cols, affine);
                      });
    }

    // Per image, with col = im2col(x[n]):
    //   dW += dy[n] * col^T            (dL/dW_ok = sum_p dy_op * col_kp)
    //   db += sum_p dy[n]              (the bias is added to every output pixel)
    //   dx[n] = col2im(W^T * dy[n])    (the adjoint of the unrolling routes each patch entry home)
    // The plan sums the images' dW and db in fixed chunks added in a fixed order, so a given
    // thread count always gives the same bits.
    void backward(const Tensor<T>& x, const Tensor<T>& /*y*/, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        check(x.rank() == 4, "Conv2d::backward: input must be (N, C, H, W), got ", x.shape().str());
        const ConvGeometry g = geometry(sample_shape(x.shape()));
        const Shape expected{x.dim(0), opt_.out_channels, g.out_h(), g.out_w()};
        check(dy.shape() == expected, "Conv2d::backward: dy is ", dy.shape().str(), ", expected ",
              expected.str());
        dx.resize(x.shape());
        plan_.backward(g, opt_.out_channels, weight_.data(), x.data(), dy.data(), x.dim(0),
                       this->input_gradient(), dx.data(), weight_grad_.data(),
                       opt_.bias ? bias_grad_.data() : nullptr);
    }

    std::vector<Parameter<T>> parameters() override {
        std::vector<Parameter<T>> p{{"weight", &weight_, &weight_grad_, true}};
        if (opt_.bias) p.push_back({"bias", &bias_, &bias_grad_, false});
        return p;
    }
    std::size_t flops(const Shape& input) const override {
        const ConvGeometry g = geometry(input);
        return opt_.out_channels * g.col_cols() * (2 * g.col_rows() + (opt_.bias ? 1 : 0));
    }
    LayerConfig config() const override {
        return {"Conv2d",
                {{"in_channels", opt_.in_channels},
                 {"out_channels", opt_.out_channels},
                 {"kernel_h", opt_.kernel_h},
                 {"kernel_w", opt_.kernel_w},
                 {"stride_h", opt_.stride_h},
                 {"stride_w", opt_.stride_w},
                 {"pad_h", opt_.pad_h},
                 {"pad_w", opt_.pad_w},
                 {"bias", opt_.bias}}};
    }
    /// The layer a config describes (registry.hpp); a square kernel may be given as "kernel",
    /// "stride", "pad" instead of the _h / _w pairs. Strides default to 1, padding to 0.
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& c) {
        using detail::config_count;
        const double most = double(std::size_t{1} << 32);
        const bool square = !c.has("kernel_h");
        Conv2dOptions o;
        o.in_channels = config_count(c, "in_channels", 1);
        o.out_channels = config_count(c, "out_channels", 1);
        o.kernel_h = config_count(c, square ? "kernel" : "kernel_h", 1);
        o.kernel_w = config_count(c, square ? "kernel" : "kernel_w", 1);
        o.stride_h = config_count(c, square ? "stride" : "stride_h", 1, most, 1);
        o.stride_w = config_count(c, square ? "stride" : "stride_w", 1, most, 1);
        o.pad_h = config_count(c, square ? "pad" : "pad_h", 0, most, 0);
        o.pad_w = config_count(c, square ? "pad" : "pad_w", 0, most, 0);
        o.bias = detail::config_flag(c, "bias", true);
        return std::make_unique<Conv2d<T>>(o);
    }
    /// The weights a model file holds for this config: OC * C * kh * kw values.
    static double stored_values_lower_bound(const LayerConfig& c) {
        using detail::config_positive;
        const double kernel = c.has("kernel_h")
                                  ? config_positive(c, "kernel_h") * config_positive(c, "kernel_w")
                                  : config_positive(c, "kernel") * config_positive(c, "kernel");
        return config_positive(c, "in_channels") * config_positive(c, "out_channels") * kernel;
    }

    const Conv2dOptions& options() const { return opt_; }
    Tensor<T>& weight() { return weight_; }
    Tensor<T>& bias() { return bias_; }

    /// The im2col geometry for a per-sample input shape (C, H, W); throws when it does not fit.
    ConvGeometry geometry(const Shape& input) const {
        check(input.rank() == 3, "Conv2d: per-sample input must be (C, H, W), got ", input.str());
        check(input[0] == opt_.in_channels, "Conv2d(", opt_.in_channels, "->", opt_.out_channels,
              "): input has ", input[0], " channels, expected ", opt_.in_channels);
        ConvGeometry g;
        g.channels = input[0];
        g.height = input[1];
        g.width = input[2];
        g.kernel_h = opt_.kernel_h;
        g.kernel_w = opt_.kernel_w;
        g.stride_h = opt_.stride_h;
        g.stride_w = opt_.stride_w;
        g.pad_h = opt_.pad_h;
        g.pad_w = opt_.pad_w;
        g.validate();
        return g;
    }

    /// How the passes are computed (tests set_im2col_only on it to compare the algorithms).
    ConvPlan<T>& plan() { return plan_; }

  private:
    /// Adds the bias, then applies `affine` (when given), to `cols` columns of each of the
    /// OC output rows starting at y, rows `ld` apart.
    void finish_output(T* y, std::size_t ld, std::size_t cols, const ChannelAffine<T>* affine) {
        const std::size_t OC = opt_.out_channels;
        run_vectorized([&] {
            if (opt_.bias)
                for (std::size_t o = 0; o < OC; ++o) {
                    const T b = bias_[o];
                    for (std::size_t p = 0; p < cols; ++p) y[o * ld + p] += b;
                }
            if (affine)
                for (std::size_t o = 0; o < OC; ++o) affine->apply_plane(o, y + o * ld, cols);
        });
    }

    Conv2dOptions opt_;
    Tensor<T> weight_, weight_grad_, bias_, bias_grad_;
    ConvPlan<T> plan_;
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class Conv2d<float>;
extern template class Conv2d<double>;
#endif

inline const bool conv2d_registered = register_layer<Conv2d>("Conv2d");

}  // namespace facet
