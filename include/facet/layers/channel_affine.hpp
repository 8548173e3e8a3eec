// facet/layers/channel_affine.hpp — the per-channel map an eval-mode batch norm applies
// (and an optional ReLU after it), in a form a convolution or dense layer can apply to its own
// output while that output is still in cache: inference then makes one trip over each activation
// instead of three (conv writes, batch norm reads and writes, ReLU reads and writes).
// Read next: layers/conv2d.hpp (Conv2d::forward_affine), model/sequential.hpp (predict's plan).
#pragma once

#include <cstddef>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"

namespace facet {

namespace detail {
/// Batch norm's output for one value, and max(., 0) after it for Relu. BatchNorm's forward pass
/// and ChannelAffine both compute it through this function, so a fused inference pass gives the
/// same float expression on the same values as the layers run one by one.
template <bool Relu, typename T>
T batch_norm_value(T x, T mean, T scale, T shift) {
    const T v = (x - mean) * scale + shift;
    if constexpr (Relu)
        return v > T(0) ? v : T(0);
    else
        return v;
}
}  // namespace detail

/// out = (y - mean[c]) * scale[c] + shift[c] for channel (or feature) c, then max(out, 0) when
/// `relu`. BatchNorm::inference_affine() fills it from the running statistics.
template <typename T>
struct ChannelAffine {
    std::vector<T> mean, scale, shift;
    bool relu = false;

    std::size_t channels() const { return mean.size(); }

    /// Applies channel c's map to the n values of one plane (NCHW: one channel of one image).
    void apply_plane(std::size_t c, T* y, std::size_t n) const {
        const T m = mean[c], s = scale[c], b = shift[c];
        if (relu)
            for (std::size_t i = 0; i < n; ++i)
                y[i] = detail::batch_norm_value<true>(y[i], m, s, b);
        else
            for (std::size_t i = 0; i < n; ++i)
                y[i] = detail::batch_norm_value<false>(y[i], m, s, b);
    }

    /// Applies the map to one row of features (N, F): value f belongs to channel f.
    void apply_row(T* y) const {
        const std::size_t n = mean.size();
        const T *m = mean.data(), *s = scale.data(), *b = shift.data();
        if (relu)
            for (std::size_t f = 0; f < n; ++f)
                y[f] = detail::batch_norm_value<true>(y[f], m[f], s[f], b[f]);
        else
            for (std::size_t f = 0; f < n; ++f)
                y[f] = detail::batch_norm_value<false>(y[f], m[f], s[f], b[f]);
    }
};

/// Folds `affine` (without its ReLU) into a layer's weights and bias, for a layer whose output
/// channel o is weight row o (the weight's outermost extent) times its input plus bias[o]
/// (Conv2d, GroupedConv2d, Dense). With y = W x + b, the map gives (y - m) s + t, so
///     W'[o] = W[o] s[o],   b'[o] = (b[o] - m[o]) s[o] + t[o]
/// (b = 0 for a layer without bias: `bias` is then resized and filled). The arithmetic is in
/// double, rounded once to T.
template <typename T>
void fold_affine_into_weights(const ChannelAffine<T>& affine, Tensor<T>& weight, Tensor<T>& bias,
                              bool had_bias) {
    const std::size_t out = affine.channels();
    check(!affine.relu, "fold_affine_into_weights: a ReLU cannot be folded into weights");
    check(weight.rank() >= 1 && weight.dim(0) == out, "fold_affine_into_weights: ", out,
          " channels in the map, the weight is ", weight.shape().str());
    if (!had_bias) {
        bias.resize(Shape{out});
        bias.zero();
    }
    check(bias.size() == out, "fold_affine_into_weights: bias of ", bias.size(), " values for ",
          out, " channels");
    const std::size_t row = weight.size() / out;
    for (std::size_t o = 0; o < out; ++o) {
        const double s = double(affine.scale[o]);
        T* w = weight.data() + o * row;
        for (std::size_t k = 0; k < row; ++k) w[k] = T(double(w[k]) * s);
        bias[o] = T((double(bias[o]) - double(affine.mean[o])) * s + double(affine.shift[o]));
    }
}

}  // namespace facet
