// fer/train.hpp — `fer train`: the training loop of the emotion model, with a Keras-style
// progress bar, validation after every epoch, a JSON-lines log, best-model and last-checkpoint
// files written atomically, early stopping, --resume, and a clean stop on Ctrl-C.
#pragma once

#include <unistd.h>
#include <atomic>
#include <csignal>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

#include <facet/loss/softmax_cross_entropy.hpp>
#include <facet/model/serialize.hpp>
#include <facet/optim/adam.hpp>
#include <facet/optim/schedule.hpp>
#include <facet/optim/sgd.hpp>

#include "cli.hpp"
#include "common.hpp"
#include "model_zoo.hpp"

namespace fer {

/// Everything `fer train` can be told; the defaults are the default recipe.
struct TrainConfig {
    DataChoice data;
    std::string out = "runs/default";
    std::string model = "fer-cnn-s";
    std::size_t epochs = 0;  ///< 0: 50 on FER-2013, 12 on the synthetic faces
    std::size_t batch = 64;
    int threads = 0;
    std::uint64_t seed = 1;
    std::size_t max_steps = 0;  ///< stop after this many optimiser steps in all (0: no limit)
    bool resume = false;
    std::string log;  ///< default OUT/log.jsonl
    std::string optimizer = "adamw";
    double lr = 2e-3, weight_decay = 0.02, momentum = 0.9, min_lr = 1e-5;
    std::string schedule = "cosine";
    double warmup_epochs = 1;
    bool augment = true;
    double label_smoothing = 0.1;
    std::size_t patience =
        0;  ///< early stopping after this many epochs without improvement (0: off)
    double val_fraction = 0.1;  ///< held out of train when the data has no validation split
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
};

inline Cli train_cli() {
    Cli cli("train",
            "Trains the emotion CNN. Writes OUT/model.facet (best validation accuracy), "
            "OUT/checkpoint.facet (the last state, for --resume) and a JSON-lines log.");
    cli.option("data", "DIR|CSV",
               "FER-2013 as image folders or Kaggle's CSV (default: data/fer2013 if present, else "
               "synthetic faces)")
        .option("out", "DIR", "output directory", "runs/default")
        .option("model", "NAME", "fer-cnn-s (reference) or fer-cnn-m (twice the channels)",
                "fer-cnn-s")
        .option("epochs", "N", "epochs (default: 50 on FER-2013, 12 on synthetic faces)")
        .option("batch", "N", "mini-batch size", "64")
        .option("threads", "N", "threads (0: all cores)", "0")
        .option("seed", "N", "seed of initialisation, shuffling, augmentation and dropout", "1")
        .option("max-steps", "N", "stop after N optimiser steps in all (0: no limit)", "0")
        .flag("resume", "continue from OUT/checkpoint.facet")
        .option("log", "FILE", "JSON-lines log, one object per epoch (default: OUT/log.jsonl)")
        .option("optimizer", "NAME", "adamw, adam, sgd or nesterov", "adamw")
        .option("lr", "X", "peak learning rate", "0.002")
        .option("weight-decay", "X", "weight decay (decoupled for adamw)", "0.02")
        .option("schedule", "NAME", "cosine (with warm-up), step or constant", "cosine")
        .option("warmup-epochs", "X", "linear warm-up length for cosine", "1")
        .flag("no-augment", "turn data augmentation off")
        .option("label-smoothing", "X", "label smoothing of the loss (0: plain cross-entropy)",
                "0.1")
        .option("patience", "N",
                "early stopping after N epochs without a better validation accuracy (0: off)", "0")
        .option("checkpoint-every", "N",
                "also write the checkpoint every N steps (0: per epoch only)", "200")
        .option("max-per-class", "N",
                "use at most N training images per class (quick runs; 0: all)", "0")
        .option("max-val-per-class", "N",
                "use at most N validation images per class (quick runs; 0: all)", "0")
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
    c.model = cli.str("model");
    if (cli.has("epochs")) c.epochs = static_cast<std::size_t>(cli.integer("epochs"));
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
    c.augment = !cli.has("no-augment");
    c.label_smoothing = cli.number("label-smoothing");
    c.patience = non_negative("patience");
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
    return c;
}

namespace detail {
inline std::atomic<bool> stop_requested{false};
/// SIGINT and SIGTERM ask the loop to stop after the current step and save; the handler then
/// gives the signal back its default action, so a second Ctrl-C ends the program at once.
extern "C" inline void on_stop_signal(int signal) {
    stop_requested = true;
    std::signal(signal, SIG_DFL);
}

/// Installs on_stop_signal for SIGINT and SIGTERM while it lives; the previous handlers come back
/// however training ends (an exception included).
class StopSignals {
  public:
    StopSignals() {
        stop_requested = false;
        previous_int_ = std::signal(SIGINT, on_stop_signal);
        previous_term_ = std::signal(SIGTERM, on_stop_signal);
    }
    ~StopSignals() {
        std::signal(SIGINT, previous_int_);
        std::signal(SIGTERM, previous_term_);
    }
    StopSignals(const StopSignals&) = delete;
    StopSignals& operator=(const StopSignals&) = delete;

