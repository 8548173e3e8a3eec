// facet/train/fisher.hpp — fisher_diagonal: how much each weight matters to a trained model, as
// the diagonal of the (empirical) Fisher information of its loss: F_i = E[(dL_n/dw_i)^2] over
// samples n. Elastic weight consolidation (Kirkpatrick et al. 2017) anchors a model being
// fine-tuned with it, so that the weights the old task leans on move least (train/weight_anchor.hpp
// takes it as per-weight importance).
//
// How: per-sample gradients would cost a backward pass per face, so it averages over mini-batches
// instead. The gradient g_B of a batch of B samples is their mean; its square has expectation
// g^2 + Var/B, where g is the mean gradient and Var the variance of the per-sample gradients. For
// a trained model g is about 0, so B * E[g_B^2] estimates Var = E[(dL_n/dw)^2] - g^2, the
// empirical Fisher. Batches run in training mode (batch norm on the batch's statistics and
// dropout on, as in fine-tuning) with the batch norms' momentum at 0 so that their running
// statistics stay as they were.
// Read next: train/weight_anchor.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/loss/softmax_cross_entropy.hpp"
#include "facet/model/sequential.hpp"
#include "facet/train/batch_source.hpp"

namespace facet {

/// The diagonal of the empirical Fisher information of cross-entropy (label smoothing
/// `label_smoothing`) at `model`'s weights, one tensor per entry of `params` (in its order and
/// shapes), estimated from one epoch of `batches` as the mean over batches of B * g_B^2. The
/// weights and running statistics are left as they were (the gradients are overwritten), and the
/// model is left in Mode::Eval.
inline std::vector<Tensor<float>> fisher_diagonal(Sequential<float>& model,
                                                  const std::vector<Parameter<float>>& params,
                                                  BatchSource& batches, double label_smoothing = 0,
                                                  std::uint64_t seed = 1) {
    std::vector<Tensor<double>> sums;
    for (const Parameter<float>& p : params) {
        check(p.value != nullptr && p.grad != nullptr, "fisher_diagonal: parameter '", p.name,
              "' has no value or gradient");
        sums.emplace_back(p.value->shape());
    }
    std::vector<double*> momenta;
    for (std::size_t i = 0; i < model.size(); ++i)
        model.layer(i).visit_statistics_momentum([&](double& m) { momenta.push_back(&m); });
    std::vector<double> kept;
    for (const double* m : momenta) kept.push_back(*m);
    auto restore = [&] {
        for (std::size_t j = 0; j < momenta.size(); ++j) *momenta[j] = kept[j];
        model.set_mode(Mode::Eval);
    };
    SoftmaxCrossEntropy<float> loss(label_smoothing);
    Tensor<float> dlogits;
    std::size_t seen = 0;
    try {
        for (double* m : momenta) *m = 0;  // running = (1 - 0) running + 0 * batch
        model.set_mode(Mode::Train);
        model.reseed(seed);
        batches.start_epoch(0, 0);
        for (Batch batch; batches.next(batch);) {
            const Tensor<float>& logits = model.forward(batch.images);
            loss.forward(logits, batch.labels);
            loss.backward(dlogits);
            model.backward(dlogits, /*input_gradient=*/false);
            const auto b = static_cast<double>(batch.labels.size());
            for (std::size_t k = 0; k < params.size(); ++k) {
                const Tensor<float>& g = *params[k].grad;
                for (std::size_t i = 0; i < g.size(); ++i)
                    sums[k][i] += b * static_cast<double>(g[i]) * static_cast<double>(g[i]);
            }
            ++seen;
        }
    } catch (...) {
        restore();
        throw;
    }
    restore();
    check(seen > 0, "fisher_diagonal: the batch source gave no batch");
    std::vector<Tensor<float>> fisher;
    for (const Tensor<double>& s : sums) {
        Tensor<float>& f = fisher.emplace_back(s.shape());
        for (std::size_t i = 0; i < s.size(); ++i)
            f[i] = static_cast<float>(s[i] / static_cast<double>(seen));
    }
    return fisher;
}

}  // namespace facet
