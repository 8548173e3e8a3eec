// libFuzzer target: the CSV data-set reader (parse_csv_dataset, the function read_csv_dataset runs
// on the file's bytes) in two configurations: FER-2013's (Kaggle's columns, its seven classes,
// 48 x 48 given) and one that finds the classes and the image size in the data. Any input must
// either parse into consistent splits or throw facet::Error; every other outcome (another
// exception, a sanitizer report, a broken invariant) is a crash.
#define FACET_IMPLEMENT_STB  // the reader's path column decodes image files
#include "facet/data/image.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "facet/data/csv_dataset.hpp"
#include "fer/fer_csv.hpp"

namespace {

// A result that parsed must be self-consistent: whole images of one size, labels in range, known
// splits.
void check_splits(const facet::DataSplits& result, std::size_t classes, std::size_t pixels) {
    for (const facet::Dataset& d : result.splits) {
        if (d.empty() || d.image_size() == 0) std::abort();
        if (pixels && d.image_size() != pixels) std::abort();
        if (d.image_size() != result.splits.front().image_size()) std::abort();
        if (d.pixels.size() != d.size() * d.image_size()) std::abort();
        if (classes && d.class_names.size() != classes) std::abort();
        for (int label : d.labels)
            if (label < 0 || label >= d.num_classes()) std::abort();
        if (d.split != "train" && d.split != "val" && d.split != "test") std::abort();
    }
}

/// Parses strictly, then leniently; when the strict mode accepted everything the lenient one must
/// agree.
void run(std::string_view text, const facet::ReadOptions& base, std::size_t classes,
         std::size_t pixels) {
    facet::ReadOptions options = base;
    options.threads = 1;  // libFuzzer runs one input at a time; threads would only add noise
    bool strict_ok = false;
    std::size_t strict_rows = 0;
    try {
        const facet::DataSplits result =
            facet::parse_csv_dataset(text, "fuzz.csv", fer::fer_csv_columns(), options);
        check_splits(result, classes, pixels);
        for (const auto& d : result.splits) strict_rows += d.size();
        strict_ok = true;
    } catch (const facet::Error&) {  // the documented way to refuse bad input
    }
    options.skip_bad = true;
    try {
        const facet::DataSplits result =
            facet::parse_csv_dataset(text, "fuzz.csv", fer::fer_csv_columns(), options);
        check_splits(result, classes, pixels);
        std::size_t rows = 0;
        for (const auto& d : result.splits) rows += d.size();
        if (strict_ok && (rows != strict_rows || result.skip_report.skipped != 0)) std::abort();
    } catch (const facet::Error&) {
        if (strict_ok) std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    run(text, fer::fer_read_options(), fer::fer_num_classes, fer::fer_image_pixels);
    run(text, facet::ReadOptions{}, 0, 0);
    return 0;
}
