// facet/data/image_folder.hpp — classification data sets stored as image files in folders:
// root/<split>/<class>/<image>, with split folders train, test and optionally val / validation /
// PublicTest / PrivateTest (canonical_split_name), or root/<class>/<image>, read as the single
// split "train". The classes are the caller's (ReadOptions::class_names, folder names matched in
// any letter case) or the class folder names found, sorted. Images of any format and colour
// become gray; their size is the caller's or the first image's, and an image of another size is
// resized or refused (ReadOptions::resize). Files are decoded in parallel. decode_image_jobs, the
// decoding step, is shared with the CSV reader's path column. Read next: data/csv_dataset.hpp.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
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

/// The sub-folders (or the regular files) of `folder`, sorted by name (directory order is not
/// reproducible), hidden ones left out.
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

/// The names joined by spaces, for messages.
inline std::string joined(const std::vector<std::string>& names) {
    std::string s;
    for (const auto& n : names) {
        if (!s.empty()) s += ' ';
        s += n;
    }
    return s;
}

/// The lower-case form of a name (class names are matched in any letter case).
inline std::string lower_case(std::string s) {
    for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
}

/// One image file to decode: its path, split slot and label.
struct ImageJob {
    std::filesystem::path path;
    std::size_t split = 0;
    int label = 0;
};

/// The image size the data set will have: the caller's, else that of the first image of `jobs`
/// that decodes (0 x 0 when none does; the decoding pass then reports them all).
inline std::pair<std::size_t, std::size_t> data_set_image_size(const std::vector<ImageJob>& jobs,
                                                               const ReadOptions& options,
                                                               const ImageLimits& limits) {
    check((options.image_height == 0) == (options.image_width == 0),
          "ReadOptions: give both image_height and image_width, or neither (got ",
          options.image_height, "x", options.image_width, ")");
    if (options.image_height) return {options.image_height, options.image_width};
    for (const ImageJob& job : jobs) {
        try {
            const GrayImage first = load_image(job.path, limits);
            return {first.height, first.width};
        } catch (const Error&) {
            if (!options.skip_bad) throw;  // the first bad file in path order: report it now
        }
    }
    return {0, 0};
}

}  // namespace detail

/// Decodes the image files of `jobs` into `splits` (whose split and source are set; jobs[i].split
/// indexes them), every split getting `class_names` and one image size (detail::
/// data_set_image_size). Each image is written straight into its slot, so the result does not
/// depend on timing. A bad image (unreadable, corrupt, oversized, or of another size without
/// options.resize) is an Error, or with options.skip_bad a line in `skips` and left out. Empty
/// splits are dropped.
inline std::vector<Dataset> decode_image_jobs(const std::vector<detail::ImageJob>& jobs,
                                              std::vector<Dataset> splits,
                                              const std::vector<std::string>& class_names,
                                              const ReadOptions& options, SkipReport& skips) {
    const ImageLimits limits{options.max_image_file_bytes, options.max_image_side,
                             options.max_image_pixels};
    // Plain variables, not a structured binding: lambdas capture those only from clang 16 on.
    const std::pair<std::size_t, std::size_t> size =
        detail::data_set_image_size(jobs, options, limits);
    const std::size_t height = size.first, width = size.second;
    const std::size_t pixels = height * width;
    std::vector<std::size_t> slot(jobs.size());
    std::vector<std::size_t> split_size(splits.size(), 0);
    for (std::size_t i = 0; i < jobs.size(); ++i) slot[i] = split_size[jobs[i].split]++;
    for (std::size_t s = 0; s < splits.size(); ++s) {
        splits[s].height = height;
        splits[s].width = width;
        splits[s].class_names = class_names;
        splits[s].labels.resize(split_size[s]);
        detail::resize_prefaulted(splits[s].pixels, checked_mul(split_size[s], pixels, "images"));
    }
    std::vector<std::string> errors(jobs.size());
    parallel_for(
        jobs.size(),
        [&](std::size_t begin, std::size_t end) {
            for (std::size_t i = begin; i < end; ++i) {
                Dataset& d = splits[jobs[i].split];
                d.labels[slot[i]] = jobs[i].label;
                try {
                    const GrayImage image = load_image(jobs[i].path, limits);
                    std::uint8_t* out = d.pixels.data() + slot[i] * pixels;
                    if (image.height == height && image.width == width) {
                        std::copy(image.pixels.begin(), image.pixels.end(), out);
                    } else {
                        check(options.resize, jobs[i].path.string(), ": image of ", image.width,
                              "x", image.height, " pixels; the data set's are ", width, "x", height,
                              " (ReadOptions::resize resizes them)");
                        const auto fitted = fit_gray(image, width, height);
                        std::copy(fitted.begin(), fitted.end(), out);
                    }
                } catch (const std::exception& e) {  // exceptions may not leave a parallel region
                    errors[i] = e.what();
                    if (errors[i].empty()) errors[i] = jobs[i].path.string() + ": unreadable";
                }
            }
        },
        options.threads);

    // Report bad images in job order: the first as an Error, or all of them as skipped.
    std::vector<std::vector<bool>> keep(splits.size());
    for (std::size_t s = 0; s < splits.size(); ++s) keep[s].assign(split_size[s], true);
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        if (errors[i].empty()) continue;
        if (!options.skip_bad) throw Error(errors[i]);
        skips.add(errors[i]);
        keep[jobs[i].split][slot[i]] = false;
    }
    std::vector<Dataset> kept;
    for (std::size_t s = 0; s < splits.size(); ++s) {
        detail::compact(splits[s], keep[s]);
        if (!splits[s].empty()) kept.push_back(std::move(splits[s]));
    }
    return kept;
}

