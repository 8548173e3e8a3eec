// fer/fer_csv.hpp — Kaggle's fer2013.csv as one configuration of facet's CSV reader: a header
// `emotion,pixels,Usage`, then one row per image: the label 0..6 (Kaggle's numbering, fer's
// canonical order) or a class name, 2304 space-separated pixel values 0..255 (48 x 48, row-major),
// and the split (Training, PublicTest, PrivateTest). Also the writer of that format, and
// load_fer_data, which reads either release (the CSV or the image folders). Read next:
// synthetic_faces.hpp (the stand-in when the data set is absent).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <facet/core/error.hpp>
#include <facet/data/csv_dataset.hpp>
#include <facet/data/dataset.hpp>
#include <facet/data/load.hpp>

#include "emotions.hpp"

namespace fer {

/// The columns of Kaggle's CSV.
inline facet::CsvColumns fer_csv_columns() {
    facet::CsvColumns columns;
    columns.label = "emotion";
    columns.pixels = "pixels";
    columns.split = "Usage";
    return columns;
}

/// Parses the text of a FER-2013 CSV (facet::parse_csv_dataset with FER's columns, classes and
/// 48 x 48 size). `name` (the file path) and the line number appear in every error.
inline facet::DataSplits parse_fer_csv(std::string_view text, const std::string& name,
                                       const facet::ReadOptions& options = {}) {
    return facet::parse_csv_dataset(text, name, fer_csv_columns(), fer_read_options(options));
}

/// Reads a FER-2013 CSV file (see parse_fer_csv).
inline facet::DataSplits read_fer_csv(const std::filesystem::path& path,
                                      const facet::ReadOptions& options = {}) {
    return facet::read_csv_dataset(path, fer_csv_columns(), fer_read_options(options));
}

/// Either release of FER-2013 (or any data set laid out like one): a folder of split and class
/// folders, or a Kaggle-format CSV file.
inline facet::DataSplits load_fer_data(const std::filesystem::path& path,
                                       const facet::ReadOptions& options = {}) {
    return facet::load_dataset(path, fer_read_options(options), fer_csv_columns());
}

/// The Kaggle Usage value of a canonical split name ("train" -> "Training", "val" -> "PublicTest",
/// "test" -> "PrivateTest").
inline std::string kaggle_usage_name(const std::string& split) {
    const std::string canonical = facet::canonical_split_name(split);
    if (canonical == "train") return "Training";
    if (canonical == "val") return "PublicTest";
    if (canonical == "test") return "PrivateTest";
    throw facet::Error(facet::detail::concat("no Kaggle Usage for split '", split, "'"));
}

/// Writes data sets of 48 x 48 images as a Kaggle-format CSV (emotion,pixels,Usage), the Usage
/// taken from each set's split name; written with facet::write_file_atomically.
inline void write_fer_csv(const std::filesystem::path& path,
                          const std::vector<const facet::Dataset*>& sets) {
    for (const facet::Dataset* d : sets) {
        facet::check(d != nullptr, "write_fer_csv: null data set");
        facet::check(d->height == fer_image_side && d->width == fer_image_side,
                     "write_fer_csv: split '", d->split, "' has ", d->height, "x", d->width,
                     " images, the CSV format needs 48x48");
        kaggle_usage_name(d->split);  // an Error before anything is written
    }
    facet::write_csv_dataset(path, sets, fer_csv_columns(), kaggle_usage_name);
}

}  // namespace fer
