// facet/layers/channel_affine.hpp — the per-channel map an eval-mode batch norm applies
// (and an optional ReLU after it), in a form a convolution or dense layer can apply to its own
// output while that output is still in cache: inference then makes one trip over each activation
// instead of three (conv writes, batch norm reads and writes, ReLU reads and writes).
// Read next: layers/conv2d.hpp (Conv2d::forward_affine), model/sequential.hpp (predict's plan).
#pragma once

#include <cstddef>
#include <vector>

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

}  // namespace facet
