// libFuzzer target: the FER-2013 CSV reader (parse_fer_csv, the function read_fer_csv runs on the
// file's bytes). Any input must either parse into consistent splits or throw facet::Error; every
// other outcome (another exception, a sanitizer report, a broken invariant) is a crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "facet/data/fer_csv.hpp"

namespace {

// A result that parsed must be self-consistent: whole images, labels in range, known splits.
void check_splits(const facet::DataSplits& result) {
    for (const facet::Dataset& d : result.splits) {
        if (d.empty()) std::abort();
        if (d.pixels.size() != d.size() * facet::fer_image_pixels) std::abort();
        for (int label : d.labels)
            if (label < 0 || label >= facet::fer_num_classes) std::abort();
        if (d.split != "train" && d.split != "val" && d.split != "test") std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    facet::ReadOptions options;
    options.threads = 1;  // libFuzzer runs one input at a time; threads would only add noise

    bool strict_ok = false;
    std::size_t strict_rows = 0;
    try {
        const facet::DataSplits result = facet::parse_fer_csv(text, "fuzz.csv", options);
        check_splits(result);
        for (const auto& d : result.splits) strict_rows += d.size();
        strict_ok = true;
    } catch (const facet::Error&) {  // the documented way to refuse bad input
    }

    // The lenient mode skips bad rows; when the strict mode accepted everything it must agree.
    options.skip_bad = true;
    try {
        const facet::DataSplits result = facet::parse_fer_csv(text, "fuzz.csv", options);
        check_splits(result);
        std::size_t rows = 0;
        for (const auto& d : result.splits) rows += d.size();
        if (strict_ok && (rows != strict_rows || result.skip_report.skipped != 0)) std::abort();
    } catch (const facet::Error&) {
        if (strict_ok) std::abort();
    }
    return 0;
}
