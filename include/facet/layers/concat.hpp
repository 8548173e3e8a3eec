// facet/layers/concat.hpp — Concat: joins its inputs along the channel axis, (N, C_k, H, W) ->
// (N, sum C_k, H, W) (feature vectors (N, F_k) -> (N, sum F_k) alike), as in Inception and
// DenseNet. Read layers/merge_layer.hpp first; read next: model/graph.hpp.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/core/tensor.hpp"
#include "facet/layers/merge_layer.hpp"
#include "facet/layers/registry.hpp"

namespace facet {

/// Concatenation along the first per-sample axis (channels); every other extent must agree.
/// Input k's channels come after those of inputs 0 .. k-1.
template <typename T>
class Concat : public MergeLayer<T> {
  public:
    std::string type() const override { return "Concat"; }

    Shape merged_shape(const std::vector<Shape>& inputs) const override {
        check(!inputs.empty(), "Concat: needs at least one input");
        const Shape& first = inputs[0];
        check(first.rank() >= 1, "Concat: input 0 has no channel axis");
        std::size_t channels = 0;
        for (std::size_t k = 0; k < inputs.size(); ++k) {
            const Shape& s = inputs[k];
            bool fits = s.rank() == first.rank();
            for (int a = 1; fits && a < s.rank(); ++a) fits = s[a] == first[a];
            check(fits, "Concat: input ", k, " has shape ", s.str(), ", input 0 has ", first.str(),
                  " (all extents but the channels must agree)");
            channels += s[0];
        }
        switch (first.rank()) {
            case 1:
                return Shape{channels};
            case 2:
                return Shape{channels, first[1]};
            default:
                return Shape{channels, first[1], first[2]};
        }
    }

    // y[n] = (x_0[n], x_1[n], ...): each sample's block of every input copied in turn.
    void forward_merge(const std::vector<const Tensor<T>*>& xs, Tensor<T>& y) override {
        const std::size_t batch = check_inputs(xs, "forward");
        std::vector<Shape> shapes;
        for (const Tensor<T>* x : xs) shapes.push_back(sample_shape(x->shape()));
        y.resize(batch_shape(batch, merged_shape(shapes)));
        const std::size_t out_sample = y.shape().inner_size();
        parallel_for(batch, [&](std::size_t b, std::size_t e) {
            for (std::size_t n = b; n < e; ++n) {
                T* out = y.data() + n * out_sample;
                for (const Tensor<T>* x : xs) {
                    const std::size_t block = x->shape().inner_size();
                    std::memcpy(out, x->data() + n * block, block * sizeof(T));
                    out += block;
                }
            }
        });
    }

    // y is a permutation of the inputs' entries, so each dx_k is its block of dy: the channels
    // input k contributed.
    void backward_merge(const std::vector<const Tensor<T>*>& xs, const Tensor<T>& y,
                        const Tensor<T>& dy, const std::vector<Tensor<T>*>& dxs) override {
        const std::size_t batch = check_inputs(xs, "backward");
        check(dxs.size() == xs.size(), "Concat::backward: ", xs.size(), " inputs but ", dxs.size(),
              " gradients");
        check(dy.shape() == y.shape(), "Concat::backward: dy is ", dy.shape().str(), ", expected ",
              y.shape().str());
        for (std::size_t k = 0; k < xs.size(); ++k) dxs[k]->resize(xs[k]->shape());
        const std::size_t out_sample = dy.shape().inner_size();
        parallel_for(batch, [&](std::size_t b, std::size_t e) {
            for (std::size_t n = b; n < e; ++n) {
                const T* g = dy.data() + n * out_sample;
                for (std::size_t k = 0; k < xs.size(); ++k) {
                    const std::size_t block = xs[k]->shape().inner_size();
                    std::memcpy(dxs[k]->data() + n * block, g, block * sizeof(T));
                    g += block;
                }
            }
        });
    }

    LayerConfig config() const override { return {"Concat", {}}; }

    /// Rebuilds the layer from config() (Concat has no hyper-parameters).
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& /*config*/) {
        return std::make_unique<Concat<T>>();
    }

  private:
    /// The common batch size; an Error when the inputs disagree on it or have no channel axis.
    static std::size_t check_inputs(const std::vector<const Tensor<T>*>& xs, const char* who) {
        check(!xs.empty(), "Concat::", who, ": no inputs");
        for (std::size_t k = 0; k < xs.size(); ++k)
            check(xs[k]->rank() >= 2 && xs[k]->dim(0) == xs[0]->dim(0), "Concat::", who, ": input ",
                  k, " is ", xs[k]->shape().str(), ", input 0 is ", xs[0]->shape().str(),
                  " (same batch size and a channel axis needed)");
        return xs[0]->dim(0);
    }
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class Concat<float>;
extern template class Concat<double>;
#endif

inline const bool concat_registered = register_layer<Concat>("Concat");

}  // namespace facet
