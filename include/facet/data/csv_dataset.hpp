// facet/data/csv_dataset.hpp — classification data sets in one CSV file: a header naming the
// columns, then one row per image with its label, either its pixels (gray values 0..255 separated
// by blanks, row-major) or the path of an image file, and optionally its split. Which columns
// those are is the caller's CsvColumns (any column order; other columns are ignored); the class
// names and the image size are the caller's ReadOptions or are found in the data. Kaggle's
// FER-2013 CSV (emotion,pixels,Usage) is one such configuration. The file is read at once and
// parsed by hand-written loops, in parallel over rows. Read next: data/load.hpp.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "facet/core/atomic_file.hpp"
#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/data/dataset.hpp"
#include "facet/data/image_folder.hpp"

namespace facet {

/// The names of the columns a CSV data set is read from (matched in any letter case).
struct CsvColumns {
    std::string label = "label";    ///< a class index 0..K-1 or a class name
    std::string pixels = "pixels";  ///< height * width gray values 0..255, blank-separated
    std::string path = "path";    ///< used when there is no pixels column: an image file, relative
                                  ///< to the CSV file's folder
    std::string split = "split";  ///< optional: train/Training, val/PublicTest, test/PrivateTest;
                                  ///< without it every row belongs to "train"
};

namespace detail {

/// The splits a CSV row can name, in the order DataSplits lists them.
inline constexpr std::array<std::string_view, 3> csv_split_order = {"train", "val", "test"};

inline std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '"'))
        s.remove_prefix(1);
    while (!s.empty() &&
           (s.back() == ' ' || s.back() == '\t' || s.back() == '"' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}

/// Where the columns of a CSV are, found by name in its header.
struct CsvLayout {
    std::size_t columns = 0;
    std::size_t label = SIZE_MAX, data = SIZE_MAX, split = SIZE_MAX;
    bool data_is_path = false;  ///< the data column holds image paths, not pixels
};

/// One row after its first pass: the label text, split index and the pixel or path field (pixels
/// are parsed in a later pass, straight into their place in the data set), or why it is bad.
struct CsvRow {
    std::string_view label_text;
    int label = -1;
    int split = -1;
    std::string_view data;
    std::string error;
};

/// Splits a line on commas into at most `max` fields; returns the number of fields found.
inline std::size_t split_fields(std::string_view line, std::string_view* fields, std::size_t max) {
    std::size_t n = 0;
    std::size_t start = 0;
    while (true) {
        const std::size_t comma = line.find(',', start);
        const std::size_t end = comma == std::string_view::npos ? line.size() : comma;
        if (n < max) fields[n] = line.substr(start, end - start);
        ++n;
        if (comma == std::string_view::npos) return n;
        start = comma + 1;
    }
}

/// Parses exactly `count` integers 0..255 separated by blanks into `out`; returns "" or what is
/// wrong (naming the pixel's position).
inline std::string parse_pixels(std::string_view field, std::uint8_t* out, std::size_t count) {
    const char* p = field.data();
    const char* const end = p + field.size();
    std::size_t n = 0;
    while (true) {
        while (p < end && (*p == ' ' || *p == '\t')) ++p;
        if (p == end) break;
        if (*p < '0' || *p > '9') {
            const char* q = p;
            while (q < end && *q != ' ' && *q != '\t') ++q;
            return concat(
                "pixel ", n + 1, " is not a number ('",
                std::string_view(p, std::min<std::size_t>(static_cast<std::size_t>(q - p), 20)),
                "')");
        }
        unsigned value = 0;
        int digits = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 4) value = value * 10 + static_cast<unsigned>(*p - '0');
            ++digits;
            ++p;
        }
        if (p < end && *p != ' ' && *p != '\t')
            return concat("pixel ", n + 1, " is not a number (it contains '",
                          std::string_view(p, 1), "')");
        if (value > 255 || digits > 3)
            return concat("pixel ", n + 1, " value ",
                          digits > 3 ? std::string(">999") : std::to_string(value),
                          " is outside 0-255");
        if (n == count) return concat("more than ", count, " pixels");
        out[n++] = static_cast<std::uint8_t>(value);
    }
    if (n != count) return concat("found ", n, " pixels, expected ", count);
    return {};
}

/// The number of blank-separated values in a pixel field.
inline std::size_t count_values(std::string_view field) {
    std::size_t n = 0;
    bool in_value = false;
    for (char c : field) {
        const bool blank = c == ' ' || c == '\t';
        n += !blank && !in_value;
        in_value = !blank;
    }
    return n;
}

