// facet/layers/int8_quantization.hpp — what the int8 layers (quantized_conv2d.hpp,
// quantized_dense.hpp) share: the per-tensor quantisation of their input activations, the
// per-output-channel quantisation of their weights, the epilogue that turns the int32 sums back
// into floats, and the checks a loaded layer must pass.
//
// The scheme, for an output channel o of a layer with K inputs per output:
//     x ~ s * (qx - z),  qx in [0, 127]    activations: one scale s and zero point z per tensor
//     w ~ sw[o] * qw,    qw in [-127, 127] weights: symmetric, one scale per output channel
//     y[o] = s * sw[o] * (sum_k qx[k] qw[k] - z * sum_k qw[k]) + bias[o]   (then ReLU if fused)
// The sum is an int32 GEMM (kernels/int8_gemm.hpp); z is 0 after a ReLU, where x >= 0.
// Read next: layers/quantized_conv2d.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "facet/core/convert.hpp"
#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/int8_gemm.hpp"
#include "facet/kernels/int8_prepare.hpp"

namespace facet {

/// The buffers an int8 layer's forward() works in, one set per thread shared by every int8 layer:
/// each layer's codes and sums land where the previous layer's were, in memory still in cache,
/// instead of in buffers of its own that went cold since the last image.
struct Int8Scratch {
    std::vector<std::uint8_t> planes, codes, rows;
    std::vector<std::int32_t> sums;
};
inline Int8Scratch& int8_scratch() {
    thread_local Int8Scratch scratch;
    return scratch;
}

/// How a layer's input is quantised: x ~ scale * (code - zero_point), codes in [0, 127].
struct ActivationQuantization {
    float scale = 1.0f;
    int zero_point = 0;

    /// The parameters that cover [lo, hi] (from calibration, lo <= hi): zero point 0 when lo >= 0
    /// (inputs after a ReLU), else the point that puts lo at code 0.
    static ActivationQuantization covering(double lo, double hi) {
        ActivationQuantization q;
        lo = std::min(lo, 0.0), hi = std::max(hi, 0.0);
        const double range = hi - lo;
        q.scale = range > 0 ? static_cast<float>(range / int8_activation_max) : 1.0f;
        q.zero_point = static_cast<int>(
            std::clamp(std::nearbyint(-lo / q.scale), 0.0, double(int8_activation_max)));
        return q;
    }

    /// Throws facet::Error naming `layer` unless the scale is finite and positive and the zero
    /// point a code.
    void check_valid(const std::string& layer) const {
        check(std::isfinite(scale) && scale > 0, layer,
              ": input_scale must be finite and > 0, got ", scale);
        check(zero_point >= 0 && zero_point <= int8_activation_max, layer,
              ": input_zero_point must be a whole number in [0, ", int8_activation_max, "], got ",
              zero_point);
    }

    /// Codes of n values: round(x / scale) + zero_point, clamped to [0, 127] (a NaN gives 0);
    /// rounds half up (kernels/int8_prepare.hpp).
    template <typename T>
    void quantize(const T* x, std::size_t n, std::uint8_t* codes) const {
        quantize_codes(x, n, codes, 1.0f / scale, static_cast<float>(zero_point) + 0.5f,
                       static_cast<float>(int8_activation_max) + 0.5f);
    }
};

/// The weights of a layer as int8, one scale per output channel (outer index): quantize_int8,
/// with an all-zero channel given scale 1 instead of 0 (its codes are 0 either way), so that every
/// stored scale is positive.
template <typename T>
QuantizedTensor quantize_weights_per_channel(const Tensor<T>& weight) {
    QuantizedTensor q = quantize_int8(weight);
    for (float& scale : q.scales)
        if (scale == 0.0f) scale = 1.0f;
    return q;
}

/// Throws facet::Error naming `layer` and `field` unless every scale is finite and positive and
/// every value in [-127, 127].
inline void check_quantized_weights(const QuantizedTensor& q, const std::string& layer,
                                    const std::string& field) {
    check(q.values.rank() >= 1 && q.scales.size() == q.values.dim(0), layer, ": '", field, "' has ",
          q.scales.size(), " scales for shape ", q.values.shape().str());
    for (std::size_t o = 0; o < q.scales.size(); ++o)
        check(std::isfinite(q.scales[o]) && q.scales[o] > 0, layer, ": '", field, "' has scale ",
              q.scales[o], " for output channel ", o, " (must be finite and > 0)");
    for (std::size_t i = 0; i < q.values.size(); ++i)
        check(q.values[i] >= -int8_weight_max, layer, ": '", field, "' holds ", int(q.values[i]),
              " at element ", i, ", outside [-127, 127]");
}

/// The per-output-channel constants of the epilogue, derived from the weights and the input's
/// quantisation: y[o] = float(sum - zero_point * weight_sum[o]) * multiplier[o] + bias[o].
struct Int8Epilogue {
    std::vector<std::int32_t> weight_sum;  ///< sum over k of qw[o][k]
    std::vector<float> multiplier;         ///< input scale * weight scale[o]
    std::vector<float> bias;
    std::int32_t zero_point = 0;
    bool relu = false;

    template <typename T>
    Int8Epilogue(const QuantizedTensor& w, const ActivationQuantization& input, const Tensor<T>& b,
                 bool fused_relu)
        : zero_point(input.zero_point), relu(fused_relu) {
        const std::size_t outputs = w.scales.size(), per = w.group_size();
        weight_sum.assign(outputs, 0);
        multiplier.resize(outputs);
        bias.resize(outputs);
        for (std::size_t o = 0; o < outputs; ++o) {
            for (std::size_t k = 0; k < per; ++k) weight_sum[o] += w.values[o * per + k];
            multiplier[o] = input.scale * w.scales[o];
            bias[o] = static_cast<float>(b[o]);
        }
    }
    Int8Epilogue() = default;

    /// The arrays as the kernels read them (kernels/int8_prepare.hpp).
    detail::EpiloguePlanes view() const {
        return {zero_point, weight_sum.data(), multiplier.data(), bias.data(), relu};
    }
    /// Output channel o's value for the int32 sum `sum`:
    /// float(sum - zero_point * weight_sum[o]) * multiplier[o] + bias[o], then the ReLU.
    float operator()(std::size_t o, std::int32_t sum) const { return view()(o, sum); }
};

}  // namespace facet
