// Writes the seed corpus of the fuzz targets, made by facet's own writers, into OUT/csv, OUT/image
// and OUT/model (usage: make_fuzz_corpus OUT). Seeds are valid inputs of every kind a target reads,
// so that mutation starts from deep inside each parser instead of at its first check. Nothing here
// is committed: run_fuzzers.sh regenerates the corpus on every run.
#define FACET_IMPLEMENT_STB
#include "facet/data/image.hpp"

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "facet/core/random.hpp"
#include "facet/layers/activations.hpp"
#include "facet/layers/batchnorm.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/dropout.hpp"
#include "facet/layers/flatten.hpp"
#include "facet/layers/maxpool2d.hpp"
#include "facet/layers/softmax.hpp"
#include "facet/loss/softmax_cross_entropy.hpp"
#include "facet/model/quantize.hpp"
#include "facet/model/serialize.hpp"
#include "facet/optim/adam.hpp"
#include "facet/optim/schedule.hpp"
#include "facet/optim/sgd.hpp"
#include "fer/fer_csv.hpp"

namespace fs = std::filesystem;
using namespace facet;

namespace {

void write_bytes(const fs::path& path, const void* data, std::size_t size) {
    std::ofstream out(path, std::ios::binary);
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
    check(out.good(), "cannot write ", path.string());
}
void write_text(const fs::path& path, const std::string& text) {
    write_bytes(path, text.data(), text.size());
}

/// A smooth gray gradient with a dark disc, width x height.
std::vector<std::uint8_t> picture(std::size_t width, std::size_t height) {
    std::vector<std::uint8_t> p(width * height);
    for (std::size_t y = 0; y < height; ++y)
        for (std::size_t x = 0; x < width; ++x) {
            const double dx = double(x) - double(width) / 2, dy = double(y) - double(height) / 2;
            const bool disc = dx * dx + dy * dy < double(width * height) / 16;
            p[y * width + x] = static_cast<std::uint8_t>(disc ? 30 : (x * 255 / width + y) % 256);
        }
    return p;
}

void csv_seeds(const fs::path& dir) {
    // Three small-valued images in the Kaggle layout, written by write_fer_csv.
    Rng rng(1);
    Dataset train, val;
    for (Dataset* d : {&train, &val}) {
        d->height = d->width = fer::fer_image_side;
        d->class_names = fer::fer_class_name_list();
    }
    train.split = "train";
    val.split = "val";
    for (Dataset* d : {&train, &val})
        for (int i = 0; i < (d == &train ? 2 : 1); ++i) {
            d->labels.push_back(static_cast<int>(rng.below(fer::fer_num_classes)));
            for (std::size_t p = 0; p < fer::fer_image_pixels; ++p)
                d->pixels.push_back(static_cast<std::uint8_t>(rng.below(12)));
        }
    fer::write_fer_csv(dir / "kaggle.csv", {&train, &val});

    // The variations the reader accepts: BOM, other column order, an extra column, class names,
    // quotes, CRLF line ends, a blank line, no Usage column.
    std::string zeros;
    for (std::size_t p = 0; p < fer::fer_image_pixels; ++p) zeros += p ? " 0" : "0";
    write_text(dir / "variants.csv", "\xEF\xBB\xBFUsage,id,pixels,emotion\r\n\"PrivateTest\",7,\"" +
                                         zeros + "\",happy\r\n\r\nPublicTest,8," + zeros +
                                         ",6\r\n");
    write_text(dir / "no_usage.csv", "emotion,pixels\n3," + zeros + "\n");
    // Rows the lenient mode skips: a short pixel list, a bad label, a value out of range.
    write_text(dir / "bad_rows.csv", "emotion,pixels,Usage\n1,0 1 2,Training\n9," + zeros +
                                         ",Training\n2,256" + zeros.substr(1) + ",Training\n0," +
                                         zeros + ",Training\n");
}

void image_seeds(const fs::path& dir) {
    const std::vector<std::uint8_t> face = picture(48, 48), wide = picture(40, 24);
    // stb_image_write, via facet's own writer, and directly for the other formats.
    write_png(dir / "face.png", face.data(), 48, 48);
    auto to_file = [](void* context, void* data, int size) {
        auto* out = static_cast<std::vector<std::uint8_t>*>(context);
        const auto* p = static_cast<const std::uint8_t*>(data);
        out->insert(out->end(), p, p + size);
    };
    std::vector<std::uint8_t> bmp, jpg, tga;
    check(stbi_write_bmp_to_func(to_file, &bmp, 40, 24, 1, wide.data()) != 0, "BMP");
    check(stbi_write_jpg_to_func(to_file, &jpg, 48, 48, 1, face.data(), 80) != 0, "JPEG");
    check(stbi_write_tga_to_func(to_file, &tga, 40, 24, 1, wide.data()) != 0, "TGA");
    write_bytes(dir / "wide.bmp", bmp.data(), bmp.size());
    write_bytes(dir / "face.jpg", jpg.data(), jpg.size());
    write_bytes(dir / "wide.tga", tga.data(), tga.size());
    // An RGB PNG (facet's encode_png with three channels).
    std::vector<std::uint8_t> rgb;
    for (std::uint8_t v : wide)
        rgb.insert(rgb.end(), {v, std::uint8_t(255 - v), std::uint8_t(v / 2)});
    write_png(dir / "wide_rgb.png", rgb.data(), 40, 24, 3);
    // A binary PGM (stb reads PNM too).
    std::string pgm = "P5\n40 24\n255\n";
    pgm.append(reinterpret_cast<const char*>(wide.data()), wide.size());
    write_text(dir / "wide.pgm", pgm);
}

/// Every layer type make_layer knows, on a small input.
Sequential<float> every_layer_model() {
    Sequential<float> m(Shape{1, 8, 8});
    m.add<Conv2d<float>>(1, 2, 3, 1, 1, true, 5);
    m.add<BatchNorm2d<float>>(2);
    m.add<LeakyReLU<float>>(0.1);
    m.add<MaxPool2d<float>>(2);
    m.add<Dropout<float>>(0.25, 9);
    m.add<Flatten<float>>();
    m.add<Dense<float>>(32, 6, true, 6);
    m.add<BatchNorm1d<float>>(6);
    m.add<ELU<float>>(1.0);
    m.add<Dense<float>>(6, 3, false, 7);
    m.add<ReLU<float>>();
    m.add<Softmax<float>>();
    return m;
}

void model_seeds(const fs::path& dir) {
    Sequential<float> model = every_layer_model();
    save(model, (dir / "every_layer.fmdl").string(),
         {{"classes", "angry,disgust,fear"}, {"mean", "0.5"}});
    Sequential<float> tiny(Shape{4});
    tiny.add<Dense<float>>(4, 2, true, 1);
    save(tiny, (dir / "dense.fmdl").string());
    // Format 2's element types and provenance record.
    const Provenance provenance{
        "fer train --epochs 2", "", "fer2013:1234", {{"val_accuracy", 0.6}}, {{"host", "ci"}}};
    save(model, (dir / "every_layer_f16.fmdl").string(), {{"classes", "a,b,c"}},
         {DType::F16, provenance});
    save(model, (dir / "every_layer_bf16.fmdl").string(), {}, {DType::BF16, provenance});
    save(model, (dir / "every_layer_i8.fmdl").string(), {}, {DType::I8, provenance});
    // A quantised model (QuantizedConv2d and QuantizedDense: int8 weights with their scales, the
    // input scales and zero points), and the same with one weight scale zeroed, which is refused.
    {
        Sequential<float> fp32(Shape{1, 8, 8});
        fp32.add<Conv2d<float>>(1, 2, 3, 1, 1, true, 5);
        fp32.add<ReLU<float>>();
        fp32.add<MaxPool2d<float>>(2);
        fp32.add<Flatten<float>>();
        fp32.add<Dense<float>>(32, 3, true, 6);
        Tensor<float> calibration(Shape{2, 1, 8, 8});
        Rng calibration_rng(4);
        calibration.fill_normal(calibration_rng, 0, 1);
        Sequential<float> int8 = quantize_model(fp32, {calibration});
        save(int8, (dir / "quantized.fmdl").string(), {{"classes", "a,b,c"}},
             {DType::F32, provenance});
        int8.quantized_tensors()[0].second->scales[1] = 0;
        save(int8, (dir / "quantized_zero_scale.fmdl").string());
    }

    // A Dense layer whose config carries values of every kind, nested (from_config ignores the
    // keys it does not know), so that mutations reach every branch of the config reader.
    {
        serial::ByteWriter w;
        serial::begin_file(w, serial::model_magic);
        w.shape(Shape{4});
        w.u32(1);
        LayerConfig c = tiny.layer(0).config();
        c.set("note", "free text");
        c.set("shape", ConfigValue::List{1, 2.5, true, ConfigValue::List{"x"}});
        c.set("blocks", ConfigValue::Children{{"Inner", {{"units", 3}}}, {"Leaf", {}}});
        w.config(c);
        const auto params = tiny.parameters();
        w.u32(static_cast<std::uint32_t>(params.size()));
        for (const Parameter<float>& p : params) w.tensor(p.name, *p.value);
        serial::write_provenance(w, provenance);
        serial::write_notes(w, {{"k", "v"}});
        write_file_atomically((dir / "nested_config.fmdl").string(), serial::finish_file(w));
    }
    // The same small model in format 1 (all-double configs, float32 tensors), which still loads.
    {
        serial::ByteWriter w;
        serial::begin_file(w, serial::model_magic, 1);
        w.shape(Shape{4});
        w.u32(1);
        const LayerConfig c = tiny.layer(0).config();
        w.string(c.type);
        w.u32(static_cast<std::uint32_t>(c.values.size()));
        for (const auto& entry : c.values) w.string(entry.first), w.f64(c.get(entry.first));
        const auto params = tiny.parameters();
        w.u32(static_cast<std::uint32_t>(params.size()));
        for (const Parameter<float>& p : params) w.tensor_v1(p.name, *p.value);
        serial::write_notes(w, {{"k", "v"}});
        write_file_atomically((dir / "dense_v1.fmdl").string(), serial::finish_file(w));
    }

    // Checkpoints after a few training steps, so that optimiser tensors are present.
    SoftmaxCrossEntropy<float> loss;
    Tensor<float> x(Shape{4, 1, 8, 8});
    Rng rng(3);
    x.fill_normal(rng, 0, 1);
    const std::vector<int> labels = {0, 1, 2, 1};
    CheckpointInfo info;
    info.epoch = 1;
    info.step = 2;
    info.seeds = {{"shuffle", 11}, {"dropout", 9}};
    info.metadata = {{"command", "fer train --epochs 2"}};
    {
        Adam<float> adam(model.parameters(), {.learning_rate = 0.01, .weight_decay = 1e-3});
        for (int s = 0; s < 2; ++s) model.train_step(x, labels, loss, adam);
        save_checkpoint((dir / "adam.fckp").string(), model, adam,
                        CosineSchedule(0.01, 1, 10, 1e-4), info);
    }
    {
        SGD<float> sgd(model.parameters(), {.learning_rate = 0.05, .momentum = 0.9});
        model.train_step(x, labels, loss, sgd);
        save_checkpoint((dir / "sgd.fckp").string(), model, sgd, StepSchedule(0.05, 5, 0.5), info);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
        return 2;
    }
    try {
        const fs::path out = argv[1];
        for (const char* kind : {"csv", "image", "model"}) fs::create_directories(out / kind);
        csv_seeds(out / "csv");
        image_seeds(out / "image");
        model_seeds(out / "model");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_fuzz_corpus: %s\n", e.what());
        return 1;
    }
    return 0;
}
