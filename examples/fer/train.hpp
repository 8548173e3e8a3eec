// fer/train.hpp — `fer train`: the command line, the data (a validation split held out of the
// training data, stratified and seeded, unless the data bring a "val" folder; the test split is
// only reported on, once, after training), the model choice, and the set-up of a facet::Trainer
// with its callbacks: progress bar, JSON-lines log, best model, early stopping, checkpoints.
// The training loop itself, --resume, the NaN/Inf policy and Ctrl-C live in facet/train/.
#pragma once

#include <cmath>
#include <csignal>
#include <functional>
#include <iostream>
#include <optional>

#include <facet/core/communicator.hpp>
#include <facet/core/crc32.hpp>
#include <facet/data/split.hpp>
#include <facet/model/serialize.hpp>
#include <facet/optim/adam.hpp>
#include <facet/optim/schedule.hpp>
#include <facet/optim/sgd.hpp>
#include <facet/train/best_model.hpp>
#include <facet/train/checkpoint.hpp>
#include <facet/train/distillation.hpp>
#include <facet/train/early_stopping.hpp>
#include <facet/train/json_log.hpp>
#include <facet/train/mixup.hpp>
#include <facet/train/progress.hpp>
#include <facet/train/running_statistics.hpp>
#include <facet/train/trainer.hpp>
#include <facet/train/weight_average.hpp>

#include "cli.hpp"
#include "common.hpp"
#include "evaluate.hpp"
#include "model_zoo.hpp"
#include "source_revision.hpp"

