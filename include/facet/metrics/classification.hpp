// facet/metrics/classification.hpp — how good a classifier is: accuracy, the confusion matrix
// (rows = true class, columns = predicted class), per-class precision / recall / F1 / support,
// their macro averages and the support-weighted F1; printed as plain-text tables (as JSON with the
// optional metrics/classification_json.hpp). Read next: report/html.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/metrics/accuracy.hpp"

namespace facet {

/// Counts of (true class, predicted class) pairs.
class ConfusionMatrix {
  public:
    explicit ConfusionMatrix(int num_classes) : classes_(num_classes) {
        check(num_classes > 0, "ConfusionMatrix: need at least one class, got ", num_classes);
        counts_.assign(
            static_cast<std::size_t>(num_classes) * static_cast<std::size_t>(num_classes), 0);
    }

    /// Number of classes (the matrix is num_classes x num_classes).
    int num_classes() const { return classes_; }

    /// Records one prediction; both classes must be in [0, num_classes).
    void add(int truth, int predicted) {
        check(truth >= 0 && truth < classes_, "ConfusionMatrix::add: true class ", truth,
              " outside [0, ", classes_, ")");
        check(predicted >= 0 && predicted < classes_, "ConfusionMatrix::add: predicted class ",
              predicted, " outside [0, ", classes_, ")");
        ++counts_[index(truth, predicted)];
    }
    /// Records a batch of predictions (equal lengths).
    void add(const std::vector<int>& truth, const std::vector<int>& predicted) {
        check(truth.size() == predicted.size(), "ConfusionMatrix::add: ", truth.size(),
              " true labels but ", predicted.size(), " predictions");
        for (std::size_t i = 0; i < truth.size(); ++i) add(truth[i], predicted[i]);
    }

    /// How many samples of class `truth` were predicted as `predicted`.
    std::size_t count(int truth, int predicted) const {
        check(truth >= 0 && truth < classes_ && predicted >= 0 && predicted < classes_,
              "ConfusionMatrix::count: (", truth, ", ", predicted, ") out of range");
        return counts_[index(truth, predicted)];
    }
    /// Number of predictions recorded.
    std::size_t total() const {
        std::size_t n = 0;
        for (std::size_t c : counts_) n += c;
        return n;
    }
    /// Samples whose true class is c (the row sum).
    std::size_t support(int c) const {
        std::size_t n = 0;
        for (int p = 0; p < classes_; ++p) n += count(c, p);
        return n;
    }
    /// Samples predicted as c (the column sum).
    std::size_t predicted_count(int c) const {
        std::size_t n = 0;
        for (int t = 0; t < classes_; ++t) n += count(t, c);
        return n;
    }
    /// Fraction on the diagonal (0 for an empty matrix).
    double accuracy() const {
        std::size_t correct = 0;
        for (int c = 0; c < classes_; ++c) correct += count(c, c);
        const std::size_t n = total();
        return n ? static_cast<double>(correct) / static_cast<double>(n) : 0.0;
    }

  private:
    std::size_t index(int t, int p) const {
        return static_cast<std::size_t>(t) * static_cast<std::size_t>(classes_) +
               static_cast<std::size_t>(p);
    }
    int classes_;
    std::vector<std::size_t> counts_;
};

/// Precision, recall and F1 of one class, and how many samples truly belong to it.
struct ClassMetrics {
    double precision = 0;  ///< correct / predicted as this class (0 if never predicted)
    double recall = 0;     ///< correct / truly this class (0 if the class has no samples)
    double f1 = 0;         ///< harmonic mean of the two (0 if both are 0)
    std::size_t support = 0;
};

/// Everything computed from a confusion matrix, with the class names to label it.
struct ClassificationReport {
    std::vector<std::string> class_names;
    ConfusionMatrix confusion{1};
    double accuracy = 0;
    std::vector<ClassMetrics> per_class;
    double macro_precision = 0, macro_recall = 0, macro_f1 = 0;  ///< unweighted means over classes
    double weighted_f1 = 0;  ///< per-class F1 weighted by support

