// facet/model/fold_batchnorm.hpp — fold_batchnorm(): batch-norm folding, the rewrite of an
// inference model in which every batch norm that directly follows a convolution or dense layer
// becomes part of that layer's weights and bias, and is removed. The folded model is an ordinary
// model (it saves, loads and runs like any other) with one layer less per fold.
//
// In eval mode a batch norm is the per-channel map y -> (y - mu) * gamma / sqrt(var + eps) + beta,
// with running statistics mu and var. After a layer y = W x + b, output channel o becomes
//     W'[o] = W[o] * s[o],   b'[o] = (b[o] - mu[o]) * s[o] + beta[o],   s = gamma / sqrt(var +
//     eps),
// so the pair is one layer. Which layers qualify is decided by the layers' folding hooks
// (layers/layer.hpp: absorbs_output_affine, affine_in_eval, fold_batch_norms), never by class.
// Read next: docs/deployment.md.
#pragma once

#include <cstddef>

#include "facet/layers/layer.hpp"
#include "facet/model/graph.hpp"
#include "facet/model/sequential.hpp"

namespace facet {

/// Folds, in place, every batch norm of `model` that can be folded exactly into the layer
/// before it, and returns how many it folded:
///  * in the chain: layer i + 1 is a batch norm (affine_in_eval()) and layer i absorbs a
///    per-output-channel map (absorbs_output_affine(): Conv2d, GroupedConv2d, Dense);
///  * inside every Graph layer (residual blocks), recursively: a batch-norm node whose only input
///    is such a layer and which is that layer's only reader (Graph::fold_batch_norms).
/// A layer without bias gets one. Batch norms after anything else (the first layer, a pooling
/// layer, an Add) are left as they are. The model is put in Mode::Eval first and left there:
/// the folded model computes what the unfolded one computes in eval mode (up to rounding), and
/// is meant for inference; training it further would train without those batch norms.
/// References to the removed layers, and parameters() vectors taken before, become invalid.
template <typename T>
std::size_t fold_batchnorm(Sequential<T>& model) {
    model.set_mode(Mode::Eval);
    std::size_t folded = 0;
    for (std::size_t i = 0; i < model.size(); ++i) folded += model.layer(i).fold_batch_norms();
    for (std::size_t i = 0; i + 1 < model.size();) {
        if (foldable_pair(model.layer(i), model.layer(i + 1))) {
            fold_pair(model.layer(i), model.layer(i + 1));
            model.remove(i + 1);
            ++folded;
            continue;  // layer i may absorb the next map as well
        }
        ++i;
    }
    return folded;
}

/// fold_batchnorm for a Graph used as a model of its own: in place, as above.
template <typename T>
std::size_t fold_batchnorm(Graph<T>& graph) {
    graph.set_mode(Mode::Eval);
    return graph.fold_batch_norms();
}

}  // namespace facet