/// True for a non-empty run of at most 9 digits (a class index).
inline bool is_index(std::string_view s) {
    return !s.empty() && s.size() <= 9 &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

/// First pass over one data row: columns, label text and split (the data are only located).
inline CsvRow parse_csv_row(std::string_view line, const CsvLayout& layout,
                            const CsvColumns& columns, std::size_t max_line_length) {
    CsvRow row;
    if (line.size() > max_line_length) {
        row.error =
            concat("line of ", line.size(), " bytes exceeds the limit of ", max_line_length);
        return row;
    }
    std::array<std::string_view, 16> fields;
    const std::size_t found = split_fields(line, fields.data(), fields.size());
    if (found != layout.columns) {
        row.error = concat("expected ", layout.columns, " columns, found ", found);
        return row;
    }
    row.label_text = trim(fields[layout.label]);
    row.split = 0;
    if (layout.split != SIZE_MAX) {
        const std::string_view value = trim(fields[layout.split]);
        const std::string name = canonical_split_name(value);
        row.split = -1;
        for (std::size_t s = 0; s < csv_split_order.size(); ++s)
            if (name == csv_split_order[s]) row.split = static_cast<int>(s);
        if (row.split < 0) {
            row.error = concat("unknown ", columns.split, " '", value.substr(0, 20),
                               "' (expected train, val, test, or Training, PublicTest, "
                               "PrivateTest)");
            return row;
        }
    }
    row.data = trim(fields[layout.data]);
    return row;
}

inline CsvLayout parse_csv_header(std::string_view header, const std::string& name,
                                  const CsvColumns& columns) {
    if (header.size() >= 3 && header.substr(0, 3) == "\xEF\xBB\xBF")
        header.remove_prefix(3);  // BOM
    std::array<std::string_view, 16> fields;
    CsvLayout layout;
    layout.columns = split_fields(header, fields.data(), fields.size());
    check(layout.columns <= fields.size(), name, ":1: too many columns (", layout.columns, ")");
    std::size_t pixels = SIZE_MAX, path = SIZE_MAX;
    for (std::size_t c = 0; c < layout.columns; ++c) {
        const std::string field = lower_case(std::string(trim(fields[c])));
        std::size_t* slot = field == lower_case(columns.label)    ? &layout.label
                            : field == lower_case(columns.pixels) ? &pixels
                            : field == lower_case(columns.path)   ? &path
                            : field == lower_case(columns.split)  ? &layout.split
                                                                  : nullptr;
        if (!slot) continue;  // other columns are allowed and ignored
        check(*slot == SIZE_MAX, name, ":1: column '", field, "' appears twice");
        *slot = c;
    }
    layout.data = pixels != SIZE_MAX ? pixels : path;
    layout.data_is_path = pixels == SIZE_MAX;
    check(layout.label != SIZE_MAX && layout.data != SIZE_MAX, name,
          ":1: header must name the columns ", columns.label, " and ", columns.pixels, " (or ",
          columns.path, "), and optionally ", columns.split, "; found '",
          std::string(header.substr(0, 80)), "'");
    return layout;
}

/// The classes of a CSV whose caller gave none: the distinct label values of the good rows,
/// sorted (numerically when all are indices, so "10" follows "9").
inline std::vector<std::string> classes_in(const std::vector<CsvRow>& rows) {
    std::vector<std::string> names;
    for (const CsvRow& row : rows)
        if (row.error.empty() && find_class(names, row.label_text) < 0)
            names.emplace_back(row.label_text);
    const bool all_indices = std::all_of(names.begin(), names.end(), is_index);
    std::sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
        if (all_indices) return std::stoul(a) < std::stoul(b);
        return lower_case(a) < lower_case(b);
    });
    return names;
}

/// The label of a row's label text: an index below the number of classes, or a class name.
inline int label_of(std::string_view text, const std::vector<std::string>& class_names) {
    const int by_name = find_class(class_names, text);
    if (by_name >= 0) return by_name;
    if (is_index(text)) {
        const unsigned long index = std::stoul(std::string(text));
        if (index < class_names.size()) return static_cast<int>(index);
    }
    return -1;
}

}  // namespace detail

