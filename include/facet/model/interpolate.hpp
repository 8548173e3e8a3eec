// facet/model/interpolate.hpp — interpolate_weights(): the weight-space blend of two models of one
// architecture, out = (1 - t) * a + t * b for every parameter and buffer.
//
// Two uses in fer finetune: the running mean of the weights over epochs (interpolate_weights(avg,
// avg, model, 1/n)), and the blend of a fine-tuned model with its parent (weight-space ensembling,
// "WiSE-FT": Wortsman et al., "Robust fine-tuning of zero-shot models", 2022), which works because
// a model fine-tuned from a parent stays in the parent's basin. Batch norms' running means and
// variances are blended like the weights: a blend of two variances is still a variance, though
// not that of the blended network's activations, so a blend's worth has to be measured.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/model/sequential.hpp"

namespace facet {

namespace detail {

/// Checks that the three lists name the same tensors with the same shapes in the same order
/// ("what" says parameters or buffers).
template <typename T>
void check_same_tensors(const std::vector<std::pair<std::string, Tensor<T>*>>& out,
                        const std::vector<std::pair<std::string, Tensor<T>*>>& a,
                        const std::vector<std::pair<std::string, Tensor<T>*>>& b,
                        const char* what) {
    check(out.size() == a.size() && a.size() == b.size(), "interpolate_weights: the models have ",
          a.size(), " and ", b.size(), " ", what, " (the output ", out.size(),
          "): not one architecture");
    for (std::size_t i = 0; i < a.size(); ++i) {
        const std::string& name = a[i].first;
        check(b[i].first == name && out[i].first == name, "interpolate_weights: ", what, " ", i,
              " is '", name, "' in one model and '", b[i].first, "' in the other");
        check(a[i].second->shape() == b[i].second->shape() &&
                  out[i].second->shape() == b[i].second->shape(),
              "interpolate_weights: ", name, " has the shapes ", a[i].second->shape().str(),
              " and ", b[i].second->shape().str());
    }
}

/// out = (1 - t) * a + t * b elementwise, tensor by tensor, summed in double.
template <typename T>
void blend_tensors(const std::vector<std::pair<std::string, Tensor<T>*>>& out,
                   const std::vector<std::pair<std::string, Tensor<T>*>>& a,
                   const std::vector<std::pair<std::string, Tensor<T>*>>& b, double t) {
    for (std::size_t i = 0; i < out.size(); ++i) {
        const T* pa = a[i].second->data();
        const T* pb = b[i].second->data();
        T* po = out[i].second->data();
        for (std::size_t k = 0; k < out[i].second->size(); ++k)
            po[k] = static_cast<T>((1 - t) * double(pa[k]) + t * double(pb[k]));
    }
}

template <typename T>
std::vector<std::pair<std::string, Tensor<T>*>> named_values(Sequential<T>& model) {
    std::vector<std::pair<std::string, Tensor<T>*>> all;
    for (const Parameter<T>& p : model.parameters()) all.emplace_back(p.name, p.value);
    return all;
}

}  // namespace detail

/// Sets every parameter and buffer of `out` to (1 - t) * a's + t * b's, t in [0, 1]: t = 0 copies
/// a, t = 1 copies b. The three models must have one architecture: the same layer types and the
/// same named parameters and buffers of the same shapes (all checked before anything is
/// written). `out` may be `a` or `b` itself. int8 layers are refused:
/// blend the float models, then quantise.
template <typename T>
void interpolate_weights(Sequential<T>& out, Sequential<T>& a, Sequential<T>& b, double t) {
    check(t >= 0 && t <= 1, "interpolate_weights: the share t must be in [0, 1], got ", t);
    check(a.size() == b.size() && out.size() == a.size(), "interpolate_weights: the models have ",
          a.size(), " and ", b.size(), " layers (the output ", out.size(), ")");
    for (std::size_t i = 0; i < a.size(); ++i)
        check(a.layer(i).type() == b.layer(i).type() && out.layer(i).type() == a.layer(i).type(),
              "interpolate_weights: layer ", i, " is ", a.layer(i).type(), " in one model and ",
              b.layer(i).type(), " in the other");
    check(a.quantized_tensors().empty() && b.quantized_tensors().empty() &&
              out.quantized_tensors().empty(),
          "interpolate_weights: int8 models cannot be blended; blend the float models, then "
          "quantise");
    const auto out_params = detail::named_values(out), a_params = detail::named_values(a),
               b_params = detail::named_values(b);
    const auto out_buffers = out.buffers(), a_buffers = a.buffers(), b_buffers = b.buffers();
    detail::check_same_tensors(out_params, a_params, b_params, "parameters");
    detail::check_same_tensors(out_buffers, a_buffers, b_buffers, "buffers");
    detail::blend_tensors(out_params, a_params, b_params, t);
    detail::blend_tensors(out_buffers, a_buffers, b_buffers, t);
}

}  // namespace facet
