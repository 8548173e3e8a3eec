// facet/data/image_folder.hpp — the image-folder release of FER-2013 (and any data set laid out
// the same way): root/<split>/<class>/<image>, with split folders train, test and optionally
// val / validation / PublicTest / PrivateTest, and class folders named after the seven classes in
// any letter case. A root holding class folders directly is read as the single split "train".
// Images of any size and colour become 48 x 48 gray (data/image.hpp); files are decoded in
// parallel. Read next: data/load.hpp.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/data/dataset.hpp"
#include "facet/data/image.hpp"

namespace facet {

namespace detail {

inline bool is_hidden(const std::filesystem::path& p) {
    const std::string name = p.filename().string();
    return !name.empty() && name[0] == '.';
}

/// True for the file extensions stb_image decodes (any letter case).
inline bool has_image_extension(const std::filesystem::path& p) {
    std::string ext = p.extension().string();
    for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    for (const char* known :
         {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tga", ".pgm", ".ppm", ".pnm"})
        if (ext == known) return true;
    return false;
}

/// The sub-folders of `folder`, sorted by name (directory order is not reproducible), hidden
/// ones left out.
inline std::vector<std::filesystem::path> sorted_entries(const std::filesystem::path& folder,
                                                         bool want_directories) {
    std::error_code ec;
    std::filesystem::directory_iterator it(folder, ec);
    check(!ec, folder.string(), ": cannot list folder (", ec.message(), ")");
    std::vector<std::filesystem::path> out;
    for (const auto& entry : it) {
        if (is_hidden(entry.path())) continue;
        const bool is_dir = entry.is_directory(ec);
        if (ec) continue;
        if (want_directories ? is_dir : (!is_dir && entry.is_regular_file(ec)))
            out.push_back(entry.path());
    }
    std::sort(out.begin(), out.end());
    return out;
}

/// One image to decode: its path, split slot and label.
struct ImageJob {
    std::filesystem::path path;
    std::size_t split = 0;
    int label = 0;
};

inline std::string expected_class_folders() {
    std::string s;
    for (auto n : fer_class_names) {
        if (!s.empty()) s += ' ';
        s.append(n);
    }
    return s;
}

}  // namespace detail

/// Reads `root/<split>/<class>/*` (or `root/<class>/*` as split "train"). An unknown class or split
/// folder, an unreadable or corrupt image, an oversized image (refused from its header) or an
/// empty result is a facet::Error naming the path; with options.skip_bad bad images and unknown
/// folders are skipped and listed in the result's skip_report. Within a split, images are ordered
/// by class (canonical order), then by file name. Files without an image extension are ignored.
inline DataSplits read_image_folder(const std::filesystem::path& root,
                                    const ReadOptions& options = {}) {
    std::error_code ec;
    check(std::filesystem::is_directory(root, ec), root.string(), ": not a folder");
    DataSplits result;
    result.skip_report.max_reasons = options.max_reported_reasons;

    // Decide the layout: split folders holding class folders, or class folders directly.
    const auto top = detail::sorted_entries(root, true);
    std::vector<std::pair<std::string, std::filesystem::path>> split_folders;
    bool classes_at_root = false;
    for (const auto& dir : top) {
        const std::string name = dir.filename().string();
        const std::string split = canonical_split_name(name);
        if (!split.empty()) {
            for (const auto& [other, other_dir] : split_folders)
                check(other != split, root.string(), ": folders '", other_dir.filename().string(),
                      "' and '", name, "' both hold split '", split, "'");
            split_folders.emplace_back(split, dir);
        } else if (fer_class_index(name) >= 0) {
            classes_at_root = true;
        } else if (options.skip_bad) {
            result.skip_report.add(dir.string() + ": unknown folder, skipped");
        } else {
            throw Error(detail::concat(dir.string(),
                                       ": unknown folder (expected split folders train, "
                                       "test, val or class folders ",
                                       detail::expected_class_folders(), ")"));
        }
    }
    check(!(classes_at_root && !split_folders.empty()), root.string(),
          ": mixes split folders and class folders at the top level");
    if (classes_at_root) split_folders.emplace_back("train", root);
    check(!split_folders.empty(), root.string(), ": empty data set (no split or class folders)");
    // Canonical split order: train, val, test.
    auto rank = [](const std::string& s) { return s == "train" ? 0 : s == "val" ? 1 : 2; };
    std::sort(split_folders.begin(), split_folders.end(),
              [&](const auto& a, const auto& b) { return rank(a.first) < rank(b.first); });

    // List the images of every class folder.
    std::vector<detail::ImageJob> jobs;
    for (std::size_t s = 0; s < split_folders.size(); ++s) {
        std::vector<std::pair<int, std::filesystem::path>> class_folders;
        for (const auto& dir : detail::sorted_entries(split_folders[s].second, true)) {
            const int label = fer_class_index(dir.filename().string());
            if (label >= 0) {
                class_folders.emplace_back(label, dir);
            } else if (options.skip_bad) {
                result.skip_report.add(dir.string() + ": unknown class folder, skipped");
            } else {
                throw Error(detail::concat(dir.string(), ": unknown class folder (expected one of ",
                                           detail::expected_class_folders(), ", any case)"));
            }
        }
        std::stable_sort(class_folders.begin(), class_folders.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        for (const auto& [label, dir] : class_folders) {
            std::size_t taken = 0;
            for (const auto& file : detail::sorted_entries(dir, false)) {
                if (!detail::has_image_extension(file)) continue;
                if (options.max_per_class && taken >= options.max_per_class) break;
                ++taken;
                check(jobs.size() < options.max_samples, root.string(), ": more than ",
                      options.max_samples, " images (the limit)");
                jobs.push_back({file, s, label});
            }
        }
    }

    // Decode in parallel, each image straight into its slot of its split, so the result does not
    // depend on timing and no pixel is copied twice.
    std::vector<Dataset> splits(split_folders.size());
    std::vector<std::size_t> slot(jobs.size());
    std::vector<std::size_t> split_size(splits.size(), 0);
    for (std::size_t i = 0; i < jobs.size(); ++i) slot[i] = split_size[jobs[i].split]++;
    for (std::size_t s = 0; s < splits.size(); ++s) {
        splits[s].split = split_folders[s].first;
        splits[s].source = split_folders[s].second.string();
        splits[s].labels.resize(split_size[s]);
        detail::resize_prefaulted(splits[s].pixels,
                                  checked_mul(split_size[s], fer_image_pixels, "images"));
    }
    const ImageLimits limits{options.max_image_file_bytes, options.max_image_side,
                             options.max_image_pixels};
    std::vector<std::string> errors(jobs.size());
    parallel_for(
        jobs.size(),
        [&](std::size_t begin, std::size_t end) {
            for (std::size_t i = begin; i < end; ++i) {
                Dataset& d = splits[jobs[i].split];
                d.labels[slot[i]] = jobs[i].label;
                try {
                    const GrayImage image = load_image(jobs[i].path, limits);
                    const auto square = to_square_gray(image, fer_image_side);
                    std::copy(square.begin(), square.end(),
                              d.pixels.data() + slot[i] * fer_image_pixels);
                } catch (const std::exception& e) {  // exceptions may not leave a parallel region
                    errors[i] = e.what();
                    if (errors[i].empty()) errors[i] = jobs[i].path.string() + ": unreadable";
                }
            }
        },
        options.threads);

    // Report bad images in path order: the first as an Error, or all of them as skipped.
    std::vector<std::vector<bool>> keep(splits.size());
    for (std::size_t s = 0; s < splits.size(); ++s) keep[s].assign(split_size[s], true);
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        if (errors[i].empty()) continue;
        if (!options.skip_bad) throw Error(errors[i]);
        result.skip_report.add(errors[i]);
        keep[jobs[i].split][slot[i]] = false;
    }
    for (std::size_t s = 0; s < splits.size(); ++s) detail::compact(splits[s], keep[s]);
    for (auto& d : splits)
        if (!d.empty()) result.splits.push_back(std::move(d));
    check(!result.splits.empty(), root.string(), ": empty data set (no readable images)",
          result.skip_report.skipped ? " (" + result.skip_report.summary() + ")" : std::string());
    return result;
}

}  // namespace facet
