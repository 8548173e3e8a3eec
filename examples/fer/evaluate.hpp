// fer/evaluate.hpp — `fer eval` (accuracy, per-class precision/recall/F1, confusion matrix on any
// split or folder) and loading a trained model for inference (`fer predict` is in predict.hpp).
#pragma once

#include <iostream>

#include <facet/data/image.hpp>
#include <facet/data/split.hpp>
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

    /// The value of the model file's note `key`, or `fallback` when it has none.
    std::string note(const std::string& key, const std::string& fallback = "") const {
        for (const auto& [k, v] : metadata)
            if (k == key) return v;
        return fallback;
    }
};

inline TrainedModel load_trained(const std::string& path) {
    facet::check(fs::exists(path), "no model file at ", path, " (train one with `fer train`)");
    facet::ModelFile<float> file = facet::load_model_file<float>(path);
    TrainedModel t{std::move(file.model), {}, fer_class_name_list(), file.metadata};
    const std::string mean = t.note("normalization.mean"), stddev = t.note("normalization.stddev");
    facet::check(!mean.empty() && !stddev.empty(), path,
                 ": not a fer model (no normalization.* metadata)");
    t.norm.mean = std::stof(mean), t.norm.stddev = std::stof(stddev);
    facet::check(t.norm.stddev > 0 && std::isfinite(t.norm.mean), path,
                 ": bad normalization metadata");
    // Models trained with --classes name their own classes; the emotion models name FER-2013's.
    if (const std::string classes = t.note("classes"); !classes.empty()) {
        try {
            t.classes = split_class_list(classes);
        } catch (const facet::Error& e) {
            throw facet::Error(facet::detail::concat(path, ": bad classes metadata: ", e.what()));
        }
    }
    const facet::Shape out = t.model.output_shape();
    facet::check(out.rank() == 1 && out[0] == t.classes.size(), path, ": the network gives ",
                 out.size(), " outputs for ", t.classes.size(), " classes");
    t.model.set_mode(facet::Mode::Eval);
    return t;
}

/// The test-time view options of eval and predict: --flip-tta, --center-crop, --ten-crop.
inline Cli& add_view_options(Cli& cli) {
    return cli.flag("flip-tta", "average the predictions for each face and its mirror image")
        .option("center-crop", "SIDE",
                "see each face through its centre crop of SIDE pixels resized to full size (for "
                "models trained with fer train --crop; 0: the whole face)",
                "0")
        .option("ten-crop", "SIDE",
                "average the predictions of the four corner crops and the centre crop of SIDE "
                "pixels and their mirror images (0: off)",
                "0");
}

/// The views add_view_options() asked for, for faces `side` pixels wide; `command` names the
/// command in errors.
inline TestViews views_from_cli(const Cli& cli, std::size_t side, const std::string& command) {
    TestViews views;
    views.flip = cli.has("flip-tta");
    const long long center_crop = cli.integer("center-crop"), ten_crop = cli.integer("ten-crop");
    facet::check(center_crop == 0 || ten_crop == 0, command,
                 ": give --center-crop or --ten-crop, not both");
    const long long crop = std::max(center_crop, ten_crop);
    facet::check(crop >= 0 && (crop == 0 || static_cast<std::size_t>(crop) <= side), command,
                 ": a crop side must be in [1, ", side, "], got ", crop);
    views.crop = static_cast<int>(crop);
    if (ten_crop > 0) views.ten_crop = true, views.flip = true;
    return views;
}

