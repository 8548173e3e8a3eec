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

/// Runs `model` in inference mode over epoch 0 of `source` (the model's mode is restored).
/// The loss takes log(max(p, 1e-12)) so that a confident mistake costs 27.6, not infinity.
inline ValidationResult evaluate_batches(Sequential<float>& model, BatchSource& source) {
    source.start_epoch(0, 0);
    ValidationResult r;
    double loss = 0;
    std::size_t correct = 0;
    for (Batch batch; source.next(batch);) {
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
        r.samples += batch.size();
    }
    check(r.samples > 0, "evaluate_batches: the source gave no samples");
    r.loss = loss / static_cast<double>(r.samples);
    r.accuracy = static_cast<double>(correct) / static_cast<double>(r.samples);
    return r;
}

}  // namespace facet