/// Parses the text of a CSV data set laid out as `columns` say. `name` (the file path) and the
/// line number appear in every error; image paths are relative to name's folder. Rows with a wrong
/// column count, a pixel count other than the image size, a pixel outside 0-255 or not a number,
/// an unknown label or an unknown split throw a facet::Error, or with options.skip_bad are counted
/// in the result's skip_report (image files: as in decode_image_jobs). The image size is options'
/// or, for pixels, the first good row's count as a square (a non-square size must be given); the
/// classes are options' or classes_in the data. Splits come back in the order train, val, test.
inline DataSplits parse_csv_dataset(std::string_view text, const std::string& name,
                                    const CsvColumns& columns = {},
                                    const ReadOptions& options = {}) {
    // Index the lines first (one memchr pass), so rows can be parsed in parallel.
    std::vector<std::string_view> lines;
    std::vector<std::size_t> line_numbers;
    std::size_t pos = 0, number = 0;
    std::string_view header;
    while (pos < text.size()) {
        const void* nl = std::memchr(text.data() + pos, '\n', text.size() - pos);
        const std::size_t end =
            nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - text.data()) : text.size();
        std::string_view line = text.substr(pos, end - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        ++number;
        if (number == 1) {
            header = line;
        } else if (!detail::trim(line).empty()) {  // blank lines (e.g. at the end) are ignored
            check(lines.size() < options.max_samples, name, ":", number, ": more than ",
                  options.max_samples, " rows (the limit)");
            lines.push_back(line);
            line_numbers.push_back(number);
        }
        pos = end + 1;
    }
    check(number > 0, name, ": empty file (expected a header naming the columns ", columns.label,
          " and ", columns.pixels, ")");
    check(header.size() <= options.max_line_length, name, ":1: header line too long");
    const detail::CsvLayout layout = detail::parse_csv_header(header, name, columns);

    // First pass: columns, label texts, splits.
    std::vector<detail::CsvRow> rows(lines.size());
    parallel_for(
        lines.size(),
        [&](std::size_t begin, std::size_t end) {
            for (std::size_t i = begin; i < end; ++i) {
                try {
                    rows[i] =
                        detail::parse_csv_row(lines[i], layout, columns, options.max_line_length);
                } catch (const std::exception& e) {  // exceptions may not leave a parallel region
                    rows[i].error = e.what();
                }
            }
        },
        options.threads);

    // The classes, then each row's label.
    const std::vector<std::string> class_names =
        options.class_names.empty() ? detail::classes_in(rows) : options.class_names;
    for (detail::CsvRow& row : rows) {
        if (!row.error.empty()) continue;
        row.label = detail::label_of(row.label_text, class_names);
        if (row.label < 0)
            row.error =
                detail::concat("unknown label '", row.label_text.substr(0, 20), "' (expected 0-",
                               class_names.size() - 1, " or a class name)");
    }

    // Give every kept row its slot in its split.
    constexpr std::size_t num_splits = detail::csv_split_order.size();
    constexpr std::size_t dropped = SIZE_MAX;
    std::vector<std::size_t> slot(rows.size(), dropped);
    std::array<std::size_t, num_splits> split_size{};
    std::array<std::vector<std::size_t>, num_splits> kept_per_class;
    for (auto& kept : kept_per_class) kept.assign(class_names.size(), 0);
    for (std::size_t i = 0; i < rows.size(); ++i) {
        if (!rows[i].error.empty()) continue;
        const auto s = static_cast<std::size_t>(rows[i].split);
        std::size_t& kept = kept_per_class[s][static_cast<std::size_t>(rows[i].label)];
        if (options.max_per_class && kept >= options.max_per_class) continue;
        ++kept;
        slot[i] = split_size[s]++;
    }
    std::vector<Dataset> splits(num_splits);
    for (std::size_t s = 0; s < num_splits; ++s) {
        splits[s].split = std::string(detail::csv_split_order[s]);
        splits[s].source = name;
        splits[s].class_names = class_names;
    }
    DataSplits result;
    result.skip_report.max_reasons = options.max_reported_reasons;
    auto report_bad_rows = [&](std::array<std::vector<bool>, num_splits>* keep) {
        for (std::size_t i = 0; i < rows.size(); ++i) {
            if (rows[i].error.empty()) continue;
            std::string message = detail::concat(name, ":", line_numbers[i], ": ", rows[i].error);
            if (!options.skip_bad) throw Error(message);
            result.skip_report.add(std::move(message));
            if (keep && slot[i] != dropped)
                (*keep)[static_cast<std::size_t>(rows[i].split)][slot[i]] = false;
        }
    };

    if (layout.data_is_path) {
        // Bad rows first (in line order), then the image files of the good ones.
        report_bad_rows(nullptr);
        const std::filesystem::path folder = std::filesystem::path(name).parent_path();
        std::vector<detail::ImageJob> jobs;  // in line order, as decode_image_jobs reports
        for (std::size_t i = 0; i < rows.size(); ++i)
            if (slot[i] != dropped)
                jobs.push_back({folder / std::string(rows[i].data),
                                static_cast<std::size_t>(rows[i].split), rows[i].label});
        result.splits =
            decode_image_jobs(jobs, std::move(splits), class_names, options, result.skip_report);
    } else {
        // The image size: the caller's, or the first good row's pixel count as a square.
        std::size_t height = options.image_height, width = options.image_width;
        check((height == 0) == (width == 0),
              "ReadOptions: give both image_height and image_width, or neither (got ", height, "x",
              width, ")");
        for (std::size_t i = 0; i < rows.size() && height == 0; ++i) {
            if (!rows[i].error.empty()) continue;
            const std::size_t count = detail::count_values(rows[i].data);
            const auto side = static_cast<std::size_t>(std::llround(std::sqrt(double(count))));
            check(count > 0 && side * side == count, name, ":", line_numbers[i], ": ", count,
                  " pixels are not a square image; give ReadOptions::image_height and "
                  "image_width");
            height = width = side;
        }
        const std::size_t pixels = height * width;
        for (std::size_t s = 0; s < num_splits; ++s) {
            splits[s].height = height;
            splits[s].width = width;
            splits[s].labels.resize(split_size[s]);
            detail::resize_prefaulted(splits[s].pixels,
                                      checked_mul(split_size[s], pixels, "CSV rows"));
        }
        // Second pass: the pixels, written straight into their slots.
        parallel_for(
            rows.size(),
            [&](std::size_t begin, std::size_t end) {
                for (std::size_t i = begin; i < end; ++i) {
                    if (slot[i] == dropped) continue;
                    Dataset& d = splits[static_cast<std::size_t>(rows[i].split)];
                    d.labels[slot[i]] = rows[i].label;
                    try {
                        rows[i].error = detail::parse_pixels(
                            rows[i].data, d.pixels.data() + slot[i] * pixels, pixels);
                    } catch (const std::exception& e) {
                        rows[i].error = e.what();
                    }
                }
            },
            options.threads);
        // Bad rows in line order: the first one as an Error, or all of them as skipped.
        std::array<std::vector<bool>, num_splits> keep;
        for (std::size_t s = 0; s < num_splits; ++s) keep[s].assign(split_size[s], true);
        report_bad_rows(&keep);
        for (std::size_t s = 0; s < num_splits; ++s) {
            detail::compact(splits[s], keep[s]);
            if (!splits[s].empty()) result.splits.push_back(std::move(splits[s]));
        }
    }
    check(!result.splits.empty(), name, ": no usable rows",
          result.skip_report.skipped ? " (" + result.skip_report.summary() + ")" : std::string());
    return result;
}

