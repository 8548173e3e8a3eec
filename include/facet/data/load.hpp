// facet/data/load.hpp — the one entry point for data: given a path that is an image folder or a
// CSV file, return its splits. Read next: data/batch_loader.hpp (turning a split into normalised,
// augmented mini-batches).
#pragma once

#include <filesystem>
#include <string>

#include "facet/core/error.hpp"
#include "facet/data/csv_dataset.hpp"
#include "facet/data/dataset.hpp"
#include "facet/data/image_folder.hpp"

namespace facet {

/// Loads a data set from `path`: a folder is read with read_image_folder
/// (`root/<split>/<class>/*` or `root/<class>/*`), a file with read_csv_dataset and `columns`.
/// Errors name the path; a missing path says so.
inline DataSplits load_dataset(const std::filesystem::path& path, const ReadOptions& options = {},
                               const CsvColumns& columns = {}) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    check(!ec && std::filesystem::exists(status), path.string(),
          ": no such file or folder (expected a CSV file or an image folder)");
    if (std::filesystem::is_directory(status)) return read_image_folder(path, options);
    check(std::filesystem::is_regular_file(status), path.string(),
          ": neither a regular file nor a folder");
    return read_csv_dataset(path, columns, options);
}

}  // namespace facet