    /// The confusion matrix as a table: one row per true class, one column per prediction.
    std::string confusion_table() const;
    /// Per-class precision / recall / F1 / support, then the averages and the accuracy.
    std::string metrics_table() const;
};

/// Computes the report of `confusion`; `class_names` must have one name per class.
inline ClassificationReport classification_report(const ConfusionMatrix& confusion,
                                                  const std::vector<std::string>& class_names) {
    const int k = confusion.num_classes();
    check(class_names.size() == static_cast<std::size_t>(k),
          "classification_report: ", class_names.size(), " class names for ", k, " classes");
    ClassificationReport r;
    r.class_names = class_names;
    r.confusion = confusion;
    r.accuracy = confusion.accuracy();
    const std::size_t total = confusion.total();
    for (int c = 0; c < k; ++c) {
        ClassMetrics m;
        const auto correct = static_cast<double>(confusion.count(c, c));
        const std::size_t predicted = confusion.predicted_count(c);
        m.support = confusion.support(c);
        m.precision = predicted ? correct / static_cast<double>(predicted) : 0.0;
        m.recall = m.support ? correct / static_cast<double>(m.support) : 0.0;
        m.f1 = m.precision + m.recall > 0 ? 2 * m.precision * m.recall / (m.precision + m.recall)
                                          : 0.0;
        r.macro_precision += m.precision / k;
        r.macro_recall += m.recall / k;
        r.macro_f1 += m.f1 / k;
        if (total)
            r.weighted_f1 += m.f1 * static_cast<double>(m.support) / static_cast<double>(total);
        r.per_class.push_back(m);
    }
    return r;
}

/// The report for labels and predictions given as vectors.
inline ClassificationReport classification_report(const std::vector<int>& truth,
                                                  const std::vector<int>& predicted,
                                                  const std::vector<std::string>& class_names) {
    ConfusionMatrix m(static_cast<int>(class_names.size()));
    m.add(truth, predicted);
    return classification_report(m, class_names);
}

inline std::string ClassificationReport::confusion_table() const {
    std::size_t width = 9;  // wide enough for "true\pred" and counts up to 8 digits
    for (const auto& n : class_names) width = std::max(width, n.size() + 1);
    const int w = static_cast<int>(width);
    char cell[128];
    std::string out;
    std::snprintf(cell, sizeof cell, "%-*s", w, "true\\pred");
    out += cell;
    for (const auto& n : class_names) {
        std::snprintf(cell, sizeof cell, " %*s", w, n.c_str());
        out += cell;
    }
    out += '\n';
    for (int t = 0; t < confusion.num_classes(); ++t) {
        std::snprintf(cell, sizeof cell, "%-*s", w,
                      class_names[static_cast<std::size_t>(t)].c_str());
        out += cell;
        for (int p = 0; p < confusion.num_classes(); ++p) {
            std::snprintf(cell, sizeof cell, " %*zu", w, confusion.count(t, p));
            out += cell;
        }
        out += '\n';
    }
    return out;
}

inline std::string ClassificationReport::metrics_table() const {
    std::size_t width = 12;
    for (const auto& n : class_names) width = std::max(width, n.size());
    const int w = static_cast<int>(width);
    char line[256];
    std::snprintf(line, sizeof line, "%-*s %9s %9s %9s %9s\n", w, "class", "precision", "recall",
                  "f1", "support");
    std::string out = line;
    for (std::size_t c = 0; c < per_class.size(); ++c) {
        const ClassMetrics& m = per_class[c];
        std::snprintf(line, sizeof line, "%-*s %9.4f %9.4f %9.4f %9zu\n", w, class_names[c].c_str(),
                      m.precision, m.recall, m.f1, m.support);
        out += line;
    }
    const std::size_t total = confusion.total();
    std::snprintf(line, sizeof line, "%-*s %9.4f %9.4f %9.4f %9zu\n", w, "macro avg",
                  macro_precision, macro_recall, macro_f1, total);
    out += line;
    std::snprintf(line, sizeof line, "%-*s %9s %9s %9.4f %9zu\n", w, "weighted avg", "", "",
                  weighted_f1, total);
    out += line;
    std::snprintf(line, sizeof line, "%-*s %9s %9s %9.4f %9zu\n", w, "accuracy", "", "", accuracy,
                  total);
    return out + line;
}

}  // namespace facet
