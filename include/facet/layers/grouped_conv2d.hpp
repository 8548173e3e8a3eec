// facet/layers/grouped_conv2d.hpp — GroupedConv2d: a convolution whose channels are split into
// `groups` independent convolutions (ResNeXt, MobileNet); groups = input channels is the
// depthwise convolution. Read layers/conv2d.hpp first (the same im2col + GEMM, once per group);
// read next: model/graph.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/core/random.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/gemm.hpp"
#include "facet/kernels/im2col.hpp"
#include "facet/layers/init.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/registry.hpp"

namespace facet {

/// A grouped 2-D convolution. x is (N, C, H, W), weight is (OC, C / G, k, k), bias is (OC),
/// y is (N, OC, OH, OW). Output channels [g OC/G, (g+1) OC/G) see only input channels
/// [g C/G, (g+1) C/G): G = 1 is Conv2d, G = C the depthwise convolution (one filter, or OC/C
/// filters, per input channel).
///
/// Each group of each image is im2col + one GEMM, as in Conv2d (without its Winograd paths); a
/// group of one input channel (depthwise) runs a direct loop instead, since its GEMM would be
/// a single row of k*k. Images are split over threads; the weight gradient is summed per chunk
/// of images and the chunks added in a fixed order, so a thread count always gives the same bits.
template <typename T>
class GroupedConv2d : public Layer<T> {
  public:
    /// `groups` convolutions of in_channels / groups -> out_channels / groups channels each,
    /// `kernel` x `kernel`, the same stride and zero padding on both axes; weights He normal
    /// from Rng(seed), bias (if any) zero.
    GroupedConv2d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel,
                  std::size_t stride = 1, std::size_t pad = 0, std::size_t groups = 1,
                  bool bias = true, std::uint64_t seed = 1)
        : in_(in_channels),
          out_(out_channels),
          kernel_(kernel),
          stride_(stride),
          pad_(pad),
          groups_(groups),
          has_bias_(bias) {
        check(groups_ > 0, "GroupedConv2d: groups must be positive");
        check(in_ > 0 && out_ > 0 && in_ % groups_ == 0 && out_ % groups_ == 0,
              "GroupedConv2d: channels ", in_, "->", out_, " must be positive multiples of the ",
              groups_, " groups");
        check(kernel_ > 0 && stride_ > 0, "GroupedConv2d: kernel and stride must be positive");
        const Shape wshape{out_, in_ / groups_, kernel_, kernel_};
        weight_.resize(wshape);
        weight_grad_.resize(wshape);
        if (has_bias_) {
            bias_.resize(Shape{out_});
            bias_grad_.resize(Shape{out_});
        }
        Rng rng(seed);
        he_normal(weight_, rng);  // fan_in = C/G * k * k, the inputs each output sees
    }

    std::string type() const override { return "GroupedConv2d"; }
    std::string describe() const override {
        return detail::concat("GroupedConv2d(", in_, "->", out_, ", ", kernel_, "x", kernel_,
                              ", stride ", stride_, ", pad ", pad_, ", groups ", groups_,
                              depthwise() ? ", depthwise" : "", has_bias_ ? "" : ", no bias", ")");
    }
    Shape output_shape(const Shape& input) const override {
        check(input.rank() == 3 && input[0] == in_, "GroupedConv2d(", in_, "->", out_,
              "): per-sample input must be (", in_, ", H, W), got ", input.str());
        const ConvGeometry g = group_geometry(input);
        return Shape{out_, g.out_h(), g.out_w()};
    }