namespace fer {

/// Everything `fer train` can be told; the defaults are the default recipe.
struct TrainConfig {
    DataChoice data;
    /// The class folders to train on, in the output's order; empty: FER-2013's seven emotions.
    /// Other classes train other 48 x 48 gray classifiers, such as the face verifier
    /// (docs/faces.md).
    std::vector<std::string> classes;
    std::string out = "runs/default";
    std::string model = "fer-cnn-s";
    std::size_t epochs = 0;  ///< 0: 50 on FER-2013, 12 on the synthetic faces
    std::size_t batch = 64;
    int threads = 0;
    /// fp32, or bf16: mixed precision (bf16 products, fp32 master weights and optimiser state)
    facet::Precision precision = facet::Precision::Fp32;
    std::string bf16_kernel = "auto";  ///< --bf16-kernel (set_bf16_kernel)
    std::uint64_t seed = 1;
    std::size_t max_steps = 0;  ///< stop after this many optimiser steps in all (0: no limit)
    bool resume = false;
    std::string log;  ///< default OUT/log.jsonl
    std::string optimizer = "adamw";
    double lr = 2e-3, weight_decay = 0.02, momentum = 0.9, min_lr = 1e-5;
    std::string schedule = "cosine";
    double warmup_epochs = 1;
    double plateau_factor = 0.5;       ///< --schedule plateau: the rate is multiplied by this
    std::size_t plateau_patience = 3;  ///< after this many epochs without a better val accuracy
    bool augment = true;
    int crop_min = 0, crop_max = 0;     ///< random crops of this side, resized to 48 (0: off)
    double erase = 0;                   ///< random-erasing probability (0: off)
    double mixup = 0, cutmix = 0;       ///< Beta(alpha, alpha) of Mixup / CutMix (0: off)
    std::vector<std::string> teachers;  ///< models whose mean probabilities are distilled
    /// A trained model (of this --model, data and classes) whose weights and batch-norm
    /// statistics training starts from, instead of a fresh initialisation; "" starts afresh.
    std::string init;
    /// From this epoch on (1-based), the weights at each epoch's end are averaged (stochastic
    /// weight averaging); the average, its batch-norm statistics re-estimated, is validated and
    /// competes with the epochs for model.facet. 0: off.
    std::size_t average_from = 0;
    double distill = 0.5;  ///< with teachers: their share of every target
    double label_smoothing = 0.1;
    std::size_t patience =
        0;  ///< early stopping after this many epochs without improvement (0: off)
    double val_fraction = 0.1;      ///< held out of train when the data has no validation split
    std::uint64_t val_seed = 2013;  ///< seed of that split (the same images whatever --seed)
    std::size_t checkpoint_every =
        200;  ///< also checkpoint every this many steps (0: per epoch only)
    bool skip_bad = false;
    std::size_t max_per_class =
        0;  ///< use at most this many training images per class (quick runs)
    std::size_t max_val_per_class =
        0;            ///< use at most this many validation images per class (quick runs)
    double clip = 0;  ///< gradient-norm clipping (0: off)
    /// What a step with a NaN or infinite loss or gradient does: "stop" (an error naming the step
    /// and the layer; the files in OUT keep the last good state) or "skip" (the batch changes
    /// nothing, is counted, and training goes on).
    std::string on_nonfinite = "stop";
    /// With "skip": give up (as "stop" would) after this many skipped steps in a row.
    std::size_t max_consecutive_skips = 50;
    /// Called with the step number (1-based) and the batch just before each step; tests use it to
    /// corrupt chosen batches. Not settable from the command line.
    std::function<void(std::uint64_t, facet::Batch&)> before_step;
    /// The command that trained the model, for its provenance: "fer train" and the options that
    /// shape the model. Where the files go (--out, --log) and --resume are left out, so the same
    /// training gives the same model bytes wherever it writes them and however often it resumed.
    std::string command_line = "fer train";
    /// Data-parallel training (main.cpp sets it under mpirun): the processes that train
    /// together; --batch is then the global batch, and only rank 0 writes files and prints.
    facet::Communicator* communicator = nullptr;
};

inline Cli train_cli() {
    Cli cli("train",
            "Trains the emotion CNN. Holds --val-fraction of each class of the training data out "
            "as validation (stratified, seeded by --val-seed; a 'val' folder in the data is used "
            "instead when there is one): validation alone picks the best epoch, stops early and "
            "lowers the learning rate. The test data (FER-2013's PublicTest: the 'test' folder, "
            "or the CSV's PublicTest rows; its PrivateTest rows as a second figure) never choose "
            "anything: after training, their accuracy is reported once, for the best-validation "
            "model and for the last epoch's. Writes OUT/model.facet (best validation accuracy), "
            "OUT/checkpoint.facet (the last state, for --resume) and a JSON-lines log. Under "
            "`mpirun -np N` (when fer was built with MPI) the N processes train one model "
            "data-parallel: each takes its shard of every batch, and rank 0 writes the files "
            "(docs/distributed.md).");
    cli.option("data", "DIR|CSV",
               "FER-2013 as image folders or Kaggle's CSV (default: data/fer2013 if present, else "
               "synthetic faces)")
        .option("classes", "A,B,...",
                "the class folders of the data, in the model's output order (default: FER-2013's "
                "angry,disgust,fear,happy,sad,surprise,neutral; image folders only)")
        .option("out", "DIR", "output directory", "runs/default")
        .option("model", "NAME",
                "fer-cnn-s (reference), fer-cnn-m (twice the channels), fer-cnn-mc (fer-cnn-m's "
                "convolutions, a compact head: as many parameters as fer-cnn-s) or fer-resnet-s "
                "(residual)",
                "fer-cnn-s")
        .option("epochs", "N", "epochs (default: 50 on FER-2013, 12 on synthetic faces)")
        .option("batch", "N",
                "mini-batch size (under mpirun: the global batch, shared out among the "
                "processes)",
                "64")
        .option("threads", "N",
                "threads (0: all cores; under mpirun, per process: the cores over the processes "
                "on the machine)",
                "0")
        .option("precision", "fp32|bf16",
                "bf16: the convolutions and dense layers multiply bf16-rounded operands and sum "
                "in fp32; weights, optimiser state, batch norm and the loss stay fp32",
                "fp32")
        .option("bf16-kernel", "NAME",
                "with --precision bf16: the bf16 GEMM's kernel: auto (AMX tiles when they pass a "
                "check at first use, else AVX512-BF16, else portable), avx512-bf16, amx-bf16 or "
                "portable",
                "auto")
        .option("seed", "N", "seed of initialisation, shuffling, augmentation and dropout", "1")
        .option("max-steps", "N", "stop after N optimiser steps in all (0: no limit)", "0")
        .flag("resume", "continue from OUT/checkpoint.facet")
        .option("log", "FILE",
                "JSON-lines log: the validation split, one object per epoch, the test results "
                "(default: OUT/log.jsonl)")
        .option("optimizer", "NAME", "adamw, adam, sgd or nesterov", "adamw")
        .option("lr", "X", "peak learning rate", "0.002")
        .option("weight-decay", "X", "weight decay (decoupled for adamw)", "0.02")
        .option("schedule", "NAME",
                "cosine (with warm-up), step, constant, or plateau (reduce on a validation "
                "accuracy plateau)",
                "cosine")
        .option("warmup-epochs", "X", "linear warm-up length for cosine", "1")
        .option("min-lr", "X", "the lowest learning rate of cosine and plateau", "1e-05")
        .option("plateau-factor", "X", "plateau: multiply the rate by X after a plateau", "0.5")
        .option("plateau-patience", "N",
                "plateau: epochs without a better validation accuracy before the rate falls", "3")
        .flag("no-augment", "turn data augmentation off")
        .option("crop", "MIN:MAX",
                "random crops of a side in [MIN, MAX] pixels, resized to the full 48 (evaluate "
                "such a model through crops too: fer eval --ten-crop or --center-crop); 0: off",
                "0")
        .option("erase", "P", "random erasing: with probability P, a rectangle of noise", "0")
        .option("mixup", "ALPHA", "Mixup of batch pairs with lam ~ Beta(ALPHA, ALPHA) (0: off)",
                "0")
        .option("cutmix", "ALPHA", "CutMix of batch pairs with lam ~ Beta(ALPHA, ALPHA) (0: off)",
                "0")
        .option("teacher", "FILE",
                "distil a trained model into this one; repeat it for an ensemble, whose mean "
                "probabilities are distilled (the same data, so the same input normalisation)")
        .option("distill", "X",
                "with --teacher: every target is (1 - X) x its label + X x the teachers' "
                "probabilities",
                "0.5")
        .option("init", "FILE",
                "start from a trained model's weights and batch-norm statistics (the same "
                "--model, data and classes) instead of a fresh initialisation; the optimiser and "
                "the schedule start afresh")
        .option("average-from", "E",
                "from epoch E on, average the weights at each epoch's end (stochastic weight "
                "averaging); after the last epoch the average's batch-norm statistics are computed "
                "afresh on the training images, it is validated and written to OUT/average.facet, "
                "and it becomes model.facet when its validation accuracy beats every epoch's (0: "
                "off)",
                "0")
        .option("label-smoothing", "X", "label smoothing of the loss (0: plain cross-entropy)",
                "0.1")
        .option("patience", "N",
                "early stopping after N epochs without a better validation accuracy (0: off)", "0")
        .option("val-fraction", "X",
                "fraction of each class held out of the training data for validation (when the "
                "data have no 'val' folder)",
                "0.1")
        .option("val-seed", "N", "seed of the held-out validation split", "2013")
        .option("checkpoint-every", "N",
                "also write the checkpoint every N steps (0: per epoch only)", "200")
        .option("max-per-class", "N",
                "use at most N training images per class (quick runs; 0: all)", "0")
        .option("max-val-per-class", "N",
                "use at most N validation images per class, and on synthetic faces at most N test "
                "images per class (quick runs; 0: all)",
                "0")
        .option("clip", "X", "clip the global gradient norm at X (0: off)", "0")
        .option("on-nonfinite", "stop|skip",
                "on a NaN or infinite loss or gradient: stop with an error naming the step and "
                "the layer, or skip that batch (counted) and go on",
                "stop")
        .option("max-consecutive-skips", "N",
                "with --on-nonfinite skip: stop after N skipped steps in a row", "50")
        .flag("skip-bad",
              "skip unreadable or malformed samples (counted and reported) instead of stopping");
    return cli;
}

inline TrainConfig train_config(const Cli& cli) {
    TrainConfig c;
    c.data = cli.has("data") ? DataChoice{cli.str("data")} : default_data();
    c.out = cli.str("out");
    if (cli.has("classes")) {
        c.classes = split_class_list(cli.str("classes"));
        facet::check(c.classes.size() >= 2, "train: --classes needs at least two names, got '",
                     cli.str("classes"), "'");
    }
    c.model = cli.str("model");
    auto positive = [&](const char* name) {
        const long long v = cli.integer(name);
        facet::check(v > 0, "train: --", name, " must be positive, got ", v);
        return static_cast<std::size_t>(v);
    };
    auto non_negative = [&](const char* name) {
        const long long v = cli.integer(name);
        facet::check(v >= 0, "train: --", name, " must not be negative, got ", v);
        return static_cast<std::size_t>(v);
    };
    if (cli.has("epochs")) c.epochs = positive("epochs");
    c.batch = positive("batch");
    c.threads = static_cast<int>(non_negative("threads"));
    c.precision = parse_precision(cli.str("precision"), "train");
    c.bf16_kernel = cli.str("bf16-kernel");
    c.seed = static_cast<std::uint64_t>(non_negative("seed"));
    c.max_steps = non_negative("max-steps");
    c.resume = cli.has("resume");
    if (cli.has("log")) c.log = cli.str("log");
    c.optimizer = cli.str("optimizer");
    c.lr = cli.number("lr");
    facet::check(c.lr > 0 && std::isfinite(c.lr), "train: --lr must be a positive number");
    c.weight_decay = cli.number("weight-decay");
    c.schedule = cli.str("schedule");
    c.warmup_epochs = cli.number("warmup-epochs");
    c.min_lr = cli.number("min-lr");
    facet::check(c.min_lr >= 0 && c.min_lr <= c.lr, "train: --min-lr must be in [0, --lr], got ",
                 c.min_lr);
    c.plateau_factor = cli.number("plateau-factor");
    facet::check(c.plateau_factor > 0 && c.plateau_factor < 1,
                 "train: --plateau-factor must be in (0, 1), got ", c.plateau_factor);
    c.plateau_patience = non_negative("plateau-patience");
    c.augment = !cli.has("no-augment");
    if (const std::string crop = cli.str("crop"); crop != "0") {
        const std::size_t colon = crop.find(':');
        try {
            facet::check(colon != std::string::npos, "");
            std::size_t used = 0;
            c.crop_min = std::stoi(crop.substr(0, colon), &used);
            facet::check(used == colon, "");
            c.crop_max = std::stoi(crop.substr(colon + 1), &used);
            facet::check(used == crop.size() - colon - 1, "");
        } catch (const std::exception&) {
            throw facet::Error("train: --crop must be MIN:MAX in pixels (or 0), got '" + crop +
                               "'");
        }
        facet::check(c.crop_min >= 8 && c.crop_min <= c.crop_max,
                     "train: --crop needs 8 <= MIN <= MAX, got '", crop, "'");
    }
    c.erase = cli.number("erase");
    facet::check(c.erase >= 0 && c.erase <= 1, "train: --erase must be in [0, 1], got ", c.erase);
    c.mixup = cli.number("mixup");
    c.cutmix = cli.number("cutmix");
    facet::check(c.mixup >= 0 && c.mixup <= 100 && c.cutmix >= 0 && c.cutmix <= 100,
                 "train: --mixup and --cutmix must be in [0, 100]");
    facet::check(c.mixup == 0 || c.cutmix == 0, "train: give --mixup or --cutmix, not both");
    if (cli.has("teacher")) c.teachers = cli.all("teacher");
    c.distill = cli.number("distill");
    facet::check(c.distill >= 0 && c.distill <= 1, "train: --distill must be in [0, 1], got ",
                 c.distill);
    facet::check(c.teachers.empty() || (c.mixup == 0 && c.cutmix == 0),
                 "train: --teacher with --mixup or --cutmix is not supported (both set the "
                 "loss's soft targets)");
    if (cli.has("init")) c.init = cli.str("init");
    c.average_from = non_negative("average-from");  // checked against the epochs in train_on
    c.label_smoothing = cli.number("label-smoothing");
    c.patience = non_negative("patience");
    c.val_fraction = cli.number("val-fraction");
    facet::check(c.val_fraction > 0 && c.val_fraction < 1,
                 "train: --val-fraction must be in (0, 1), got ", c.val_fraction);
    c.val_seed = static_cast<std::uint64_t>(non_negative("val-seed"));
    c.checkpoint_every = non_negative("checkpoint-every");
    c.max_per_class = non_negative("max-per-class");
    c.max_val_per_class = non_negative("max-val-per-class");
    c.clip = cli.number("clip");
    facet::check(c.clip >= 0 && std::isfinite(c.clip), "train: --clip must be >= 0, got ", c.clip);
    c.on_nonfinite = cli.str("on-nonfinite");
    facet::check(c.on_nonfinite == "stop" || c.on_nonfinite == "skip",
                 "train: --on-nonfinite must be stop or skip, got '", c.on_nonfinite, "'");
    c.max_consecutive_skips = positive("max-consecutive-skips");
    c.skip_bad = cli.has("skip-bad");
    const std::vector<std::string>& args = cli.arguments();
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--out" || a == "--log") {  // where the files go: the value is left out too
            ++i;
            continue;
        }
        if (a == "--resume" || a.rfind("--out=", 0) == 0 || a.rfind("--log=", 0) == 0) continue;
        c.command_line += " " + a;
    }
    return c;
}