  private:
    void (*previous_int_)(int) = SIG_DFL;
    void (*previous_term_)(int) = SIG_DFL;
};

/// A Keras-style progress line: " 120/449 [======>.......] - 31s - ETA: 1:25 - loss: 1.4 - acc:
/// 0.44". Redrawn in place on a terminal; on a pipe or file, printed at every 10% so logs stay
/// short.
class ProgressBar {
  public:
    explicit ProgressBar(std::size_t total) : total_(total), tty_(isatty(STDOUT_FILENO) != 0) {}
    void update(std::size_t done, double elapsed, double loss, double acc, std::size_t skipped,
                bool final = false) {
        const std::size_t decile = total_ ? done * 10 / total_ : 10;
        if (!tty_ && !final && decile == last_decile_) return;
        last_decile_ = decile;
        const int width = 30;
        const int filled = total_ ? static_cast<int>(width * done / total_) : width;
        std::string bar(static_cast<std::size_t>(width), '.');
        for (int i = 0; i < filled; ++i) bar[static_cast<std::size_t>(i)] = '=';
        if (filled < width) bar[static_cast<std::size_t>(filled)] = '>';
        const double eta =
            done ? elapsed / static_cast<double>(done) * static_cast<double>(total_ - done) : 0.0;
        char line[256];
        std::snprintf(line, sizeof line, "%5zu/%zu [%s] - %.0fs%s - loss: %.4f - acc: %.4f", done,
                      total_, bar.c_str(), elapsed, final ? "" : (" - ETA: " + clock(eta)).c_str(),
                      loss, acc);
        std::string skips;
        if (skipped) skips = " - skipped_steps: " + std::to_string(skipped);
        std::cout << (tty_ ? "\r" : "") << line << skips << (tty_ && !final ? "" : "\n")
                  << std::flush;
    }

  private:
    static std::string clock(double s) {
        char buf[32];
        const long t = static_cast<long>(s + 0.5);
        std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
        return buf;
    }
    std::size_t total_;
    bool tty_;
    std::size_t last_decile_ = 11;
};

/// The validation data: the "val" split (PublicTest), else "test", else the last
/// `fraction` of a seeded shuffle of the training set (which then shrinks by as much).
inline std::pair<facet::Dataset, facet::Dataset> train_val(const facet::DataSplits& splits,
                                                           double fraction, std::uint64_t seed) {
    const facet::Dataset* train = splits.training();
    facet::check(train != nullptr && !train->empty(), "train: the data has no training split");
    for (const char* name : {"val", "synthetic-test", "test"})
        if (const facet::Dataset* v = splits.find(name); v && !v->empty()) return {*train, *v};
    facet::check(fraction > 0 && fraction < 1, "train: no validation split and val_fraction ",
                 fraction);
    std::vector<std::size_t> order(train->size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    facet::Rng rng(seed ^ 0x5eed);
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
    const std::size_t n_val = std::max<std::size_t>(
        1, static_cast<std::size_t>(fraction * static_cast<double>(order.size())));
    facet::Dataset t, v;
    for (auto* d : {&t, &v}) {
        d->height = train->height, d->width = train->width, d->class_names = train->class_names;
    }
    t.split = "train", v.split = "val (held out of train)";
    for (std::size_t k = 0; k < order.size(); ++k)
        (k < order.size() - n_val ? t : v).add(train->image(order[k]), train->labels[order[k]]);
    return {std::move(t), std::move(v)};
}

/// Keeps at most `limit` images of each class (in data set order): quick experiments and tests.
inline facet::Dataset cap_per_class(const facet::Dataset& data, std::size_t limit) {
    if (limit == 0) return data;
    facet::Dataset out;
    out.height = data.height, out.width = data.width, out.class_names = data.class_names,
    out.split = data.split;
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
/// A double with enough digits to read back the same bits (for numbers a resume compares with).
inline std::string exact_number(double v) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}
}  // namespace detail

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
    throw facet::Error("train: unknown --schedule '" + c.schedule + "' (cosine, step, constant)");
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
            {"val_accuracy", detail::json_number(val_acc)},
            {"epoch", std::to_string(epoch)}};
}

