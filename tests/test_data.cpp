// Tests for data/: the generic readers on data sets this file writes of another class set and image
// size than FER-2013's (three classes, 32 x 24 images): image folders (PNG files written with
// stb_image_write) and CSV files with a pixels or a path column, the class names found or given,
// the image size found or given, other sizes resized or refused; the CSV writer; resampling; the
// BatchLoader; PNG writing; and that every file goes through the fsync'd atomic writer.
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

#include "facet/core/atomic_file.hpp"
#include "facet/data/batch_loader.hpp"
#include "facet/data/csv_dataset.hpp"
#include "facet/data/dataset.hpp"
#include "facet/data/image_folder.hpp"
#include "facet/data/load.hpp"

#include "temp_dir.hpp"

namespace fs = std::filesystem;
using facet::Dataset;
using facet::DataSplits;
using facet::ReadOptions;

namespace {

/// A fresh folder for one test (temp_dir.hpp).
struct TempDir : facet_test::TempDir {
    TempDir() : facet_test::TempDir("facet_test_data_") {}
};
using facet_test::write_text;

/// The test data set's shape: 32 pixels wide, 24 high, three classes.
constexpr std::size_t width = 32, height = 24, pixels = width * height;

/// A random image of `count` pixels.
std::vector<std::uint8_t> random_image(std::uint64_t seed, std::size_t count = pixels) {
    facet::Rng rng(seed);
    std::vector<std::uint8_t> img(count);
    for (auto& p : img) p = static_cast<std::uint8_t>(rng.below(256));
    return img;
}

/// An empty data set of `classes` classes named c0, c1, ... and images of h x w.
Dataset blank_dataset(const std::string& split, int classes = 7, std::size_t h = 48,
                      std::size_t w = 48) {
    Dataset d;
    d.split = split;
    d.height = h;
    d.width = w;
    for (int c = 0; c < classes; ++c)
        d.class_names.push_back(std::string(1, 'c').append(std::to_string(c)));
    return d;
}

/// Pixels as a CSV field.
std::string pixel_field(const std::vector<std::uint8_t>& img) {
    std::string s;
    for (std::size_t i = 0; i < img.size(); ++i) {
        if (i) s += ' ';
        s += std::to_string(img[i]);
    }
    return s;
}

/// Writes a w x h gray PNG.
void write_gray_png(const fs::path& file, const std::vector<std::uint8_t>& img, std::size_t w,
                    std::size_t h) {
    fs::create_directories(file.parent_path());
    REQUIRE(stbi_write_png(file.c_str(), static_cast<int>(w), static_cast<int>(h), 1, img.data(),
                           static_cast<int>(w)));
}

}  // namespace

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

