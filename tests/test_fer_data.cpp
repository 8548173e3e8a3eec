// Tests of FER-2013 as a configuration of facet's data readers (examples/fer): Kaggle's CSV
// (values, labels, splits, every kind of bad row), the image-folder release with its seven class
// folders in any letter case mapped onto Kaggle's order and images of any size made 48 x 48, both
// releases giving the same data set, the synthetic stand-in faces, and a subset of the real data
// set when it is present.
#define FACET_IMPLEMENT_STB
#include "facet/data/image.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "facet/data/batch_loader.hpp"
#include "facet/data/dataset.hpp"
#include "facet/data/image_folder.hpp"
#include "fer/emotions.hpp"
#include "fer/fer_csv.hpp"
#include "fer/synthetic_faces.hpp"
#include "fer2013_dir.hpp"

#include "temp_dir.hpp"

namespace fs = std::filesystem;
using facet::Dataset;
using facet::DataSplits;
using facet::ReadOptions;

namespace {

/// A fresh folder for one test (temp_dir.hpp).
struct TempDir : facet_test::TempDir {
    TempDir() : facet_test::TempDir("facet_test_fer_data_") {}
};
using facet_test::write_text;

/// 2304 pixel values as a CSV field, pixel i = (i * step + offset) % 256.
std::string pixel_field(int step, int offset, std::size_t count = fer::fer_image_pixels) {
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
    std::vector<std::uint8_t> img(fer::fer_image_pixels);
    for (auto& p : img) p = static_cast<std::uint8_t>(rng.below(256));
    return img;
}

/// An empty FER-shaped data set: 48 x 48 images, the seven classes.
Dataset fer_dataset() {
    Dataset d;
    d.height = d.width = fer::fer_image_side;
    d.class_names = fer::fer_class_name_list();
    return d;
}

/// read_image_folder configured for FER-2013.
DataSplits read_fer_folder(const fs::path& root, const ReadOptions& options = {}) {
    return facet::read_image_folder(root, fer::fer_read_options(options));
}

/// The error message of parsing `text` as CSV, or "" when it parses.
std::string csv_error(const std::string& text, ReadOptions options = {}) {
    try {
        fer::parse_fer_csv(text, "bad.csv", options);
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
    const DataSplits s = fer::parse_fer_csv(text, "mem.csv");
    REQUIRE(s.splits.size() == 3);
    CHECK(s.splits[0].split == "train");
    CHECK(s.splits[1].split == "val");
    CHECK(s.splits[2].split == "test");
    const Dataset& train = s.at("train");
    REQUIRE(train.size() == 2);
    CHECK(train.labels == std::vector<int>{0, 3});
    CHECK(train.height == 48);
    CHECK(train.width == 48);
    for (std::size_t i = 0; i < fer::fer_image_pixels; ++i) {
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
    const DataSplits s = fer::parse_fer_csv(reordered, "r.csv");
    CHECK(s.at("train").labels == std::vector<int>{3});
    CHECK(s.at("val").labels == std::vector<int>{4});
    CHECK(s.at("train").image(0)[1] == 10);
    const DataSplits plain =
        fer::parse_fer_csv("emotion,pixels\n1," + pixel_field(1, 0) + "\n", "p.csv");
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
    CHECK_THROWS_WITH_AS(fer::read_fer_csv(dir.path / "big.csv", small),
                         doctest::Contains("exceeds the limit of 10"), facet::Error);
    CHECK_THROWS_WITH_AS(fer::read_fer_csv(dir.path / "missing.csv"),
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
    const DataSplits s = fer::parse_fer_csv(text, "skip.csv", options);
    REQUIRE(s.at("train").size() == 2);
    CHECK(s.at("val").size() == 1);
    CHECK(s.skip_report.skipped == 8);
    // The rows after a skipped one are moved up intact.
    CHECK(s.at("train").labels == std::vector<int>{3, 5});
    for (std::size_t i = 0; i < fer::fer_image_pixels; ++i)
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
    Dataset train = fer_dataset(), val = fer_dataset();
    train.split = "train";
    val.split = "val";
    for (int i = 0; i < 14; ++i)
        train.add(random_image(static_cast<std::uint64_t>(i)).data(), i % 7);
    val.add(random_image(99).data(), 2);
    fer::write_fer_csv(dir.path / "fer.csv", {&train, &val});
    const DataSplits s = fer::read_fer_csv(dir.path / "fer.csv");
    CHECK(s.at("train").pixels == train.pixels);
    CHECK(s.at("train").labels == train.labels);
    CHECK(s.at("val").pixels == val.pixels);
    ReadOptions one;
    one.max_per_class = 1;
    const DataSplits limited = fer::read_fer_csv(dir.path / "fer.csv", one);
    CHECK(limited.at("train").labels == std::vector<int>{0, 1, 2, 3, 4, 5, 6});
    Dataset odd = fer_dataset();
    odd.split = "mystery";
    odd.add(random_image(1).data(), 0);
    CHECK_THROWS_WITH_AS(fer::write_fer_csv(dir.path / "x.csv", {&odd}),
                         doctest::Contains("no Kaggle Usage for split 'mystery'"), facet::Error);
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

    const DataSplits s = fer::load_fer_data(root);
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
    const DataSplits flat = read_fer_folder(root / "train");
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
        CHECK_THROWS_WITH_AS(read_fer_folder(root),
                             doctest::Contains("confused: unknown class folder"), facet::Error);
        ReadOptions skip;
        skip.skip_bad = true;
        const DataSplits s = read_fer_folder(root, skip);
        CHECK(s.at("train").size() == 1);
        CHECK(s.skip_report.skipped == 1);
    }
    SUBCASE("unknown split folder") {
        fs::create_directories(root / "holdout" / "happy");
        CHECK_THROWS_WITH_AS(read_fer_folder(root), doctest::Contains("holdout: unknown folder"),
                             facet::Error);
    }
    SUBCASE("two folders for one split") {
        fs::create_directories(root / "val" / "happy");
        fs::create_directories(root / "PublicTest" / "happy");
        CHECK_THROWS_WITH_AS(read_fer_folder(root), doctest::Contains("both hold split 'val'"),
                             facet::Error);
    }
    SUBCASE("corrupt image: error naming the file, or skipped") {
        write_text(root / "train" / "happy" / "broken.jpg", "\xFF\xD8\xFF\xE0 this is not a JPEG");
        write_text(root / "train" / "happy" / "empty.png", "");
        const std::string broken = (root / "train" / "happy" / "broken.jpg").string();
        CHECK_THROWS_WITH_AS(read_fer_folder(root), doctest::Contains(broken.c_str()),
                             facet::Error);
        ReadOptions skip;
        skip.skip_bad = true;
        const DataSplits s = read_fer_folder(root, skip);
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
        CHECK_THROWS_WITH_AS(read_fer_folder(root),
                             doctest::Contains("60000x60000 exceeds the limit"), facet::Error);
        ReadOptions tight;
        tight.max_image_side = 40;  // the 48x48 PNG now exceeds the limit too
        tight.skip_bad = true;
        CHECK_THROWS_WITH_AS(read_fer_folder(root, tight), doctest::Contains("no readable images"),
                             facet::Error);
    }
    SUBCASE("empty data sets") {
        TempDir empty;
        CHECK_THROWS_WITH_AS(read_fer_folder(empty.path), doctest::Contains("empty data set"),
                             facet::Error);
        fs::create_directories(empty.path / "test" / "fear");
        CHECK_THROWS_WITH_AS(read_fer_folder(empty.path), doctest::Contains("no readable images"),
                             facet::Error);
        CHECK_THROWS_WITH_AS(fer::load_fer_data(empty.path / "nothing"),
                             doctest::Contains("no such file or folder"), facet::Error);
    }
}

TEST_CASE("the CSV and the folder readers give the same Dataset for the same images") {
    TempDir dir;
    Dataset train = fer_dataset(), val = fer_dataset();
    train.split = "train";
    val.split = "val";
    for (int c = 0; c < fer::fer_num_classes; ++c)
        for (int k = 0; k < 2 + c % 2; ++k)
            train.add(random_image(static_cast<std::uint64_t>(100 * c + k)).data(), c);
    val.add(random_image(7).data(), 5);
    val.add(random_image(8).data(), 1);
    // Folder order is class (canonical) then file name; write the CSV rows in that order too.
    std::vector<int> val_order = {1, 0};
    Dataset val_sorted = fer_dataset();
    val_sorted.split = "val";
    for (int i : val_order)
        val_sorted.add(val.image(static_cast<std::size_t>(i)),
                       val.labels[static_cast<std::size_t>(i)]);
    fer::write_fer_csv(dir.path / "fer.csv", {&train, &val_sorted});
    for (const Dataset* d : {&train, &val_sorted}) {
        const std::string folder = d == &train ? "train" : "PublicTest";
        for (std::size_t i = 0; i < d->size(); ++i) {
            const std::string cls(fer::fer_class_names[static_cast<std::size_t>(d->labels[i])]);
            const fs::path file =
                dir.path / "img" / folder / cls / ("Training_" + std::to_string(1000 + i) + ".png");
            fs::create_directories(file.parent_path());
            REQUIRE(stbi_write_png(file.c_str(), 48, 48, 1, d->image(i), 48));
        }
    }
    const DataSplits from_csv = fer::load_fer_data(dir.path / "fer.csv");
    const DataSplits from_folder = fer::load_fer_data(dir.path / "img");
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

TEST_CASE("synthetic faces: seeded, balanced, named as synthetic, all seven expressions differ") {
    fer::SyntheticFaceOptions options;
    options.train_per_class = 20;
    options.test_per_class = 5;
    const DataSplits a = fer::make_synthetic_faces(options);
    const DataSplits b = fer::make_synthetic_faces(options);
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
    CHECK(fer::make_synthetic_faces(options).splits[0].pixels != a.splits[0].pixels);
    // Images are not blank: each has a real spread of intensities.
    for (std::size_t i = 0; i < 14; ++i) {
        const auto* img = a.splits[0].image(i);
        const auto [lo, hi] = std::minmax_element(img, img + fer::fer_image_pixels);
        CHECK(*hi - *lo > 60);
    }
    // The class means differ pairwise: the expressions change the picture, not just the noise.
    std::vector<std::vector<double>> means(7, std::vector<double>(fer::fer_image_pixels, 0.0));
    const Dataset& train = a.splits[0];
    for (std::size_t i = 0; i < train.size(); ++i)
        for (std::size_t p = 0; p < fer::fer_image_pixels; ++p)
            means[static_cast<std::size_t>(train.labels[i])][p] += train.image(i)[p] / 20.0;
    for (std::size_t c = 0; c < 7; ++c)
        for (std::size_t d = c + 1; d < 7; ++d) {
            double distance = 0;
            for (std::size_t p = 0; p < fer::fer_image_pixels; ++p)
                distance += std::abs(means[c][p] - means[d][p]);
            CAPTURE(c);
            CAPTURE(d);
            CHECK(distance / fer::fer_image_pixels > 1.0);
        }
    facet::Rng rng(1);
    std::vector<std::uint8_t> face(fer::fer_image_pixels);
    CHECK_THROWS_AS(fer::render_synthetic_face(7, rng, face.data()), facet::Error);
}

TEST_CASE("a subset of the real FER-2013 folder release" * doctest::test_suite("fer2013")) {
    const fs::path root = facet_test::fer2013_dir();
    if (root.empty()) {
        MESSAGE(facet_test::fer2013_missing);
        return;
    }
    ReadOptions options;
    options.max_per_class = 25;
    const DataSplits s = fer::load_fer_data(root, options);
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