namespace detail {

/// Keeps at most `limit` images of each class (in data set order): quick experiments and tests.
inline facet::Dataset cap_per_class(const facet::Dataset& data, std::size_t limit) {
    if (limit == 0) return data;
    facet::Dataset out;
    out.height = data.height, out.width = data.width, out.class_names = data.class_names,
    out.split = data.split, out.source = data.source;
    std::vector<std::size_t> seen(data.class_names.size(), 0);
    for (std::size_t i = 0; i < data.size(); ++i)
        if (seen[static_cast<std::size_t>(data.labels[i])]++ < limit)
            out.add(data.image(i), data.labels[i]);
    return out;
}

inline std::string json_number(double v) {
    if (!std::isfinite(v)) return "null";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}
/// A double with enough digits to read back the same bits.
inline std::string exact_number(double v) {
    return facet::detail::round_trip_digits(v);
}

inline std::string joined(const std::vector<std::size_t>& counts) {
    std::string s;
    for (std::size_t n : counts) {
        if (!s.empty()) s += ',';
        s += std::to_string(n);
    }
    return s;
}

}  // namespace detail

/// The data of a run: what it trains on, what chooses the model, and what is only reported.
struct DataPlan {
    facet::Dataset train;  ///< after --max-per-class
    facet::Dataset val;    ///< after --max-val-per-class
    /// "held out of train" (stratified_split of the training data) or "val split".
    std::string val_source;
    std::optional<facet::SplitRecord> split;  ///< the hold-out, when there was one
    std::size_t train_total = 0;              ///< the training split's size before the hold-out
    /// The test figures, reported after training and never used to choose: (name, data).
    std::vector<std::pair<std::string, const facet::Dataset*>> tests;

