// facet/layers/quantized_dense.hpp — QuantizedDense: a Dense layer computed in int8 for inference
// (model/quantize.hpp builds it from a trained Dense). Each input row is quantised per tensor to
// codes in [0, 127], multiplied by the int8 weights (out x in) with int32 sums
// (kernels/int8_gemm.hpp), and the sums become floats again with the bias and, when fused, the
// ReLU (layers/int8_quantization.hpp gives the formula). Read layers/dense.hpp first.
// Read next: model/quantize.hpp.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/int8_gemm.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/int8_quantization.hpp"
#include "facet/layers/int8_quantizers.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/registry.hpp"

namespace facet {

/// An int8 fully connected layer for inference. x is (N, in) floats, the weights (out, in) int8
/// with a scale per output, y is (N, out) floats; backward() is an Error.
template <typename T>
class QuantizedDense : public Layer<T> {
  public:
    /// A layer with zero weights, scales 1, zero bias and input scale 1.
    QuantizedDense(std::size_t in_features, std::size_t out_features, bool relu)
        : in_(in_features), out_(out_features), relu_(relu) {
        check(in_ > 0 && out_ > 0, "QuantizedDense: features must be positive, got in=", in_,
              " out=", out_);
        weight_.values.resize(Shape{out_, in_});
        weight_.scales.assign(out_, 1.0f);
        bias_.resize(Shape{out_});
        input_scale_.resize(Shape{1});
        input_scale_[0] = T(1);
        input_zero_point_.resize(Shape{1});
    }

    /// The int8 version of `dense` for inputs quantised by `input`, with a ReLU after it when
    /// `relu`.
    /// The float layer this one replaces (layers/int8_quantizers.hpp).
    using Source = Dense<T>;

    static std::unique_ptr<QuantizedDense<T>> from_layer(Dense<T>& dense,
                                                         const ActivationQuantization& input,
                                                         bool relu) {
        auto q =
            std::make_unique<QuantizedDense<T>>(dense.in_features(), dense.out_features(), relu);
        q->weight_ = quantize_weights_per_channel(dense.weight());
        if (dense.has_bias()) q->bias_ = dense.bias();
        q->input_scale_[0] = static_cast<T>(input.scale);
        q->input_zero_point_[0] = static_cast<T>(input.zero_point);
        q->check_loaded();
        return q;
    }

    std::string type() const override { return "QuantizedDense"; }
    std::string describe() const override {
        return detail::concat("QuantizedDense(", in_, "->", out_, relu_ ? ", ReLU" : "", ", int8)");
    }
    Shape output_shape(const Shape& input) const override {
        check(input.rank() == 1 && input[0] == in_, "QuantizedDense(", in_, "->", out_,
              "): per-sample input must be (", in_, "), got ", input.str());
        return Shape{out_};
    }

    // y = epilogue(codes(x) * Wq^T): (N x in) * (in x out).
    void forward(const Tensor<T>& x, Tensor<T>& y) override {
        check(x.rank() == 2, "QuantizedDense(", in_, "->", out_, "): input must be (N, ", in_,
              "), got ", x.shape().str());
        const std::size_t n = x.dim(0);
        y.resize(batch_shape(n, output_shape(sample_shape(x.shape()))));
        prepare();
        Int8Scratch& scratch = int8_scratch();
        std::vector<std::uint8_t>& codes = scratch.codes;
        std::vector<std::int32_t>& sums = scratch.sums;
        codes.resize(n * in_);
        sums.resize(n * out_);
        input_.quantize(x.data(), n * in_, codes.data());
        int8_gemm(n, out_, in_, codes.data(), in_, packed_, sums.data(), out_);
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t o = 0; o < out_; ++o)
                y[i * out_ + o] = static_cast<T>(epilogue_(o, sums[i * out_ + o]));
    }
    void backward(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, Tensor<T>&) override {
        throw Error(
            "QuantizedDense is for inference only: it has no backward pass (train the float "
            "model, then quantise it)");
    }

    // Both hand out writable tensors (the loader fills them): the packing is redone afterwards.
    std::vector<std::pair<std::string, Tensor<T>*>> buffers() override {
        packed_ = Int8PackedWeights();
        return {{"bias", &bias_},
                {"input_scale", &input_scale_},
                {"input_zero_point", &input_zero_point_}};
    }
    std::vector<std::pair<std::string, QuantizedTensor*>> quantized_tensors() override {
        packed_ = Int8PackedWeights();
        return {{"weight", &weight_}};
    }
    void check_loaded() const override {
        const std::string name = describe();
        const T z = input_zero_point_[0];
        check(z >= T(0) && z <= T(int8_activation_max) && z == std::floor(z), name,
              ": input_zero_point must be a whole number in [0, ", int8_activation_max, "], got ",
              z);
        activation().check_valid(name);
        check_quantized_weights(weight_, name, "weight");
    }
    std::size_t flops(const Shape& /*input*/) const override { return 2 * in_ * out_; }
    LayerConfig config() const override {
        return {"QuantizedDense", {{"in_features", in_}, {"out_features", out_}, {"relu", relu_}}};
    }
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& c) {
        return std::make_unique<QuantizedDense<T>>(detail::config_count(c, "in_features", 1),
                                                   detail::config_count(c, "out_features", 1),
                                                   detail::config_flag(c, "relu", false));
    }
    /// The int8 weights a model file holds for this config: in * out bytes.
    static double stored_values_lower_bound(const LayerConfig& c) {
        return detail::config_positive(c, "in_features") *
               detail::config_positive(c, "out_features");
    }

    std::size_t in_features() const { return in_; }
    std::size_t out_features() const { return out_; }
    bool relu() const { return relu_; }
    const QuantizedTensor& weight() const { return weight_; }
    const Tensor<T>& bias() const { return bias_; }
    /// The quantisation of the input, as stored.
    ActivationQuantization activation() const {
        ActivationQuantization q;
        q.scale = static_cast<float>(input_scale_[0]);
        const T z = input_zero_point_[0];
        q.zero_point = z >= T(0) && z <= T(int8_activation_max) && z == std::floor(z) ? int(z) : -1;
        return q;
    }

  private:
    /// Packs the weights for the current ISA and derives the epilogue, when either is stale.
    void prepare() {
        if (!packed_.empty() && packed_.isa == int8_isa()) return;
        check_loaded();
        input_ = activation();
        packed_ = pack_int8_weights(out_, in_, weight_.values.data(), in_);
        epilogue_ = Int8Epilogue(weight_, input_, bias_, relu_);
    }

    std::size_t in_, out_;
    bool relu_;
    QuantizedTensor weight_;
    Tensor<T> bias_, input_scale_, input_zero_point_;
    // Derived from the above by prepare().
    ActivationQuantization input_;
    Int8PackedWeights packed_;
    Int8Epilogue epilogue_;
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class QuantizedDense<float>;
extern template class QuantizedDense<double>;
#endif

inline const bool quantized_dense_registered = register_layer<QuantizedDense>("QuantizedDense");
inline const bool dense_int8_quantizer = register_int8_quantizer<QuantizedDense>("Dense");

}  // namespace facet