    // Per image and group g, with col = im2col(x[n, group g's channels]):
    //   y[n, group g's outputs] = W_g * col + b   (W_g: OC/G x (C/G * k * k))
    void forward(const Tensor<T>& x, Tensor<T>& y) override {
        check(x.rank() == 4, "GroupedConv2d: input must be (N, C, H, W), got ", x.shape().str());
        const ConvGeometry g = group_geometry(sample_shape(x.shape()));
        const std::size_t batch = x.dim(0), P = g.col_cols(), K = g.col_rows();
        const std::size_t oc_g = out_ / groups_;
        y.resize(Shape{batch, out_, g.out_h(), g.out_w()});
        const std::size_t chunks = prepare(batch, K * P);
        parallel_for(chunks, [&](std::size_t c0, std::size_t c1) {
            for (std::size_t c = c0; c < c1; ++c)
                for (std::size_t n = batch * c / chunks; n < batch * (c + 1) / chunks; ++n)
                    for (std::size_t grp = 0; grp < groups_; ++grp) {
                        const T* xg = x.data() + (n * in_ + grp * g.channels) * g.height * g.width;
                        T* yg = y.data() + (n * out_ + grp * oc_g) * P;
                        const T* wg = weight_.data() + grp * oc_g * K;
                        if (depthwise()) {
                            depthwise_forward(xg, wg, g, oc_g, yg);
                        } else {
                            T* col = col_[c].data();
                            im2col(xg, g, col, P);
                            gemm(Trans::No, Trans::No, oc_g, P, K, T(1), wg, K, col, P, T(0), yg,
                                 P);
                        }
                        if (has_bias_)
                            for (std::size_t o = 0; o < oc_g; ++o)
                                for (std::size_t p = 0; p < P; ++p)
                                    yg[o * P + p] += bias_[grp * oc_g + o];
                    }
        });
    }

    // Per image and group, with col = im2col(x[n, g]) and dy_g the group's output gradient:
    //   dW_g += dy_g * col^T,   db += sum over pixels of dy_g,
    //   dx[n, g] = col2im(W_g^T * dy_g)   (the adjoint of the unrolling).
    // The depthwise loop computes the same sums directly
    // (docs/internals/graph-and-merge-layers.md).
    void backward(const Tensor<T>& x, const Tensor<T>& /*y*/, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        check(x.rank() == 4, "GroupedConv2d::backward: input must be (N, C, H, W), got ",
              x.shape().str());
        const ConvGeometry g = group_geometry(sample_shape(x.shape()));
        const std::size_t batch = x.dim(0), P = g.col_cols(), K = g.col_rows();
        const std::size_t oc_g = out_ / groups_;
        const Shape out{batch, out_, g.out_h(), g.out_w()};
        check(dy.shape() == out, "GroupedConv2d::backward: dy is ", dy.shape().str(), ", expected ",
              out.str());
        dx.resize(x.shape());
        const bool input_gradient = this->input_gradient();
        const std::size_t chunks = prepare(batch, 2 * K * P);
        partial_w_.resize(chunks);
        partial_b_.resize(chunks);
        parallel_for(chunks, [&](std::size_t c0, std::size_t c1) {
            for (std::size_t c = c0; c < c1; ++c) {
                std::vector<T>& dw = partial_w_[c];
                std::vector<T>& db = partial_b_[c];
                dw.assign(weight_.size(), T(0));
                db.assign(out_, T(0));
                T* col = col_[c].data();
                T* dcol = col + K * P;
                for (std::size_t n = batch * c / chunks; n < batch * (c + 1) / chunks; ++n)
                    for (std::size_t grp = 0; grp < groups_; ++grp) {
                        const std::size_t image = (n * in_ + grp * g.channels) * g.height * g.width;
                        const T* xg = x.data() + image;
                        T* dxg = dx.data() + image;
                        const T* gy = dy.data() + (n * out_ + grp * oc_g) * P;
                        const T* wg = weight_.data() + grp * oc_g * K;
                        T* dwg = dw.data() + grp * oc_g * K;
                        if (depthwise()) {
                            depthwise_backward(xg, wg, gy, g, oc_g, dwg,
                                               input_gradient ? dxg : nullptr);
                        } else {
                            im2col(xg, g, col, P);
                            gemm(Trans::No, Trans::Yes, oc_g, K, P, T(1), gy, P, col, P, T(1), dwg,
                                 K);
                            if (input_gradient) {
                                gemm(Trans::Yes, Trans::No, K, P, oc_g, T(1), wg, K, gy, P, T(0),
                                     dcol, P);
                                col2im(dcol, P, g, dxg);
                            }
                        }
                        if (!input_gradient) std::fill(dxg, dxg + g.image_size(), T(0));
                        if (has_bias_)
                            for (std::size_t o = 0; o < oc_g; ++o) {
                                T sum = 0;
                                for (std::size_t p = 0; p < P; ++p) sum += gy[o * P + p];
                                db[grp * oc_g + o] += sum;
                            }
                    }
            }
        });
        // The chunks' sums, added in chunk order.
        weight_grad_.zero();
        for (std::size_t c = 0; c < chunks; ++c)
            for (std::size_t i = 0; i < weight_.size(); ++i) weight_grad_[i] += partial_w_[c][i];
        if (has_bias_) {
            bias_grad_.zero();
            for (std::size_t c = 0; c < chunks; ++c)
                for (std::size_t o = 0; o < out_; ++o) bias_grad_[o] += partial_b_[c][o];
        }
    }

