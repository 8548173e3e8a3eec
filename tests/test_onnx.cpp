// Tests of the deployment tools: the protobuf writer against bytes worked out by hand from the
// wire format (varints, keys, lengths, nested messages, packed fields, floats), the ONNX file's
// structure and its refusals (a layer without an exporter, a path that cannot be written: a clear
// error and no file left), and the fer subcommands convert (f16/bf16 weights, folding, notes and
// provenance kept, in-place conversion, bad input) and export. OpenCV DNN runs the exported
// files in test_onnx_runtime.cpp.
#define FACET_IMPLEMENT_STB
#include <facet/data/image.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "facet/export/onnx.hpp"
#include "facet/export/protobuf_writer.hpp"
#include "facet/layers/activations.hpp"
#include "facet/layers/batchnorm.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/flatten.hpp"
#include "facet/layers/maxpool2d.hpp"
#include "fer/convert.hpp"
#include "fer/export.hpp"
#include "fer_command.hpp"
#include "temp_dir.hpp"

using namespace facet;
namespace fs = std::filesystem;

namespace {

std::string hex(const std::string& bytes) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (unsigned char b : bytes) {
        if (!s.empty()) s += ' ';
        s += digits[b >> 4];
        s += digits[b & 15];
    }
    return s;
}

std::string varint(std::uint64_t v) {
    std::string s;
    ProtobufWriter::append_varint(s, v);
    return hex(s);
}

/// Runs a fer subcommand with `args`, its standard output captured into `out`.
int run_cli(fer::Cli cli, int (*body)(const fer::Cli&), std::vector<std::string> args,
            std::string* out = nullptr) {
    auto run = facet_test::run_fer_command(std::move(cli), body, std::move(args));
    if (out) *out = run.output;
    return run.status;
}

/// A small fer-shaped model (48 x 48 in, 7 classes out, batch norms after a conv and a dense
/// layer) saved with fer's notes and a provenance, at `path`.
void save_small_fer_model(const std::string& path) {
    Sequential<float> m(Shape{1, 48, 48});
    m.add<Conv2d<float>>(1, 4, 3, 1, 1, false, 1);
    m.add<BatchNorm2d<float>>(4);
    m.add<ReLU<float>>();
    m.add<MaxPool2d<float>>(4);
    m.add<Flatten<float>>();
    m.add<Dense<float>>(4 * 12 * 12, 16, false, 2);
    m.add<BatchNorm1d<float>>(16);
    m.add<ReLU<float>>();
    m.add<Dense<float>>(16, 7, true, 3);
    Rng rng(4);
    for (auto& [name, t] : m.buffers())
        for (float& v : *t)
            v = name.find("var") != std::string::npos ? float(0.5 + rng.uniform())
                                                      : float(rng.uniform() - 0.5);
    SaveOptions options;
    options.provenance.command_line = "fer train --epochs 1";
    save(m, path,
         {{"program", "fer"},
          {"model", "small"},
          {"normalization.mean", "0.5"},
          {"normalization.stddev", "0.25"},
          {"classes", "angry,disgust,fear,happy,sad,surprise,neutral"}},
         options);
}

Tensor<float> some_faces() {
    Tensor<float> x(Shape{3, 1, 48, 48});
    Rng rng(8);
    x.fill_uniform(rng, -2, 2);
    return x;
}

}  // namespace