    /// The notes the model file and the checkpoint carry about how validation was chosen.
    facet::ModelMetadata notes() const {
        facet::ModelMetadata m = {{"validation.source", val_source},
                                  {"validation.samples", std::to_string(val.size())},
                                  {"validation.per_class", detail::joined(val.class_counts())},
                                  {"train.samples", std::to_string(train.size())}};
        if (split) {
            m.emplace_back("validation.fraction", detail::exact_number(split->fraction));
            m.emplace_back("validation.seed", std::to_string(split->seed));
            m.emplace_back("validation.fingerprint", split->fingerprint(train_total));
        }
        return m;
    }
    /// The same as the log's first record.
    facet::JsonLog::Record record() const {
        facet::JsonLog::Record r;
        r["event"] = "validation_split";
        r["source"] = val_source;
        r["samples"] = val.size();
        r["per_class"] = val.class_counts();
        r["train_samples"] = train.size();
        r["train_per_class"] = train.class_counts();
        if (split) {
            r["fraction"] = split->fraction;
            r["seed"] = split->seed;
            r["fingerprint"] = split->fingerprint(train_total);
        }
        facet::JsonLog::Record tests = facet::JsonLog::Record::array();
        for (const auto& [name, data] : this->tests)
            tests.push_back({{"name", name}, {"split", data->split}, {"samples", data->size()}});
        r["reported_only"] = tests;
        return r;
    }
};

/// Chooses the validation and test data of `splits` (see train_cli()'s summary). A CSV file
/// names PublicTest "val" and PrivateTest "test" (facet::canonical_split_name); both are test
/// data here, never validation.
inline DataPlan plan_data(const TrainConfig& c, const facet::DataSplits& splits) {
    const facet::Dataset* train = splits.training();
    facet::check(train != nullptr && !train->empty(), "train: the data has no training split");
    const bool csv = !c.data.synthetic() && fs::is_regular_file(c.data.path);
    DataPlan plan;
    plan.train_total = train->size();
    const facet::Dataset* explicit_val = csv ? nullptr : splits.find("val");
    if (explicit_val && !explicit_val->empty()) {
        plan.train = *train;
        plan.val = *explicit_val;
        plan.val_source = "val split";
    } else {
        facet::StratifiedSplit s =
            facet::stratified_split(*train, c.val_fraction, c.val_seed, "val (held out of train)");
        plan.train = std::move(s.kept);
        plan.val = std::move(s.held_out);
        plan.split = std::move(s.record);
        plan.val_source = "held out of train";
    }
    plan.train = detail::cap_per_class(plan.train, c.max_per_class);
    plan.val = detail::cap_per_class(plan.val, c.max_val_per_class);
    facet::check(!plan.val.empty(), "train: the validation split is empty (too few images?)");
    auto test = [&](const char* label, const char* split) {
        if (const facet::Dataset* d = splits.find(split); d && !d->empty())
            plan.tests.emplace_back(label, d);
    };
    if (csv) {
        test("test (PublicTest)", "val");
        test("private_test (PrivateTest)", "test");
    } else {
        test("test", "test");
        test("test", "synthetic-test");
    }
    return plan;
}

/// Builds the optimiser named in the configuration over the model's parameters.
inline std::unique_ptr<facet::Optimizer<float>> make_optimizer(const TrainConfig& c,
                                                               facet::Sequential<float>& model) {
    if (c.optimizer == "adam" || c.optimizer == "adamw") {
        facet::AdamOptions o;
        o.learning_rate = c.lr, o.weight_decay = c.weight_decay;
        if (c.optimizer == "adam")
            return std::make_unique<facet::Adam<float>>(model.parameters(), o);
        return std::make_unique<facet::AdamW<float>>(model.parameters(), o);
    }
    if (c.optimizer == "sgd" || c.optimizer == "nesterov") {
        facet::SgdOptions o;
        o.learning_rate = c.lr, o.weight_decay = c.weight_decay, o.momentum = c.momentum;
        o.nesterov = c.optimizer == "nesterov";
        return std::make_unique<facet::SGD<float>>(model.parameters(), o);
    }
    throw facet::Error("train: unknown --optimizer '" + c.optimizer +
                       "' (adamw, adam, sgd, nesterov)");
}

inline std::unique_ptr<facet::Schedule> make_schedule(const TrainConfig& c,
                                                      std::size_t steps_per_epoch) {
    const std::size_t total = c.epochs * steps_per_epoch;
    if (c.schedule == "cosine") {
        const auto warmup = std::min(
            total - 1,
            static_cast<std::size_t>(c.warmup_epochs * static_cast<double>(steps_per_epoch)));
        return std::make_unique<facet::CosineSchedule>(c.lr, warmup, total, c.min_lr);
    }
    if (c.schedule == "step")
        return std::make_unique<facet::StepSchedule>(c.lr, std::max<std::size_t>(1, total / 3),
                                                     0.1);
    if (c.schedule == "constant") return std::make_unique<facet::ConstantSchedule>(c.lr);
    if (c.schedule == "plateau") {
        facet::PlateauOptions o;
        o.factor = c.plateau_factor, o.patience = c.plateau_patience, o.min_lr = c.min_lr;
        o.goal = facet::MetricGoal::Maximize;  // the trainer reports validation accuracy
        return std::make_unique<facet::ReduceOnPlateau>(c.lr, o);
    }
    throw facet::Error("train: unknown --schedule '" + c.schedule +
                       "' (cosine, step, constant, plateau)");
}

