// facet/data/dataset.hpp — facet::Dataset: N grayscale images of one size stored as bytes in one
// contiguous vector, their integer labels (indices into the data set's class names), and the split
// they belong to; the options every reader takes (class names, image size, limits); plus
// class-distribution statistics and the record of samples a reader skipped. Read next:
// data/image_folder.hpp and data/csv_dataset.hpp (the readers), data/load.hpp (the one entry
// point), data/batch_loader.hpp (mini-batches for training).
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "facet/core/atomic_file.hpp"
#include "facet/core/error.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace facet {

/// The index of `name` in `class_names`, compared in any letter case ("Happy" finds "happy"), or
/// -1 when it is not there.
inline int find_class(const std::vector<std::string>& class_names, std::string_view name) {
    for (std::size_t c = 0; c < class_names.size(); ++c) {
        const std::string& known = class_names[c];
        if (known.size() == name.size() &&
            std::equal(known.begin(), known.end(), name.begin(), [](char a, char b) {
                return std::tolower(static_cast<unsigned char>(a)) ==
                       std::tolower(static_cast<unsigned char>(b));
            }))
            return static_cast<int>(c);
    }
    return -1;
}

/// The whole content of a file as bytes in a string (core/atomic_file.hpp's read_whole_file), or
/// an Error naming it when it cannot be read, is not a regular file or is larger than `max_bytes`
/// (checked before reading).
inline std::string read_file_contents(const std::filesystem::path& path, std::size_t max_bytes) {
    const std::vector<unsigned char> bytes = read_whole_file(path, max_bytes);
    return std::string(bytes.begin(), bytes.end());
}

/// A read-only view of a whole file: memory-mapped where the platform allows (no copy, no page
/// faults on fresh memory), otherwise read into a buffer.
class FileView {
  public:
    /// Opens `path`; an Error names it when it cannot be read or exceeds `max_bytes`.
    FileView(const std::filesystem::path& path, std::size_t max_bytes) {
        std::error_code ec;
        const auto size = std::filesystem::file_size(path, ec);
        check(!ec, path.string(), ": cannot read (", ec.message(), ")");
        check(size <= max_bytes, path.string(), ": ", size, " bytes exceeds the limit of ",
              max_bytes);
#if defined(__unix__) || defined(__APPLE__)
        if (size > 0) {
            const int fd = ::open(path.c_str(), O_RDONLY);
            check(fd >= 0, path.string(), ": cannot open for reading");
            void* p =
                ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
            ::close(fd);
            if (p != MAP_FAILED) {
                mapped_ = p;
                text_ =
                    std::string_view(static_cast<const char*>(p), static_cast<std::size_t>(size));
                return;
            }
        }
#endif
        buffer_ = read_file_contents(path, max_bytes);
        text_ = buffer_;
    }
    FileView(const FileView&) = delete;
    FileView& operator=(const FileView&) = delete;
    ~FileView() {
#if defined(__unix__) || defined(__APPLE__)
        if (mapped_) ::munmap(mapped_, text_.size());
#endif
    }
    /// The bytes of the file.
    std::string_view text() const {
        return text_;
    }

  private:
    void* mapped_ = nullptr;
    std::string buffer_;
    std::string_view text_;
};

namespace detail {
/// Resizes an empty vector to n elements with its memory mapped in one system call. Why: where
/// every page fault traps to a hypervisor (on our test machine about 25 us each), filling 80 MB
/// page by page costs a second or more; madvise(MADV_POPULATE_WRITE) (Linux >= 5.14) maps all
/// the pages at once. Elsewhere this is a plain resize.
template <typename T>
void resize_prefaulted(std::vector<T>& v, std::size_t n) {
#if defined(__linux__)
    constexpr int populate_write = 23;  // MADV_POPULATE_WRITE, missing from older headers
    const std::size_t bytes = checked_mul(n, sizeof(T), "buffer");
    if (v.empty() && bytes >= (std::size_t{1} << 20)) {
        v.reserve(n);
        const std::size_t page = 4096;
        const auto begin = (reinterpret_cast<std::uintptr_t>(v.data()) + page - 1) & ~(page - 1);
        const auto end = (reinterpret_cast<std::uintptr_t>(v.data()) + bytes) & ~(page - 1);
        if (end > begin)  // failure (an old kernel) only loses the speed-up
            (void)::madvise(reinterpret_cast<void*>(begin), end - begin, populate_write);
    }
#endif
    v.resize(n);
}

}  // namespace detail