TEST_CASE("ProtobufWriter: varints, keys and lengths are the wire format's bytes") {
    CHECK(varint(0) == "00");
    CHECK(varint(1) == "01");
    CHECK(varint(127) == "7f");
    CHECK(varint(128) == "80 01");
    CHECK(varint(300) == "ac 02");
    CHECK(varint(~std::uint64_t{0}) == "ff ff ff ff ff ff ff ff ff 01");
    // The protocol-buffers documentation's examples: field 1 = 150, field 2 = "testing", a
    // message holding the first as field 3, and the packed repeated field 4 = [3, 270, 86942].
    ProtobufWriter a;
    a.int_field(1, 150);
    CHECK(hex(a.bytes()) == "08 96 01");
    ProtobufWriter b;
    b.bytes_field(2, "testing");
    CHECK(hex(b.bytes()) == "12 07 74 65 73 74 69 6e 67");
    ProtobufWriter c;
    c.message_field(3, a);
    CHECK(hex(c.bytes()) == "1a 03 08 96 01");
    ProtobufWriter d;
    d.packed_ints(4, {3, 270, 86942});
    CHECK(hex(d.bytes()) == "22 06 03 8e 02 9e a7 05");
    // A negative int64 is ten bytes (two's complement); a float four, little-endian.
    ProtobufWriter e;
    e.int_field(1, -1).float_field(2, 1.0f);
    CHECK(hex(e.bytes()) == "08 ff ff ff ff ff ff ff ff ff 01 15 00 00 80 3f");
    ProtobufWriter f;
    const float values[2] = {1.0f, -2.0f};
    f.packed_floats(5, values, 2);
    CHECK(hex(f.bytes()) == "2a 08 00 00 80 3f 00 00 00 c0");
    // A field number above 15 takes a two-byte key: (20 << 3) | 0 = 160.
    ProtobufWriter g;
    g.int_field(20, 2);
    CHECK(hex(g.bytes()) == "a0 01 02");
    // A string longer than 127 bytes has a two-byte length.
    ProtobufWriter h;
    h.bytes_field(1, std::string(200, 'x'));
    CHECK(hex(h.bytes().substr(0, 3)) == "0a c8 01");
    CHECK(h.bytes().size() == 3 + 200);
}

TEST_CASE("ONNX export: the file names opset 13, the input, the output and the metadata") {
    Sequential<float> m(Shape{1, 4, 4});
    m.add<Flatten<float>>();
    m.add<Dense<float>>(16, 3, true, 1);
    OnnxExportOptions options;
    options.metadata = {{"classes", "cat,dog,bird"}};
    const std::string bytes = encode_onnx(m, options);
    auto contains = [&](const std::string& s) { return bytes.find(s) != std::string::npos; };
    CHECK(contains("image"));
    CHECK(contains("probabilities"));
    CHECK(contains("Gemm"));
    CHECK(contains("Softmax"));
    CHECK(contains("cat,dog,bird"));
    // ModelProto starts with ir_version 7 (field 1), then producer_name "facet" (field 2).
    CHECK(hex(bytes.substr(0, 9)) == "08 07 12 05 66 61 63 65 74");
    // The opset import: domain "" (field 1) and version 13 (field 2), as message field 8.
    CHECK(contains(std::string("\x42\x04\x0a\x00\x10\x0d", 6)));
}

TEST_CASE("ONNX export: a layer without an exporter is an error naming it, and no file is left") {
    Sequential<float> m(Shape{4});
    m.add<Dense<float>>(4, 4, true, 1);
    m.add<ELU<float>>();
    facet_test::TempDir dir;
    const std::string path = (dir.path / "elu.onnx").string();
    try {
        export_onnx(m, path);
        FAIL("expected an error");
    } catch (const Error& e) {
        const std::string what = e.what();
        CHECK(what.find("layer 1") != std::string::npos);
        CHECK(what.find("'ELU'") != std::string::npos);
        CHECK(what.find("register_onnx_exporter") != std::string::npos);
    }
    CHECK(fs::is_empty(dir.path));
    // Once ELU has an exporter (registered as a new layer type would register its own), it goes.
    register_onnx_exporter("ELU", [](Layer<float>& l, const std::vector<std::string>& in,
                                     const std::vector<Shape>&, OnnxGraph& g) {
        const float alpha = float(detail::config_real(l.config(), "alpha", 1.0));
        return g.add_node("Elu", {in[0]}, {OnnxAttribute::real("alpha", alpha)});
    });
    export_onnx(m, path);
    CHECK(fs::file_size(path) > 0);
}