/// The metadata a fer model file carries, so eval and predict need nothing else.
inline facet::ModelMetadata model_metadata(const TrainConfig& c, const facet::Normalization& norm,
                                           const facet::Dataset& train, double val_acc,
                                           std::size_t epoch) {
    std::string classes;
    for (const auto& n : train.class_names) classes += (classes.empty() ? "" : ",") + n;
    return {{"program", "fer"},
            {"model", c.model},
            {"data", c.data.describe()},
            // Every digit: eval must normalise exactly as training did, or predictions near a
            // decision boundary flip (6 digits moved PublicTest accuracy by 0.1 points).
            {"normalization.mean", detail::exact_number(norm.mean)},
            {"normalization.stddev", detail::exact_number(norm.stddev)},
            {"classes", classes},
            {"precision", facet::precision_name(c.precision)},
            {"val_accuracy", detail::json_number(val_acc)},
            {"epoch", std::to_string(epoch)}};
}

namespace detail {

/// fer's own hooks: the test hook before each step, and the line saying what a stop on
/// non-finite values left on disk.
class FerHooks : public facet::Callback {
  public:
    FerHooks(const TrainConfig& c, std::string best, std::string checkpoint)
        : config_(c), best_(std::move(best)), checkpoint_(std::move(checkpoint)) {}
    void on_batch_begin(facet::Trainer& t, facet::Batch& batch) override {
        if (config_.before_step) config_.before_step(t.state().step + 1, batch);
    }
    void on_nonfinite(facet::Trainer& t, const facet::NonFiniteError& e, bool skipped) override {
        if (skipped) return;
        const std::uint64_t step = e.step().value_or(0), per_epoch = t.state().steps_per_epoch;
        std::cout << "stopped at step " << step << " (epoch " << (step - 1) / per_epoch + 1
                  << ", batch " << (step - 1) % per_epoch + 1 << "): non-finite values; " << best_
                  << " and " << checkpoint_
                  << " were left as they were (--on-nonfinite skip skips such steps)\n";
    }

  private:
    const TrainConfig& config_;
    std::string best_, checkpoint_;
};

/// Data-parallel: every process must end with rank 0's weights and buffers. Rank 0 prints the
/// CRC-32 of each process's (a check from outside can compare them); an Error when they differ.
inline void check_same_weights(facet::Communicator& world, facet::Sequential<float>& model) {
    std::uint32_t crc = 0;
    for (const auto& p : model.parameters())
        crc = facet::crc32_update(crc, p.value->data(), p.value->size() * sizeof(float));
    for (auto& [name, t] : model.buffers())
        crc = facet::crc32_update(crc, t->data(), t->size() * sizeof(float));
    std::vector<double> crcs(static_cast<std::size_t>(world.size()), 0);
    crcs[static_cast<std::size_t>(world.rank())] = crc;
    world.sum(std::span<double>(crcs));  // each slot is one process's
    std::string line;
    bool same = true;
    for (double v : crcs) {
        char hex[16];
        std::snprintf(hex, sizeof hex, "%08x", static_cast<std::uint32_t>(v));
        line += line.empty() ? hex : std::string(" ") + hex;
        same = same && v == crcs[0];
    }
    std::cout << "weights on the " << crcs.size() << " processes: crc32 " << line
              << (same ? " (identical)" : " (DIFFERENT)") << "\n";
    facet::check(same, "train: the processes ended with different weights (crc32 ", line, ")");
}

/// The notes of `metadata` without the test results a finished run added.
inline facet::ModelMetadata without_test_notes(const facet::ModelMetadata& metadata) {
    facet::ModelMetadata kept;
    for (const auto& note : metadata)
        if (note.first.rfind("test.", 0) != 0 && note.first.rfind("private_test.", 0) != 0)
            kept.push_back(note);
    return kept;
}

}  // namespace detail

/// After training: the accuracy of the best-validation model and of the last epoch's on each test
/// split, printed, logged and added to model.facet's notes. Nothing is chosen by these numbers.
/// Data-parallel, every process evaluates its shard of each test split (rank 0 sends the others
/// the best model's file) and rank 0 alone writes: the report takes 1/N of the time.
inline void report_test(const TrainConfig& c, const DataPlan& plan, facet::Sequential<float>& last,
                        std::size_t last_epoch, const facet::Normalization& norm,
                        const std::string& best_path, std::size_t best_epoch,
                        const std::string& best_label, facet::JsonLog* log) {
    facet::Communicator* const world = c.communicator;
    const bool writer = !world || world->is_root();
    std::vector<unsigned char> best_bytes;
    if (writer) best_bytes = facet::read_whole_file(best_path, facet::serial::max_file_size);
    if (world) best_bytes = world->broadcast_vector(std::move(best_bytes), 0);
    facet::ModelFile<float> best = facet::decode_model_file<float>(best_bytes, best_path);
    best.model.context().precision = c.precision;  // judged as validation judged it
    facet::ModelMetadata notes = detail::without_test_notes(best.metadata);
    facet::SaveOptions options;
    options.provenance = best.provenance;
    std::erase_if(options.provenance.metrics, [](const auto& metric) {  // from an earlier report
        return metric.first.rfind("test.", 0) == 0 || metric.first.rfind("private_test.", 0) == 0;
    });
    for (const auto& [name, data] : plan.tests) {
        const std::size_t rank = world ? static_cast<std::size_t>(world->rank()) : 0;
        const std::size_t ranks = world ? static_cast<std::size_t>(world->size()) : 1;
        facet::DatasetBatches batches(*data, norm, c.batch, rank, ranks);
        facet::ValidationSums sums[2] = {facet::validation_sums(best.model, batches),
                                         facet::validation_sums(last, batches)};
        if (world) {  // the shards' totals
            double totals[6] = {sums[0].loss, sums[0].correct, sums[0].samples,
                                sums[1].loss, sums[1].correct, sums[1].samples};
            world->sum(std::span<double>(totals));
            sums[0] = {totals[0], totals[1], totals[2]},
            sums[1] = {totals[3], totals[4], totals[5]};
        }
        if (!writer) continue;
        const facet::ValidationResult at_best = facet::validation_result(sums[0]);
        const facet::ValidationResult at_last = facet::validation_result(sums[1]);
        facet::check(at_best.samples == data->size() && at_last.samples == data->size(),
                     "train: the processes' shards of the ", name, " split hold ", at_best.samples,
                     " images, not its ", data->size());
        std::cout << name << " accuracy (" << data->size()
                  << " images, reported only, never used to choose): "
                  << detail::json_number(at_best.accuracy) << " for the best-validation model ("
                  << best_label << "), " << detail::json_number(at_last.accuracy)
                  << " after the last epoch (" << last_epoch << ")\n";
        facet::JsonLog::Record r;
        r["event"] = "test";
        r["name"] = name;
        r["split"] = data->split;
        r["samples"] = data->size();
        r["best_epoch"] = best_epoch;
        r["best_model"] = best_label;
        r["accuracy_best_epoch"] = at_best.accuracy;
        r["loss_best_epoch"] = at_best.loss;
        r["last_epoch"] = last_epoch;
        r["accuracy_last_epoch"] = at_last.accuracy;
        r["loss_last_epoch"] = at_last.loss;
        log->append(r);
        const std::string key = name.substr(0, name.find(' '));  // "test" or "private_test"
        notes.emplace_back(key + ".samples", std::to_string(data->size()));
        notes.emplace_back(key + ".accuracy_best_epoch", detail::exact_number(at_best.accuracy));
        notes.emplace_back(key + ".accuracy_last_epoch", detail::exact_number(at_last.accuracy));
        notes.emplace_back(key + ".last_epoch", std::to_string(last_epoch));
        options.provenance.metrics.emplace_back(key + ".accuracy_best_epoch", at_best.accuracy);
        options.provenance.metrics.emplace_back(key + ".accuracy_last_epoch", at_last.accuracy);
    }
    if (writer && !plan.tests.empty()) facet::save(best.model, best_path, notes, options);
}