/// Reads `root/<split>/<class>/*` (or `root/<class>/*` as split "train"). The top level is a split
/// layout when any folder there has a split name. An unknown split folder, a class folder not in
/// options.class_names (when given), an unreadable, corrupt or oversized image (refused from its
/// header), an image of another size without options.resize, or an empty result is a facet::Error
/// naming the path; with options.skip_bad bad images and unknown folders are skipped and listed in
/// the result's skip_report. Within a split, images are ordered by class, then by file name. Files
/// without an image extension are ignored.
inline DataSplits read_image_folder(const std::filesystem::path& root,
                                    const ReadOptions& options = {}) {
    std::error_code ec;
    check(std::filesystem::is_directory(root, ec), root.string(), ": not a folder");
    DataSplits result;
    result.skip_report.max_reasons = options.max_reported_reasons;
    const bool classes_given = !options.class_names.empty();

    // Decide the layout: split folders holding class folders, or class folders directly.
    const auto top = detail::sorted_entries(root, true);
    std::vector<std::pair<std::string, std::filesystem::path>> split_folders;
    for (const auto& dir : top) {
        const std::string split = canonical_split_name(dir.filename().string());
        if (split.empty()) continue;
        for (const auto& [other, other_dir] : split_folders)
            check(other != split, root.string(), ": folders '", other_dir.filename().string(),
                  "' and '", dir.filename().string(), "' both hold split '", split, "'");
        split_folders.emplace_back(split, dir);
    }
    if (split_folders.empty()) {
        if (!top.empty()) split_folders.emplace_back("train", root);
    } else {
        for (const auto& dir : top) {
            const std::string name = dir.filename().string();
            if (!canonical_split_name(name).empty()) continue;
            check(!(classes_given && find_class(options.class_names, name) >= 0), root.string(),
                  ": mixes split folders and class folders at the top level");
            if (!options.skip_bad)
                throw Error(detail::concat(dir.string(),
                                           ": unknown folder beside the split folders (expected "
                                           "train, val or test, or Training, PublicTest, "
                                           "PrivateTest)"));
            result.skip_report.add(dir.string() + ": unknown folder, skipped");
        }
    }
    check(!split_folders.empty(), root.string(), ": empty data set (no split or class folders)");
    // Canonical split order: train, val, test.
    auto rank = [](const std::string& s) { return s == "train" ? 0 : s == "val" ? 1 : 2; };
    std::sort(split_folders.begin(), split_folders.end(),
              [&](const auto& a, const auto& b) { return rank(a.first) < rank(b.first); });

    // The classes: the caller's, or every class folder name found (in any split), sorted.
    std::vector<std::vector<std::filesystem::path>> class_dirs(split_folders.size());
    for (std::size_t s = 0; s < split_folders.size(); ++s)
        class_dirs[s] = detail::sorted_entries(split_folders[s].second, true);
    std::vector<std::string> class_names = options.class_names;
    if (!classes_given) {
        for (const auto& dirs : class_dirs)
            for (const auto& dir : dirs)
                if (find_class(class_names, dir.filename().string()) < 0)
                    class_names.push_back(dir.filename().string());
        std::sort(class_names.begin(), class_names.end(), [](const auto& a, const auto& b) {
            return detail::lower_case(a) < detail::lower_case(b);
        });
    }

    // List the images of every class folder.
    std::vector<detail::ImageJob> jobs;
    for (std::size_t s = 0; s < split_folders.size(); ++s) {
        std::vector<std::pair<int, std::filesystem::path>> class_folders;
        for (const auto& dir : class_dirs[s]) {
            const int label = find_class(class_names, dir.filename().string());
            if (label >= 0) {
                class_folders.emplace_back(label, dir);
            } else if (options.skip_bad) {
                result.skip_report.add(dir.string() + ": unknown class folder, skipped");
            } else {
                throw Error(detail::concat(dir.string(), ": unknown class folder (expected one of ",
                                           detail::joined(class_names), ", any case)"));
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

    std::vector<Dataset> splits(split_folders.size());
    for (std::size_t s = 0; s < splits.size(); ++s) {
        splits[s].split = split_folders[s].first;
        splits[s].source = split_folders[s].second.string();
    }
    result.splits =
        decode_image_jobs(jobs, std::move(splits), class_names, options, result.skip_report);
    check(!result.splits.empty(), root.string(), ": empty data set (no readable images)",
          result.skip_report.skipped ? " (" + result.skip_report.summary() + ")" : std::string());
    return result;
}

}  // namespace facet
