// facet/train/running_statistics.hpp — reestimate_running_statistics: computes a model's batch-norm
// running statistics afresh from one pass over some batches, for weights that were not trained
// with the statistics they hold. An average of several models' weights (stochastic weight
// averaging, Izmailov et al. 2018; `fer finetune --average-from`) holds the average of their
// statistics, which are not the statistics of its own activations; re-estimating them is the step
// those methods add (PyTorch's torch.optim.swa_utils.update_bn). Choosing the batches also chooses
// whose inputs the model normalises for.
//
// How: every batch norm's momentum is set to 1/k for the k-th batch, so that after n batches its
// running mean is the plain mean of the n batch means (and its running variance the mean of the
// n unbiased batch variances), the forward passes run in training mode, and the momenta go back
// to what they were. Nothing else changes: no gradient, no parameter.
// Read next: train/trainer.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/model/sequential.hpp"
#include "facet/train/batch_source.hpp"

namespace facet {

/// Replaces the running statistics of every batch norm of `model` (inside graphs too) by their
/// plain average over one epoch of `batches` (epoch `epoch` of the source), seen in training mode
/// with dropout masks drawn from `seed`. Returns the number of batch norms re-estimated (0 when
/// the model has none: then it does no forward pass). The model is left in Mode::Eval.
template <typename T>
std::size_t reestimate_running_statistics(Sequential<T>& model, BatchSource& batches,
                                          std::size_t epoch = 0, std::uint64_t seed = 1) {
    std::vector<double*> momenta;
    for (std::size_t i = 0; i < model.size(); ++i)
        model.layer(i).visit_statistics_momentum([&](double& m) { momenta.push_back(&m); });
    if (momenta.empty()) return 0;
    std::vector<double> kept;
    for (const double* m : momenta) kept.push_back(*m);
    auto restore = [&] {
        for (std::size_t j = 0; j < momenta.size(); ++j) *momenta[j] = kept[j];
        model.set_mode(Mode::Eval);
    };
    std::size_t seen = 0;
    try {
        model.set_mode(Mode::Train);
        model.reseed(seed);
        batches.start_epoch(epoch, 0);
        for (Batch batch; batches.next(batch);) {
            ++seen;
            for (double* m : momenta) *m = 1.0 / static_cast<double>(seen);
            model.forward(batch.images);
        }
    } catch (...) {
        restore();
        throw;
    }
    restore();
    check(seen > 0, "reestimate_running_statistics: the batch source gave no batch");
    return momenta.size();
}

}  // namespace facet
