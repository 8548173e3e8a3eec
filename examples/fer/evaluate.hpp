// fer/evaluate.hpp — `fer eval` (accuracy, per-class precision/recall/F1, confusion matrix on any
// split or folder) and loading a trained model for inference (`fer predict` is in predict.hpp).
#pragma once

#include <iostream>

#include <facet/data/image.hpp>
#include <facet/metrics/classification_json.hpp>
#include <facet/model/serialize.hpp>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "common.hpp"
#include "default_model.hpp"

namespace fer {

/// A model file loaded for inference: the network (in Eval mode) and the pixel normalisation and
/// class names it was trained with.
struct TrainedModel {
    facet::Sequential<float> model;
    facet::Normalization norm;
    std::vector<std::string> classes;
    facet::ModelMetadata metadata;
};

inline TrainedModel load_trained(const std::string& path) {
    facet::check(fs::exists(path), "no model file at ", path, " (train one with `fer train`)");
    facet::ModelFile<float> file = facet::load_model_file<float>(path);
    TrainedModel t{std::move(file.model), {}, fer_class_name_list(), file.metadata};
    auto note = [&](const std::string& key) -> std::string {
        for (const auto& [k, v] : t.metadata)
            if (k == key) return v;
        return "";
    };
    const std::string mean = note("normalization.mean"), stddev = note("normalization.stddev");
    facet::check(!mean.empty() && !stddev.empty(), path,
                 ": not a fer model (no normalization.* metadata)");
    t.norm.mean = std::stof(mean), t.norm.stddev = std::stof(stddev);
    facet::check(t.norm.stddev > 0 && std::isfinite(t.norm.mean), path,
                 ": bad normalization metadata");
    t.model.set_mode(facet::Mode::Eval);
    return t;
}

inline Cli eval_cli() {
    Cli cli("eval",
            "Evaluates a trained model: accuracy, per-class precision/recall/F1 and the confusion "
            "matrix.");
    cli.option("model", "FILE", model_option_help())
        .option("data", "DIR|CSV",
                "data: a FER-2013 folder or CSV, or a folder of class folders (default: "
                "data/fer2013, else synthetic)")
        .option("split", "NAME",
                "split to evaluate: test, val, train, ... (default: val, else test)")
        .option("batch", "N", "batch size", "256")
        .option("threads", "N", "threads (0: all cores)", "0")
        .flag("flip-tta", "average the predictions for each face and its mirror image")
        .flag("json", "print one JSON object (accuracy, per_class, confusion, ...)")
        .flag("skip-bad", "skip unreadable or malformed samples (counted and reported)");
    return cli;
}

/// Picks the split to evaluate: the named one, else val, else test, else the only split there is.
inline const facet::Dataset& pick_split(const facet::DataSplits& splits, const std::string& name) {
    if (!name.empty()) return splits.at(name);
    for (const char* candidate : {"val", "test", "synthetic-test"})
        if (const facet::Dataset* d = splits.find(candidate)) return *d;
    facet::check(splits.splits.size() == 1,
                 "eval: several splits and none named val/test; pick one with --split");
    return splits.splits.front();
}

inline int run_eval(const Cli& cli) {
    const int threads = static_cast<int>(cli.integer("threads"));
    facet::set_num_threads(threads);
    const std::string model_path = model_to_use(cli, "eval");
    TrainedModel t = load_trained(model_path);
    const DataChoice data = cli.has("data") ? DataChoice{cli.str("data")} : default_data();
    facet::ReadOptions read;
    read.skip_bad = cli.has("skip-bad");
    const facet::DataSplits splits = load_splits(data, read);
    const facet::Dataset& split = pick_split(splits, cli.has("split") ? cli.str("split") : "");
    const auto t0 = std::chrono::steady_clock::now();
    const long long batch = cli.integer("batch");
    facet::check(batch > 0, "eval: --batch must be positive");
    const Evaluation ev =
        evaluate(t.model, split, t.norm, static_cast<std::size_t>(batch), cli.has("flip-tta"));
    const double seconds = seconds_since(t0);
    const facet::ClassificationReport report =
        facet::classification_report(split.labels, ev.predicted, t.classes);
    if (cli.has("json")) {
        nlohmann::json json = report;
        // Where the numbers come from.
        json["split"] = split.split;
        json["data"] = data.describe();
        json["samples"] = split.size();
        json["loss"] = facet::detail::json_number(ev.loss);
        json["flip_tta"] = cli.has("flip-tta");
        std::cout << json.dump(2) << "\n";
    } else {
        std::cout << "model " << model_path << " on '" << split.split << "' of " << data.describe()
                  << ": " << split.size() << " images in " << seconds << " s"
                  << (cli.has("flip-tta") ? " (flip TTA)" : "") << "\n\n"
                  << report.metrics_table() << "\n"
                  << report.confusion_table();
        if (splits.skip_report.skipped) std::cout << splits.skip_report.summary() << "\n";
    }
    return 0;
}

}  // namespace fer
