// facet/metrics/accuracy.hpp — the one accuracy of facet: the fraction of predictions equal to the
// true labels, from predicted classes or straight from rows of class scores. Sequential::accuracy
// and the confusion matrix's report agree because they come here. Read next:
// metrics/classification.hpp (per-class metrics and the confusion matrix).
#pragma once

#include <cstddef>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/softmax_rows.hpp"

namespace facet {

/// Fraction of predictions equal to the true labels (equal lengths; 0 when empty).
inline double accuracy(const std::vector<int>& truth, const std::vector<int>& predicted) {
    check(truth.size() == predicted.size(), "accuracy: ", truth.size(), " true labels but ",
          predicted.size(), " predictions");
    std::size_t correct = 0;
    for (std::size_t i = 0; i < truth.size(); ++i) correct += truth[i] == predicted[i];
    return truth.empty() ? 0.0 : static_cast<double>(correct) / static_cast<double>(truth.size());
}

/// The accuracy of the rows of `scores` (N, classes), logits or probabilities, against `labels`
/// (N class indices: a vector, a span, ...): a row counts as correct when its largest score is at
/// its label.
template <typename T, typename Labels>
double accuracy_of_scores(const Tensor<T>& scores, const Labels& labels) {
    const std::vector<int> truth(labels.begin(), labels.end());
    return accuracy(truth, predicted_classes(scores));
}

}  // namespace facet