inline Cli eval_cli() {
    Cli cli("eval",
            "Evaluates a trained model: accuracy, per-class precision/recall/F1 and the confusion "
            "matrix.");
    cli.option("model", "FILE",
               model_option_help() +
                   "; repeat it for an ensemble that averages the models' probabilities (same "
                   "classes and input normalisation)")
        .option("data", "DIR|CSV",
                "data: a FER-2013 folder or CSV, or a folder of class folders (default: "
                "data/fer2013, else synthetic)")
        .option("split", "NAME",
                "split to evaluate: test, val, train, ... (default: val, else test); for image "
                "folders, val is the part of train the model's fer train held out")
        .option("batch", "N", "batch size", "256")
        .option("threads", "N", "threads (0: all cores)", "0")
        .option("precision", "fp32|bf16",
                "bf16: the convolutions and dense layers multiply bf16-rounded operands and sum in "
                "fp32",
                "fp32")
        .flag("json", "print one JSON object (accuracy, per_class, confusion, ...)")
        .flag("skip-bad", "skip unreadable or malformed samples (counted and reported)")
        .flag("compare",
              "fer eval --compare OLD NEW: both models on the split, per-class precision, recall "
              "and F1 and the accuracy side by side with NEW - OLD")
        .positional("OLD NEW", "with --compare: the two model files");
    add_view_options(cli);
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

/// The probabilities of several models averaged, face by face: p = (p_1 + ... + p_M) / M (summed
/// in double). The models must have the same classes and input normalisation (an Error naming
/// the files otherwise); each is evaluated as evaluate() does.
inline Evaluation evaluate_ensemble(std::vector<TrainedModel>& models,
                                    const std::vector<std::string>& paths,
                                    const facet::Dataset& data, std::size_t batch_size,
                                    const TestViews& views) {
    facet::check(!models.empty() && models.size() == paths.size(), "ensemble: no models");
    auto note = [](const TrainedModel& t, const std::string& key) { return t.note(key); };
    for (std::size_t m = 1; m < models.size(); ++m) {
        facet::check(note(models[m], "classes") == note(models[0], "classes"),
                     "ensemble: ", paths[m], " has the classes '", note(models[m], "classes"),
                     "', ", paths[0], " '", note(models[0], "classes"),
                     "'; an ensemble needs the same classes");
        facet::check(models[m].norm.mean == models[0].norm.mean &&
                         models[m].norm.stddev == models[0].norm.stddev,
                     "ensemble: ", paths[m], " normalises its input with mean ",
                     note(models[m], "normalization.mean"), ", stddev ",
                     note(models[m], "normalization.stddev"), "; ", paths[0], " with mean ",
                     note(models[0], "normalization.mean"), ", stddev ",
                     note(models[0], "normalization.stddev"),
                     "; an ensemble needs the same input normalisation");
    }
    Evaluation sum = evaluate(models[0].model, data, models[0].norm, batch_size, views);
    if (models.size() == 1) return sum;
    std::vector<double> total(sum.probabilities.begin(), sum.probabilities.end());
    for (std::size_t m = 1; m < models.size(); ++m) {
        const Evaluation ev = evaluate(models[m].model, data, models[m].norm, batch_size, views);
        facet::check(ev.classes == sum.classes, "ensemble: ", paths[m], " gives ", ev.classes,
                     " probabilities per face, ", paths[0], " ", sum.classes);
        for (std::size_t k = 0; k < total.size(); ++k) total[k] += ev.probabilities[k];
    }
    const auto count = static_cast<double>(models.size());
    for (std::size_t k = 0; k < total.size(); ++k)
        sum.probabilities[k] = static_cast<float>(total[k] / count);
    score_probabilities(sum, data);
    return sum;
}

/// The side-by-side table of `fer eval --compare`: each class's precision, recall and F1 for OLD
/// and NEW and their difference, in points, then the accuracy.
inline std::string compare_table(const facet::ClassificationReport& old_report,
                                 const facet::ClassificationReport& new_report) {
    std::string out =
        "class        precision: old    new   diff |  recall: old    new   diff |      F1: old "
        "   new   diff | support\n";
    char buf[256];
    for (std::size_t c = 0; c < old_report.per_class.size(); ++c) {
        const facet::ClassMetrics &o = old_report.per_class[c], &n = new_report.per_class[c];
        std::snprintf(buf, sizeof buf,
                      "%-10s %15.1f %6.1f %+6.1f | %11.1f %6.1f %+6.1f | %11.1f %6.1f %+6.1f | "
                      "%zu\n",
                      old_report.class_names[c].c_str(), 100 * o.precision, 100 * n.precision,
                      100 * (n.precision - o.precision), 100 * o.recall, 100 * n.recall,
                      100 * (n.recall - o.recall), 100 * o.f1, 100 * n.f1, 100 * (n.f1 - o.f1),
                      o.support);
        out += buf;
    }
    std::snprintf(buf, sizeof buf, "%-10s %15.1f %6.1f %+6.1f | %11.1f %6.1f %+6.1f\n", "macro",
                  100 * old_report.macro_precision, 100 * new_report.macro_precision,
                  100 * (new_report.macro_precision - old_report.macro_precision),
                  100 * old_report.macro_recall, 100 * new_report.macro_recall,
                  100 * (new_report.macro_recall - old_report.macro_recall));
    out += buf;
    std::snprintf(buf, sizeof buf,
                  "\naccuracy: old %.2f %%, new %.2f %%, difference %+.2f points\n",
                  100 * old_report.accuracy, 100 * new_report.accuracy,
                  100 * (new_report.accuracy - old_report.accuracy));
    out += buf;
    return out;
}

inline int run_eval(const Cli& cli) {
    const int threads = static_cast<int>(cli.integer("threads"));
    facet::set_num_threads(threads);
    const facet::Precision precision = parse_precision(cli.str("precision"), "eval");
    facet::set_precision(precision);
    std::cerr << bf16_speed_note(precision);
    const bool compare = cli.has("compare");
    if (!compare && !cli.positionals().empty())
        throw facet::Error("eval: unexpected argument '" + cli.positionals()[0] +
                           "' (models are given with --model, or --compare OLD NEW)");
    facet::check(!compare || (cli.positionals().size() == 2 && !cli.has("model")),
                 "eval --compare: give two model files, OLD and NEW (and no --model)");
    const std::vector<std::string> paths =
        compare ? cli.positionals()
                : (cli.has("model") ? cli.all("model")
                                    : std::vector<std::string>{model_to_use(cli, "eval")});
    std::vector<TrainedModel> models;
    for (const std::string& path : paths) models.push_back(load_trained(path));
    const DataChoice data = cli.has("data") ? DataChoice{cli.str("data")} : default_data();
    facet::ReadOptions read;
    read.skip_bad = cli.has("skip-bad");
    const facet::DataSplits splits = load_splits(data, read);
    const std::string split_name = cli.has("split") ? cli.str("split") : "";
    // Image folders have no val split: `--split val` is then the hold-out fer train took out of
    // train for the (first) model, as its notes record it.
    facet::Dataset own_validation;
    if (split_name == "val" && !splits.find("val") && splits.find("train")) {
        const TrainedModel& first = models[0];
        facet::check(
            !first.note("validation.fraction").empty() && !first.note("validation.seed").empty(),
            "eval: ", data.describe(), " has no split 'val', and ", paths[0],
            " records no validation hold-out (validation.fraction, validation.seed) to "
            "take out of 'train'");
        own_validation = facet::stratified_split(
                             *splits.find("train"), std::stod(first.note("validation.fraction")),
                             std::stoull(first.note("validation.seed")), "val (held out of train)")
                             .held_out;
    }
    const facet::Dataset& split =
        own_validation.size() > 0 ? own_validation : pick_split(splits, split_name);
    const auto t0 = std::chrono::steady_clock::now();
    const long long batch = cli.integer("batch");
    facet::check(batch > 0, "eval: --batch must be positive");
    const auto batch_size = static_cast<std::size_t>(batch);
    const TestViews views = views_from_cli(cli, split.width, "eval");
    const bool flip = views.flip;
    const std::string view_text = views.describe();
    const std::vector<std::string>& classes = models[0].classes;

    if (compare) {
        std::vector<facet::ClassificationReport> reports;
        for (TrainedModel& t : models)
            reports.push_back(facet::classification_report(
                split.labels, evaluate(t.model, split, t.norm, batch_size, views).predicted,
                classes));
        if (cli.has("json")) {
            nlohmann::json json;
            json["old"] = reports[0];
            json["new"] = reports[1];
            json["old_model"] = paths[0];
            json["new_model"] = paths[1];
            json["split"] = split.split;
            json["data"] = data.describe();
            json["samples"] = split.size();
            nlohmann::json delta;
            delta["accuracy"] = reports[1].accuracy - reports[0].accuracy;
            nlohmann::json per_class = nlohmann::json::array();
            for (std::size_t c = 0; c < reports[0].per_class.size(); ++c) {
                const facet::ClassMetrics &o = reports[0].per_class[c],
                                          &n = reports[1].per_class[c];
                per_class.push_back({{"class", classes[c]},
                                     {"precision", n.precision - o.precision},
                                     {"recall", n.recall - o.recall},
                                     {"f1", n.f1 - o.f1}});
            }
            delta["per_class"] = per_class;
            json["delta"] = delta;
            std::cout << json.dump(2) << "\n";
        } else {
            std::cout << "old " << paths[0] << ", new " << paths[1] << " on '" << split.split
                      << "' of " << data.describe() << ": " << split.size() << " images"
                      << (view_text.empty() ? "" : " (" + view_text + ")")
                      << "; differences in points (new - old)\n\n"
                      << compare_table(reports[0], reports[1]);
        }
        return 0;
    }

    const Evaluation ev = evaluate_ensemble(models, paths, split, batch_size, views);
    const double seconds = seconds_since(t0);
    const facet::ClassificationReport report =
        facet::classification_report(split.labels, ev.predicted, classes);
    std::string name = paths[0];
    for (std::size_t m = 1; m < paths.size(); ++m) name += " + " + paths[m];
    if (cli.has("json")) {
        nlohmann::json json = report;
        // Where the numbers come from.
        json["split"] = split.split;
        json["data"] = data.describe();
        json["samples"] = split.size();
        json["loss"] = facet::detail::json_number(ev.loss);
        json["flip_tta"] = flip;
        json["center_crop"] = views.ten_crop ? 0 : views.crop;
        json["ten_crop"] = views.ten_crop ? views.crop : 0;
        json["models"] = paths;
        std::cout << json.dump(2) << "\n";
    } else {
        std::cout << (paths.size() > 1 ? "ensemble (mean probability) of " : "model ") << name
                  << " on '" << split.split << "' of " << data.describe() << ": " << split.size()
                  << " images in " << seconds << " s"
                  << (view_text.empty() ? "" : " (" + view_text + ")") << "\n\n"
                  << report.metrics_table() << "\n"
                  << report.confusion_table();
        if (splits.skip_report.skipped) std::cout << splits.skip_report.summary() << "\n";
    }
    return 0;
}

}  // namespace fer