TEST_CASE("ONNX export: a path that cannot be written is a clear error and leaves no file") {
    Sequential<float> m(Shape{4});
    m.add<Dense<float>>(4, 2, true, 1);
    facet_test::TempDir dir;
    const fs::path blocker = dir.path / "not_a_folder";
    std::ofstream(blocker) << "a file where a folder should be";
    const std::string path = (blocker / "model.onnx").string();
    CHECK_THROWS_WITH_AS(export_onnx(m, path), doctest::Contains("not_a_folder"), Error);
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
}

TEST_CASE("fer convert: f16 and bf16 weights, folding, notes and provenance kept") {
    facet_test::TempDir dir;
    const std::string in = (dir.path / "model.facet").string();
    save_small_fer_model(in);
    ModelFile<float> original = load_model_file<float>(in);
    original.model.set_mode(Mode::Eval);
    const Tensor<float> x = some_faces();
    const Tensor<float> expected = original.model.predict(x);

    for (const std::string type : {"f16", "bf16"}) {
        CAPTURE(type);
        const std::string out = (dir.path / ("model-" + type + ".facet")).string();
        std::string printed;
        REQUIRE(run_cli(fer::convert_cli(), fer::run_convert,
                        {"--model", in, "-o", out, "--weights", type}, &printed) == 0);
        CHECK(printed.find("weights stored as " + type) != std::string::npos);
        ModelFile<float> converted = load_model_file<float>(out);
        CHECK(converted.metadata == original.metadata);
        CHECK(converted.provenance.command_line == "fer train --epochs 1");
        CHECK(converted.provenance.note("conversion") == "weights stored as " + type);
        CHECK(fer::stored_weight_type(converted.tensor_types) == dtype_from_name(type));
        // The weights (most of the file) take two bytes instead of four.
        CHECK(fs::file_size(out) < 0.6 * double(fs::file_size(in)));
        // Probabilities move by the rounding of the weights only.
        const Tensor<float>& p = converted.model.predict(x);
        for (std::size_t i = 0; i < p.size(); ++i) CHECK(std::abs(p[i] - expected[i]) < 0.02);
    }

    // --fold, in place: the same file is rewritten atomically; the weights type is kept.
    const std::string f16 = (dir.path / "model-f16.facet").string();
    REQUIRE(run_cli(fer::convert_cli(), fer::run_convert, {"--model", f16, "-o", f16, "--fold"}) ==
            0);
    ModelFile<float> folded = load_model_file<float>(f16);
    CHECK(folded.model.size() == original.model.size() - 2);
    CHECK(fer::stored_weight_type(folded.tensor_types) == DType::F16);
    CHECK(folded.provenance.note("conversion") == "weights stored as f16");
    CHECK(folded.provenance.note("conversion.2") == "weights stored as f16, 2 batch norms folded");
    CHECK(folded.metadata == original.metadata);
    const Tensor<float>& p = folded.model.predict(x);
    for (std::size_t i = 0; i < p.size(); ++i) CHECK(std::abs(p[i] - expected[i]) < 0.02);
    for (const auto& entry : fs::directory_iterator(dir.path))  // no temporary left behind
        CHECK(entry.path().string().find(".tmp.") == std::string::npos);
}