/// The canonical split name for a CSV Usage value or a split folder name, in any letter case:
/// Training/train -> "train"; PublicTest/val/validation -> "val"; PrivateTest/test -> "test".
/// Returns "" for a name that is none of these.
inline std::string canonical_split_name(std::string_view name) {
    std::string lower(name);
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (lower == "training" || lower == "train") return "train";
    if (lower == "publictest" || lower == "val" || lower == "validation") return "val";
    if (lower == "privatetest" || lower == "test" || lower == "testing") return "test";
    return {};
}

/// What the readers are told about the data set, and the limits and policies they share.
/// Everything read from outside is bounded so that a corrupt or hostile file gives an Error instead
/// of a huge allocation.
struct ReadOptions {
    /// The classes in label order (matched in any letter case). Empty: the classes found in the
    /// data, sorted (class folder names; the distinct values of a CSV's label column).
    std::vector<std::string> class_names;
    std::size_t image_height = 0;  ///< 0 (with image_width 0): the size of the first image read
    std::size_t image_width = 0;   ///< 0 (with image_height 0): the size of the first image read
    /// An image file of another size: resized (its central region of the data set's aspect ratio,
    /// resampled) when true, refused (an Error, or skipped with skip_bad) when false.
    bool resize = false;
    bool skip_bad = false;  ///< skip bad samples (counted in DataSplits::skip_report)
    std::size_t max_reported_reasons = 5;
    std::size_t max_samples = 10'000'000;                 ///< CSV rows or image files, per source
    std::size_t max_line_length = 1 << 16;                ///< CSV bytes per line
    std::size_t max_file_bytes = std::size_t{4} << 30;    ///< whole CSV file
    std::size_t max_image_file_bytes = 64 << 20;          ///< one image file
    std::size_t max_image_side = 8192;                    ///< width or height of an image file
    std::size_t max_image_pixels = std::size_t{1} << 26;  ///< width * height of an image file
    std::size_t max_per_class = 0;  ///< keep at most this many images per class and split (0: all)
    int threads = 0;                ///< decoding/parsing threads (0: facet::num_threads())
};

/// N images of height x width bytes, row-major, one after the other, with one label each.
struct Dataset {
    std::string split;   ///< "train", "val", "test", or e.g. "synthetic-train"
    std::string source;  ///< where it came from (a file or folder), for messages
    std::size_t height = 0;
    std::size_t width = 0;
    std::vector<std::uint8_t> pixels;      ///< size() * height * width bytes
    std::vector<int> labels;               ///< one per image, in [0, class_names.size())
    std::vector<std::string> class_names;  ///< label l is class_names[l]

    /// Number of images.
    std::size_t size() const { return labels.size(); }
    /// True when there are no images.
    bool empty() const { return labels.empty(); }
    /// Number of classes.
    int num_classes() const { return static_cast<int>(class_names.size()); }
    /// Pixels per image.
    std::size_t image_size() const { return height * width; }

    /// The first byte of image i (row-major height x width).
    const std::uint8_t* image(std::size_t i) const {
        check(i < size(), "Dataset '", split, "': image ", i, " out of range (", size(),
              " images)");
        return pixels.data() + i * image_size();
    }

    /// Appends one image of height x width bytes with its label (set the size and the class names
    /// first).
    void add(const std::uint8_t* image_pixels, int label) {
        check(height > 0 && width > 0, "Dataset '", split, "': set height and width before add");
        check(label >= 0 && label < num_classes(), "Dataset '", split, "': label ", label,
              " outside [0, ", num_classes(), ")");
        pixels.insert(pixels.end(), image_pixels, image_pixels + image_size());
        labels.push_back(label);
    }

    /// Number of images of each class.
    std::vector<std::size_t> class_counts() const {
        std::vector<std::size_t> counts(class_names.size(), 0);
        for (int l : labels) ++counts[static_cast<std::size_t>(l)];
        return counts;
    }

    /// Throws a facet::Error naming the split when sizes or labels are inconsistent.
    void validate() const {
        check(height > 0 && width > 0, "Dataset '", split, "': empty image size");
        check(pixels.size() == checked_mul(size(), image_size(), "Dataset"), "Dataset '", split,
              "': ", pixels.size(), " pixel bytes for ", size(), " images of ", height, "x", width);
        for (std::size_t i = 0; i < labels.size(); ++i)
            check(labels[i] >= 0 && labels[i] < num_classes(), "Dataset '", split, "': image ", i,
                  " has label ", labels[i], " outside [0, ", num_classes(), ")");
    }
};

