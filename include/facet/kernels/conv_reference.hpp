// facet/kernels/conv_reference.hpp — the naive direct convolution, written straight from the
// definition. Slow on purpose: it is the independent reference the tests check im2col + GEMM
// (and the Conv2d layer) against, never used on a hot path.
#pragma once

#include <cstddef>

#include "facet/kernels/im2col.hpp"

namespace facet {

/// y[n, o, oh, ow] = bias[o]
///     + sum_{c, ki, kj} w[o, c, ki, kj] * x[n, c, oh*s - p + ki*d, ow*s - p + kj*d]
/// x: N x C x H x W, w: OC x C x kh x kw, bias: OC or nullptr, y: N x OC x out_h x out_w.
/// Accumulates in double whatever T is.
template <typename T>
void conv2d_direct(const T* x, std::size_t batch, const ConvGeometry& g, const T* w,
                   std::size_t out_channels, const T* bias, T* y) {
    const std::size_t OH = g.out_h(), OW = g.out_w();
    for (std::size_t n = 0; n < batch; ++n)
        for (std::size_t o = 0; o < out_channels; ++o)
            for (std::size_t oh = 0; oh < OH; ++oh)
                for (std::size_t ow = 0; ow < OW; ++ow) {
                    double acc = bias ? static_cast<double>(bias[o]) : 0.0;
                    for (std::size_t c = 0; c < g.channels; ++c)
                        for (std::size_t ki = 0; ki < g.kernel_h; ++ki)
                            for (std::size_t kj = 0; kj < g.kernel_w; ++kj) {
                                const auto ih = static_cast<std::ptrdiff_t>(oh * g.stride_h +
                                                                            ki * g.dilation_h) -
                                                static_cast<std::ptrdiff_t>(g.pad_h);
                                const auto iw = static_cast<std::ptrdiff_t>(ow * g.stride_w +
                                                                            kj * g.dilation_w) -
                                                static_cast<std::ptrdiff_t>(g.pad_w);
                                if (ih < 0 || iw < 0 ||
                                    ih >= static_cast<std::ptrdiff_t>(g.height) ||
                                    iw >= static_cast<std::ptrdiff_t>(g.width))
                                    continue;
                                acc += static_cast<double>(
                                           w[((o * g.channels + c) * g.kernel_h + ki) * g.kernel_w +
                                             kj]) *
                                       static_cast<double>(x[((n * g.channels + c) * g.height +
                                                              static_cast<std::size_t>(ih)) *
                                                                 g.width +
                                                             static_cast<std::size_t>(iw)]);
                            }
                    y[((n * out_channels + o) * OH + oh) * OW + ow] = static_cast<T>(acc);
                }
}

}  // namespace facet
