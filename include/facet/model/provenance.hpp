// facet/model/provenance.hpp — Provenance: where a saved model came from (the command line, the
// library version, a fingerprint of the training data, its validation metrics, free notes).
// save() stores it in the model file and load_model_file() returns it (model/serialize.hpp).
// Read next: model/serialize.hpp.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace facet {

/// Where a model came from. Every field is optional; save() fills library_version with
/// facet::version_string when it is empty.
struct Provenance {
    std::string command_line;      ///< the command that trained the model
    std::string library_version;   ///< the facet version that wrote the file, e.g. "0.1.0"
    std::string data_fingerprint;  ///< identifies the training data, e.g. a hash of its files
    /// Validation metrics of the saved weights, e.g. {"val_accuracy", 0.66}.
    std::vector<std::pair<std::string, double>> metrics;
    /// Anything else, e.g. {"git_commit", "..."}, {"host", "..."}.
    std::vector<std::pair<std::string, std::string>> notes;

    /// The metric stored under `key`, or `fallback`.
    double metric(const std::string& key, double fallback = 0) const {
        for (const auto& [k, v] : metrics)
            if (k == key) return v;
        return fallback;
    }
    /// The note stored under `key`, or `fallback`.
    std::string note(const std::string& key, const std::string& fallback = "") const {
        for (const auto& [k, v] : notes)
            if (k == key) return v;
        return fallback;
    }
    bool empty() const {
        return command_line.empty() && library_version.empty() && data_fingerprint.empty() &&
               metrics.empty() && notes.empty();
    }
    bool operator==(const Provenance&) const = default;
};

}  // namespace facet