namespace detail {
/// Removes the images whose `keep` flag is false, preserving the order of the others.
inline void compact(Dataset& d, const std::vector<bool>& keep) {
    std::size_t out = 0;
    for (std::size_t i = 0; i < d.size(); ++i) {
        if (!keep[i]) continue;
        if (out != i) {
            std::copy_n(d.pixels.data() + i * d.image_size(), d.image_size(),
                        d.pixels.data() + out * d.image_size());
            d.labels[out] = d.labels[i];
        }
        ++out;
    }
    d.labels.resize(out);
    d.pixels.resize(out * d.image_size());
}

}  // namespace detail

/// Counts and fractions of each class in a data set.
struct ClassDistribution {
    std::string split;
    std::vector<std::string> class_names;
    std::vector<std::size_t> counts;
    std::vector<double> fractions;  ///< counts / total (0 when the set is empty)
    std::size_t total = 0;

    /// A printable table: one row per class with count, percentage and a bar, then the total.
    std::string table() const {
        std::string out = "class distribution of '" + split + "'\n";
        std::size_t name_width = 5;
        for (const auto& n : class_names) name_width = std::max(name_width, n.size());
        char line[256];
        for (std::size_t c = 0; c < class_names.size(); ++c) {
            const int bar = static_cast<int>(fractions[c] * 50.0 + 0.5);
            std::snprintf(line, sizeof line, "  %-*s %8zu %6.2f%%  ", static_cast<int>(name_width),
                          class_names[c].c_str(), counts[c], 100.0 * fractions[c]);
            out += line;
            out += std::string(static_cast<std::size_t>(bar), '#');
            out += '\n';
        }
        std::snprintf(line, sizeof line, "  %-*s %8zu\n", static_cast<int>(name_width), "total",
                      total);
        return out + line;
    }
};

/// The class distribution of `data`.
inline ClassDistribution class_distribution(const Dataset& data) {
    ClassDistribution d;
    d.split = data.split;
    d.class_names = data.class_names;
    d.counts = data.class_counts();
    d.total = data.size();
    for (std::size_t n : d.counts)
        d.fractions.push_back(d.total ? static_cast<double>(n) / static_cast<double>(d.total)
                                      : 0.0);
    return d;
}

/// What a reader left out when asked to skip bad samples instead of stopping.
struct SkipReport {
    std::size_t skipped = 0;
    std::vector<std::string> first_reasons;  ///< the first few reasons, in file/line order
    std::size_t max_reasons = 5;

    /// Records one skipped sample and, while there is room, why.
    void add(std::string reason) {
        ++skipped;
        if (first_reasons.size() < max_reasons) first_reasons.push_back(std::move(reason));
    }
    /// "skipped 3 bad samples: <reason>; <reason>; ..." or "" when nothing was skipped.
    std::string summary() const {
        if (skipped == 0) return {};
        std::string s =
            "skipped " + std::to_string(skipped) + " bad sample" + (skipped == 1 ? "" : "s") + ":";
        for (const auto& r : first_reasons) s += "\n  " + r;
        if (skipped > first_reasons.size())
            s += "\n  ... and " + std::to_string(skipped - first_reasons.size()) + " more";
        return s;
    }
};

/// Everything a reader returns: the splits it found, and what it skipped.
struct DataSplits {
    std::vector<Dataset> splits;
    SkipReport skip_report;

    /// The split with this name, or nullptr.
    const Dataset* find(std::string_view name) const {
        for (const auto& d : splits)
            if (d.split == name) return &d;
        return nullptr;
    }
    /// The split with this name, or an Error listing the splits there are.
    const Dataset& at(std::string_view name) const {
        if (const Dataset* d = find(name)) return *d;
        std::string names;
        for (const auto& d : splits) {
            if (!names.empty()) names += ", ";
            names += d.split;
        }
        throw Error(
            detail::concat("no split '", name, "' (have: ", names.empty() ? "none" : names, ")"));
    }
    /// The split to train on: "train", else the first whose name ends in "-train" (e.g. a
    /// generated "synthetic-train"), else nullptr.
    const Dataset* training() const {
        if (const Dataset* d = find("train")) return d;
        return find_suffix("-train");
    }
    /// The held-out split to report results on: "test", else "val", else the first whose name ends
    /// in "-test", else nullptr.
    const Dataset* evaluation() const {
        for (const char* name : {"test", "val"})
            if (const Dataset* d = find(name)) return d;
        return find_suffix("-test");
    }

  private:
    const Dataset* find_suffix(std::string_view suffix) const {
        for (const auto& d : splits)
            if (d.split.size() > suffix.size() &&
                std::string_view(d.split).substr(d.split.size() - suffix.size()) == suffix)
                return &d;
        return nullptr;
    }
};

}  // namespace facet