    bool absorbs_output_affine() const override { return true; }
    void absorb_output_affine(const ChannelAffine<T>& affine) override {
        fold_affine_into_weights(affine, weight_, bias_, has_bias_);
        if (!has_bias_) {
            bias_grad_.resize(Shape{out_});
            has_bias_ = true;
        }
    }

    std::vector<Parameter<T>> parameters() override {
        std::vector<Parameter<T>> p{{"weight", &weight_, &weight_grad_, true}};
        if (has_bias_) p.push_back({"bias", &bias_, &bias_grad_, false});
        return p;
    }
    std::size_t flops(const Shape& input) const override {
        const Shape out = output_shape(input);
        return out.size() * (2 * (in_ / groups_) * kernel_ * kernel_ + (has_bias_ ? 1 : 0));
    }
    LayerConfig config() const override {
        return {"GroupedConv2d",
                {{"in_channels", in_},
                 {"out_channels", out_},
                 {"kernel", kernel_},
                 {"stride", stride_},
                 {"pad", pad_},
                 {"groups", groups_},
                 {"bias", has_bias_}}};
    }
    /// Rebuilds the layer from config() (fresh weights); stride defaults to 1, pad to 0, groups
    /// to 1, bias to true.
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& c) {
        using detail::config_count;
        const double most = double(std::size_t{1} << 32);
        return std::make_unique<GroupedConv2d<T>>(
            config_count(c, "in_channels", 1), config_count(c, "out_channels", 1),
            config_count(c, "kernel", 1), config_count(c, "stride", 1, most, 1),
            config_count(c, "pad", 0, most, 0), config_count(c, "groups", 1, most, 1),
            detail::config_flag(c, "bias", true));
    }
    /// The weights a model file holds for this config: OC * (C / G) * k * k values.
    static double stored_values_lower_bound(const LayerConfig& c) {
        using detail::config_positive;
        const double groups = std::max(1.0, config_positive(c, "groups"));
        return config_positive(c, "in_channels") / groups * config_positive(c, "out_channels") *
               config_positive(c, "kernel") * config_positive(c, "kernel");
    }

    /// Whether each group has one input channel (groups = in_channels): the direct loop.
    bool depthwise() const { return in_ == groups_; }
    std::size_t groups() const { return groups_; }
    Tensor<T>& weight() { return weight_; }
    Tensor<T>& bias() { return bias_; }

    /// The geometry of one group's convolution over a per-sample input (C, H, W).
    ConvGeometry group_geometry(const Shape& input) const {
        check(input.rank() == 3 && input[0] == in_, "GroupedConv2d(", in_, "->", out_,
              "): per-sample input must be (", in_, ", H, W), got ", input.str());
        ConvGeometry g;
        g.channels = in_ / groups_;
        g.height = input[1];
        g.width = input[2];
        g.kernel_h = g.kernel_w = kernel_;
        g.stride_h = g.stride_w = stride_;
        g.pad_h = g.pad_w = pad_;
        g.validate();
        return g;
    }

  private:
    /// The number of image chunks (one per thread, at most one per image) and a workspace of
    /// `floats` per chunk.
    std::size_t prepare(std::size_t batch, std::size_t floats) {
        const std::size_t threads = in_parallel() ? 1 : std::size_t(num_threads());
        const std::size_t chunks = std::max<std::size_t>(1, std::min(threads, batch));
        col_.resize(chunks);
        if (!depthwise())
            for (auto& ws : col_) ws.resize(floats);
        return chunks;
    }

    /// Input position of output `o` (row or column) for kernel offset `k`, or -1 in the padding.
    static std::ptrdiff_t source(std::size_t o, std::size_t k, std::size_t stride, std::size_t pad,
                                 std::size_t extent) {
        const auto at =
            static_cast<std::ptrdiff_t>(o * stride + k) - static_cast<std::ptrdiff_t>(pad);
        return at >= 0 && at < static_cast<std::ptrdiff_t>(extent) ? at : -1;
    }

    // y[o, oh, ow] = sum_{ki, kj} w[o, ki, kj] * x[oh*s - p + ki, ow*s - p + kj] for each of the
    // group's `filters` outputs, over its one input plane.
    void depthwise_forward(const T* x, const T* w, const ConvGeometry& g, std::size_t filters,
                           T* y) const {
        const std::size_t OH = g.out_h(), OW = g.out_w();
        for (std::size_t f = 0; f < filters; ++f) {
            const T* wf = w + f * kernel_ * kernel_;
            T* yf = y + f * OH * OW;
            for (std::size_t oh = 0; oh < OH; ++oh)
                for (std::size_t ow = 0; ow < OW; ++ow) {
                    T sum = 0;
                    for (std::size_t ki = 0; ki < kernel_; ++ki) {
                        const std::ptrdiff_t ih = source(oh, ki, stride_, pad_, g.height);
                        if (ih < 0) continue;
                        for (std::size_t kj = 0; kj < kernel_; ++kj) {
                            const std::ptrdiff_t iw = source(ow, kj, stride_, pad_, g.width);
                            if (iw >= 0)
                                sum += wf[ki * kernel_ + kj] *
                                       x[static_cast<std::size_t>(ih) * g.width +
                                         static_cast<std::size_t>(iw)];
                        }
                    }
                    yf[oh * OW + ow] = sum;
                }
        }
    }

    // dw[f, ki, kj] += sum_{oh, ow} dy[f, oh, ow] * x[ih, iw];  dx[ih, iw] = sum over the outputs
    // and filters that read it of w[f, ki, kj] * dy[f, oh, ow] (dx null: not wanted).
    void depthwise_backward(const T* x, const T* w, const T* dy, const ConvGeometry& g,
                            std::size_t filters, T* dw, T* dx) const {
        const std::size_t OH = g.out_h(), OW = g.out_w();
        if (dx) std::fill(dx, dx + g.height * g.width, T(0));
        for (std::size_t f = 0; f < filters; ++f) {
            const T* wf = w + f * kernel_ * kernel_;
            T* dwf = dw + f * kernel_ * kernel_;
            const T* gf = dy + f * OH * OW;
            for (std::size_t oh = 0; oh < OH; ++oh)
                for (std::size_t ow = 0; ow < OW; ++ow) {
                    const T grad = gf[oh * OW + ow];
                    for (std::size_t ki = 0; ki < kernel_; ++ki) {
                        const std::ptrdiff_t ih = source(oh, ki, stride_, pad_, g.height);
                        if (ih < 0) continue;
                        for (std::size_t kj = 0; kj < kernel_; ++kj) {
                            const std::ptrdiff_t iw = source(ow, kj, stride_, pad_, g.width);
                            if (iw < 0) continue;
                            const std::size_t at = static_cast<std::size_t>(ih) * g.width +
                                                   static_cast<std::size_t>(iw);
                            dwf[ki * kernel_ + kj] += grad * x[at];
                            if (dx) dx[at] += wf[ki * kernel_ + kj] * grad;
                        }
                    }
                }
        }
    }

    std::size_t in_, out_, kernel_, stride_, pad_, groups_;
    bool has_bias_;
    Tensor<T> weight_, weight_grad_, bias_, bias_grad_;
    std::vector<std::vector<T>> col_;                    // per chunk: col (and dcol in backward)
    std::vector<std::vector<T>> partial_w_, partial_b_;  // per chunk: its images' dW and db
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class GroupedConv2d<float>;
extern template class GroupedConv2d<double>;
#endif

inline const bool grouped_conv_2d_registered = register_layer<GroupedConv2d>("GroupedConv2d");

}  // namespace facet