/// Trains on already loaded data (run_train() loads them; tests pass small sets directly).
inline int train_on(const TrainConfig& c, const facet::DataSplits& splits) {
    using clock = std::chrono::steady_clock;
    facet::set_num_threads(c.threads);
    fs::create_directories(c.out);
    const std::string best_path = c.out + "/model.facet", ckpt_path = c.out + "/checkpoint.facet";
    const std::string log_path = c.log.empty() ? c.out + "/log.jsonl" : c.log;
    // A run killed while writing leaves its temporary file behind (the real file is intact).
    std::size_t stale = 0;
    for (const std::string& p : {best_path, ckpt_path, log_path})
        stale += facet::remove_stale_temporaries(p);
    if (stale)
        std::cout << "removed " << stale
                  << " unfinished temporary file(s) left by an interrupted run\n";
    auto [train_full, val_full] = detail::train_val(splits, c.val_fraction, c.seed);
    const facet::Dataset train = detail::cap_per_class(train_full, c.max_per_class);
    const facet::Dataset val = detail::cap_per_class(val_full, c.max_val_per_class);
    std::cout << "data: " << c.data.describe() << ": " << train.size() << " training images ("
              << train.split << "), " << val.size() << " validation images (" << val.split << ")\n";
    if (splits.skip_report.skipped) std::cout << splits.skip_report.summary() << "\n";
    std::cout << facet::class_distribution(train).table();

    TrainConfig cfg = c;
    if (cfg.epochs == 0) cfg.epochs = c.data.synthetic() ? 12 : 50;
    const facet::Normalization norm = facet::Normalization::of(train);
    const bool skip_nonfinite = cfg.on_nonfinite == "skip";
    facet::check(skip_nonfinite || cfg.on_nonfinite == "stop",
                 "train: on_nonfinite must be stop or skip, got '", cfg.on_nonfinite, "'");

    facet::BatchOptions bo;
    bo.batch_size = cfg.batch, bo.shuffle = true, bo.augment = cfg.augment, bo.seed = cfg.seed;
    facet::BatchLoader loader(train, norm, bo);
    const std::size_t steps_per_epoch = loader.batches_per_epoch();

    facet::Sequential<float> model = build_model(cfg.model, cfg.seed);
    std::size_t first_epoch = 0, step = 0;
    double best_acc = -1;
    std::size_t epochs_without_improvement = 0;
    // Steps skipped for non-finite values: in the whole run, in the current epoch, and in a row.
    std::size_t skipped_total = 0, skipped_in_epoch = 0, skipped_in_a_row = 0;
    std::unique_ptr<facet::Optimizer<float>> optimizer;
    std::unique_ptr<facet::Schedule> schedule = make_schedule(cfg, steps_per_epoch);
    std::vector<std::string> log_lines;

    if (cfg.resume) {
        facet::check(fs::exists(ckpt_path), "train --resume: no checkpoint at ", ckpt_path);
        facet::Checkpoint<float> ck = facet::load_checkpoint<float>(ckpt_path);
        facet::check(ck.info.note("model") == cfg.model, "train --resume: ", ckpt_path,
                     " holds model '", ck.info.note("model"), "', not '", cfg.model, "'");
        model = std::move(ck.model);
        optimizer = make_optimizer(cfg, model);
        optimizer->load_state(ck.optimizer);
        schedule->load_state(ck.schedule);
        step = ck.info.step;
        first_epoch = ck.info.epoch;
        best_acc = std::stod(ck.info.note("best_val_accuracy", "-1"));
        epochs_without_improvement = std::stoul(ck.info.note("epochs_without_improvement", "0"));
        skipped_total = std::stoul(ck.info.note("skipped_steps", "0"));
        skipped_in_epoch = std::stoul(ck.info.note("skipped_steps_in_epoch", "0"));
        skipped_in_a_row = std::stoul(ck.info.note("skipped_steps_in_a_row", "0"));
        std::ifstream old(log_path);  // keep the log lines of the epochs the checkpoint completed
        for (std::string line; std::getline(old, line) && log_lines.size() < first_epoch;)
            log_lines.push_back(line);
        std::cout << "resumed from " << ckpt_path << " at epoch " << first_epoch + 1 << ", step "
                  << step << "\n";
    } else {
        optimizer = make_optimizer(cfg, model);
    }
    std::cout << model.summary() << "optimizer " << cfg.optimizer << ", lr " << cfg.lr << " ("
              << cfg.schedule << "), weight decay " << cfg.weight_decay << ", batch " << cfg.batch
              << ", " << cfg.epochs << " epochs of " << steps_per_epoch << " steps, augmentation "
              << (cfg.augment ? "on" : "off") << ", threads " << facet::num_threads() << "\n";

    auto write_log = [&] {
        std::string all;
        for (const auto& l : log_lines) all += l + "\n";
        facet::write_file_atomically(log_path, all.data(), all.size());
    };
    auto checkpoint = [&](std::size_t completed_epochs) {
        facet::CheckpointInfo info;
        info.epoch = completed_epochs, info.step = step;
        info.seeds = {{"seed", cfg.seed}};
        info.metadata = model_metadata(cfg, norm, train, best_acc, completed_epochs);
        // Exact (round-trip) digits: a resumed run must compare later accuracies with the very
        // number the uninterrupted run holds.
        info.metadata.emplace_back("best_val_accuracy", detail::exact_number(best_acc));
        info.metadata.emplace_back("epochs_without_improvement",
                                   std::to_string(epochs_without_improvement));
        info.metadata.emplace_back("skipped_steps", std::to_string(skipped_total));
        info.metadata.emplace_back("skipped_steps_in_epoch", std::to_string(skipped_in_epoch));
        info.metadata.emplace_back("skipped_steps_in_a_row", std::to_string(skipped_in_a_row));
        facet::save_checkpoint(ckpt_path, model, *optimizer, *schedule, info);
    };

    const detail::StopSignals stop_signals;  // Ctrl-C / SIGTERM: stop after this step and save
    facet::SoftmaxCrossEntropy<float> loss(cfg.label_smoothing);
    bool stopped = false;
    for (std::size_t epoch = first_epoch; epoch < cfg.epochs && !stopped; ++epoch) {
        const std::size_t first_batch =
            step - epoch * steps_per_epoch;  // > 0 when resuming mid-epoch
        if (first_batch == 0) skipped_in_epoch = 0;
        loader.start_epoch(epoch, first_batch);
        std::cout << "Epoch " << epoch + 1 << "/" << cfg.epochs << "\n";
        detail::ProgressBar bar(steps_per_epoch);
        const auto t0 = clock::now();
        double loss_sum = 0, correct = 0, seen = 0;
        facet::Batch batch;
        while (loader.next(batch)) {
            optimizer->set_learning_rate(schedule->rate(step));
            model.reseed(facet::detail::mix_seed(cfg.seed, step,
                                                 7));  // dropout masks: a function of the step
            if (cfg.before_step) cfg.before_step(step + 1, batch);
            try {
                const facet::StepResult r =
                    model.train_step(batch.images, batch.labels, loss, *optimizer, cfg.clip);
                loss_sum += r.loss * static_cast<double>(batch.size());
                correct += r.accuracy * static_cast<double>(batch.size());
                seen += static_cast<double>(batch.size());
                skipped_in_a_row = 0;
            } catch (const facet::NonFiniteError& e) {
                // Nothing changed in the model or the optimiser; the files in OUT still hold the
                // last good state, so stopping here leaves them as they are.
                const facet::NonFiniteError numbered = e.at_step(step + 1);
                std::cout << "\n";
                if (!skip_nonfinite) {
                    std::cout << "stopped at step " << step + 1 << " (epoch " << epoch + 1
                              << ", batch " << batch.index + 1 << "): non-finite values; "
                              << best_path << " and " << ckpt_path
                              << " were left as they were (--on-nonfinite skip skips such steps)\n";
                    throw numbered;
                }
                ++skipped_total, ++skipped_in_epoch, ++skipped_in_a_row;
                std::cout << "skipped: " << numbered.what() << "\n";
                if (skipped_in_a_row >= cfg.max_consecutive_skips)
                    throw facet::Error(facet::detail::concat(
                        "train: gave up after ", skipped_in_a_row,
                        " skipped steps in a row (--max-consecutive-skips); ", best_path, " and ",
                        ckpt_path, " were left as they were; the last: ", numbered.what()));
            }
            ++step;
            bar.update(batch.index + 1, seconds_since(t0), loss_sum / seen, correct / seen,
                       skipped_in_epoch);
            if (cfg.checkpoint_every && step % cfg.checkpoint_every == 0) checkpoint(epoch);
            if (detail::stop_requested || (cfg.max_steps && step >= cfg.max_steps)) {
                stopped = true;
                break;
            }
        }
        const double train_seconds = seconds_since(t0);
        if (stopped &&
            batch.index + 1 < steps_per_epoch) {  // mid-epoch: save the position, no epoch line
            checkpoint(epoch);
            std::cout << "\n"
                      << (detail::stop_requested ? "interrupted" : "reached --max-steps")
                      << " at step " << step << "; checkpoint saved to " << ckpt_path
                      << " (continue with --resume)\n";
            break;
        }
        const Evaluation ev =
            evaluate(model, val, norm, cfg.batch);  // training batch size: no bigger activations
        const double val_acc = facet::accuracy(val.labels, ev.predicted);
        const double seconds = seconds_since(t0);
        bar.update(steps_per_epoch, seconds, loss_sum / seen, correct / seen, skipped_in_epoch,
                   true);
        const double ips = seen / train_seconds;
        std::cout << "  val_loss: " << detail::json_number(ev.loss)
                  << " - val_acc: " << detail::json_number(val_acc) << " - "
                  << detail::json_number(ips) << " images/s - lr "
                  << detail::json_number(schedule->rate(step ? step - 1 : 0));
        const bool improved = val_acc > best_acc;
        if (improved) {
            best_acc = val_acc, epochs_without_improvement = 0;
            facet::save(model, best_path, model_metadata(cfg, norm, train, val_acc, epoch + 1));
            std::cout << " - saved best model";
        } else {
            ++epochs_without_improvement;
        }
        std::cout << "\n";
        std::ostringstream line;
        line << "{\"epoch\": " << epoch + 1
             << ", \"train_loss\": " << detail::json_number(loss_sum / seen)
             << ", \"train_acc\": " << detail::json_number(correct / seen)
             << ", \"val_loss\": " << detail::json_number(ev.loss)
             << ", \"val_acc\": " << detail::json_number(val_acc)
             << ", \"seconds\": " << detail::json_number(seconds)
             << ", \"images_per_second\": " << detail::json_number(ips)
             << ", \"lr\": " << detail::json_number(schedule->rate(step ? step - 1 : 0))
             << ", \"steps\": " << step << ", \"skipped_steps\": " << skipped_in_epoch << "}";
        log_lines.push_back(line.str());
        write_log();
        skipped_in_epoch = 0;
        checkpoint(epoch + 1);
        if (detail::stop_requested) {  // the signal came during the last step or validation
            std::cout << "interrupted after epoch " << epoch + 1 << "; checkpoint saved to "
                      << ckpt_path << " (continue with --resume)\n";
            stopped = true;
        }
        if (cfg.patience && epochs_without_improvement >= cfg.patience) {
            std::cout << "early stop: no better validation accuracy for " << cfg.patience
                      << " epochs\n";
            break;
        }
    }
    if (skipped_total)
        std::cout << skipped_total
                  << " step(s) skipped for non-finite values (--on-nonfinite skip)\n";
    if (best_acc < 0)  // stopped (--max-steps or a signal) before the first validation
        std::cout << "no epoch completed, so no model was saved yet; the checkpoint holds the "
                     "progress\n";
    else
        std::cout << "best validation accuracy " << detail::json_number(best_acc)
                  << " — model: " << best_path << "\n";
    // 128 + SIGINT, as a shell reports a program Ctrl-C ended: a script must not take an
    // interrupted run for a finished one.
    return detail::stop_requested ? 128 + SIGINT : 0;
}

/// Runs `fer train`: loads the data, then trains. Returns the process exit status.
inline int run_train(const TrainConfig& c) {
    facet::set_num_threads(c.threads);
    const auto t_load = std::chrono::steady_clock::now();
    facet::ReadOptions read;
    read.skip_bad = c.skip_bad;
    facet::DataSplits splits;
    if (c.data.synthetic() && (c.max_per_class || c.max_val_per_class)) {
        // Each synthetic face is drawn from its own index, so drawing only the first N per class
        // gives exactly the images the caps keep, without the wait for the rest (quick runs).
        SyntheticFaceOptions o;
        if (c.max_per_class) o.train_per_class = std::min(o.train_per_class, c.max_per_class);
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