/// Reads a CSV data set file (see parse_csv_dataset).
inline DataSplits read_csv_dataset(const std::filesystem::path& path,
                                   const CsvColumns& columns = {},
                                   const ReadOptions& options = {}) {
    const FileView file(path, options.max_file_bytes);
    return parse_csv_dataset(file.text(), path.string(), columns, options);
}

/// Writes data sets of one image size as a CSV with the columns `columns` names: label (the class
/// index), pixels, split. The split column holds split_value(set's split), or the split name
/// itself when split_value is empty. Written with write_file_atomically.
inline void write_csv_dataset(
    const std::filesystem::path& path, const std::vector<const Dataset*>& sets,
    const CsvColumns& columns = {},
    const std::function<std::string(const std::string&)>& split_value = {}) {
    check(!sets.empty(), "write_csv_dataset: no data sets");
    std::string out = columns.label + "," + columns.pixels + "," + columns.split + "\n";
    for (const Dataset* d : sets) {
        check(d != nullptr, "write_csv_dataset: null data set");
        check(d->height == sets.front()->height && d->width == sets.front()->width,
              "write_csv_dataset: split '", d->split, "' has ", d->width, "x", d->height,
              " images, split '", sets.front()->split, "' ", sets.front()->width, "x",
              sets.front()->height, " (one CSV holds one image size)");
        const std::string split = split_value ? split_value(d->split) : d->split;
        out.reserve(out.size() + d->size() * (d->image_size() * 4 + 16));
        for (std::size_t i = 0; i < d->size(); ++i) {
            out += std::to_string(d->labels[i]);
            out += ',';
            const std::uint8_t* image = d->image(i);
            for (std::size_t p = 0; p < d->image_size(); ++p) {
                if (p) out += ' ';
                const unsigned v = image[p];
                if (v >= 100) out += static_cast<char>('0' + v / 100);
                if (v >= 10) out += static_cast<char>('0' + v / 10 % 10);
                out += static_cast<char>('0' + v % 10);
            }
            out += ',';
            out += split;
            out += '\n';
        }
    }
    write_file_atomically(path, out.data(), out.size());
}

}  // namespace facet
