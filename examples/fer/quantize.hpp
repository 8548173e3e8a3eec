// fer/quantize.hpp — `fer quantize`: a trained model made into an int8 model for inference. The
// batch norms are folded into the convolutions (facet::fold_batchnorm), the activation ranges
// calibrated on images of the training part of the data (the part `fer train` trained on: never
// the validation images, which judge the result, nor the test images), and every convolution and
// dense layer quantised (facet::quantize_model). Prints the validation accuracy of the float and
// the int8 model, and writes the int8 model with the float model's metadata and provenance.
#pragma once

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <facet/model/fold_batchnorm.hpp>
#include <facet/model/quantize.hpp>
#include <facet/model/serialize.hpp>

#include "cli.hpp"
#include "common.hpp"
#include "evaluate.hpp"
#include "train.hpp"

namespace fer {

inline Cli quantize_cli() {
    Cli cli("quantize",
            "Makes an int8 model for inference from a trained one: folds its batch norms, "
            "calibrates each layer's input range on --calib images of the training part of the "
            "data (the validation images, held out as `fer train` held them out, only judge the "
            "result; the test images are never read), quantises the convolution and dense "
            "layers (int8 weights per output channel, int8 activations per tensor), prints the "
            "validation accuracy of both models and writes the int8 model. eval, predict and "
            "video take it as they take the float model.");
    cli.option("model", "FILE", "model file written by fer train", "runs/default/model.facet")
        .option("data", "DIR|CSV",
                "the data the model was trained on (default: data/fer2013, else synthetic)")
        .option("calib", "N", "calibration images, spread evenly over the training part", "500")
        .option("percentile", "P",
                "percentile of each layer's input values that sets the ends of its range (100: "
                "the maximum)",
                "99.99")
        .option("batch", "N", "batch size of calibration and evaluation", "100")
        .option("threads", "N", "threads (0: all cores)", "0")
        .option("o", "FILE", "where to write the int8 model (required)");
    return cli;
}

/// The images of `data` at `indices`, normalised, as one batch.
inline facet::Tensor<float> image_batch(const facet::Dataset& data,
                                        const facet::Normalization& norm,
                                        const std::vector<std::size_t>& indices) {
    const std::size_t pixels = data.image_size();
    facet::Tensor<float> x(facet::Shape{indices.size(), 1, data.height, data.width});
    for (std::size_t i = 0; i < indices.size(); ++i)
        norm.apply(data.image(indices[i]), x.data() + i * pixels, pixels);
    return x;
}

/// The fraction of `data` the model classifies right.
inline double accuracy_on(facet::Sequential<float>& model, const facet::Dataset& data,
                          const facet::Normalization& norm, std::size_t batch) {
    const Evaluation ev = evaluate(model, data, norm, batch);
    std::size_t right = 0;
    for (std::size_t i = 0; i < data.size(); ++i) right += ev.predicted[i] == data.labels[i];
    return static_cast<double>(right) / static_cast<double>(data.size());
}

inline int run_quantize(const Cli& cli) {
    facet::set_num_threads(static_cast<int>(cli.integer("threads")));
    const std::string model_path = cli.str("model"), out = cli.str("o");
    const long long calib = cli.integer("calib"), batch = cli.integer("batch");
    const double percentile = cli.number("percentile");
    facet::check(calib > 0, "quantize: --calib must be positive, got ", calib);
    facet::check(batch > 0, "quantize: --batch must be positive, got ", batch);
    facet::check(percentile > 50 && percentile <= 100,
                 "quantize: --percentile must be in (50, 100], got ", percentile);
    facet::check(fs::weakly_canonical(out) != fs::weakly_canonical(model_path),
                 "quantize: -o names the input model ", model_path,
                 "; write the int8 model elsewhere");
    TrainedModel t = load_trained(model_path);
    const facet::Provenance source = facet::load_model_file<float>(model_path).provenance;
    for (const auto& layer : t.model.layers())
        facet::check(layer->quantized_tensors().empty(), "quantize: ", model_path,
                     " is already quantised (layer ", layer->describe(), ")");

    // The training and validation parts exactly as `fer train` chose them (its notes say how).
    TrainConfig c;
    c.data = cli.has("data") ? DataChoice{cli.str("data")} : default_data();
    if (!t.note("validation.fraction").empty())
        c.val_fraction = std::stod(t.note("validation.fraction"));
    if (!t.note("validation.seed").empty()) c.val_seed = std::stoull(t.note("validation.seed"));
    const facet::DataSplits splits = load_splits(c.data, {});
    const DataPlan plan = plan_data(c, splits);
    const std::size_t n = std::min<std::size_t>(static_cast<std::size_t>(calib), plan.train.size());

    facet::Sequential<float> folded = std::move(t.model);
    const std::size_t folds = facet::fold_batchnorm(folded);
    std::vector<facet::Tensor<float>> batches;
    for (std::size_t begin = 0; begin < n; begin += static_cast<std::size_t>(batch)) {
        std::vector<std::size_t> indices;
        for (std::size_t i = begin; i < std::min(n, begin + static_cast<std::size_t>(batch)); ++i)
            indices.push_back(i * plan.train.size() / n);  // evenly over the training part
        batches.push_back(image_batch(plan.train, t.norm, indices));
    }
    facet::QuantizeOptions options;
    options.percentile = percentile;
    facet::Sequential<float> int8 = facet::quantize_model(folded, batches, options);

    const double fp32_val = accuracy_on(folded, plan.val, t.norm, static_cast<std::size_t>(batch));
    const double int8_val = accuracy_on(int8, plan.val, t.norm, static_cast<std::size_t>(batch));
    std::printf("folded %zu batch norms; calibrated on %zu training images (percentile %g)\n",
                folds, n, percentile);
    std::printf(
        "validation accuracy (%zu images, %s): float %.2f %%, int8 %.2f %% (%+.2f points)\n",
        plan.val.size(), plan.val_source.c_str(), 100 * fp32_val, 100 * int8_val,
        100 * (int8_val - fp32_val));

    facet::ModelMetadata metadata;
    for (const auto& [k, v] : t.metadata)
        if (k != "val_accuracy") metadata.emplace_back(k, v);
    metadata.emplace_back("val_accuracy", detail::json_number(int8_val));
    metadata.emplace_back("float.val_accuracy", detail::json_number(fp32_val));
    metadata.emplace_back("quantization",
                          "int8: weights per output channel, activations per tensor");
    metadata.emplace_back(
        "quantization.calibration",
        std::to_string(n) + " training images, percentile " + detail::json_number(percentile));
    facet::SaveOptions save;
    save.provenance = source;
    save.provenance.library_version.clear();  // this build's
    save.provenance.metrics.emplace_back("int8_val_accuracy", int8_val);
    save.provenance.metrics.emplace_back("float_val_accuracy", fp32_val);
    std::string command = "fer quantize";
    for (const std::string& a : cli.arguments())
        if (a != out && a.rfind("--o=", 0) != 0 && a != "-o" && a != "--o") command += " " + a;
    save.provenance.notes.emplace_back("quantized_by", command);
    facet::save(int8, out, metadata, save);
    std::printf("wrote %s (%ju bytes; float model %ju bytes)\n", out.c_str(),
                static_cast<std::uintmax_t>(fs::file_size(out)),
                static_cast<std::uintmax_t>(fs::file_size(model_path)));
    return 0;
}

}  // namespace fer