/// Trains on already loaded data (run_train() loads them; tests pass small sets directly).
inline int train_on(const TrainConfig& c, const facet::DataSplits& splits) {
    facet::set_num_threads(c.threads);
    set_bf16_kernel(c.bf16_kernel, "train");
    facet::Communicator* const world = c.communicator;
    const bool writer = !world || world->is_root();  // the process that writes files
    const std::size_t ranks = world ? static_cast<std::size_t>(world->size()) : 1;
    const std::size_t rank = world ? static_cast<std::size_t>(world->rank()) : 0;
    facet::check(c.batch >= ranks, "train: --batch ", c.batch,
                 " is the global batch and must be at least the ", ranks, " processes");
    if (writer) fs::create_directories(c.out);
    const std::string best_path = c.out + "/model.facet", ckpt_path = c.out + "/checkpoint.facet";
    const std::string log_path = c.log.empty() ? c.out + "/log.jsonl" : c.log;
    // A run killed while writing leaves its temporary file behind (the real file is intact).
    std::size_t stale = 0;
    if (writer)
        for (const std::string& p : {best_path, ckpt_path, log_path})
            stale += facet::remove_stale_temporaries(p);
    if (stale)
        std::cout << "removed " << stale
                  << " unfinished temporary file(s) left by an interrupted run\n";
    const DataPlan plan = plan_data(c, splits);
    std::cout << "data: " << c.data.describe() << ": " << plan.train.size() << " training images, "
              << plan.val.size() << " validation images (" << plan.val_source;
    if (plan.split)
        std::cout << ": " << plan.split->fraction << " of each class, seed " << plan.split->seed
                  << ", fingerprint " << plan.split->fingerprint(plan.train_total);
    std::cout << ")";
    for (const auto& [name, data] : plan.tests)
        std::cout << ", " << data->size() << " " << name << " images (reported only)";
    std::cout << "\n";
    if (splits.skip_report.skipped) std::cout << splits.skip_report.summary() << "\n";
    std::cout << facet::class_distribution(plan.train).table();

    TrainConfig cfg = c;
    if (cfg.epochs == 0) cfg.epochs = c.data.synthetic() ? 12 : 50;
    facet::check(cfg.average_from <= cfg.epochs, "train: --average-from ", cfg.average_from,
                 " is after the last epoch (", cfg.epochs, ")");
    facet::check(cfg.average_from == 0 || !world,
                 "train: --average-from is not supported under mpirun (the average's batch-norm "
                 "statistics are re-estimated by one process)");
    facet::check(cfg.average_from == 0 || !cfg.resume,
                 "train: --average-from cannot --resume: the checkpoint does not hold the running "
                 "average of the weights");
    const facet::Normalization norm = facet::Normalization::of(plan.train);
    facet::check(cfg.on_nonfinite == "stop" || cfg.on_nonfinite == "skip",
                 "train: on_nonfinite must be stop or skip, got '", cfg.on_nonfinite, "'");

    facet::BatchOptions bo;
    bo.batch_size = cfg.batch, bo.shuffle = true, bo.augment = cfg.augment, bo.seed = cfg.seed;
    bo.augmentation.crop_min = cfg.crop_min, bo.augmentation.crop_max = cfg.crop_max;
    bo.augmentation.erase_probability = cfg.erase;
    facet::check(cfg.crop_max <= static_cast<int>(plan.train.width), "train: --crop ", cfg.crop_min,
                 ":", cfg.crop_max, " is larger than the images (", plan.train.width,
                 " pixels wide)");
    bo.shard_index = rank, bo.shard_count = ranks;
    facet::BatchLoader loader(plan.train, norm, bo);
    facet::LoaderBatches train_batches(loader);
    // The training batch size: no bigger activations than training has.
    facet::DatasetBatches val_batches(plan.val, norm, cfg.batch, rank, ranks);

    facet::Sequential<float> model =
        build_model(cfg.model, cfg.seed, plan.train.class_names.size());
    model.context().precision = cfg.precision;  // the student's products; teachers stay fp32
    if (!cfg.init.empty()) {
        TrainedModel start = load_trained(cfg.init);
        facet::check(start.note("model") == cfg.model, "train: --init ", cfg.init, " holds model '",
                     start.note("model"), "', not --model '", cfg.model, "'");
        facet::check(start.norm.mean == norm.mean && start.norm.stddev == norm.stddev,
                     "train: --init ", cfg.init, " normalises its input with mean ",
                     start.note("normalization.mean"), ", stddev ",
                     start.note("normalization.stddev"),
                     ", unlike this training data; start from a model trained on the same data");
        facet::check(start.classes == plan.train.class_names, "train: --init ", cfg.init,
                     " has other classes than the training data");
        facet::interpolate_weights(model, start.model, start.model, 0.0);  // copies them
        std::cout << "starting from the weights of " << cfg.init << "\n";
    }
    std::cout << bf16_speed_note(cfg.precision);
    const std::unique_ptr<facet::Optimizer<float>> optimizer = make_optimizer(cfg, model);
    const std::unique_ptr<facet::Schedule> schedule =
        make_schedule(cfg, loader.batches_per_epoch());
    const facet::ModelMetadata validation_notes = plan.notes();
    auto notes = [&](double val_acc, std::size_t epoch) {
        facet::ModelMetadata m = model_metadata(cfg, norm, plan.train, val_acc, epoch);
        m.insert(m.end(), validation_notes.begin(), validation_notes.end());
        return m;
    };

    facet::TrainerOptions to;
    to.epochs = cfg.epochs, to.max_steps = cfg.max_steps, to.seed = cfg.seed;
    to.max_gradient_norm = cfg.clip, to.label_smoothing = cfg.label_smoothing;
    to.on_nonfinite =
        cfg.on_nonfinite == "skip" ? facet::NonFinitePolicy::Skip : facet::NonFinitePolicy::Stop;
    to.max_consecutive_skips = cfg.max_consecutive_skips;
    to.communicator = world;
    to.notes = [&](const facet::TrainState& s) {
        return notes(s.best_val_accuracy, s.completed_epochs);
    };
    facet::Trainer trainer(model, *optimizer, *schedule, to);

    if (cfg.resume) {
        facet::check(!writer || fs::exists(ckpt_path), "train --resume: no checkpoint at ",
                     ckpt_path);
        // Distributed: rank 0's file, which rank 0 reads and sends to the others.
        facet::Checkpoint<float> ck = facet::read_checkpoint(ckpt_path, world);
        facet::check(ck.info.note("model") == cfg.model, "train --resume: ", ckpt_path,
                     " holds model '", ck.info.note("model"), "', not '", cfg.model, "'");
        const std::string fingerprint = ck.info.note("validation.fingerprint");
        facet::check(fingerprint.empty() || !plan.split ||
                         fingerprint == plan.split->fingerprint(plan.train_total),
                     "train --resume: ", ckpt_path,
                     " was validated on other held-out images (fingerprint ", fingerprint,
                     "); give the same data, --val-fraction and --val-seed");
        trainer.resume(ck);
        std::cout << "resumed from " << ckpt_path << " at epoch "
                  << trainer.state().completed_epochs + 1 << ", step " << trainer.state().step
                  << "\n";
    }
    std::cout << model.summary() << "optimizer " << cfg.optimizer << ", lr " << cfg.lr << " ("
              << cfg.schedule << "), weight decay " << cfg.weight_decay << ", batch " << cfg.batch
              << ", " << cfg.epochs << " epochs of " << loader.batches_per_epoch()
              << " steps, augmentation " << (cfg.augment ? "on" : "off") << ", threads "
              << facet::num_threads() << ", precision " << facet::precision_name(cfg.precision)
              << (cfg.precision == facet::Precision::Bf16
                      ? std::string(" (") + facet::bf16_isa_name(facet::bf16_isa()) + " kernel)"
                      : std::string())
              << "\n";
    if (world)
        std::cout << "data-parallel: " << ranks << " processes of " << facet::num_threads()
                  << " thread(s), each a shard of about " << cfg.batch / ranks
                  << " images of every batch of " << cfg.batch << "\n";

    // Only rank 0 prints progress and writes the log, the best model and the checkpoint; every
    // process runs the hooks that decide (early stopping, the test hook).
    if (writer) trainer.add<facet::ProgressBar>();
    trainer.add<detail::FerHooks>(cfg, best_path, ckpt_path);
    // The teachers: each must read the input as the student does.
    std::vector<TrainedModel> teachers;
    for (const std::string& path : cfg.teachers) {
        teachers.push_back(load_trained(path));
        const TrainedModel& t = teachers.back();
        facet::check(t.norm.mean == norm.mean && t.norm.stddev == norm.stddev, "train: --teacher ",
                     path, " normalises its input with mean ", t.note("normalization.mean"),
                     ", stddev ", t.note("normalization.stddev"),
                     ", unlike this training data; train the teachers on the same data");
        facet::check(t.classes == plan.train.class_names, "train: --teacher ", path,
                     " has other classes than the training data");
    }
    if (!teachers.empty()) {
        std::vector<facet::Sequential<float>*> models;
        for (TrainedModel& t : teachers) models.push_back(&t.model);
        trainer.add<facet::Distillation>(models,
                                         [share = cfg.distill](std::size_t) { return share; });
    }
    if (cfg.mixup > 0 || cfg.cutmix > 0) {
        facet::MixupOptions mo;
        mo.kind = cfg.mixup > 0 ? facet::MixupKind::Mixup : facet::MixupKind::CutMix;
        mo.alpha = cfg.mixup > 0 ? cfg.mixup : cfg.cutmix;
        trainer.add<facet::Mixup>(mo, plan.train.class_names.size(), cfg.seed);
    }
    facet::JsonLog* log = nullptr;
    if (writer)
        log = &trainer.add<facet::JsonLog>(log_path,
                                           std::vector<facet::JsonLog::Record>{plan.record()});
    // The training images and labels after the hold-out identify the data the weights saw.
    std::uint32_t data_crc =
        facet::crc32_update(0, plan.train.pixels.data(), plan.train.pixels.size());
    data_crc = facet::crc32_update(data_crc, plan.train.labels.data(),
                                   plan.train.labels.size() * sizeof(plan.train.labels[0]));
    char data_fingerprint[96];
    std::snprintf(data_fingerprint, sizeof data_fingerprint, "crc32 %08x of %zu images of %zux%zu",
                  data_crc, plan.train.size(), plan.train.height, plan.train.width);
    auto provenance = [&](const facet::EpochReport& r) {
        facet::Provenance p;
        p.command_line = cfg.command_line;
        p.data_fingerprint = data_fingerprint;
        p.metrics = {{"val_accuracy", r.val_accuracy},
                     {"val_loss", r.val_loss},
                     {"epoch", static_cast<double>(r.epoch)}};
        p.notes = {{"data", cfg.data.describe()}, {"model", cfg.model}};
        if (const std::string revision = source_revision(); !revision.empty())
            p.notes.emplace_back("git_commit", revision);
        return p;
    };
    if (writer)
        trainer.add<facet::BestModel>(
            best_path, [&](const facet::EpochReport& r) { return notes(r.val_accuracy, r.epoch); },
            provenance);
    if (cfg.patience) trainer.add<facet::EarlyStopping>(cfg.patience);
    if (writer) trainer.add<facet::CheckpointSaver>(ckpt_path, cfg.checkpoint_every);
    // --average-from: the running mean of the later epochs' weights.
    std::optional<facet::Sequential<float>> average;
    facet::WeightAverage* averager = nullptr;
    if (cfg.average_from > 0) {
        average.emplace(build_model(cfg.model, cfg.seed, plan.train.class_names.size()));
        average->context().precision = cfg.precision;
        averager = &trainer.add<facet::WeightAverage>(*average, cfg.average_from);
    }

    const facet::TrainSummary s = trainer.fit(train_batches, val_batches);
    if (world) detail::check_same_weights(*world, model);

    const bool interrupted = s.reason == facet::StopReason::Interrupted;
    if (s.mid_epoch)
        std::cout << "\n"
                  << (interrupted ? "interrupted" : "reached --max-steps") << " at step " << s.steps
                  << "; checkpoint saved to " << ckpt_path << " (continue with --resume)\n";
    else if (interrupted)  // the signal came during the last step or validation
        std::cout << "interrupted after epoch " << s.completed_epochs << "; checkpoint saved to "
                  << ckpt_path << " (continue with --resume)\n";
    if (s.reason == facet::StopReason::EarlyStopped)
        std::cout << "early stop: no better validation accuracy for " << cfg.patience
                  << " epochs\n";
    if (s.skipped_steps)
        std::cout << s.skipped_steps
                  << " step(s) skipped for non-finite values (--on-nonfinite skip)\n";
    if (s.best_val_accuracy < 0) {  // stopped (--max-steps or a signal) before the first validation
        std::cout << "no epoch completed, so no model was saved yet; the checkpoint holds the "
                     "progress\n";
    } else {
        std::cout << "best validation accuracy " << detail::json_number(s.best_val_accuracy)
                  << " (epoch " << s.best_epoch << ") — model: " << best_path << "\n";
        const bool finished =
            s.reason == facet::StopReason::Completed || s.reason == facet::StopReason::EarlyStopped;
        std::string best_label = "epoch " + std::to_string(s.best_epoch);
        if (finished && averager && averager->count() > 0) {
            // The mean's own batch-norm statistics, from one more shuffled, augmented epoch of
            // the training images (the statistics every epoch's model was trained with).
            facet::reestimate_running_statistics(*average, train_batches, cfg.epochs,
                                                 facet::detail::mix_seed(cfg.seed, 21));
            const facet::ValidationResult r = facet::evaluate_batches(*average, val_batches);
            const std::string span =
                std::to_string(averager->from()) + " to " + std::to_string(averager->last_epoch());
            facet::ModelMetadata m = notes(r.accuracy, averager->last_epoch());
            m.emplace_back("average.epochs", span);
            facet::EpochReport at;
            at.epoch = averager->last_epoch(), at.val_accuracy = r.accuracy, at.val_loss = r.loss;
            facet::SaveOptions options;
            options.provenance = provenance(at);
            options.provenance.notes.emplace_back("average_of_epochs", span);
            const std::string average_path = cfg.out + "/average.facet";
            facet::save(*average, average_path, m, options);
            const bool better = r.accuracy > s.best_val_accuracy;
            std::cout << "the mean of the weights of epochs " << span
                      << ", its batch-norm statistics re-estimated: validation accuracy "
                      << detail::json_number(r.accuracy) << " — " << average_path << "; "
                      << (better ? "better than" : "not better than") << " epoch " << s.best_epoch
                      << "'s " << detail::json_number(s.best_val_accuracy)
                      << (better ? ", so it is " + best_path : std::string()) << "\n";
            facet::JsonLog::Record record;
            record["event"] = "average";
            record["epochs"] = span;
            record["val_accuracy"] = r.accuracy;
            record["val_loss"] = r.loss;
            record["chosen"] = better;
            log->append(record);
            if (better) {
                facet::save(*average, best_path, m, options);
                best_label = "the mean of epochs " + span;
            }
        }
        if (finished)
            report_test(cfg, plan, model, s.completed_epochs, norm, best_path, s.best_epoch,
                        best_label, log);
    }
    // 128 + SIGINT, as a shell reports a program Ctrl-C ended: a script must not take an
    // interrupted run for a finished one.
    return interrupted ? 128 + SIGINT : 0;
}

