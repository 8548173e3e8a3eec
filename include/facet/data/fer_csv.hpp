// facet/data/fer_csv.hpp — Kaggle's fer2013.csv: a header `emotion,pixels,Usage`, then one row per
// image: the label 0..6 (Kaggle order, which is facet's canonical order), 2304 space-separated
// pixel values 0..255 (48 x 48, row-major), and the split (Training, PublicTest, PrivateTest).
// The ~300 MB file is read at once and parsed by hand-written loops, in parallel over rows.
// Read next: data/image_folder.hpp (the other release of the same data), data/load.hpp.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/data/dataset.hpp"

namespace facet {

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

/// The columns of a FER CSV, found by name in its header (so any column order works).
struct CsvLayout {
    std::size_t columns = 0;
    std::size_t emotion = SIZE_MAX, pixels = SIZE_MAX, usage = SIZE_MAX;
};

/// One row after its first pass: label, split index and the pixel field (parsed in the second
/// pass, straight into its place in the data set), or the reason it is bad.
struct CsvRow {
    int label = -1;
    int split = -1;
    std::string_view pixels;
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

/// First pass over one data row: columns, label and Usage (the pixels are only located).
inline CsvRow parse_csv_row(std::string_view line, const CsvLayout& layout,
                            std::size_t max_line_length) {
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
    const std::string_view emotion = trim(fields[layout.emotion]);
    if (emotion.size() == 1 && emotion[0] >= '0' && emotion[0] < '0' + fer_num_classes)
        row.label = emotion[0] - '0';
    else
        row.label = fer_class_index(emotion);  // a class name is accepted too
    if (row.label < 0) {
        row.error =
            concat("unknown label '", emotion.substr(0, 20), "' (expected 0-6 or a class name)");
        return row;
    }
    row.split = 0;
    if (layout.usage != SIZE_MAX) {
        const std::string_view usage = trim(fields[layout.usage]);
        const std::string name = canonical_split_name(usage);
        row.split = -1;
        for (std::size_t s = 0; s < csv_split_order.size(); ++s)
            if (name == csv_split_order[s]) row.split = static_cast<int>(s);
        if (row.split < 0) {
            row.error = concat("unknown Usage '", usage.substr(0, 20),
                               "' (expected Training, PublicTest or PrivateTest)");
            return row;
        }
    }
    row.pixels = trim(fields[layout.pixels]);
    return row;
}

inline CsvLayout parse_csv_header(std::string_view header, const std::string& name) {
    if (header.size() >= 3 && header.substr(0, 3) == "\xEF\xBB\xBF")
        header.remove_prefix(3);  // BOM
    std::array<std::string_view, 16> fields;
    CsvLayout layout;
    layout.columns = split_fields(header, fields.data(), fields.size());
    check(layout.columns <= fields.size(), name, ":1: too many columns (", layout.columns, ")");
    for (std::size_t c = 0; c < layout.columns; ++c) {
        std::string field(trim(fields[c]));
        for (char& ch : field) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        std::size_t* slot = field == "emotion" || field == "label" ? &layout.emotion
                            : field == "pixels"                    ? &layout.pixels
                            : field == "usage"                     ? &layout.usage
                                                                   : nullptr;
        if (!slot) continue;  // other columns are allowed and ignored
        check(*slot == SIZE_MAX, name, ":1: column '", field, "' appears twice");
        *slot = c;
    }
    check(layout.emotion != SIZE_MAX && layout.pixels != SIZE_MAX, name,
          ":1: header must name the columns emotion and pixels (and optionally Usage), found '",
          std::string(header.substr(0, 80)), "'");
    return layout;
}

}  // namespace detail

/// Parses the text of a FER-2013 CSV. `name` (the file path) and the line number appear in every
/// error. Rows with a wrong column count, a pixel count other than 2304, a pixel outside 0-255 or
/// not a number, an unknown label or an unknown Usage throw a facet::Error, or with
/// options.skip_bad are counted in the result's skip_report. Without a Usage column every row
/// belongs to "train". Splits come back in the order train, val (PublicTest), test (PrivateTest).
inline DataSplits parse_fer_csv(std::string_view text, const std::string& name,
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
    check(number > 0, name, ": empty file (expected the header emotion,pixels,Usage)");
    check(header.size() <= options.max_line_length, name, ":1: header line too long");
    const detail::CsvLayout layout = detail::parse_csv_header(header, name);

    // First pass: columns, labels, splits.
    std::vector<detail::CsvRow> rows(lines.size());
    parallel_for(
        lines.size(),
        [&](std::size_t begin, std::size_t end) {
            for (std::size_t i = begin; i < end; ++i) {
                try {
                    rows[i] = detail::parse_csv_row(lines[i], layout, options.max_line_length);
                } catch (const std::exception& e) {  // exceptions may not leave a parallel region
                    rows[i].error = e.what();
                }
            }
        },
        options.threads);

    // Give every kept row its slot in its split, so the pixels can be parsed in place.
    constexpr std::size_t num_splits = detail::csv_split_order.size();
    constexpr std::size_t dropped = SIZE_MAX;
    std::vector<std::size_t> slot(rows.size(), dropped);
    std::array<std::size_t, num_splits> split_size{};
    std::array<std::array<std::size_t, fer_num_classes>, num_splits> kept_per_class{};
    for (std::size_t i = 0; i < rows.size(); ++i) {
        if (!rows[i].error.empty()) continue;
        const auto s = static_cast<std::size_t>(rows[i].split);
        std::size_t& kept = kept_per_class[s][static_cast<std::size_t>(rows[i].label)];
        if (options.max_per_class && kept >= options.max_per_class) continue;
        ++kept;
        slot[i] = split_size[s]++;
    }
    std::array<Dataset, num_splits> splits;
    for (std::size_t s = 0; s < num_splits; ++s) {
        splits[s].split = std::string(detail::csv_split_order[s]);
        splits[s].source = name;
        splits[s].labels.resize(split_size[s]);
        detail::resize_prefaulted(splits[s].pixels,
                                  checked_mul(split_size[s], fer_image_pixels, "CSV rows"));
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
                        rows[i].pixels, d.pixels.data() + slot[i] * fer_image_pixels,
                        fer_image_pixels);
                } catch (const std::exception& e) {
                    rows[i].error = e.what();
                }
            }
        },
        options.threads);

    // Report bad rows in line order: the first one as an Error, or all of them as skipped.
    DataSplits result;
    result.skip_report.max_reasons = options.max_reported_reasons;
    std::array<std::vector<bool>, num_splits> keep;
    for (std::size_t s = 0; s < num_splits; ++s) keep[s].assign(split_size[s], true);
    for (std::size_t i = 0; i < rows.size(); ++i) {
        if (rows[i].error.empty()) continue;
        std::string message = detail::concat(name, ":", line_numbers[i], ": ", rows[i].error);
        if (!options.skip_bad) throw Error(message);
        result.skip_report.add(std::move(message));
        if (slot[i] != dropped) keep[static_cast<std::size_t>(rows[i].split)][slot[i]] = false;
    }
    for (std::size_t s = 0; s < num_splits; ++s) detail::compact(splits[s], keep[s]);
    for (auto& d : splits)
        if (!d.empty()) result.splits.push_back(std::move(d));
    check(!result.splits.empty(), name, ": no usable rows",
          result.skip_report.skipped ? " (" + result.skip_report.summary() + ")" : std::string());
    return result;
}

