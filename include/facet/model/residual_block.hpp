// facet/model/residual_block.hpp — residual_block(): the basic block of a ResNet as a Graph,
// relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)), with an identity shortcut when the shape is
// kept and a 1x1 projection (conv + batch norm) when the stride or the channel count changes.
// Read model/graph.hpp first.
#pragma once

#include <cstddef>
#include <cstdint>

#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/layers/activations.hpp"
#include "facet/layers/add.hpp"
#include "facet/layers/batchnorm.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/model/graph.hpp"

namespace facet {

/// A basic residual block for inputs of per-sample shape `input` (C, H, W): conv3x3(stride) -
/// BN - ReLU - conv3x3 - BN, plus the shortcut, then ReLU. The shortcut is x itself when
/// stride is 1 and out_channels equals C, else conv1x1(stride) - BN (set `projection` to use it
/// even then). Convolutions have no bias (the batch norms' beta is one); their weights are drawn
/// from seed + 1, seed + 2, seed + 3.
template <typename T>
Graph<T> residual_block(const Shape& input, std::size_t out_channels, std::size_t stride = 1,
                        std::uint64_t seed = 1, bool projection = false) {
    check(input.rank() == 3, "residual_block: per-sample input must be (C, H, W), got ",
          input.str());
    check(out_channels > 0 && stride > 0,
          "residual_block: out_channels and stride must be "
          "positive");
    const std::size_t in_channels = input[0];
    projection = projection || stride != 1 || in_channels != out_channels;
    Graph<T> g(input, detail::concat("ResidualBlock(", in_channels, "->", out_channels, ", stride ",
                                     stride, projection ? ", projection" : "", ")"));
    const GraphNode x = g.input();
    GraphNode f =
        g.template add<Conv2d<T>>(x, in_channels, out_channels, 3, stride, 1, false, seed + 1);
    f = g.template add<BatchNorm2d<T>>(f, out_channels);
    f = g.template add<ReLU<T>>(f);
    f = g.template add<Conv2d<T>>(f, out_channels, out_channels, 3, 1, 1, false, seed + 2);
    f = g.template add<BatchNorm2d<T>>(f, out_channels);
    GraphNode shortcut = x;
    if (projection) {
        shortcut =
            g.template add<Conv2d<T>>(x, in_channels, out_channels, 1, stride, 0, false, seed + 3);
        shortcut = g.template add<BatchNorm2d<T>>(shortcut, out_channels);
    }
    const GraphNode sum = g.template add<Add<T>>({f, shortcut});
    g.output(g.template add<ReLU<T>>(sum));
    return g;
}

}  // namespace facet
