// facet/data/split.hpp — stratified_split(): holds a seeded fraction of every class out of a data
// set, for validation that never saw training (model selection, early stopping and learning-rate
// changes must not look at the test data). It records what it did — fraction, seed, counts and a
// fingerprint of the held-out indices — so a model file can say which images it was selected on.
// Read next: data/batch_loader.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "facet/core/crc32.hpp"
#include "facet/core/error.hpp"
#include "facet/core/random.hpp"
#include "facet/data/batch_loader.hpp"
#include "facet/data/dataset.hpp"

namespace facet {

/// What stratified_split() held out.
struct SplitRecord {
    double fraction = 0;
    std::uint64_t seed = 0;
    std::vector<std::size_t> held_out;         ///< indices into the original set, ascending
    std::vector<std::size_t> held_out_counts;  ///< per class
    std::vector<std::size_t> kept_counts;      ///< per class, left for training

    /// CRC-32 (8 hex digits) of the original set's size and the held-out indices, each as 8
    /// little-endian bytes: two runs held out the same images exactly when these agree.
    std::string fingerprint(std::size_t total) const {
        std::uint32_t crc = 0;
        auto add = [&](std::uint64_t v) {
            unsigned char bytes[8];
            for (int b = 0; b < 8; ++b) bytes[b] = static_cast<unsigned char>(v >> (8 * b));
            crc = crc32_update(crc, bytes, 8);
        };
        add(total);
        for (std::size_t i : held_out) add(i);
        char hex[9];
        std::snprintf(hex, sizeof hex, "%08x", crc);
        return hex;
    }
};

/// The two parts of a stratified split and its record.
struct StratifiedSplit {
    Dataset kept;      ///< for training, in the original order
    Dataset held_out;  ///< for validation, in the original order
    SplitRecord record;
};

/// Holds round(fraction x n_c) images of each class c out of `data` (at least one of a class that
/// has two or more, and never all of a class), chosen by a shuffle seeded by (seed, class), so the
/// choice depends on the seed and the data alone. Both parts keep the original order.
inline StratifiedSplit stratified_split(const Dataset& data, double fraction, std::uint64_t seed,
                                        const std::string& held_out_name = "val") {
    check(fraction > 0 && fraction < 1, "stratified_split: fraction must be in (0, 1), got ",
          fraction);
    data.validate();
    const std::size_t classes = data.class_names.size();
    std::vector<std::vector<std::size_t>> by_class(classes);
    for (std::size_t i = 0; i < data.size(); ++i)
        by_class[static_cast<std::size_t>(data.labels[i])].push_back(i);
    StratifiedSplit s;
    s.record.fraction = fraction, s.record.seed = seed;
    s.record.held_out_counts.assign(classes, 0);
    s.record.kept_counts.assign(classes, 0);
    std::vector<char> out(data.size(), 0);
    for (std::size_t c = 0; c < classes; ++c) {
        std::vector<std::size_t>& members = by_class[c];
        const std::size_t n = members.size();
        std::size_t take =
            static_cast<std::size_t>(std::llround(fraction * static_cast<double>(n)));
        if (n >= 2)
            take = std::clamp<std::size_t>(take, 1, n - 1);
        else
            take = 0;
        Rng rng(detail::mix_seed(seed, c, 0x5e1ec7));
        for (std::size_t i = n; i > 1; --i)  // Fisher–Yates
            std::swap(members[i - 1], members[static_cast<std::size_t>(rng.below(i))]);
        for (std::size_t k = 0; k < take; ++k) out[members[k]] = 1;
        s.record.held_out_counts[c] = take;
        s.record.kept_counts[c] = n - take;
    }
    for (Dataset* d : {&s.kept, &s.held_out}) {
        d->height = data.height, d->width = data.width, d->class_names = data.class_names;
        d->source = data.source;
    }
    s.kept.split = data.split;
    s.held_out.split = held_out_name;
    for (std::size_t i = 0; i < data.size(); ++i) {
        (out[i] ? s.held_out : s.kept).add(data.image(i), data.labels[i]);
        if (out[i]) s.record.held_out.push_back(i);
    }
    return s;
}

}  // namespace facet