TEST_CASE("class distribution: counts, fractions and a table") {
    Dataset d = blank_dataset("train", 7, height, width);
    d.class_names[3] = "happy";
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
    Dataset d = blank_dataset("train");
    std::vector<std::uint8_t> img(d.image_size());
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
    Dataset d = blank_dataset("train", 2, height, width);
    std::vector<std::uint8_t> black(pixels, 0), white(pixels, 255);
    d.add(black.data(), 0);
    d.add(white.data(), 1);
    const auto z = facet::Normalization::of(d);
    CHECK(z.mean == doctest::Approx(0.5));
    CHECK(z.stddev == doctest::Approx(0.5));
    float v[2] = {0.0f, 1.0f};
    z.apply(v, 2);
    CHECK(v[0] == doctest::Approx(-1.0));
    CHECK(v[1] == doctest::Approx(1.0));
    Dataset constant = blank_dataset("train", 2, height, width);
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

TEST_CASE("PNG writing round-trips through the decoder") {
    TempDir dir;
    const auto img = random_image(3);
    facet::write_png(dir.path / "x.png", img.data(), width, height);
    CHECK(!fs::exists(dir.path / "x.png.tmp"));
    const facet::GrayImage back = facet::load_image(dir.path / "x.png");
    CHECK(back.width == width);
    CHECK(back.height == height);
    CHECK(back.pixels == img);
}

TEST_CASE("image folder: three classes of 32x24 images, classes found or given, flat layout") {
    TempDir dir;
    const fs::path root = dir.path / "animals";
    // train: bird 1, cat 2, dog 1 images; test: cat 1, dog 1.
    const std::vector<std::pair<std::string, std::string>> files = {
        {"train/cat/a.png", "cat"},   {"train/cat/b.png", "cat"}, {"train/dog/c.png", "dog"},
        {"train/bird/d.png", "bird"}, {"test/cat/e.png", "cat"},  {"test/dog/f.png", "dog"}};
    std::vector<std::vector<std::uint8_t>> images;
    for (std::size_t i = 0; i < files.size(); ++i) {
        images.push_back(random_image(10 + i));
        write_gray_png(root / files[i].first, images.back(), width, height);
    }

    const DataSplits s = facet::load_dataset(root);
    REQUIRE(s.splits.size() == 2);
    const Dataset& train = s.at("train");
    CHECK(train.class_names == std::vector<std::string>{"bird", "cat", "dog"});  // sorted
    CHECK(train.height == height);
    CHECK(train.width == width);
    CHECK(train.labels == std::vector<int>{0, 1, 1, 2});  // by class, then file name
    CHECK(std::equal(images[3].begin(), images[3].end(), train.image(0)));  // bird/d.png
    CHECK(std::equal(images[0].begin(), images[0].end(), train.image(1)));  // cat/a.png
    CHECK(std::equal(images[2].begin(), images[2].end(), train.image(3)));  // dog/c.png
    CHECK(s.at("test").class_names == train.class_names);  // from the union of all splits
    CHECK(s.at("test").labels == std::vector<int>{1, 2});

    // Given classes set the label order; folder names match in any letter case.
    fs::rename(root / "test" / "dog", root / "test" / "DOG");
    ReadOptions given;
    given.class_names = {"dog", "cat", "bird"};
    const DataSplits g = facet::read_image_folder(root, given);
    CHECK(g.at("train").class_names == given.class_names);
    CHECK(g.at("train").labels == std::vector<int>{0, 1, 1, 2});
    CHECK(std::equal(images[2].begin(), images[2].end(), g.at("train").image(0)));
    CHECK(g.at("test").labels == std::vector<int>{0, 1});
    given.class_names = {"cat", "dog"};
    CHECK_THROWS_WITH_AS(facet::read_image_folder(root, given),
                         doctest::Contains("bird: unknown class folder (expected one of cat dog"),
                         facet::Error);
    // Class folders at the top: one split "train".
    const DataSplits flat = facet::read_image_folder(root / "train");
    REQUIRE(flat.splits.size() == 1);
    CHECK(flat.splits[0].split == "train");
    CHECK(flat.splits[0].pixels == train.pixels);
}

TEST_CASE("image folder: an image of another size is refused, or resized, by option") {
    TempDir dir;
    const fs::path root = dir.path / "animals";
    write_gray_png(root / "cat" / "a.png", random_image(1), width, height);
    // 64 x 48 of 2 x 2 blocks: the same aspect ratio, so resizing averages each block exactly.
    std::vector<std::uint8_t> big(64 * 48), expected(pixels);
    for (std::size_t y = 0; y < 48; ++y)
        for (std::size_t x = 0; x < 64; ++x)
            big[y * 64 + x] = static_cast<std::uint8_t>((x / 2 * 7 + y / 2 * 3) % 256);
    for (std::size_t y = 0; y < height; ++y)
        for (std::size_t x = 0; x < width; ++x)
            expected[y * width + x] = static_cast<std::uint8_t>((x * 7 + y * 3) % 256);
    write_gray_png(root / "dog" / "b.png", big, 64, 48);

    const std::string b =
        (root / "dog" / "b.png").string() + ": image of 64x48 pixels; the data set's are 32x24";
    CHECK_THROWS_WITH_AS(facet::read_image_folder(root), doctest::Contains(b.c_str()),
                         facet::Error);
    ReadOptions skip;
    skip.skip_bad = true;
    const DataSplits skipped = facet::read_image_folder(root, skip);
    CHECK(skipped.at("train").size() == 1);
    CHECK(skipped.skip_report.skipped == 1);

    ReadOptions resize;
    resize.resize = true;
    const DataSplits resized = facet::read_image_folder(root, resize);
    REQUIRE(resized.at("train").size() == 2);
    CHECK(std::equal(expected.begin(), expected.end(), resized.at("train").image(1)));

    // A size given by the caller: every image is made that size.
    resize.image_height = 12;
    resize.image_width = 16;
    const DataSplits small = facet::read_image_folder(root, resize);
    CHECK(small.at("train").height == 12);
    CHECK(small.at("train").width == 16);
    CHECK(small.at("train").pixels.size() == 2 * 12 * 16);
    resize.image_width = 0;
    CHECK_THROWS_WITH_AS(facet::read_image_folder(root, resize),
                         doctest::Contains("give both image_height and image_width"), facet::Error);
}

TEST_CASE("CSV: a pixels column with any class set and a given non-square size") {
    const auto a = random_image(1), b = random_image(2), c = random_image(3);
    const std::string text =
        "split,label,pixels,comment\n"
        "train,dog," +
        pixel_field(a) +
        ",x\n"
        "test,Cat," +
        pixel_field(b) +
        ",y\n"
        "train,bird," +
        pixel_field(c) + ",z\n";
    // 768 values are no square: the size must be given.
    CHECK_THROWS_WITH_AS(facet::parse_csv_dataset(text, "a.csv"),
                         doctest::Contains("a.csv:2: 768 pixels are not a square image"),
                         facet::Error);
    ReadOptions options;
    options.image_height = height;
    options.image_width = width;
    const DataSplits s = facet::parse_csv_dataset(text, "a.csv", {}, options);
    const Dataset& train = s.at("train");
    CHECK(train.class_names == std::vector<std::string>{"bird", "Cat", "dog"});
    CHECK(train.labels == std::vector<int>{2, 0});
    CHECK(s.at("test").labels == std::vector<int>{1});
    CHECK(train.height == height);
    CHECK(std::equal(a.begin(), a.end(), train.image(0)));
    CHECK(std::equal(b.begin(), b.end(), s.at("test").image(0)));

    // Given classes: names in any case, or indices into them.
    options.class_names = {"cat", "dog", "bird"};
    const DataSplits g = facet::parse_csv_dataset(
        "label,pixels\n2," + pixel_field(a) + "\nDOG," + pixel_field(b) + "\n", "g.csv", {},
        options);
    CHECK(g.at("train").labels == std::vector<int>{2, 1});
    CHECK_THROWS_WITH_AS(
        facet::parse_csv_dataset("label,pixels\n3," + pixel_field(a) + "\n", "g.csv", {}, options),
        doctest::Contains("g.csv:2: unknown label '3' (expected 0-2 or a class name)"),
        facet::Error);
    CHECK_THROWS_WITH_AS(facet::parse_csv_dataset("label,pixels\n1,1 2 3\n", "g.csv", {}, options),
                         doctest::Contains("g.csv:2: found 3 pixels, expected 768"), facet::Error);
    // Classes found from indices sort numerically; a square pixel count gives the size.
    const DataSplits numbers =
        facet::parse_csv_dataset("label,pixels\n10,1 2 3 4\n9,5 6 7 8\n", "n.csv");
    CHECK(numbers.at("train").class_names == std::vector<std::string>{"9", "10"});
    CHECK(numbers.at("train").labels == std::vector<int>{1, 0});
    CHECK(numbers.at("train").height == 2);
}

TEST_CASE("CSV: a path column reads image files relative to the CSV file") {
    TempDir dir;
    const auto a = random_image(4), b = random_image(5);
    write_gray_png(dir.path / "img" / "a.png", a, width, height);
    write_gray_png(dir.path / "img" / "b.png", b, width, height);
    write_text(dir.path / "list.csv", "file,class\nimg/b.png,owl\nimg/a.png,fox\n");
    facet::CsvColumns columns;
    columns.label = "class";
    columns.path = "file";
    const DataSplits s = facet::load_dataset(dir.path / "list.csv", {}, columns);
    const Dataset& train = s.at("train");
    CHECK(train.class_names == std::vector<std::string>{"fox", "owl"});
    CHECK(train.labels == std::vector<int>{1, 0});
    CHECK(train.width == width);
    CHECK(train.height == height);
    CHECK(std::equal(b.begin(), b.end(), train.image(0)));
    CHECK(std::equal(a.begin(), a.end(), train.image(1)));
    write_text(dir.path / "bad.csv", "file,class\nimg/a.png,fox\nimg/missing.png,owl\n");
    CHECK_THROWS_WITH_AS(facet::load_dataset(dir.path / "bad.csv", {}, columns),
                         doctest::Contains("missing.png"), facet::Error);
    CHECK_THROWS_WITH_AS(facet::load_dataset(dir.path / "list.csv"),
                         doctest::Contains("list.csv:1: header must name the columns label"),
                         facet::Error);
}

TEST_CASE("CSV: write_csv_dataset and the reader round-trip a 32x24 data set") {
    TempDir dir;
    Dataset train = blank_dataset("train", 3, height, width), test = train;
    test.split = "test";
    for (int i = 0; i < 6; ++i) train.add(random_image(20 + i).data(), i % 3);
    test.add(random_image(40).data(), 2);
    facet::write_csv_dataset(dir.path / "d.csv", {&train, &test});
    ReadOptions options;
    options.class_names = train.class_names;
    options.image_height = height;
    options.image_width = width;
    const DataSplits s = facet::read_csv_dataset(dir.path / "d.csv", {}, options);
    CHECK(s.at("train").pixels == train.pixels);
    CHECK(s.at("train").labels == train.labels);
    CHECK(s.at("test").pixels == test.pixels);
    ReadOptions one = options;
    one.max_per_class = 1;
    CHECK(facet::read_csv_dataset(dir.path / "d.csv", {}, one).at("train").labels ==
          std::vector<int>{0, 1, 2});
    Dataset other = blank_dataset("val", 3, 48, 48);
    CHECK_THROWS_WITH_AS(facet::write_csv_dataset(dir.path / "x.csv", {&train, &other}),
                         doctest::Contains("one CSV holds one image size"), facet::Error);
    CHECK(!fs::exists(dir.path / "x.csv"));
}

TEST_CASE("a std::filesystem::path argument gets the fsync'd atomic writer") {
    // The writer in core/atomic_file.hpp writes a temporary of its own unique name
    // (<file>.tmp.<pid>.<n>, opened with O_EXCL) and leaves nothing behind. A fixed "<file>.tmp"
    // being a folder does not disturb it (a writer using that name could not open it).
    TempDir dir;
    const fs::path target = dir.path / "out.bin";
    fs::create_directories(dir.path / "out.bin.tmp");
    std::string content(100000, '\0');
    for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i * 31);
    facet::write_file_atomically(target, content.data(), content.size());
    CHECK(facet::read_file_contents(target, 1 << 20) == content);
    // Through the writers of data/: a PNG and a CSV.
    const auto img = random_image(6);
    facet::write_png(dir.path / "x.png", img.data(), width, height);
    Dataset d = blank_dataset("train", 3, height, width);
    d.add(img.data(), 1);
    facet::write_csv_dataset(dir.path / "x.csv", {&d});
    CHECK(facet::load_image(dir.path / "x.png").pixels == img);
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir.path))
        names.insert(entry.path().filename().string());
    CHECK(names == std::set<std::string>{"out.bin", "out.bin.tmp", "x.csv", "x.png"});
}