/// Runs `fer train`: loads the data, then trains. Returns the process exit status.
inline int run_train(const TrainConfig& c) {
    facet::set_num_threads(c.threads);
    const auto t_load = std::chrono::steady_clock::now();
    facet::ReadOptions read;
    read.skip_bad = c.skip_bad;
    if (!c.classes.empty()) {
        facet::check(!c.data.synthetic() && fs::is_directory(c.data.path),
                     "train: --classes needs --data to name a folder of class folders");
        read.class_names = c.classes;
    }
    facet::DataSplits splits;
    if (c.data.synthetic() && (c.max_per_class || c.max_val_per_class)) {
        // Each synthetic face is drawn from its own index, so drawing only the first n per class
        // gives the images the caps keep, without the wait for the rest (quick runs): n is the
        // least number that leaves --max-per-class training images per class after the hold-out
        // and holds at least --max-val-per-class out.
        SyntheticFaceOptions o;
        if (c.max_per_class) {
            std::size_t n = c.max_per_class + 1;
            for (;; ++n) {
                const std::size_t held = std::clamp<std::size_t>(
                    static_cast<std::size_t>(std::llround(c.val_fraction * static_cast<double>(n))),
                    1, n - 1);
                if (n - held >= c.max_per_class && held >= c.max_val_per_class) break;
            }
            o.train_per_class = std::min(o.train_per_class, n);
        }
        if (c.max_val_per_class) o.test_per_class = std::min(o.test_per_class, c.max_val_per_class);
        splits = make_synthetic_faces(o);
    } else {
        splits = load_splits(c.data, read);
    }
    std::cout << "loaded " << c.data.describe() << " in "
              << detail::json_number(seconds_since(t_load)) << " s\n";
    return train_on(c, splits);
}

}  // namespace fer
