// Tests of the model and checkpoint files: round trips that reproduce predictions and training bit
// for bit, and every kind of bad file (each truncation, each flipped byte, wrong magic, newer
// version, mismatched shapes, absurd length fields) rejected with an Error naming the file.
#include <doctest/doctest.h>
#include <sys/resource.h>

#include <unistd.h>
#include <bit>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "facet/core/atomic_file.hpp"
#include "facet/core/convert.hpp"
#include "facet/core/crc32.hpp"
#include "facet/layers/activations.hpp"
#include "facet/layers/batchnorm.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/dropout.hpp"
#include "facet/layers/flatten.hpp"
#include "facet/layers/maxpool2d.hpp"
#include "facet/loss/softmax_cross_entropy.hpp"
#include "facet/model/serialize.hpp"
#include "facet/optim/adam.hpp"
#include "facet/optim/schedule.hpp"

using namespace facet;
namespace fs = std::filesystem;

namespace {

/// A fresh directory for this test program's files, removed at exit.
struct TempDir {
    fs::path path =
        fs::temp_directory_path() / ("facet_test_serialize_" + std::to_string(::getpid()));
    TempDir() { fs::create_directories(path); }
    ~TempDir() { fs::remove_all(path); }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

Sequential<float> small_model(std::uint64_t seed = 3) {
    Sequential<float> m(Shape{1, 8, 8});
    m.add<Conv2d<float>>(1, 3, 3, 1, 1, false, seed);
    m.add<BatchNorm2d<float>>(3);
    m.add<ReLU<float>>();
    m.add<MaxPool2d<float>>(2);
    m.add<Dropout<float>>(0.25, seed);
    m.add<Flatten<float>>();
    m.add<Dense<float>>(48, 4, true, seed + 1);
    return m;
}

struct Batch {
    Tensor<float> x{Shape{8, 1, 8, 8}};
    std::vector<int> labels = std::vector<int>(8);
    explicit Batch(std::uint64_t seed) {
        Rng rng(seed);
        x.fill_normal(rng, 0, 1);
        for (int& l : labels) l = static_cast<int>(rng.below(4));
    }
};

/// A model trained for a few Adam steps, so that weights and BN running statistics are not initial.
Sequential<float> trained_model() {
    Sequential<float> m = small_model();
    Adam<float> adam(m.parameters(), {.learning_rate = 0.01});
    SoftmaxCrossEntropy<float> loss;
    for (std::uint64_t s = 0; s < 3; ++s) {
        Batch b(s);
        m.train_step(b.x, b.labels, loss, adam);
    }
    return m;
}

bool same_values(Sequential<float>& a, Sequential<float>& b) {
    const auto& pa = a.parameters();
    const auto& pb = b.parameters();
    if (pa.size() != pb.size()) return false;
    for (std::size_t i = 0; i < pa.size(); ++i)
        if (pa[i].name != pb[i].name ||
            !std::equal(pa[i].value->begin(), pa[i].value->end(), pb[i].value->begin()))
            return false;
    return true;
}

/// Bytes of a model file written by hand, to reach the checks behind the checksum. The bodies
/// below are written in format 1's encoding (all-double configs, float32 tensors without an
/// element type), which the reader still accepts, unless `version` says otherwise.
std::vector<unsigned char> crafted_file(const std::function<void(serial::ByteWriter&)>& body,
                                        std::uint32_t version = 1) {
    serial::ByteWriter w;
    serial::begin_file(w, serial::model_magic, version);
    body(w);
    return serial::finish_file(w);
}

/// The architecture part of a one-layer Dense(in -> out) model with input (in).
void dense_architecture(serial::ByteWriter& w, std::size_t in, std::size_t out) {
    w.shape(Shape{in});
    w.u32(1);
    w.string("Dense");
    w.u32(3);
    w.string("in_features"), w.f64(static_cast<double>(in));
    w.string("out_features"), w.f64(static_cast<double>(out));
    w.string("bias"), w.f64(1);
}

std::string decode_error(const std::vector<unsigned char>& bytes) {
    try {
        decode_model<float>(bytes, "bad.fmdl");
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("CRC-32 matches the standard check value") {
    const char digits[] = "123456789";
    CHECK(crc32(digits, 9) == 0xCBF43926u);
    CHECK(crc32_update(crc32(digits, 4), digits + 4, 5) == 0xCBF43926u);
    CHECK(crc32(digits, 0) == 0u);
}

TEST_CASE(
    "save then load reproduces the architecture, the values and the predictions bit for bit") {
    TempDir dir;
    Sequential<float> model = trained_model();
    save(model, dir.file("model.fmdl"));
    Sequential<float> loaded = load<float>(dir.file("model.fmdl"));

    CHECK(loaded.input_shape() == model.input_shape());
    REQUIRE(loaded.size() == model.size());
    for (std::size_t i = 0; i < model.size(); ++i)
        CHECK(loaded.layer(i).describe() == model.layer(i).describe());
    CHECK(same_values(model, loaded));

    Batch b(100);
    const Tensor<float> expected = model.predict(b.x);
    const Tensor<float>& got = loaded.predict(b.x);
    CHECK(std::equal(expected.begin(), expected.end(), got.begin()));

    // The same file loads as a double model with the same predictions up to float rounding.
    Sequential<double> wide = load<double>(dir.file("model.fmdl"));
    Tensor<double> xd(b.x.shape());
    for (std::size_t i = 0; i < xd.size(); ++i) xd[i] = b.x[i];
    const Tensor<double>& pd = wide.predict(xd);
    for (std::size_t i = 0; i < pd.size(); ++i)
        CHECK(pd[i] == doctest::Approx(expected[i]).epsilon(1e-4));

    // Saving again gives the same bytes: the format holds no timestamps or padding garbage.
    CHECK(encode_model(loaded) == encode_model(model));
}

TEST_CASE("every truncation of a model file is rejected as truncated") {
    Sequential<float> model = small_model();
    const std::vector<unsigned char> bytes = encode_model(model);
    REQUIRE(bytes.size() > 1000);
    std::size_t wrong = 0;
    for (std::size_t length = 0; length < bytes.size(); ++length) {
        const std::string message = decode_error(
            std::vector<unsigned char>(bytes.begin(), bytes.begin() + static_cast<long>(length)));
        if (message.find("bad.fmdl: truncated") == std::string::npos && wrong++ < 3)
            MESSAGE("length ", length, ": ", message);
    }
    CHECK(wrong == 0);
    CHECK_NOTHROW(decode_model<float>(bytes, "good.fmdl"));
}

TEST_CASE("every flipped byte of a model file is detected") {
    Sequential<float> model = small_model();
    const std::vector<unsigned char> bytes = encode_model(model);
    std::size_t accepted = 0, checksum_errors = 0;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        std::vector<unsigned char> bad = bytes;
        bad[i] ^= 0x10;
        const std::string message = decode_error(bad);
        if (message.rfind("bad.fmdl: ", 0) != 0) ++accepted;
        if (message.find("checksum mismatch") != std::string::npos) ++checksum_errors;
    }
    CHECK(accepted == 0);
    CHECK(checksum_errors == bytes.size() - 20);  // all but the header (magic, version, size)
}

TEST_CASE("wrong magic, checkpoint-for-model, newer version, and trailing bytes are named") {
    Sequential<float> model = small_model();
    std::vector<unsigned char> bytes = encode_model(model);

    std::vector<unsigned char> png = bytes;
    std::memcpy(png.data(), "\x89PNG\r\n\x1a\n", 8);
    CHECK(decode_error(png).find("not a facet model file: wrong magic") != std::string::npos);

    const auto newer = crafted_file([](serial::ByteWriter& w) { dense_architecture(w, 2, 2); }, 3);
    CHECK(decode_error(newer).find("format version 3 is newer than this facet supports (2)") !=
          std::string::npos);
    const auto zero = crafted_file([](serial::ByteWriter& w) { dense_architecture(w, 2, 2); }, 0);
    CHECK(decode_error(zero).find("invalid format version 0") != std::string::npos);

    std::vector<unsigned char> longer = bytes;
    longer.push_back(0);
    CHECK(decode_error(longer).find("but its header says") != std::string::npos);

    TempDir dir;
    Adam<float> adam(model.parameters());
    save_checkpoint(dir.file("run.fckp"), model, adam, ConstantSchedule(1e-3), {});
    CHECK_THROWS_WITH_AS(load<float>(dir.file("run.fckp")),
                         doctest::Contains("is a facet training checkpoint"), Error);
    save(model, dir.file("model.fmdl"));
    CHECK_THROWS_WITH_AS(load_checkpoint<float>(dir.file("model.fmdl")),
                         doctest::Contains("is a facet model file"), Error);
    CHECK_THROWS_WITH_AS(load<float>(dir.file("missing.fmdl")), doctest::Contains("missing.fmdl"),
                         Error);
    CHECK_THROWS_WITH_AS(load<float>(dir.path.string()), doctest::Contains("not a regular file"),
                         Error);
}

TEST_CASE(
    "files with valid checksums but inconsistent contents are rejected before any big allocation") {
    auto tensor_f = [](serial::ByteWriter& w, const std::string& name, const Shape& s) {
        w.string(name);
        w.shape(s);
        w.floats(Tensor<float>(s, 0.5f));
    };
    SUBCASE("a tensor shape that does not fit the layer") {
        const auto bytes = crafted_file([&](serial::ByteWriter& w) {
            dense_architecture(w, 8, 3);
            w.u32(2);
            tensor_f(w, "0.weight", Shape{3, 9});
            tensor_f(w, "0.bias", Shape{3});
        });
        CHECK(decode_error(bytes).find(
                  "tensor '0.weight' has shape (3, 9), the layer needs (3, 8)") !=
              std::string::npos);
    }
    SUBCASE("a missing tensor, a misnamed tensor") {
        const auto missing = crafted_file([&](serial::ByteWriter& w) {
            dense_architecture(w, 8, 3);
            w.u32(1);
            tensor_f(w, "0.weight", Shape{3, 8});
        });
        CHECK(decode_error(missing).find("holds 1 tensors, the architecture needs 2") !=
              std::string::npos);
        const auto misnamed = crafted_file([&](serial::ByteWriter& w) {
            dense_architecture(w, 8, 3);
            w.u32(2);
            tensor_f(w, "0.bias", Shape{3});
            tensor_f(w, "0.weight", Shape{3, 8});
        });
        CHECK(decode_error(misnamed).find("expected tensor '0.weight', found '0.bias'") !=
              std::string::npos);
    }
    SUBCASE("an unknown layer, a layer that does not fit, a bad config value") {
        const auto unknown = crafted_file([&](serial::ByteWriter& w) {
            w.shape(Shape{4});
            w.u32(1);
            w.string("Transformer");
            w.u32(0);
            w.u32(0);
        });
        CHECK(decode_error(unknown).find("layer 0 (Transformer): make_layer: unknown layer type") !=
              std::string::npos);
        const auto misfit = crafted_file([&](serial::ByteWriter& w) {
            w.shape(Shape{5});
            w.u32(1);
            w.string("Dense");
            w.u32(2);
            w.string("in_features"), w.f64(4);
            w.string("out_features"), w.f64(2);
            w.u32(0);
            // Room for the layer's 8 weights, or the loader refuses it before building it.
            w.raw(std::vector<unsigned char>(32).data(), 32);
        });
        CHECK(decode_error(misfit).find("cannot take input (5)") != std::string::npos);
        const auto negative = crafted_file([&](serial::ByteWriter& w) {
            w.shape(Shape{4});
            w.u32(1);
            w.string("Dense");
            w.u32(2);
            w.string("in_features"), w.f64(4);
            w.string("out_features"), w.f64(-2);
            w.u32(0);
        });
        CHECK(decode_error(negative).find("layer 0 (Dense)") != std::string::npos);
    }
    SUBCASE("absurd counts and lengths") {
        const auto layers = crafted_file([](serial::ByteWriter& w) {
            w.shape(Shape{4});
            w.u32(0xFFFFFFFFu);
        });
        CHECK(decode_error(layers).find("layer count is 4294967295, more than the limit of 4096") !=
              std::string::npos);
        const auto name = crafted_file([](serial::ByteWriter& w) {
            w.shape(Shape{4});
            w.u32(1);
            w.u32(0x7FFFFFFFu);  // a type name of 2 GiB
        });
        CHECK(decode_error(name).find("layer type is 2147483647, more than the limit") !=
              std::string::npos);
        const auto rank = crafted_file([](serial::ByteWriter& w) { w.u32(9); });
        CHECK(decode_error(rank).find("rank 9 is not between 1 and 4") != std::string::npos);
        // Tensors of unknown shape (optimiser state) are checked against the bytes left.
        serial::ByteWriter w;
        w.string("3.weight.m");
        w.shape(Shape{std::size_t{1} << 20, std::size_t{1} << 20});
        w.u32(0);
        serial::ByteReader big(w.bytes().data(), w.bytes().size(), 0, "state.fckp");
        CHECK_THROWS_WITH_AS(
            big.tensor<float>(),
            doctest::Contains("state.fckp: tensor '3.weight.m' of shape (1048576, 1048576) needs"),
            Error);
        serial::ByteWriter v;
        v.string("x");
        v.u32(4);
        for (int i = 0; i < 4; ++i) v.u64(std::uint64_t{1} << 32);
        serial::ByteReader overflow(v.bytes().data(), v.bytes().size(), 0, "state.fckp");
        CHECK_THROWS_WITH_AS(overflow.tensor<float>(), doctest::Contains("overflows"), Error);
    }
    SUBCASE("NaN weights") {
        const auto bytes = crafted_file([&](serial::ByteWriter& w) {
            dense_architecture(w, 2, 1);
            w.u32(2);
            w.string("0.weight");
            w.shape(Shape{1, 2});
            w.floats(Tensor<float>(Shape{1, 2}, std::nanf("")));
            tensor_f(w, "0.bias", Shape{1});
        });
        CHECK(decode_error(bytes).find("'0.weight' holds a NaN") != std::string::npos);
    }
}

TEST_CASE("a failed save leaves the old file intact and no temporary file behind") {
    TempDir dir;
    const std::string path = dir.file("model.fmdl");
    Sequential<float> model = small_model();
    save(model, path);
    const std::string before = read_text(path);

    SUBCASE("the file-size limit stops the write half-way") {
        // With SIGXFSZ ignored, write() past RLIMIT_FSIZE fails with EFBIG, as on a full disk.
        Sequential<float> bigger(Shape{64});
        bigger.add<Dense<float>>(64, 64);
        auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
        rlimit old_limit{};
        REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
        rlimit limited = old_limit;
        limited.rlim_cur = 4096;
        REQUIRE(::setrlimit(RLIMIT_FSIZE, &limited) == 0);
        std::string message;
        try {
            save(bigger, path);
        } catch (const Error& e) {
            message = e.what();
        }
        ::setrlimit(RLIMIT_FSIZE, &old_limit);
        std::signal(SIGXFSZ, old_handler);
        CHECK(message.find("cannot write '" + path + "': write failed") != std::string::npos);
    }
    SUBCASE("the directory does not exist") {
        CHECK_THROWS_WITH_AS(save(model, dir.file("no/such/dir/model.fmdl")),
                             doctest::Contains("no/such/dir"), Error);
    }
    CHECK(read_text(path) == before);
    std::size_t files = 0;
    for (const auto& entry : fs::directory_iterator(dir.path)) files += entry.is_regular_file();
    CHECK(files == 1);
    CHECK_NOTHROW(load<float>(path));
}

TEST_CASE(
    "a checkpoint restores model, optimiser, schedule and run position; training continues bit for "
    "bit") {
    TempDir dir;
    Sequential<float> model = small_model();
    Adam<float> adam(model.parameters(), {.learning_rate = 0.01, .weight_decay = 1e-3});
    CosineSchedule schedule(0.01, 2, 20, 1e-4);
    SoftmaxCrossEntropy<float> loss;
    std::size_t step = 0;
    auto train = [&](Sequential<float>& m, Optimizer<float>& opt, const Schedule& sched,
                     std::size_t steps) {
        for (std::size_t s = 0; s < steps; ++s, ++step) {
            opt.set_learning_rate(sched.rate(step));
            Batch b(step);
            m.train_step(b.x, b.labels, loss, opt);
        }
    };
    model.reseed(7);
    train(model, adam, schedule, 4);

    CheckpointInfo info;
    info.epoch = 1;
    info.step = step;
    info.seeds = {{"shuffle", 12345}, {"dropout", 7}};
    info.metadata = {{"command", "fer train --epochs 8"}, {"note", std::string(5000, 'x')}};
    save_checkpoint(dir.file("run.fckp"), model, adam, schedule, info);

    Checkpoint<float> c = load_checkpoint<float>(dir.file("run.fckp"));
    CHECK(c.info.epoch == 1);
    CHECK(c.info.step == 4);
    CHECK(c.info.seed("dropout") == 7);
    CHECK(c.info.note("command") == "fer train --epochs 8");
    CHECK(c.info.note("note").size() == 5000);
    CHECK_THROWS_AS(c.info.seed("nope"), Error);
    CHECK(same_values(model, c.model));
    Adam<float> restored_adam(c.model.parameters());
    restored_adam.load_state(c.optimizer);
    CosineSchedule restored_schedule(1, 0, 1);
    restored_schedule.load_state(c.schedule);
    CHECK(restored_adam.steps() == 4);

    // Continue both runs from the same point; dropout streams restart from the same seed, as a
    // resumed run does at an epoch boundary.
    const std::size_t resume_step = step;
    model.reseed(8);
    train(model, adam, schedule, 3);
    step = resume_step;
    c.model.reseed(8);
    train(c.model, restored_adam, restored_schedule, 3);
    CHECK(same_values(model, c.model));

    // A checkpoint's optimiser state does not fit a different model.
    Sequential<float> other(Shape{4});
    other.add<Dense<float>>(4, 2);
    Adam<float> other_adam(other.parameters());
    CHECK_THROWS_AS(other_adam.load_state(c.optimizer), Error);

    // Truncated checkpoints are rejected too.
    const std::vector<unsigned char> bytes = read_whole_file(dir.file("run.fckp"), 1 << 24);
    for (std::size_t length :
         {std::size_t{0}, std::size_t{30}, bytes.size() / 2, bytes.size() - 1}) {
        write_file_atomically(dir.file("cut.fckp"), bytes.data(), length);
        CHECK_THROWS_WITH_AS(load_checkpoint<float>(dir.file("cut.fckp")),
                             doctest::Contains("truncated"), Error);
    }
}

// ---- Format 2: typed nested configs, element types, provenance; format 1 still loads.

namespace {

/// The model tests/fixtures/model_v1.facet holds, as format 1 (facet before format 2) wrote it:
/// conv (bias) -> BN2d -> ReLU -> max-pool -> flatten -> dropout -> dense, with biases and
/// batch-norm statistics set away from their initial values.
Tensor<float> fixture_input() {
    Tensor<float> x(Shape{2, 1, 8, 8});
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(std::sin(0.37 * double(i)) * 1.5);
    return x;
}

/// Options that store the weights as `type` (GCC's -Wextra warns about designated initialisers
/// that leave a member out).
SaveOptions weights_as(DType type) {
    SaveOptions options;
    options.weights = type;
    return options;
}

/// A config with every value kind, nested: what a graph or composite layer might store.
LayerConfig nested_config() {
    LayerConfig inner{"Inner", {{"units", 3}, {"rate", 0.5}, {"on", true}, {"name", "a b"}}};
    LayerConfig outer{"Outer",
                      {{"shape", ConfigValue::List{1, 48, 48}},
                       {"mixed", ConfigValue::List{ConfigValue::List{-7}, 2.5, "x"}},
                       {"big", std::int64_t{-9007199254740993}},
                       {"empty", ConfigValue::List{}}}};
    outer.set("layers", ConfigValue::Children{inner, LayerConfig{"Leaf", {}}});
    return outer;
}

}  // namespace

TEST_CASE("a model file of format 1 loads with the same predictions and notes") {
    ModelFile<float> f = load_model_file<float>(FACET_SOURCE_DIR "/tests/fixtures/model_v1.facet");
    CHECK(f.format_version == 1);
    CHECK(f.provenance.empty());
    CHECK(f.metadata ==
          ModelMetadata{{"classes", "angry,happy,sad"}, {"normalization", "0.5 0.25"}});
    REQUIRE(f.model.size() == 7);
    CHECK(f.model.layer(0).describe() == "Conv2d(1->4, 3x3, stride 1, pad 1)");
    CHECK(f.model.layer(5).config().integer("seed_lo") == 0x23456789);
    CHECK(f.model.layer(5).config().integer("seed_hi") == 1);
    for (const auto& [name, type] : f.tensor_types) CHECK(type == DType::F32);
    // The predictions the writer of format 1 printed for this input.
    const float expected[] = {0.021420313f,  0.00480259955f, 0.973777115f,
                              0.0031417259f, 0.0181938987f,  0.978664398f};
    const Tensor<float>& p = f.model.predict(fixture_input());
    REQUIRE(p.size() == 6);
    for (std::size_t i = 0; i < 6; ++i) CHECK(std::abs(p[i] - expected[i]) <= 1e-6f);

    // Saved again, it is a format-2 file of the same model.
    const std::vector<unsigned char> bytes = encode_model(f.model, f.metadata);
    ModelFile<float> again = decode_model_file<float>(bytes, "again.facet");
    CHECK(again.format_version == 2);
    CHECK(again.provenance.library_version == version_string);
    CHECK(again.metadata == f.metadata);
    const Tensor<float>& q = again.model.predict(fixture_input());
    for (std::size_t i = 0; i < 6; ++i) CHECK(q[i] == p[i]);
}

TEST_CASE("facet::version_string is CMake's project version") {
    std::ifstream in(FACET_SOURCE_DIR "/CMakeLists.txt");
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const std::string marker = "project(facet VERSION ";
    const std::size_t at = text.find(marker);
    REQUIRE(at != std::string::npos);
    const std::string cmake =
        text.substr(at + marker.size(), text.find(' ', at + marker.size()) - (at + marker.size()));
    CHECK(cmake == version_string);
    CHECK(cmake == std::to_string(version_major) + "." + std::to_string(version_minor) + "." +
                       std::to_string(version_patch));
}

TEST_CASE("configs of every value kind, nested, survive the file as they were") {
    serial::ByteWriter w;
    const LayerConfig original = nested_config();
    w.config(original);
    serial::ByteReader r(w.bytes().data(), w.bytes().size(), 0, "cfg.facet");
    const LayerConfig back = r.config();
    r.expect_end();
    CHECK(back == original);
    CHECK(back.integer("big") == -9007199254740993);  // not representable as a double
    CHECK(back.children("layers")[0].text("name") == "a b");
    // The built-in layers' typed configs too: integers stay integers, flags flags.
    Sequential<float> model = small_model();
    for (const auto& layer : model.layers()) {
        serial::ByteWriter lw;
        lw.config(layer->config());
        serial::ByteReader lr(lw.bytes().data(), lw.bytes().size(), 0, "layer.facet");
        CHECK(lr.config() == layer->config());
    }
}

TEST_CASE("format 2 configs: caps on depth, counts and kinds are enforced when reading") {
    auto read = [](const std::function<void(serial::ByteWriter&)>& body) {
        serial::ByteWriter w;
        body(w);
        serial::ByteReader r(w.bytes().data(), w.bytes().size(), 0, "cfg.facet");
        try {
            r.config();
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("(read)");
    };
    auto header = [](serial::ByteWriter& w, std::uint32_t values) {
        w.string("X");
        w.u32(values);
        w.string("k");
    };
    // Lists nested 9 deep.
    const std::string deep = read([&](serial::ByteWriter& w) {
        header(w, 1);
        for (int i = 0; i < 10; ++i) w.u8(4), w.u32(1);
        w.u8(0), w.u64(1);
    });
    CHECK(deep.rfind("cfg.facet: config value 'k' of X: nested deeper than 8", 0) == 0);
    const std::string kind = read([&](serial::ByteWriter& w) { header(w, 1), w.u8(9); });
    CHECK(kind.find("unknown value kind 9") != std::string::npos);
    CHECK(kind.find("(at byte ") != std::string::npos);
    const std::string flag = read([&](serial::ByteWriter& w) { header(w, 1), w.u8(2), w.u8(2); });
    CHECK(flag.find("flag 2 is not 0 or 1") != std::string::npos);
    const std::string list = read([&](serial::ByteWriter& w) {
        header(w, 1);
        w.u8(4), w.u32(0x10000000u);
    });
    CHECK(list.find("config list length is 268435456, more than the limit of 4096") !=
          std::string::npos);
    const std::string items = read([&](serial::ByteWriter& w) {
        header(w, 1);
        w.u8(4), w.u32(4096);  // 4096 lists of 4096 integers: more values than one config may hold
        for (int i = 0; i < 4096; ++i) {
            w.u8(4), w.u32(4096);
            for (int j = 0; j < 4096 && i < 17; ++j) w.u8(0), w.u64(0);
        }
    });
    CHECK(items.find("more than 65536 values in one layer's config") != std::string::npos);
    const std::string cut = read([&](serial::ByteWriter& w) { header(w, 1), w.u8(1), w.u32(0); });
    CHECK(cut.find("file ends while reading config real") != std::string::npos);
    // The writer refuses what the reader would.
    LayerConfig nested{"Deep", {}};
    ConfigValue v = 1;
    for (int i = 0; i < 10; ++i) v = ConfigValue::List{v};
    nested.set("k", v);
    serial::ByteWriter w;
    CHECK_THROWS_WITH_AS(w.config(nested), doctest::Contains("nested deeper than 8"), Error);
}

TEST_CASE("weights stored as f16, bf16 and int8 load as what they were rounded to") {
    Sequential<float> model = trained_model();
    const Provenance provenance{
        "fer train --epochs 3", "", "sha256:abc", {{"val_accuracy", 0.5}}, {{"host", "ci"}}};
    const Tensor<float> x = Batch(7).x;
    const Tensor<float> reference = model.predict(x);
    for (DType type : {DType::F32, DType::F16, DType::BF16, DType::I8}) {
        CAPTURE(dtype_name(type));
        const auto bytes = encode_model(model, {{"k", "v"}}, {type, provenance});
        ModelFile<float> f = decode_model_file<float>(bytes, "typed.facet");
        CHECK(f.provenance.command_line == "fer train --epochs 3");
        CHECK(f.provenance.library_version == version_string);
        CHECK(f.provenance.data_fingerprint == "sha256:abc");
        CHECK(f.provenance.metric("val_accuracy") == 0.5);
        CHECK(f.provenance.note("host") == "ci");
        CHECK(f.note("k") == "v");
        // Weights (rank >= 2) take the type; biases, BN parameters and buffers stay float32.
        std::size_t typed = 0;
        for (const auto& [name, stored] : f.tensor_types) {
            const bool weight = name == "0.weight" || name == "6.weight";
            CHECK(stored == (weight ? type : DType::F32));
            typed += weight;
        }
        CHECK(typed == 2);
        // Each weight is exactly what the conversion gives.
        for (std::size_t k : {0u, 3u}) {
            const Tensor<float>& w = *model.parameters()[k].value;
            const Tensor<float>& got = *f.model.parameters()[k].value;
            Tensor<float> want = w;
            if (type == DType::F16) want = to_float(to_f16(w));
            if (type == DType::BF16) want = to_float(to_bf16(w));
            if (type == DType::I8) want = dequantize(quantize_int8(w));
            CHECK(std::equal(want.begin(), want.end(), got.begin()));
        }
        const Tensor<float>& p = f.model.predict(x);
        double worst = 0;
        for (std::size_t i = 0; i < p.size(); ++i)
            worst = std::max(worst, double(std::abs(p[i] - reference[i])));
        CHECK(worst <= (type == DType::F32 ? 0.0 : 0.05));
    }
    CHECK(encode_model(model, {}, weights_as(DType::F16)).size() < encode_model(model).size());
    // f16 cannot hold 1e6: saving refuses instead of writing infinity.
    Sequential<float> big(Shape{2});
    auto& dense = big.add<Dense<float>>(2, 2);
    dense.weight()[1] = 1e6f;
    CHECK_THROWS_WITH_AS(encode_model(big, {}, weights_as(DType::F16)),
                         doctest::Contains("'0.weight' as f16: its element 1 (1e+06) does not fit"),
                         Error);
    CHECK_NOTHROW(encode_model(big, {}, weights_as(DType::BF16)));
    CHECK_THROWS_AS(encode_model(big, {}, weights_as(DType::F64)), Error);
}

TEST_CASE("format 2 tensors: bad element types, NaN halves and bad int8 scales are refused") {
    auto architecture = [](serial::ByteWriter& w) {
        w.shape(Shape{2});
        w.u32(1);
        w.config({"Dense", {{"in_features", 2}, {"out_features", 1}, {"bias", false}}});
        w.u32(1);
        w.string("0.weight");
        w.shape(Shape{1, 2});
    };
    auto finish = [](serial::ByteWriter& w) {
        serial::write_provenance(w, {});
        serial::write_notes(w, {});
    };
    const auto tag = crafted_file(
        [&](serial::ByteWriter& w) {
            architecture(w);
            w.u8(1);  // f64 is not a stored type
            w.f64(1), w.f64(2);
            finish(w);
        },
        2);
    CHECK(decode_error(tag).find("tensor '0.weight' has element type 1, not one of") !=
          std::string::npos);
    const auto nan = crafted_file(
        [&](serial::ByteWriter& w) {
            architecture(w);
            w.u8(3);
            w.u16(0x3C00), w.u16(0x7E00);
            finish(w);
        },
        2);
    CHECK(decode_error(nan).find("'0.weight' holds a NaN or infinite value at element 1") !=
          std::string::npos);
    const auto scale = crafted_file(
        [&](serial::ByteWriter& w) {
            architecture(w);
            w.u8(4);
            w.u32(std::bit_cast<std::uint32_t>(-1.0f));
            w.u8(1), w.u8(2);
            finish(w);
        },
        2);
    CHECK(decode_error(scale).find("int8 scale -1 for index 0") != std::string::npos);
    const auto short_data = crafted_file(
        [&](serial::ByteWriter& w) {
            architecture(w);
            w.u8(2);
            w.u16(0x3F80);
        },
        2);
    CHECK(decode_error(short_data).find("needs 2 bf16 values but the file ends before") !=
          std::string::npos);
    const auto good = crafted_file(
        [&](serial::ByteWriter& w) {
            architecture(w);
            w.u8(4);
            w.u32(std::bit_cast<std::uint32_t>(0.5f));
            w.u8(2), w.u8(0xFE);  // 2 and -2
            finish(w);
        },
        2);
    Sequential<float> m = decode_model<float>(good, "good.facet");
    CHECK(m.parameters()[0].value->operator[](0) == 1.0f);
    CHECK(m.parameters()[0].value->operator[](1) == -1.0f);
    // A format-2 file cut anywhere is refused, naming the file.
    Sequential<float> model = small_model();
    const auto bytes = encode_model(model, {{"a", "b"}}, {DType::I8, {"cmd", "", "", {}, {}}});
    for (std::size_t length = 0; length < bytes.size(); length += 7)
        CHECK(decode_error(std::vector<unsigned char>(bytes.begin(), bytes.begin() + length))
                  .rfind("bad.fmdl: ", 0) == 0);
}
