// facet/metrics/classification_json.hpp — OPTIONAL: a ClassificationReport and a ConfusionMatrix
// as JSON, with nlohmann/json (Debian: nlohmann-json3-dev). Not included by facet/facet.hpp: a
// program that wants JSON includes this header and has nlohmann/json on its include path (CMake:
// find_package(nlohmann_json) and link nlohmann_json::nlohmann_json); the rest of facet needs
// nothing. Conversions follow nlohmann's to_json convention, so `nlohmann::json j = report;`
// works. Read next: report/html.hpp.
#pragma once

#include <cmath>
#include <cstddef>

#include <nlohmann/json.hpp>

#include "facet/metrics/classification.hpp"

namespace facet {

namespace detail {
/// A number, or null for NaN and infinity (JSON has neither).
inline nlohmann::json json_number(double v) {
    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}
}  // namespace detail

/// The matrix as rows (true classes) of counts per predicted class.
inline void to_json(nlohmann::json& j, const ConfusionMatrix& confusion) {
    j = nlohmann::json::array();
    for (int t = 0; t < confusion.num_classes(); ++t) {
        nlohmann::json row = nlohmann::json::array();
        for (int p = 0; p < confusion.num_classes(); ++p) row.push_back(confusion.count(t, p));
        j.push_back(std::move(row));
    }
}

/// {"accuracy", "total", "macro_precision", "macro_recall", "macro_f1", "weighted_f1",
/// "classes": [names], "per_class": [{"class", "precision", "recall", "f1", "support"}],
/// "confusion": [[counts]]}.
inline void to_json(nlohmann::json& j, const ClassificationReport& report) {
    using detail::json_number;
    j = nlohmann::json::object();
    j["accuracy"] = json_number(report.accuracy);
    j["total"] = report.confusion.total();
    j["macro_precision"] = json_number(report.macro_precision);
    j["macro_recall"] = json_number(report.macro_recall);
    j["macro_f1"] = json_number(report.macro_f1);
    j["weighted_f1"] = json_number(report.weighted_f1);
    j["classes"] = report.class_names;
    nlohmann::json per_class = nlohmann::json::array();
    for (std::size_t c = 0; c < report.per_class.size(); ++c) {
        const ClassMetrics& m = report.per_class[c];
        per_class.push_back({{"class", report.class_names[c]},
                             {"precision", json_number(m.precision)},
                             {"recall", json_number(m.recall)},
                             {"f1", json_number(m.f1)},
                             {"support", m.support}});
    }
    j["per_class"] = std::move(per_class);
    j["confusion"] = report.confusion;
}

}  // namespace facet
