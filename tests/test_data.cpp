// Tests for data/: the FER CSV reader, the image-folder reader (on PNG/JPEG/BMP files written
// here with stb_image_write), resampling, the BatchLoader, the synthetic faces, and a subset of the
// real data set when FER-2013 is configured (fer2013_dir.hpp; skipped otherwise).
#define FACET_IMPLEMENT_STB
#include "facet/data/image.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "facet/data/batch_loader.hpp"
#include "facet/data/dataset.hpp"
#include "facet/data/fer_csv.hpp"
#include "facet/data/image_folder.hpp"
#include "facet/data/load.hpp"
#include "facet/data/synthetic_faces.hpp"
#include "fer2013_dir.hpp"

namespace fs = std::filesystem;
using facet::Dataset;
using facet::DataSplits;
using facet::ReadOptions;

namespace {

/// A fresh folder under the system temp folder, removed at the end of the test.
struct TempDir {
    fs::path path;
    TempDir() {
        static int counter = 0;
        path = fs::temp_directory_path() /
               ("facet_test_data_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

void write_text(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
}

/// 2304 pixel values as a CSV field, pixel i = (i * step + offset) % 256.
std::string pixel_field(int step, int offset, std::size_t count = facet::fer_image_pixels) {
    std::string s;
    for (std::size_t i = 0; i < count; ++i) {
        if (i) s += ' ';
        s += std::to_string((static_cast<int>(i) * step + offset) % 256);
    }
    return s;
}

/// A random 48x48 image.
std::vector<std::uint8_t> random_image(std::uint64_t seed) {
    facet::Rng rng(seed);
    std::vector<std::uint8_t> img(facet::fer_image_pixels);
    for (auto& p : img) p = static_cast<std::uint8_t>(rng.below(256));
    return img;
}

/// The error message of parsing `text` as CSV, or "" when it parses.
std::string csv_error(const std::string& text, ReadOptions options = {}) {
    try {
        facet::parse_fer_csv(text, "bad.csv", options);
    } catch (const facet::Error& e) {
        return e.what();
    }
    return {};
}

const std::string header = "emotion,pixels,Usage\n";
const std::string good_row = "3," + pixel_field(1, 0) + ",Training\n";

}  // namespace

TEST_CASE("FER CSV: values, labels, splits and class counts") {
    const std::string text = header + "0," + pixel_field(1, 0) + ",Training\n" + "6," +
                             pixel_field(3, 7) + ",PublicTest\r\n" +  // CRLF line
                             "3," + pixel_field(5, 1) + ",Training\n" + "5," + pixel_field(7, 2) +
                             ",PrivateTest\n\n";  // trailing blank line
    const DataSplits s = facet::parse_fer_csv(text, "mem.csv");
    REQUIRE(s.splits.size() == 3);
    CHECK(s.splits[0].split == "train");
    CHECK(s.splits[1].split == "val");
    CHECK(s.splits[2].split == "test");
    const Dataset& train = s.at("train");
    REQUIRE(train.size() == 2);
    CHECK(train.labels == std::vector<int>{0, 3});
    CHECK(train.height == 48);
    CHECK(train.width == 48);
    for (std::size_t i = 0; i < facet::fer_image_pixels; ++i) {
        CHECK(train.image(0)[i] == i % 256);
        CHECK(train.image(1)[i] == (i * 5 + 1) % 256);
        CHECK(s.at("val").image(0)[i] == (i * 3 + 7) % 256);
    }
    CHECK(s.at("val").labels == std::vector<int>{6});
    CHECK(s.at("test").labels == std::vector<int>{5});
    const auto counts = train.class_counts();
    CHECK(counts == std::vector<std::size_t>{1, 0, 0, 1, 0, 0, 0});
    CHECK(train.class_names[4] == "sad");  // Kaggle order: 4 = Sad, 6 = Neutral
    CHECK(train.class_names[6] == "neutral");
    CHECK(s.training() == &s.splits[0]);
    CHECK(s.evaluation() == &s.splits[2]);
    CHECK_THROWS_WITH_AS(s.at("nope"), doctest::Contains("have: train, val, test"), facet::Error);
}

TEST_CASE("FER CSV: columns in another order, class names as labels, no Usage column") {
    const std::string reordered = "Usage,pixels,emotion\nPublicTest," + pixel_field(2, 0) + ",4\n" +
                                  "training," + pixel_field(1, 9) + ",Happy\n";
    const DataSplits s = facet::parse_fer_csv(reordered, "r.csv");
    CHECK(s.at("train").labels == std::vector<int>{3});
    CHECK(s.at("val").labels == std::vector<int>{4});
    CHECK(s.at("train").image(0)[1] == 10);
    const DataSplits plain =
        facet::parse_fer_csv("emotion,pixels\n1," + pixel_field(1, 0) + "\n", "p.csv");
    REQUIRE(plain.splits.size() == 1);
    CHECK(plain.splits[0].split == "train");
    CHECK(plain.splits[0].labels == std::vector<int>{1});
}

TEST_CASE("FER CSV: every kind of bad row is an Error naming file and line") {
    struct Case {
        std::string row, message;
    };
    const std::vector<Case> cases = {
        {"3," + pixel_field(1, 0) + "\n", "bad.csv:3: expected 3 columns, found 2"},
        {"3," + pixel_field(1, 0) + ",Training,x\n", "bad.csv:3: expected 3 columns, found 4"},
        {"3," + pixel_field(1, 0, 2303) + ",Training\n",
         "bad.csv:3: found 2303 pixels, expected 2304"},
        {"3," + pixel_field(1, 0, 2305) + ",Training\n", "bad.csv:3: more than 2304 pixels"},
        {"3,256 " + pixel_field(1, 0, 2303) + ",Training\n",
         "bad.csv:3: pixel 1 value 256 is outside 0-255"},
        {"3,1 2 99999 " + pixel_field(1, 0, 2301) + ",Training\n", "pixel 3 value >999 is outside"},
        {"3,1 abc " + pixel_field(1, 0, 2302) + ",Training\n",
         "bad.csv:3: pixel 2 is not a number ('abc')"},
        {"3,1 -2 " + pixel_field(1, 0, 2302) + ",Training\n", "bad.csv:3: pixel 2 is not a number"},
        {"3,1 2x " + pixel_field(1, 0, 2302) + ",Training\n",
         "pixel 2 is not a number (it contains 'x')"},
        {"7," + pixel_field(1, 0) + ",Training\n", "bad.csv:3: unknown label '7'"},
        {"," + pixel_field(1, 0) + ",Training\n", "bad.csv:3: unknown label ''"},
        {"3," + pixel_field(1, 0) + ",Validation2\n", "bad.csv:3: unknown Usage 'Validation2'"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.message);
        // Line 2 is good, line 3 is the bad row, line 4 is good again.
        CHECK(csv_error(header + good_row + c.row + good_row).find(c.message) != std::string::npos);
    }
    CHECK(csv_error("").find("bad.csv: empty file") != std::string::npos);
    CHECK(csv_error(header).find("bad.csv: no usable rows") != std::string::npos);
    CHECK(csv_error("3," + pixel_field(1, 0) + ",Training\n").find("bad.csv:1: header must name") !=
          std::string::npos);
    CHECK(csv_error("emotion,pixels,emotion\n").find("appears twice") != std::string::npos);
    ReadOptions small;
    small.max_line_length = 1000;
    CHECK(csv_error(header + good_row, small).find("bad.csv:2: line of") != std::string::npos);
    small = ReadOptions{};
    small.max_samples = 2;
    CHECK(csv_error(header + good_row + good_row + good_row, small)
              .find("bad.csv:4: more than 2 rows") != std::string::npos);
    small = ReadOptions{};
    small.max_file_bytes = 10;
    TempDir dir;
    write_text(dir.path / "big.csv", header + good_row);
    CHECK_THROWS_WITH_AS(facet::read_fer_csv(dir.path / "big.csv", small),
                         doctest::Contains("exceeds the limit of 10"), facet::Error);
    CHECK_THROWS_WITH_AS(facet::read_fer_csv(dir.path / "missing.csv"),
                         doctest::Contains("missing.csv"), facet::Error);
}

TEST_CASE("FER CSV: skip_bad counts bad rows and keeps the first reasons") {
    std::string text = header + good_row;
    for (int i = 0; i < 7; ++i) text += "9," + pixel_field(1, 0) + ",Training\n";  // lines 3..9
    text += "1," + pixel_field(1, 0) + ",PublicTest\n";                            // line 10
    text += "2,1 x " + pixel_field(1, 0, 2302) + ",Training\n";  // line 11: bad pixels
    text += "5," + pixel_field(3, 1) + ",Training\n";            // line 12
    ReadOptions options;
    options.skip_bad = true;
    options.max_reported_reasons = 3;
    const DataSplits s = facet::parse_fer_csv(text, "skip.csv", options);
    REQUIRE(s.at("train").size() == 2);
    CHECK(s.at("val").size() == 1);
    CHECK(s.skip_report.skipped == 8);
    // The rows after a skipped one are moved up intact.
    CHECK(s.at("train").labels == std::vector<int>{3, 5});
    for (std::size_t i = 0; i < facet::fer_image_pixels; ++i)
        CHECK(s.at("train").image(1)[i] == (3 * i + 1) % 256);
    REQUIRE(s.skip_report.first_reasons.size() == 3);
    CHECK(s.skip_report.first_reasons[0].find("skip.csv:3: unknown label '9'") == 0);
    CHECK(s.skip_report.first_reasons[2].find("skip.csv:5:") == 0);
    CHECK(s.skip_report.summary().find("skipped 8 bad samples") == 0);
    CHECK(s.skip_report.summary().find("and 5 more") != std::string::npos);
    // Everything bad: still an error, since nothing is left.
    CHECK(csv_error(header + "9," + pixel_field(1, 0) + ",Training\n", options)
              .find("no usable rows") != std::string::npos);
}

TEST_CASE("FER CSV: a write/read round trip and max_per_class") {
    TempDir dir;
    Dataset train, val;
    train.split = "train";
    val.split = "val";
    for (int i = 0; i < 14; ++i)
        train.add(random_image(static_cast<std::uint64_t>(i)).data(), i % 7);
    val.add(random_image(99).data(), 2);
    facet::write_fer_csv(dir.path / "fer.csv", {&train, &val});
    const DataSplits s = facet::read_fer_csv(dir.path / "fer.csv");
    CHECK(s.at("train").pixels == train.pixels);
    CHECK(s.at("train").labels == train.labels);
    CHECK(s.at("val").pixels == val.pixels);
    ReadOptions one;
    one.max_per_class = 1;
    const DataSplits limited = facet::read_fer_csv(dir.path / "fer.csv", one);
    CHECK(limited.at("train").labels == std::vector<int>{0, 1, 2, 3, 4, 5, 6});
    Dataset odd;
    odd.split = "mystery";
    odd.add(random_image(1).data(), 0);
    CHECK_THROWS_WITH_AS(facet::write_fer_csv(dir.path / "x.csv", {&odd}),
                         doctest::Contains("no Kaggle Usage for split 'mystery'"), facet::Error);
}

TEST_CASE("resize_gray: area averaging when shrinking, exact copies and constants preserved") {
    // A 96x96 image of 2x2 blocks shrinks to the block values exactly.
    std::vector<std::uint8_t> big(96 * 96), small(48 * 48);
    for (std::size_t y = 0; y < 96; ++y)
        for (std::size_t x = 0; x < 96; ++x)
            big[y * 96 + x] = static_cast<std::uint8_t>((x / 2 + 3 * (y / 2)) % 256);
    facet::resize_gray(big.data(), 96, 96, small.data(), 48, 48);
    for (std::size_t y = 0; y < 48; ++y)
        for (std::size_t x = 0; x < 48; ++x) CHECK(small[y * 48 + x] == (x + 3 * y) % 256);
    // A 2x2 checkerboard of 0/255 averages to mid-gray over a 3x3 -> 1x1 or 2x2 -> 1x1 shrink.
    const std::uint8_t checker[4] = {0, 255, 255, 0};
    std::uint8_t one = 0;
    facet::resize_gray(checker, 2, 2, &one, 1, 1);
    CHECK(one == 128);
    // Enlarging a constant image keeps it constant; enlarging keeps the ends.
    std::vector<std::uint8_t> flat(7 * 5, 77), up(48 * 48);
    facet::resize_gray(flat.data(), 7, 5, up.data(), 48, 48);
    CHECK(std::all_of(up.begin(), up.end(), [](std::uint8_t v) { return v == 77; }));
    const std::uint8_t ramp[2] = {0, 200};
    std::uint8_t wide[4];
    facet::resize_gray(ramp, 2, 1, wide, 4, 1);
    CHECK(wide[0] == 0);
    CHECK(wide[1] == 50);  // bilinear between pixel centres: x = 0.25
    CHECK(wide[2] == 150);
    CHECK(wide[3] == 200);
    // Non-square images are cropped to their central square.
    facet::GrayImage tall{2, 6, {9, 9, 9, 9, 1, 2, 3, 4, 9, 9, 9, 9}};
    CHECK(facet::to_square_gray(tall, 2) == std::vector<std::uint8_t>{1, 2, 3, 4});
    CHECK_THROWS_AS(facet::resize_gray(ramp, 0, 1, wide, 4, 1), facet::Error);
}

TEST_CASE("image folder: PNG, JPEG and BMP of any size and colour become 48x48 gray") {
    TempDir dir;
    const fs::path root = dir.path / "faces";
    // train/Happy: a 48x48 gray PNG with known pixels (lossless, compared exactly).
    const auto known = random_image(5);
    fs::create_directories(root / "train" / "Happy");
    REQUIRE(
        stbi_write_png((root / "train" / "Happy" / "a.png").c_str(), 48, 48, 1, known.data(), 48));
    // train/SAD: a 100x100 RGB BMP of one colour; gray = (77 R + 150 G + 29 B) / 256.
    std::vector<std::uint8_t> rgb(100 * 100 * 3);
    for (std::size_t i = 0; i < rgb.size(); i += 3) rgb[i] = 200, rgb[i + 1] = 100, rgb[i + 2] = 50;
    fs::create_directories(root / "train" / "SAD");
    REQUIRE(stbi_write_bmp((root / "train" / "SAD" / "b.bmp").c_str(), 100, 100, 3, rgb.data()));
    // train/angry: a 30x60 RGBA JPEG of one colour (lossy: compared with a tolerance) and a text
    // file that is ignored.
    std::vector<std::uint8_t> rgba(30 * 60 * 4);
    for (std::size_t i = 0; i < rgba.size(); i += 4)
        rgba[i] = 10, rgba[i + 1] = 250, rgba[i + 2] = 10, rgba[i + 3] = 128;
    fs::create_directories(root / "train" / "angry");
    REQUIRE(
        stbi_write_jpg((root / "train" / "angry" / "c.JPG").c_str(), 30, 60, 4, rgba.data(), 95));
    write_text(root / "train" / "angry" / "notes.txt", "not an image");
    write_text(root / "README.md", "ignored");
    // test/neutral: a 24x24 PNG (enlarged).
    std::vector<std::uint8_t> small(24 * 24, 60);
    fs::create_directories(root / "test" / "neutral");
    REQUIRE(
        stbi_write_png((root / "test" / "neutral" / "d.png").c_str(), 24, 24, 1, small.data(), 24));

    const DataSplits s = facet::load_dataset(root);
    REQUIRE(s.splits.size() == 2);
    const Dataset& train = s.at("train");
    REQUIRE(train.size() == 3);
    CHECK(train.labels == std::vector<int>{0, 3, 4});  // angry, happy, sad: canonical order
    CHECK(train.pixels.size() == 3 * 48 * 48);
    const int green = (77 * 10 + 150 * 250 + 29 * 10) >> 8;
    for (std::size_t i = 0; i < 48 * 48; ++i) {
        CHECK(std::abs(train.image(0)[i] - green) <= 3);
        CHECK(train.image(1)[i] == known[i]);
        CHECK(train.image(2)[i] == ((77 * 200 + 150 * 100 + 29 * 50) >> 8));
    }
    CHECK(s.at("test").labels == std::vector<int>{6});
    CHECK(s.at("test").image(0)[100] == 60);
    // A folder of class folders without split folders is one split "train".
    const DataSplits flat = facet::read_image_folder(root / "train");
    REQUIRE(flat.splits.size() == 1);
    CHECK(flat.splits[0].split == "train");
    CHECK(flat.splits[0].pixels == train.pixels);
}

TEST_CASE("image folder: unknown folders, corrupt and oversized images, empty sets") {
    TempDir dir;
    const fs::path root = dir.path / "faces";
    const auto img = random_image(1);
    fs::create_directories(root / "train" / "happy");
    REQUIRE(
        stbi_write_png((root / "train" / "happy" / "ok.png").c_str(), 48, 48, 1, img.data(), 48));

    SUBCASE("unknown class folder") {
        fs::create_directories(root / "train" / "confused");
        CHECK_THROWS_WITH_AS(facet::read_image_folder(root),
                             doctest::Contains("confused: unknown class folder"), facet::Error);
        ReadOptions skip;
        skip.skip_bad = true;
        const DataSplits s = facet::read_image_folder(root, skip);
        CHECK(s.at("train").size() == 1);
        CHECK(s.skip_report.skipped == 1);
    }
    SUBCASE("unknown split folder") {
        fs::create_directories(root / "holdout" / "happy");
        CHECK_THROWS_WITH_AS(facet::read_image_folder(root),
                             doctest::Contains("holdout: unknown folder"), facet::Error);
    }
    SUBCASE("two folders for one split") {
        fs::create_directories(root / "val" / "happy");
        fs::create_directories(root / "PublicTest" / "happy");
        CHECK_THROWS_WITH_AS(facet::read_image_folder(root),
                             doctest::Contains("both hold split 'val'"), facet::Error);
    }
    SUBCASE("corrupt image: error naming the file, or skipped") {
        write_text(root / "train" / "happy" / "broken.jpg", "\xFF\xD8\xFF\xE0 this is not a JPEG");
        write_text(root / "train" / "happy" / "empty.png", "");
        const std::string broken = (root / "train" / "happy" / "broken.jpg").string();
        CHECK_THROWS_WITH_AS(facet::read_image_folder(root), doctest::Contains(broken.c_str()),
                             facet::Error);
        ReadOptions skip;
        skip.skip_bad = true;
        const DataSplits s = facet::read_image_folder(root, skip);
        CHECK(s.at("train").size() == 1);
        CHECK(s.skip_report.skipped == 2);
        CHECK(s.skip_report.first_reasons[0].find("broken.jpg") != std::string::npos);
        CHECK(s.skip_report.first_reasons[1].find("empty.png: empty image file") !=
              std::string::npos);
        CHECK(s.at("train").pixels == img);  // ok.png, moved up past the two bad files
    }
    SUBCASE("a header claiming 60000 x 60000 is refused before decoding") {
        const fs::path bmp = root / "train" / "happy" / "huge.bmp";
        const std::uint8_t pixels[12] = {};
        REQUIRE(stbi_write_bmp(bmp.c_str(), 2, 2, 3, pixels));
        std::string bytes = facet::read_file_contents(bmp, 1 << 20);
        const std::int32_t side =
            60000;  // BITMAPINFOHEADER width at 18, height at 22, little-endian
        for (int k = 0; k < 4; ++k)
            bytes[18 + k] = bytes[22 + k] = static_cast<char>((side >> (8 * k)) & 0xFF);
        write_text(bmp, bytes);
        CHECK_THROWS_WITH_AS(facet::read_image_folder(root),
                             doctest::Contains("60000x60000 exceeds the limit"), facet::Error);
        ReadOptions tight;
        tight.max_image_side = 40;  // the 48x48 PNG now exceeds the limit too
        tight.skip_bad = true;
        CHECK_THROWS_WITH_AS(facet::read_image_folder(root, tight),
                             doctest::Contains("no readable images"), facet::Error);
    }
    SUBCASE("empty data sets") {
        TempDir empty;
        CHECK_THROWS_WITH_AS(facet::read_image_folder(empty.path),
                             doctest::Contains("empty data set"), facet::Error);
        fs::create_directories(empty.path / "test" / "fear");
        CHECK_THROWS_WITH_AS(facet::read_image_folder(empty.path),
                             doctest::Contains("no readable images"), facet::Error);
        CHECK_THROWS_WITH_AS(facet::load_dataset(empty.path / "nothing"),
                             doctest::Contains("no such file or folder"), facet::Error);
    }
}

TEST_CASE("the CSV and the folder readers give the same Dataset for the same images") {
    TempDir dir;
    Dataset train, val;
    train.split = "train";
    val.split = "val";
    for (int c = 0; c < facet::fer_num_classes; ++c)
        for (int k = 0; k < 2 + c % 2; ++k)
            train.add(random_image(static_cast<std::uint64_t>(100 * c + k)).data(), c);
    val.add(random_image(7).data(), 5);
    val.add(random_image(8).data(), 1);
    // Folder order is class (canonical) then file name; write the CSV rows in that order too.
    std::vector<int> val_order = {1, 0};
    Dataset val_sorted;
    val_sorted.split = "val";
    for (int i : val_order)
        val_sorted.add(val.image(static_cast<std::size_t>(i)),
                       val.labels[static_cast<std::size_t>(i)]);
    facet::write_fer_csv(dir.path / "fer.csv", {&train, &val_sorted});
    for (const Dataset* d : {&train, &val_sorted}) {
        const std::string folder = d == &train ? "train" : "PublicTest";
        for (std::size_t i = 0; i < d->size(); ++i) {
            const std::string cls(facet::fer_class_names[static_cast<std::size_t>(d->labels[i])]);
            const fs::path file =
                dir.path / "img" / folder / cls / ("Training_" + std::to_string(1000 + i) + ".png");
            fs::create_directories(file.parent_path());
            REQUIRE(stbi_write_png(file.c_str(), 48, 48, 1, d->image(i), 48));
        }
    }
    const DataSplits from_csv = facet::load_dataset(dir.path / "fer.csv");
    const DataSplits from_folder = facet::load_dataset(dir.path / "img");
    REQUIRE(from_csv.splits.size() == 2);
    REQUIRE(from_folder.splits.size() == 2);
    for (std::size_t s = 0; s < 2; ++s) {
        CHECK(from_csv.splits[s].split == from_folder.splits[s].split);
        CHECK(from_csv.splits[s].labels == from_folder.splits[s].labels);
        CHECK(from_csv.splits[s].pixels == from_folder.splits[s].pixels);
        CHECK(from_csv.splits[s].class_names == from_folder.splits[s].class_names);
    }
    CHECK(from_folder.at("train").pixels == train.pixels);
}

TEST_CASE("class distribution: counts, fractions and a table") {
    Dataset d;
    d.split = "train";
    const auto img = random_image(1);
    for (int label : {3, 3, 3, 0}) d.add(img.data(), label);
    const facet::ClassDistribution dist = facet::class_distribution(d);
    CHECK(dist.total == 4);
    CHECK(dist.counts[3] == 3);
    CHECK(dist.fractions[3] == doctest::Approx(0.75));
    CHECK(dist.fractions[1] == 0.0);
    const std::string table = dist.table();
    CHECK(table.find("happy") != std::string::npos);
    CHECK(table.find("75.00%") != std::string::npos);
    CHECK(table.find("total") != std::string::npos);
    CHECK_THROWS_AS(d.add(img.data(), 7), facet::Error);
    d.labels.push_back(2);  // now inconsistent with the pixels
    CHECK_THROWS_WITH_AS(d.validate(), doctest::Contains("pixel bytes for 5 images"), facet::Error);
}

namespace {
Dataset numbered_dataset(std::size_t n) {
    Dataset d;
    d.split = "train";
    std::vector<std::uint8_t> img(facet::fer_image_pixels);
    for (std::size_t i = 0; i < n; ++i) {
        std::fill(img.begin(), img.end(), static_cast<std::uint8_t>(i));
        img[i % img.size()] = 255;
        d.add(img.data(), static_cast<int>(i % 7));
    }
    return d;
}

std::vector<facet::Batch> run_epoch(facet::BatchLoader& loader, std::size_t epoch,
                                    std::size_t first = 0) {
    loader.start_epoch(epoch, first);
    std::vector<facet::Batch> batches;
    facet::Batch b;
    while (loader.next(b)) batches.push_back(std::move(b));
    return batches;
}

bool same(const facet::Batch& a, const facet::Batch& b) {
    return a.labels == b.labels && a.indices == b.indices && a.epoch == b.epoch &&
           a.index == b.index && a.images.shape() == b.images.shape() &&
           std::equal(a.images.begin(), a.images.end(), b.images.begin());
}
}  // namespace

TEST_CASE("BatchLoader: every sample once per epoch, normalised, last batch kept or dropped") {
    const Dataset data = numbered_dataset(103);
    const facet::Normalization z = facet::Normalization::of(data);
    facet::BatchOptions options;
    options.batch_size = 10;
    facet::BatchLoader loader(data, z, options);
    CHECK(loader.batches_per_epoch() == 11);
    for (std::size_t epoch = 0; epoch < 2; ++epoch) {
        const auto batches = run_epoch(loader, epoch);
        REQUIRE(batches.size() == 11);
        std::vector<int> seen(103, 0);
        for (const auto& b : batches) {
            CHECK(b.images.shape() == facet::Shape{b.size(), 1, 48, 48});
            for (std::size_t k = 0; k < b.size(); ++k) {
                const std::size_t sample = b.indices[k];
                ++seen[sample];
                CHECK(b.labels[k] == data.labels[sample]);
                const float expected =
                    (static_cast<float>(data.image(sample)[1]) / 255.0f - z.mean) / z.stddev;
                CHECK(b.images(k, 0, 0, 1) == doctest::Approx(expected));
            }
        }
        CHECK(batches.back().size() == 3);
        CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
    }
    // Shuffled: epoch orders differ from each other and from the data set order.
    CHECK(loader.epoch_order(0) != loader.epoch_order(1));
    std::vector<std::size_t> identity(103);
    for (std::size_t i = 0; i < 103; ++i) identity[i] = i;
    CHECK(loader.epoch_order(0) != identity);
    options.drop_last = true;
    options.shuffle = false;
    facet::BatchLoader dropping(data, z, options);
    const auto batches = run_epoch(dropping, 0);
    CHECK(batches.size() == 10);
    CHECK(batches[0].indices[0] == 0);
    CHECK(batches[9].indices[9] == 99);
}

TEST_CASE("Normalization: mean and standard deviation of pixel / 255") {
    Dataset d;
    std::vector<std::uint8_t> black(facet::fer_image_pixels, 0),
        white(facet::fer_image_pixels, 255);
    d.add(black.data(), 0);
    d.add(white.data(), 1);
    const auto z = facet::Normalization::of(d);
    CHECK(z.mean == doctest::Approx(0.5));
    CHECK(z.stddev == doctest::Approx(0.5));
    float v[2] = {0.0f, 1.0f};
    z.apply(v, 2);
    CHECK(v[0] == doctest::Approx(-1.0));
    CHECK(v[1] == doctest::Approx(1.0));
    Dataset constant;
    constant.add(black.data(), 0);
    CHECK(facet::Normalization::of(constant).stddev == 1.0f);  // never divides by zero
}

TEST_CASE("BatchLoader: deterministic whatever the prefetch, and resumable mid-epoch") {
    const Dataset data = numbered_dataset(57);
    const facet::Normalization z = facet::Normalization::of(data);
    facet::BatchOptions options;
    options.batch_size = 8;
    options.augment = true;
    options.seed = 1234;
    std::vector<std::vector<facet::Batch>> reference;
    {
        facet::BatchLoader loader(data, z, options);
        for (std::size_t e = 0; e < 3; ++e) reference.push_back(run_epoch(loader, e));
    }
    for (std::size_t prefetch : {std::size_t{0}, std::size_t{1}, std::size_t{4}}) {
        CAPTURE(prefetch);
        options.prefetch = prefetch;
        facet::BatchLoader loader(data, z, options);
        const auto epoch1 = run_epoch(loader, 1);
        REQUIRE(epoch1.size() == reference[1].size());
        for (std::size_t b = 0; b < epoch1.size(); ++b) CHECK(same(epoch1[b], reference[1][b]));
        // Resume at batch 5 of epoch 2, as after an interruption, then epoch 0 again.
        const auto resumed = run_epoch(loader, 2, 5);
        REQUIRE(resumed.size() == reference[2].size() - 5);
        for (std::size_t b = 0; b < resumed.size(); ++b)
            CHECK(same(resumed[b], reference[2][b + 5]));
        loader.start_epoch(0);
        facet::Batch first;
        REQUIRE(loader.next(first));
        CHECK(same(first, reference[0][0]));
        loader.start_epoch(0, 2);  // restart while batches are pending: they are discarded
        REQUIRE(loader.next(first));
        CHECK(same(first, reference[0][2]));
    }
    // Augmentation changes the images, not the order; another seed changes both.
    options.augment = false;
    options.prefetch = 2;
    facet::BatchLoader plain(data, z, options);
    const auto plain0 = run_epoch(plain, 0);
    CHECK(plain0[0].indices == reference[0][0].indices);
    CHECK(!std::equal(plain0[0].images.begin(), plain0[0].images.end(),
                      reference[0][0].images.begin()));
    options.seed = 99;
    facet::BatchLoader other(data, z, options);
    CHECK(run_epoch(other, 0)[0].indices != reference[0][0].indices);
}

TEST_CASE("BatchLoader: errors in the worker reach the consumer; bad options are refused") {
    Dataset data = numbered_dataset(30);
    const facet::Normalization z = facet::Normalization::of(data);
    facet::BatchOptions options;
    options.batch_size = 4;
    options.shuffle = false;
    {
        facet::BatchLoader loader(data, z, options);
        facet::Batch b;
        CHECK_THROWS_WITH_AS(loader.next(b), doctest::Contains("call start_epoch first"),
                             facet::Error);
        data.labels[13] = 42;  // corrupt sample 13 (batch 3) behind the loader's back
        loader.start_epoch(0);
        for (int i = 0; i < 3; ++i) CHECK(loader.next(b));
        CHECK_THROWS_WITH_AS(loader.next(b), doctest::Contains("sample 13"), facet::Error);
        CHECK_FALSE(loader.next(b));  // the epoch is over after a failure
        data.labels[13] = 6;
        loader.start_epoch(0, 3);  // and can be restarted
        CHECK(loader.next(b));
        CHECK(b.indices[1] == 13);
        CHECK_THROWS_AS(loader.start_epoch(0, 9), facet::Error);
    }  // destroyed with batches still prefetched: joins cleanly
    options.batch_size = 0;
    CHECK_THROWS_WITH_AS(facet::BatchLoader(data, z, options), doctest::Contains("batch_size"),
                         facet::Error);
    options.batch_size = 4;
    options.augment = true;
    options.augmentation.max_scale = 3;
    CHECK_THROWS_WITH_AS(facet::BatchLoader(data, z, options), doctest::Contains("max_scale"),
                         facet::Error);
    CHECK_THROWS_AS(facet::BatchLoader(Dataset{}, z), facet::Error);
}

TEST_CASE("synthetic faces: seeded, balanced, named as synthetic, all seven expressions differ") {
    facet::SyntheticFaceOptions options;
    options.train_per_class = 20;
    options.test_per_class = 5;
    const DataSplits a = facet::make_synthetic_faces(options);
    const DataSplits b = facet::make_synthetic_faces(options);
    REQUIRE(a.splits.size() == 2);
    CHECK(a.splits[0].split == "synthetic-train");
    CHECK(a.splits[1].split == "synthetic-test");
    CHECK(a.training() == &a.splits[0]);
    CHECK(a.evaluation() == &a.splits[1]);
    CHECK(a.splits[0].size() == 140);
    CHECK(a.splits[1].size() == 35);
    CHECK(a.splits[0].class_counts() == std::vector<std::size_t>(7, 20));
    CHECK(a.splits[0].pixels == b.splits[0].pixels);
    CHECK(a.splits[0].pixels != a.splits[1].pixels);
    options.seed = 7;
    CHECK(facet::make_synthetic_faces(options).splits[0].pixels != a.splits[0].pixels);
    // Images are not blank: each has a real spread of intensities.
    for (std::size_t i = 0; i < 14; ++i) {
        const auto* img = a.splits[0].image(i);
        const auto [lo, hi] = std::minmax_element(img, img + facet::fer_image_pixels);
        CHECK(*hi - *lo > 60);
    }
    // The class means differ pairwise: the expressions change the picture, not just the noise.
    std::vector<std::vector<double>> means(7, std::vector<double>(facet::fer_image_pixels, 0.0));
    const Dataset& train = a.splits[0];
    for (std::size_t i = 0; i < train.size(); ++i)
        for (std::size_t p = 0; p < facet::fer_image_pixels; ++p)
            means[static_cast<std::size_t>(train.labels[i])][p] += train.image(i)[p] / 20.0;
    for (std::size_t c = 0; c < 7; ++c)
        for (std::size_t d = c + 1; d < 7; ++d) {
            double distance = 0;
            for (std::size_t p = 0; p < facet::fer_image_pixels; ++p)
                distance += std::abs(means[c][p] - means[d][p]);
            CAPTURE(c);
            CAPTURE(d);
            CHECK(distance / facet::fer_image_pixels > 1.0);
        }
    facet::Rng rng(1);
    std::vector<std::uint8_t> face(facet::fer_image_pixels);
    CHECK_THROWS_AS(facet::render_synthetic_face(7, rng, face.data()), facet::Error);
}

TEST_CASE("PNG writing round-trips through the decoder") {
    TempDir dir;
    const auto img = random_image(3);
    facet::write_png(dir.path / "x.png", img.data(), 48, 48);
    CHECK(!fs::exists(dir.path / "x.png.tmp"));
    const facet::GrayImage back = facet::load_image(dir.path / "x.png");
    CHECK(back.width == 48);
    CHECK(back.pixels == img);
}

TEST_CASE("a subset of the real FER-2013 folder release" * doctest::test_suite("fer2013")) {
    const fs::path root = facet_test::fer2013_dir();
    if (root.empty()) {
        MESSAGE(facet_test::fer2013_missing);
        return;
    }
    ReadOptions options;
    options.max_per_class = 25;
    const DataSplits s = facet::load_dataset(root, options);
    const Dataset& train = s.at("train");
    const Dataset& test = s.at("test");
    CHECK(train.class_counts() == std::vector<std::size_t>(7, 25));
    CHECK(test.class_counts() == std::vector<std::size_t>(7, 25));
    CHECK(train.height == 48);
    CHECK(train.pixels.size() == 175 * 48 * 48);
    // Real faces: not constant, mean brightness in a plausible band.
    const auto z = facet::Normalization::of(train);
    CHECK(z.mean > 0.3f);
    CHECK(z.mean < 0.7f);
    CHECK(z.stddev > 0.1f);
    CHECK(s.skip_report.skipped == 0);
}
