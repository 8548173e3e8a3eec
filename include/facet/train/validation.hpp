// facet/train/validation.hpp — evaluate_batches(): the mean cross-entropy and the accuracy of a
// classifier over one epoch of a BatchSource, computed with Sequential::predict (inference mode:
// batch-norm running statistics, no dropout). The Trainer calls it after every epoch on the
// validation data; a program calls it once on the test data after training.
// Read next: train/callback.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "facet/core/error.hpp"
#include "facet/model/sequential.hpp"
#include "facet/train/batch_source.hpp"

namespace facet {

/// What evaluate_batches() measures.
struct ValidationResult {
    double loss = std::numeric_limits<double>::quiet_NaN();      ///< mean -log p(label)
    double accuracy = std::numeric_limits<double>::quiet_NaN();  ///< fraction of argmax == label
    std::size_t samples = 0;
};

/// The totals evaluate_batches() divides: -sum log p(label), the correct answers, the samples.
/// Data-parallel training adds them up over the processes, each of which saw its shard.
struct ValidationSums {
    double loss = 0, correct = 0, samples = 0;
};

/// Runs `model` in inference mode over epoch 0 of `source` (the model's mode is restored) and
/// returns the totals; a source that gives no samples (an empty shard) gives zeros.
/// The loss takes log(max(p, 1e-12)) so that a confident mistake costs 27.6, not infinity.
inline ValidationSums validation_sums(Sequential<float>& model, BatchSource& source) {
    source.start_epoch(0, 0);
    double loss = 0;
    std::size_t correct = 0, samples = 0;
    for (Batch batch; source.next(batch);) {
        if (batch.size() == 0) continue;  // a shard of a batch smaller than the process count
        const Tensor<float>& p = model.predict(batch.images);
        const std::size_t classes = p.dim(1);
        for (std::size_t i = 0; i < batch.size(); ++i) {
            const float* row = p.data() + i * classes;
            const auto label = static_cast<std::size_t>(batch.labels[i]);
            check(label < classes, "evaluate_batches: label ", label, " outside the model's ",
                  classes, " classes");
            if (static_cast<std::size_t>(std::max_element(row, row + classes) - row) == label)
                ++correct;
            loss -= std::log(std::max(1e-12, static_cast<double>(row[label])));
        }
        samples += batch.size();
    }
    return {loss, static_cast<double>(correct), static_cast<double>(samples)};
}

/// The mean loss and the accuracy of the totals `sums` (an Error when they hold no sample).
inline ValidationResult validation_result(const ValidationSums& sums) {
    check(sums.samples > 0, "evaluate_batches: the source gave no samples");
    ValidationResult r;
    r.samples = static_cast<std::size_t>(sums.samples);
    r.loss = sums.loss / sums.samples;
    r.accuracy = sums.correct / sums.samples;
    return r;
}

/// Runs `model` in inference mode over epoch 0 of `source` (the model's mode is restored).
inline ValidationResult evaluate_batches(Sequential<float>& model, BatchSource& source) {
    return validation_result(validation_sums(model, source));
}

}  // namespace facet