/// Reads a FER-2013 CSV file (see parse_fer_csv).
inline DataSplits read_fer_csv(const std::filesystem::path& path, const ReadOptions& options = {}) {
    const FileView file(path, options.max_file_bytes);
    return parse_fer_csv(file.text(), path.string(), options);
}

/// The Kaggle Usage value of a canonical split name ("train" -> "Training", "val" -> "PublicTest",
/// "test" -> "PrivateTest").
inline std::string kaggle_usage_name(const std::string& split) {
    const std::string canonical = canonical_split_name(split);
    if (canonical == "train") return "Training";
    if (canonical == "val") return "PublicTest";
    if (canonical == "test") return "PrivateTest";
    throw Error(detail::concat("no Kaggle Usage for split '", split, "'"));
}

/// Writes data sets of 48 x 48 images as a Kaggle-format CSV (emotion,pixels,Usage), the Usage
/// taken from each set's split name. Written to a temporary name, then renamed.
inline void write_fer_csv(const std::filesystem::path& path,
                          const std::vector<const Dataset*>& sets) {
    std::string out = "emotion,pixels,Usage\n";
    for (const Dataset* d : sets) {
        check(d != nullptr, "write_fer_csv: null data set");
        check(d->height == fer_image_side && d->width == fer_image_side, "write_fer_csv: split '",
              d->split, "' has ", d->height, "x", d->width, " images, the CSV format needs 48x48");
        const std::string usage = kaggle_usage_name(d->split);
        out.reserve(out.size() + d->size() * (fer_image_pixels * 4 + 16));
        for (std::size_t i = 0; i < d->size(); ++i) {
            out += static_cast<char>('0' + d->labels[i]);
            out += ',';
            const std::uint8_t* image = d->image(i);
            for (std::size_t p = 0; p < fer_image_pixels; ++p) {
                if (p) out += ' ';
                const unsigned v = image[p];
                if (v >= 100) out += static_cast<char>('0' + v / 100);
                if (v >= 10) out += static_cast<char>('0' + v / 10 % 10);
                out += static_cast<char>('0' + v % 10);
            }
            out += ',';
            out += usage;
            out += '\n';
        }
    }
    write_file_atomically(path, out.data(), out.size());
}

}  // namespace facet
