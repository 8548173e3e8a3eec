// facet/layers/dense.hpp — Dense (alias Linear): y = x W^T + b, the fully connected layer.
// The simplest layer with parameters; read it first to see the layer contract at work.
// Read next: layers/conv2d.hpp (the same idea over image patches).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/random.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/gemm.hpp"
#include "facet/kernels/vector_loops.hpp"
#include "facet/layers/channel_affine.hpp"
#include "facet/layers/init.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/registry.hpp"

namespace facet {

/// A fully connected layer. x is (N, in), weight is (out, in) as in PyTorch, y is (N, out).
template <typename T>
class Dense : public Layer<T> {
  public:
    /// A layer mapping `in_features` to `out_features`, weights drawn by He normal from
    /// Rng(seed), bias (if any) zero.
    Dense(std::size_t in_features, std::size_t out_features, bool bias = true,
          std::uint64_t seed = 1)
        : in_(in_features), out_(out_features), has_bias_(bias) {
        check(in_ > 0 && out_ > 0, "Dense: features must be positive, got in=", in_, " out=", out_);
        weight_.resize(Shape{out_, in_});
        weight_grad_.resize(Shape{out_, in_});
        if (has_bias_) {
            bias_.resize(Shape{out_});
            bias_grad_.resize(Shape{out_});
        }
        Rng rng(seed);
        reset_parameters(rng);
    }

    /// Re-draws the weights (He normal) from `rng` and zeroes the bias.
    void reset_parameters(Rng& rng) {
        he_normal(weight_, rng);
        bias_.zero();
    }

    std::string type() const override { return "Dense"; }
    std::string describe() const override {
        return detail::concat("Dense(", in_, "->", out_, has_bias_ ? "" : ", no bias", ")");
    }
    Shape output_shape(const Shape& input) const override {
        check(input.rank() == 1 && input[0] == in_, "Dense(", in_, "->", out_,
              "): per-sample input must be (", in_, "), got ", input.str(),
              " (use Flatten before Dense)");
        return Shape{out_};
    }

    // x is (N, in), W is (out, in), y is (N, out): y = x W^T + b.
    void forward(const Tensor<T>& x, Tensor<T>& y) override { forward_affine(x, y, nullptr); }
    bool applies_affine_epilogue() const override { return true; }

    /// forward(), then, when `affine` is given, that map on every row of the output (feature f
    /// taking the map's channel f): an eval-mode BatchNorm1d (and ReLU) after this layer without
    /// a pass of its own. Sequential::predict uses it.
    void forward_affine(const Tensor<T>& x, Tensor<T>& y, const ChannelAffine<T>* affine) override {
        check(!affine || affine->channels() == out_,
              "Dense::forward_affine: ", affine ? affine->channels() : 0,
              " features in the map, the layer has ", out_);
        check(x.rank() == 2, "Dense(", in_, "->", out_, "): input must be (N, ", in_, "), got ",
              x.shape().str(), " (use Flatten before Dense)");
        const std::size_t n = x.dim(0);
        y.resize(batch_shape(n, output_shape(sample_shape(x.shape()))));
        gemm(Trans::No, Trans::Yes, n, out_, in_, T(1), x.data(), in_, weight_.data(), in_, T(0),
             y.data(), out_);
        if (has_bias_)
            for (std::size_t i = 0; i < n; ++i) {
                T* row = y.data() + i * out_;
                for (std::size_t o = 0; o < out_; ++o) row[o] += bias_[o];
            }
        if (affine)
            run_vectorized([&] {
                for (std::size_t i = 0; i < n; ++i) affine->apply_row(y.data() + i * out_);
            });
    }

    bool absorbs_output_affine() const override { return true; }
    void absorb_output_affine(const ChannelAffine<T>& affine) override {
        fold_affine_into_weights(affine, weight_, bias_, has_bias_);
        if (!has_bias_) {
            bias_grad_.resize(Shape{out_});
            has_bias_ = true;
        }
    }

    // dx = dy W,  dW = dy^T x,  db = sum over the batch of dy.
    void backward(const Tensor<T>& x, const Tensor<T>& /*y*/, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        const std::size_t n = x.dim(0);
        check(dy.shape() == Shape{n, out_}, "Dense::backward: dy is ", dy.shape().str(),
              ", expected ", Shape{n, out_}.str());
        dx.resize(x.shape());
        gemm(Trans::No, Trans::No, n, in_, out_, T(1), dy.data(), out_, weight_.data(), in_, T(0),
             dx.data(), in_);
        gemm(Trans::Yes, Trans::No, out_, in_, n, T(1), dy.data(), out_, x.data(), in_, T(0),
             weight_grad_.data(), in_);
        if (has_bias_) {
            bias_grad_.zero();
            for (std::size_t i = 0; i < n; ++i) {
                const T* row = dy.data() + i * out_;
                for (std::size_t o = 0; o < out_; ++o) bias_grad_[o] += row[o];
            }
        }
    }

    std::vector<Parameter<T>> parameters() override {
        std::vector<Parameter<T>> p{{"weight", &weight_, &weight_grad_, true}};
        if (has_bias_) p.push_back({"bias", &bias_, &bias_grad_, false});
        return p;
    }
    std::size_t flops(const Shape& /*input*/) const override {
        return 2 * in_ * out_ + (has_bias_ ? out_ : 0);
    }
    LayerConfig config() const override {
        return {"Dense", {{"in_features", in_}, {"out_features", out_}, {"bias", has_bias_}}};
    }
    /// The layer a config describes (registry.hpp); "bias" defaults to true.
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& c) {
        return std::make_unique<Dense<T>>(detail::config_count(c, "in_features", 1),
                                          detail::config_count(c, "out_features", 1),
                                          detail::config_flag(c, "bias", true));
    }
    /// The weights a model file holds for this config: in * out values.
    static double stored_values_lower_bound(const LayerConfig& c) {
        return detail::config_positive(c, "in_features") *
               detail::config_positive(c, "out_features");
    }

    std::size_t in_features() const { return in_; }
    std::size_t out_features() const { return out_; }
    bool has_bias() const { return has_bias_; }
    Tensor<T>& weight() { return weight_; }
    Tensor<T>& bias() { return bias_; }

  private:
    std::size_t in_, out_;
    bool has_bias_;
    Tensor<T> weight_, weight_grad_, bias_, bias_grad_;
};

/// PyTorch's name for the same layer.
template <typename T>
using Linear = Dense<T>;

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class Dense<float>;
extern template class Dense<double>;
#endif

inline const bool dense_registered = register_layer<Dense>("Dense");
/// "Linear", PyTorch's name, is accepted for Dense.
inline const bool linear_registered = register_layer<Dense>("Linear");

}  // namespace facet