TEST_CASE("fer convert and export: bad input gives clear errors") {
    facet_test::TempDir dir;
    const std::string in = (dir.path / "model.facet").string();
    const std::string missing = (dir.path / "missing.facet").string();
    save_small_fer_model(in);
    const std::string out = (dir.path / "out.facet").string();
    CHECK_THROWS_WITH_AS(
        run_cli(fer::convert_cli(), fer::run_convert, {"--model", missing, "-o", out}),
        doctest::Contains("no model file at"), Error);
    CHECK_THROWS_WITH_AS(run_cli(fer::convert_cli(), fer::run_convert, {"--model", in}),
                         doctest::Contains("-o FILE"), Error);
    CHECK_THROWS_WITH_AS(run_cli(fer::convert_cli(), fer::run_convert,
                                 {"--model", in, "-o", out, "--weights", "i4"}),
                         doctest::Contains("--weights must be f32, f16 or bf16"), Error);
    CHECK_FALSE(fs::exists(out));
    CHECK_THROWS_WITH_AS(
        run_cli(fer::export_cli(), fer::run_export, {"--model", missing, "--onnx", out}),
        doctest::Contains("no model file at"), Error);
    CHECK_THROWS_WITH_AS(run_cli(fer::export_cli(), fer::run_export, {"--model", in}),
                         doctest::Contains("--onnx FILE"), Error);
    CHECK_FALSE(fs::exists(out));
}

TEST_CASE("fer export writes an ONNX file with the class names and the normalisation") {
    facet_test::TempDir dir;
    const std::string in = (dir.path / "model.facet").string();
    save_small_fer_model(in);
    const std::string out = (dir.path / "model.onnx").string();
    std::string printed;
    REQUIRE(run_cli(fer::export_cli(), fer::run_export, {"--model", in, "--onnx", out}, &printed) ==
            0);
    CHECK(printed.find("2 batch norms folded") != std::string::npos);
    const std::vector<unsigned char> raw = read_whole_file(out, 1 << 24);
    const std::string bytes(raw.begin(), raw.end());
    CHECK(bytes.find("angry,disgust,fear,happy,sad,surprise,neutral") != std::string::npos);
    CHECK(bytes.find("BatchNormalization") == std::string::npos);  // both were folded
    CHECK(bytes.find("input_mean") != std::string::npos);
}

#ifdef FACET_PREDICT_FACE
TEST_CASE("examples/embed: predict_face names the emotion of one face with one model file") {
    facet_test::TempDir dir;
    const std::string model = (dir.path / "model.facet").string();
    save_small_fer_model(model);
    std::vector<std::uint8_t> face(48 * 48);
    for (std::size_t i = 0; i < face.size(); ++i) face[i] = static_cast<std::uint8_t>(i * 7 % 256);
    const std::string image = (dir.path / "face.png").string();
    write_png(image, face.data(), 48, 48);
    // The emotion the library itself gives the same face.
    ModelFile<float> file = load_model_file<float>(model);
    Normalization norm;
    norm.mean = 0.5f, norm.stddev = 0.25f;
    Tensor<float> x(Shape{1, 1, 48, 48});
    norm.apply(face.data(), x.data(), x.size());
    const Tensor<float>& p = file.model.predict(x);
    const std::size_t best = static_cast<std::size_t>(argmax_row(p.data(), p.size()));
    const std::vector<std::string> classes{"angry", "disgust",  "fear",   "happy",
                                           "sad",   "surprise", "neutral"};

    const std::string command = std::string(FACET_PREDICT_FACE) + " " + model + " " + image;
    FILE* pipe = ::popen(command.c_str(), "r");
    REQUIRE(pipe != nullptr);
    char line[256] = {};
    const bool read = std::fgets(line, sizeof line, pipe) != nullptr;
    const int status = ::pclose(pipe);
    REQUIRE(read);
    CHECK(status == 0);
    CHECK(std::string(line).rfind(classes[best] + " (", 0) == 0);

    // A missing image is an error naming it, with a non-zero exit.
    const std::string bad = std::string(FACET_PREDICT_FACE) + " " + model + " " +
                            (dir.path / "none.png").string() + " 2>&1";
    FILE* bad_pipe = ::popen(bad.c_str(), "r");
    REQUIRE(bad_pipe != nullptr);
    char bad_line[512] = {};
    const bool bad_read = std::fgets(bad_line, sizeof bad_line, bad_pipe) != nullptr;
    CHECK(::pclose(bad_pipe) != 0);
    CHECK(bad_read);
    CHECK(std::string(bad_line).find("none.png") != std::string::npos);
}
#endif
