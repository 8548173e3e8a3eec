// fer/finetune.hpp — `fer finetune --model M --corrections DIR --out OUT`: adapts a trained model
// to its users' faces. It trains on the corrections (fer/corrections.hpp) mixed with rehearsal
// faces drawn from the original training data, so that it does not forget FER-2013, with a small
// learning rate for a few epochs (facet::Trainer); a rehearsal face's target is the parent's own
// probabilities for it (--distill, facet::Distillation). The model written is the average of the
// weights at the ends of the later epochs (--average-from), or with --average-from 0 the epoch
// chosen by the held-out part of the corrections and faces of the parent's own validation split
// (never trained on; --parent-faces). It fine-tunes --runs times, each run with its own
// rehearsal faces, order and augmentation, and writes the mean of the runs' weights (a model
// soup); --blend can then mix the parent's weights back in (model/interpolate.hpp).
// The test split chooses nothing. The parent file is never written; OUT is written atomically and
// records the parent (file name and fingerprint) and the corrections (fingerprint and count).
#pragma once

#include <cmath>
#include <csignal>
#include <iostream>
#include <memory>
#include <optional>

#include <facet/core/crc32.hpp>
#include <facet/data/split.hpp>
#include <facet/model/interpolate.hpp>
#include <facet/model/serialize.hpp>
#include <facet/optim/adam.hpp>
#include <facet/optim/schedule.hpp>
#include <facet/optim/sgd.hpp>
#include <facet/train/best_model.hpp>
#include <facet/train/distillation.hpp>
#include <facet/train/fisher.hpp>
#include <facet/train/progress.hpp>
#include <facet/train/running_statistics.hpp>
#include <facet/train/trainer.hpp>
#include <facet/train/weight_anchor.hpp>
#include <facet/train/weight_average.hpp>

#include "cli.hpp"
#include "common.hpp"
#include "corrections.hpp"
#include "evaluate.hpp"

namespace fer {

/// Everything `fer finetune` can be told; the defaults are shown by --help.
struct FinetuneConfig {
    std::string parent;       ///< the model to adapt (never written)
    std::string corrections;  ///< DIR/<emotion>/*.png
    std::string out;          ///< the new model file
    DataChoice data;          ///< where the rehearsal faces come from
    std::size_t epochs = 8;
    double lr = 6e-4;  ///< cosine decay to lr / 20
    /// "adamw", or "nesterov": SGD with Nesterov momentum, whose steps scale with the gradient,
    /// where Adam's are about lr on every weight whatever its gradient.
    std::string optimizer = "adamw";
    /// Epochs of linear warm-up of the learning rate (0: none). A fresh Adam moves every weight by
    /// about lr in its first steps, whatever its gradient.
    double warmup = 0;
    double weight_decay = 0.02;
    /// Pull towards the parent's weights after each step (facet::WeightAnchor): w <- w - lr x
    /// anchor x (w - w_parent); 0: off.
    double anchor = 0;
    /// "uniform", or "fisher": each weight's pull scaled by its importance to the parent, the
    /// diagonal Fisher information on the rehearsal faces (elastic weight consolidation).
    std::string anchor_importance = "uniform";
    double rehearsal = 3;  ///< rehearsal faces per correction in each epoch
    /// The parent's share of a rehearsal face's target (knowledge distillation; 0: labels only).
    double distill = 1;
    /// Fraction of each emotion's corrections held out (to choose the epoch or the blend, or to
    /// report); negative: auto, holdout_fraction().
    double holdout = -1;
    /// Faces of the parent's validation split that choose the epoch with the held-out corrections
    /// (which are repeated to weigh as much); 0: as many as there are held-out corrections.
    std::size_t parent_faces = 0;
    std::size_t min_epoch =
        1024;  ///< corrections are repeated (augmented) to fill an epoch of this many faces
    std::size_t batch = 64;
    double label_smoothing = 0.1;
    bool augment = true;
    bool freeze_backbone = false;
    bool freeze_bn = false;  ///< batch norms normalise by the parent's running statistics
    /// The parent's share of the weights kept (facet::interpolate_weights): the model written is
    /// (1 - blend) x the fine-tuned weights + blend x the parent's. Negative: "auto", the share of
    /// blend_grid() that does best on the faces that chose the epoch.
    double blend = 0;
    /// From this epoch on (1-based), the weights at each epoch's end are averaged, and the
    /// average is written instead of the best epoch (0: off; more than the epochs: off).
    std::size_t average_from = 4;
    /// Whether the weights written are an average (average_from within the epochs).
    bool averages() const { return average_from > 0 && average_from <= epochs; }
    /// The hold-out used: `holdout`, or by default none when the held-out corrections would only
    /// report (averaged weights, a fixed blend), so that every correction is trained on, and 0.2
    /// when they choose the epoch or the blend.
    double holdout_fraction() const {
        if (holdout >= 0) return holdout;
        return averages() && blend >= 0 ? 0.0 : 0.2;
    }
    /// With averaging: the batch-norm statistics of the averaged weights computed afresh from one
    /// pass over "mix" (the training faces: corrections and rehearsal) or "rehearsal" (the
    /// original data's faces alone); "none" keeps the average of the epochs' statistics.
    std::string reestimate_bn = "none";
    /// Fine-tunings whose weights are averaged into the model written (a "model soup"), run k
    /// with seed + k for its rehearsal faces, order and augmentation; 1: one fine-tuning.
    std::size_t runs = 3;
    std::uint64_t seed = 1;
    int threads = 0;
    std::string command_line = "fer finetune";
    bool progress = true;
};

inline Cli finetune_cli() {
    Cli cli("finetune",
            "Fine-tunes a trained model on corrections (CORRECTIONS/<emotion>/*.png, e.g. filed "
            "with `fer correct`) mixed with rehearsal faces from the original training data, so "
            "it learns the users' faces without forgetting FER-2013. The model written is the "
            "mean of the weights of --runs fine-tunings, each the mean of the weights of its "
            "later epochs (--average-from); with --average-from 0, a "
            "fraction of each emotion's corrections is held out and, together with as many faces "
            "of the parent's validation split (held out of training, never trained on), chooses "
            "the epoch kept (--holdout 0: the last epoch). Duplicate corrections are reported and "
            "used once; one face filed under two emotions is refused. OUT must differ from MODEL "
            "(never overwritten) and is written atomically; its provenance names the parent and "
            "the corrections.");
    cli.option("model", "FILE", "the parent model (fer train's model.facet)")
        .option("corrections", "DIR", "the corrections folder, one sub-folder per emotion")
        .option("out", "FILE", "the new model file (not MODEL)")
        .option("data", "DIR|CSV",
                "FER-2013 for the rehearsal faces (default: data/fer2013, else synthetic)")
        .option("epochs", "N", "epochs", "8")
        .option("lr", "X", "learning rate, cosine decay to lr/20", "0.0006")
        .option("optimizer", "NAME",
                "adamw, or nesterov (SGD with Nesterov momentum 0.9; --weight-decay is then an "
                "L2 penalty)",
                "adamw")
        .option("warmup", "E",
                "epochs (a fraction allowed) over which the learning rate rises linearly to --lr "
                "before the cosine decay (0: none)",
                "0")
        .option("weight-decay", "X", "weight decay (decoupled with adamw)", "0.02")
        .option("anchor", "X",
                "pull the trained weights towards the parent's after every step, by lr x X of "
                "their distance (L2-SP; 0: off)",
                "0")
        .option("anchor-importance", "uniform|fisher",
                "with --anchor: the same pull on every weight, or each weight's scaled by its "
                "importance to the parent, the diagonal Fisher information of the parent's loss "
                "on the rehearsal faces, rescaled to a mean of 1 (elastic weight consolidation)",
                "uniform")
        .option("rehearsal", "X",
                "rehearsal faces from the training data per correction in each epoch (the mix "
                "ratio; 0: corrections only)",
                "3")
        .option("distill", "X",
                "the parent's share of each rehearsal face's training target: the target is (1 - "
                "X) x its label + X x the parent's probabilities for it (0: labels only)",
                "1")
        .option("holdout", "X|auto",
                "fraction of each emotion's corrections held out: with --average-from 0 they "
                "choose the epoch (0: keep the last), with --blend auto the share, otherwise they "
                "only report; auto holds none out when they would only report, else 0.2",
                "auto")
        .option("parent-faces", "N",
                "faces of the parent's validation split that choose the epoch with the held-out "
                "corrections, which are repeated to weigh as much (0: as many as are held out)",
                "0")
        .option("min-epoch", "N",
                "repeat the corrections (each time differently augmented) until an epoch has N "
                "faces",
                "1024")
        .option("batch", "N", "mini-batch size", "64")
        .option("label-smoothing", "X", "label smoothing of the loss", "0.1")
        .option("blend", "S|auto",
                "weight-space blend with the parent: the model written is (1 - S) x the "
                "fine-tuned weights + S x the parent's, which gives back part of what was "
                "forgotten for part of what was gained; auto: the S of 0, 0.1, ..., 0.8 that does "
                "best on the faces that chose the epoch (needs --holdout > 0)",
                "0")
        .option("average-from", "E",
                "write the average of the weights at the ends of epochs E, E+1, ..., the last "
                "(batch-norm statistics too) instead of the best epoch; the held-out corrections "
                "then only report (0, or more than --epochs: off)",
                "4")
        .option("reestimate-bn", "none|mix|rehearsal",
                "with --average-from: compute the averaged model's batch-norm statistics afresh "
                "from one pass over the training faces (mix: corrections and rehearsal) or the "
                "rehearsal faces alone, instead of averaging the epochs' statistics",
                "none")
        .flag("no-augment", "turn data augmentation off")
        .flag("freeze-backbone",
              "train only the classifier: the layers after the last Flatten or global pooling "
              "(fer-cnn-s: dense-BN-ReLU-dropout-dense); the convolutions and their batch norms "
              "stay as they are")
        .flag("freeze-bn",
              "batch norms keep the parent's running statistics: they normalise by them in "
              "training too, so the corrections' looks do not shift them (their scale and shift "
              "still learn)")
        .option("runs", "N",
                "fine-tune N times, run k with seed + k for its rehearsal faces, shuffling and "
                "augmentation (the hold-out stays the same), and write the mean of their weights "
                "(a model soup): it forgets less and gains more than one run, in N times the "
                "time; 1: one fine-tuning",
                "3")
        .option("seed", "N", "seed of the hold-out, rehearsal draw, shuffling and augmentation",
                "1")
        .option("threads", "N", "threads (0: all cores)", "0");
    return cli;
}

inline FinetuneConfig finetune_config(const Cli& cli) {
    FinetuneConfig c;
    c.parent = cli.str("model");
    c.corrections = cli.str("corrections");
    c.out = cli.str("out");
    c.data = cli.has("data") ? DataChoice{cli.str("data")} : default_data();
    auto positive = [&](const char* name) {
        const long long v = cli.integer(name);
        facet::check(v > 0, "finetune: --", name, " must be positive, got ", v);
        return static_cast<std::size_t>(v);
    };
    c.epochs = positive("epochs");
    c.batch = positive("batch");
    c.min_epoch = positive("min-epoch");
    c.lr = cli.number("lr");
    facet::check(c.lr > 0 && std::isfinite(c.lr), "finetune: --lr must be a positive number");
    c.warmup = cli.number("warmup");
    facet::check(std::isfinite(c.warmup) && c.warmup >= 0 && c.warmup < double(c.epochs),
                 "finetune: --warmup must be at least 0 and fewer than --epochs, got ", c.warmup);
    c.optimizer = cli.str("optimizer");
    facet::check(c.optimizer == "adamw" || c.optimizer == "nesterov",
                 "finetune: --optimizer must be adamw or nesterov, got '", c.optimizer, "'");
    c.weight_decay = cli.number("weight-decay");
    facet::check(std::isfinite(c.weight_decay) && c.weight_decay >= 0,
                 "finetune: --weight-decay must be at least 0, got ", c.weight_decay);
    c.anchor = cli.number("anchor");
    facet::check(std::isfinite(c.anchor) && c.anchor >= 0 && c.anchor * c.lr <= 1,
                 "finetune: --anchor must be >= 0 and at most 1 / --lr");
    c.anchor_importance = cli.str("anchor-importance");
    facet::check(c.anchor_importance == "uniform" || c.anchor_importance == "fisher",
                 "finetune: --anchor-importance must be uniform or fisher, got '",
                 c.anchor_importance, "'");
    c.rehearsal = cli.number("rehearsal");
    facet::check(c.rehearsal >= 0 && c.rehearsal <= 100,
                 "finetune: --rehearsal must be in [0, 100]");
    c.distill = cli.number("distill");
    facet::check(c.distill >= 0 && c.distill <= 1, "finetune: --distill must be in [0, 1]");
    const bool holdout_auto = cli.str("holdout") == "auto";
    c.holdout = holdout_auto ? -1 : cli.number("holdout");
    const long long parent_faces = cli.integer("parent-faces");
    facet::check(parent_faces >= 0, "finetune: --parent-faces must not be negative");
    c.parent_faces = static_cast<std::size_t>(parent_faces);
    facet::check(holdout_auto || (c.holdout >= 0 && c.holdout < 1),
                 "finetune: --holdout must be in [0, 1) or auto");
    if (cli.str("blend") == "auto") {
        c.blend = -1;
        facet::check(c.holdout_fraction() > 0,
                     "finetune: --blend auto chooses on held-out corrections; "
                     "give --holdout > 0 or a share");
    } else {
        c.blend = cli.number("blend");
        facet::check(c.blend >= 0 && c.blend <= 1, "finetune: --blend must be in [0, 1] or auto");
    }
    const long long average_from = cli.integer("average-from");
    facet::check(average_from >= 0, "finetune: --average-from must not be negative");
    c.average_from = static_cast<std::size_t>(average_from);
    c.reestimate_bn = cli.str("reestimate-bn");
    facet::check(
        c.reestimate_bn == "none" || c.reestimate_bn == "mix" || c.reestimate_bn == "rehearsal",
        "finetune: --reestimate-bn must be none, mix or rehearsal, got '", c.reestimate_bn, "'");
    facet::check(c.reestimate_bn == "none" || c.averages(), "finetune: --reestimate-bn ",
                 c.reestimate_bn,
                 " re-estimates the averaged model's statistics: it needs --average-from");
    c.label_smoothing = cli.number("label-smoothing");
    c.augment = !cli.has("no-augment");
    c.freeze_backbone = cli.has("freeze-backbone");
    c.freeze_bn = cli.has("freeze-bn");
    c.runs = positive("runs");
    const long long seed = cli.integer("seed"), threads = cli.integer("threads");
    facet::check(seed >= 0 && threads >= 0, "finetune: --seed and --threads must not be negative");
    c.seed = static_cast<std::uint64_t>(seed);
    c.threads = static_cast<int>(threads);
    for (std::size_t i = 0; i < cli.arguments().size(); ++i) {  // where files go is left out
        const std::string& a = cli.arguments()[i];
        if (a == "--out" || a == "--model" || a == "--corrections") {
            ++i;
            continue;
        }
        if (a.rfind("--out=", 0) == 0 || a.rfind("--model=", 0) == 0 ||
            a.rfind("--corrections=", 0) == 0)
            continue;
        c.command_line += " " + a;
    }
    return c;
}

/// What a fine-tuning run measured on the data that chose the epoch (never the test split).
struct FinetuneSummary {
    std::size_t corrections = 0, held_out = 0, trained_on = 0, rehearsal = 0, epoch = 0;
    double blend = 0;                            ///< the parent's share of the weights written
    double parent_heldout = NAN, heldout = NAN;  ///< accuracy on the held-out corrections
    double parent_val = NAN, val = NAN;          ///< on the parent's validation faces used
    std::size_t parent_faces = 0;  ///< the parent's validation faces that chose the epoch
    std::size_t choosing = 0;      ///< all faces that chose it (held-out corrections repeated)
};

namespace detail {

/// The first layer of the classifier head: the one after the last Flatten or global pooling.
inline std::size_t head_start(facet::Sequential<float>& model) {
    std::size_t start = model.size();
    for (std::size_t i = 0; i < model.size(); ++i) {
        const std::string type = model.layer(i).type();
        if (type == "Flatten" || type == "GlobalAvgPool2d") start = i + 1;
    }
    facet::check(start < model.size(),
                 "finetune --freeze-backbone: the model has no Flatten or global pooling layer "
                 "before its classifier");
    return start;
}

/// Keeps some layers in inference behaviour (running batch-norm statistics, no dropout) during
/// training steps: the trainer puts the whole model in training mode. For a frozen backbone, the
/// layers before the head; with --freeze-bn, every batch norm, whose running statistics then stay
/// the parent's (its scale and shift still learn).
class EvalLayers : public facet::Callback {
  public:
    explicit EvalLayers(std::vector<std::size_t> layers) : layers_(std::move(layers)) {}
    void on_batch_begin(facet::Trainer& t, facet::Batch&) override {
        t.model().set_mode(facet::Mode::Train);
        for (std::size_t i : layers_) t.model().layer(i).set_mode(facet::Mode::Eval);
    }

  private:
    std::vector<std::size_t> layers_;
};

/// How many times the h held-out corrections are repeated among the faces that choose the epoch,
/// so that about `parent_faces` faces of the parent's validation split weigh as much as they do:
/// the nearest whole number, at least 1 (1 without a hold-out or with parent_faces 0).
inline std::size_t heldout_repeats(std::size_t h, std::size_t parent_faces) {
    if (h == 0 || parent_faces == 0) return 1;
    return std::max<std::size_t>(1, (parent_faces + h / 2) / h);
}

/// `count` images of `pool` drawn without replacement (seeded; all of them if count >= size).
inline facet::Dataset sample_of(const facet::Dataset& pool, std::size_t count, std::uint64_t seed) {
    std::vector<std::size_t> order(pool.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    facet::Rng rng(seed);
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
    facet::Dataset out;
    out.height = pool.height, out.width = pool.width, out.class_names = pool.class_names;
    out.split = pool.split, out.source = pool.source;
    for (std::size_t k = 0; k < std::min(count, order.size()); ++k)
        out.add(pool.image(order[k]), pool.labels[order[k]]);
    return out;
}

inline void append(facet::Dataset& to, const facet::Dataset& from) {
    for (std::size_t i = 0; i < from.size(); ++i) to.add(from.image(i), from.labels[i]);
}

inline double accuracy_on(facet::Sequential<float>& model, const facet::Dataset& data,
                          const facet::Normalization& norm) {
    if (data.empty()) return NAN;
    facet::DatasetBatches batches(data, norm, 256);
    return facet::evaluate_batches(model, batches).accuracy;
}

inline std::string file_fingerprint(const std::string& path) {
    const std::string bytes = facet::read_file_contents(path, std::size_t{1} << 32);
    char buf[64];
    std::snprintf(buf, sizeof buf, "crc32 %08x of %zu bytes",
                  facet::crc32(bytes.data(), bytes.size()), bytes.size());
    return buf;
}

inline std::string percent(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f %%", 100 * v);
    return buf;
}

/// The parent's shares --blend auto tries.
inline std::vector<double> blend_grid() {
    return {0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8};
}

/// A share as people write it: 0.2, not 0.20000000000000001.
inline std::string share_text(double share) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", share);
    return buf;
}

/// The faces a fine-tuning trains on and is judged by, the same for every run of a soup (they
/// depend on c.seed, not on the run).
struct FinetuneFaces {
    facet::StratifiedSplit original;  ///< the parent's training split and validation hold-out
    facet::Dataset train_corrections, heldout_corrections;
    facet::Dataset val_original;  ///< faces of the parent's validation split, never trained on
    facet::Dataset validation;    ///< what chooses the epoch or the blend, or only reports
};

inline FinetuneFaces finetune_faces(const FinetuneConfig& c, const TrainedModel& parent,
                                    const Corrections& corrections,
                                    const facet::Dataset& training) {
    FinetuneFaces f;
    // The parent's own validation faces (its notes say how fer train held them out).
    const double val_fraction = std::stod(parent.note("validation.fraction", "0.1"));
    const auto val_seed =
        static_cast<std::uint64_t>(std::stoull(parent.note("validation.seed", "2013")));
    f.original =
        facet::stratified_split(training, val_fraction, val_seed, "val (held out of train)");

    // Corrections: held out to choose the epoch, and trained on.
    f.train_corrections = corrections.faces;
    const double holdout = c.holdout_fraction();
    if (holdout > 0 && corrections.faces.size() >= 2) {
        facet::StratifiedSplit s =
            facet::stratified_split(corrections.faces, holdout, facet::detail::mix_seed(c.seed, 11),
                                    "corrections (held out)");
        f.train_corrections = std::move(s.kept);
        f.heldout_corrections = std::move(s.held_out);
    }
    facet::check(!f.train_corrections.empty(), "finetune: no corrections left to train on");

    // What chooses the epoch: the held-out corrections, repeated r times, and r times as many of
    // the parent's validation faces, so that the old domain weighs as much as the new and r sets
    // how finely the old one is measured. Without a hold-out, those faces only report, and the
    // last epoch is kept.
    const std::size_t h = f.heldout_corrections.size();
    const std::size_t repeats = heldout_repeats(h, c.parent_faces);
    f.val_original = sample_of(f.original.held_out, h == 0 ? 1024 : repeats * h,
                               facet::detail::mix_seed(c.seed, 13));
    f.validation = f.heldout_corrections;
    for (std::size_t r = 1; r < repeats; ++r) append(f.validation, f.heldout_corrections);
    if (f.validation.empty()) {
        f.validation = f.val_original;
    } else {
        append(f.validation, f.val_original);
    }
    f.validation.split = "finetune-val";
    return f;
}

/// Prints the parent's and the fine-tuned model's accuracy on the held-out corrections (if any)
/// and on the parent's validation faces.
inline void print_changes(const FinetuneSummary& s, const FinetuneFaces& faces) {
    if (!faces.heldout_corrections.empty())
        std::cout << "held-out corrections (" << faces.heldout_corrections.size()
                  << "): " << percent(s.parent_heldout) << " -> " << percent(s.heldout) << "\n";
    std::cout << "parent's validation faces (" << faces.val_original.size()
              << ", never trained on): " << percent(s.parent_val) << " -> " << percent(s.val)
              << "\n";
}

}  // namespace detail

/// Rewrites c.out, the fine-tuned model, as its weight-space blend with the parent
/// (facet::interpolate_weights) at the share c.blend, or with c.blend < 0 at the share of
/// detail::blend_grid() with the best accuracy on `choosing` (the held-out corrections and the
/// parent's faces; ties go to the lower loss), through write(model, accuracy, loss, key, value).
/// Returns the share written.
template <typename Write>
double blend_with_parent(const FinetuneConfig& c, const facet::Dataset& choosing,
                         const Write& write) {
    TrainedModel fine = load_trained(c.out), blended = load_trained(c.out);
    TrainedModel parent = load_trained(c.parent);
    const std::vector<double> shares =
        c.blend < 0 ? detail::blend_grid() : std::vector<double>{c.blend};
    double best_share = 0;
    facet::ValidationResult best;
    for (const double share : shares) {
        facet::interpolate_weights(blended.model, fine.model, parent.model, share);
        facet::DatasetBatches batches(choosing, blended.norm, 256);
        const facet::ValidationResult r = facet::evaluate_batches(blended.model, batches);
        if (shares.size() > 1)
            std::cout << "parent's share " << detail::share_text(share) << ": "
                      << detail::percent(r.accuracy) << " of the " << choosing.size()
                      << " faces that choose, loss " << r.loss << "\n";
        if (best.samples == 0 || r.accuracy > best.accuracy ||
            (r.accuracy == best.accuracy && r.loss < best.loss))
            best = r, best_share = share;
    }
    facet::interpolate_weights(blended.model, fine.model, parent.model, best_share);
    const std::string written = detail::share_text(best_share);
    write(blended.model, best.accuracy, best.loss, "blend", written);
    std::cout << "wrote the blend of " << written << " x the parent's weights and "
              << detail::share_text(1 - best_share) << " x the fine-tuned ones\n";
    return best_share;
}

namespace detail {
inline void check_out_and_parent(const FinetuneConfig& c) {
    facet::check(!c.out.empty(), "finetune: --out is required");
    facet::check(fs::exists(c.parent), "finetune: no model file at ", c.parent);
    facet::check(!(fs::exists(c.out) && fs::equivalent(c.parent, c.out)) &&
                     fs::weakly_canonical(c.parent) != fs::weakly_canonical(c.out),
                 "finetune: --out ", c.out,
                 " is the parent model; the parent is never "
                 "overwritten, give another file");
}
}  // namespace detail

/// One fine-tuning of c.parent on `corrections` with rehearsal faces from `training` (the
/// original training split, whole: the parent's validation hold-out is taken out of it again
/// here), written to c.out: run `run` of a soup, whose rehearsal faces, order and augmentation
/// come from the seed c.seed + run (the hold-out and the faces that judge come from c.seed).
inline FinetuneSummary finetune_run(const FinetuneConfig& c, std::size_t run,
                                    const Corrections& corrections,
                                    const facet::Dataset& training) {
    const std::uint64_t seed = c.seed + run;
    facet::set_num_threads(c.threads);
    detail::check_out_and_parent(c);
    TrainedModel parent = load_trained(c.parent);
    const facet::Provenance parent_provenance = facet::load_model_file<float>(c.parent).provenance;
    const std::string parent_fingerprint = detail::file_fingerprint(c.parent);
    const std::string classes = parent.note("classes", "");
    std::string fer_classes;
    for (const auto& n : fer_class_name_list()) fer_classes += (fer_classes.empty() ? "" : ",") + n;
    facet::check(classes.empty() || classes == fer_classes, "finetune: ", c.parent,
                 " has the classes ", classes,
                 ", not FER-2013's; corrections are filed by FER-2013's emotions");
    facet::check(training.height == fer_image_side && training.width == fer_image_side &&
                     training.class_names == fer_class_name_list(),
                 "finetune: the rehearsal data are not FER-2013's 48 x 48 faces of 7 emotions");

    FinetuneSummary summary;
    summary.corrections = corrections.faces.size();
    detail::FinetuneFaces faces = detail::finetune_faces(c, parent, corrections, training);
    const facet::StratifiedSplit& original = faces.original;
    const facet::Dataset &train_corrections = faces.train_corrections,
                         &heldout_corrections = faces.heldout_corrections,
                         &val_original = faces.val_original, &validation = faces.validation;
    summary.held_out = heldout_corrections.size();
    summary.trained_on = train_corrections.size();

    // One epoch: the corrections, repeated until it has min_epoch faces with the rehearsal ones.
    const double per_copy = static_cast<double>(train_corrections.size()) * (1 + c.rehearsal);
    const auto copies = static_cast<std::size_t>(
        std::max(1.0, std::ceil(static_cast<double>(c.min_epoch) / per_copy)));
    facet::Dataset mix = train_corrections;
    mix.split = "finetune";
    for (std::size_t k = 1; k < copies; ++k) detail::append(mix, train_corrections);
    const std::size_t first_rehearsal = mix.size();  // samples from here on are rehearsal faces
    const auto rehearsal_count =
        static_cast<std::size_t>(std::llround(c.rehearsal * static_cast<double>(mix.size())));
    const facet::Dataset rehearsal =
        detail::sample_of(original.kept, rehearsal_count, facet::detail::mix_seed(seed, 12));
    detail::append(mix, rehearsal);
    summary.rehearsal = rehearsal.size();

    summary.parent_faces = val_original.size();
    summary.choosing = validation.size();

    facet::Sequential<float>& model = parent.model;
    summary.parent_heldout = detail::accuracy_on(model, heldout_corrections, parent.norm);
    summary.parent_val = detail::accuracy_on(model, val_original, parent.norm);

    std::vector<facet::Parameter<float>> trained = model.parameters();
    std::size_t head = 0;
    if (c.freeze_backbone) {
        head = detail::head_start(model);
        std::erase_if(trained, [&](const facet::Parameter<float>& p) {
            return std::stoul(p.name.substr(0, p.name.find('.'))) < head;
        });
    }
    std::unique_ptr<facet::Optimizer<float>> optimizer;
    if (c.optimizer == "nesterov") {
        facet::SgdOptions so;
        so.learning_rate = c.lr, so.weight_decay = c.weight_decay, so.momentum = 0.9;
        so.nesterov = true;
        optimizer = std::make_unique<facet::SGD<float>>(trained, so);
    } else {
        facet::AdamOptions ao;
        ao.learning_rate = c.lr, ao.weight_decay = c.weight_decay;
        optimizer = std::make_unique<facet::AdamW<float>>(trained, ao);
    }
    facet::BatchOptions bo;
    bo.batch_size = c.batch, bo.shuffle = true, bo.augment = c.augment, bo.seed = seed;
    bo.drop_last = mix.size() % c.batch == 1;  // a batch of one face cannot be batch-normalised
    facet::BatchLoader loader(mix, parent.norm, bo);
    facet::LoaderBatches train_batches(loader);
    facet::DatasetBatches val_batches(validation, parent.norm, 256);
    const std::size_t warmup_steps =
        static_cast<std::size_t>(std::lround(c.warmup * double(loader.batches_per_epoch())));
    facet::CosineSchedule schedule(c.lr, warmup_steps, c.epochs * loader.batches_per_epoch(),
                                   c.lr / 20);
    facet::TrainerOptions to;
    to.epochs = c.epochs, to.seed = seed, to.label_smoothing = c.label_smoothing;
    facet::Trainer trainer(model, *optimizer, schedule, to);
    if (c.progress) trainer.add<facet::ProgressBar>();
    std::vector<std::size_t> eval_layers;
    for (std::size_t i = 0; i < model.size(); ++i)
        if (i < head || (c.freeze_bn && model.layer(i).type().rfind("BatchNorm", 0) == 0))
            eval_layers.push_back(i);
    if (!eval_layers.empty()) trainer.add<detail::EvalLayers>(std::move(eval_layers));
    if (c.anchor > 0) {
        std::vector<facet::Tensor<float>> importance;  // empty: the same pull on every weight
        if (c.anchor_importance == "fisher") {
            // Measured at the parent's weights, before any step, on faces of the old task.
            facet::check(rehearsal.size() >= c.batch, "finetune: --anchor-importance fisher needs ",
                         "at least a batch of rehearsal faces (", c.batch, "), there are ",
                         rehearsal.size());
            facet::BatchOptions fo;
            fo.batch_size = c.batch, fo.shuffle = false, fo.augment = false, fo.drop_last = true;
            facet::BatchLoader fisher_loader(rehearsal, parent.norm, fo);
            facet::LoaderBatches fisher_batches(fisher_loader);
            importance = facet::fisher_diagonal(model, trained, fisher_batches, 0, seed);
        }
        trainer.add<facet::WeightAnchor>(trained, c.anchor, std::move(importance));
    }
    std::optional<TrainedModel> teacher;  // the parent as it was, never trained
    if (c.distill > 0) {
        teacher.emplace(load_trained(c.parent));
        const double share = c.distill;
        trainer.add<facet::Distillation>(teacher->model, [first_rehearsal, share](std::size_t i) {
            return i >= first_rehearsal ? share : 0.0;
        });
    }

    std::cout << "fine-tuning " << c.parent << " on " << summary.corrections << " corrections ("
              << summary.trained_on << " trained on x" << copies << ", " << summary.held_out
              << " held out) and " << summary.rehearsal << " rehearsal faces of "
              << c.data.describe() << "; " << c.epochs << " epochs of "
              << loader.batches_per_epoch() << " steps, " << c.optimizer << " lr " << c.lr
              << (warmup_steps ? " after " + std::to_string(warmup_steps) + " steps of warm-up"
                               : "")
              << (c.freeze_backbone ? ", layers " + std::to_string(head) + "+ only" : "")
              << (c.distill > 0 ? ", the parent's share of rehearsal targets " +
                                      facet::detail::round_trip_digits(c.distill)
                                : "")
              << (c.anchor > 0 ? ", anchored to the parent's weights with strength " +
                                     facet::detail::round_trip_digits(c.anchor) +
                                     (c.anchor_importance == "fisher" ? " x Fisher importance" : "")
                               : "")
              << "\n";

    // The parent's notes, less what described its own training epoch and test figures.
    facet::ModelMetadata base;
    for (const auto& [k, v] : parent.metadata)
        if (k != "val_accuracy" && k != "epoch" && k.rfind("test.", 0) != 0 &&
            k.rfind("private_test.", 0) != 0 && k.rfind("finetune.", 0) != 0)
            base.emplace_back(k, v);
    const std::string parent_name = fs::path(c.parent).filename().string();
    const std::string corrections_fingerprint = corrections.fingerprint();
    auto notes = [&](double val_acc, std::size_t epoch) {
        facet::ModelMetadata m = base;
        m.emplace_back("val_accuracy", facet::detail::round_trip_digits(val_acc));
        m.emplace_back("epoch", std::to_string(epoch));
        m.emplace_back("finetune.parent", parent_name);
        m.emplace_back("finetune.parent_fingerprint", parent_fingerprint);
        m.emplace_back("finetune.corrections", std::to_string(summary.corrections));
        m.emplace_back("finetune.corrections_fingerprint", corrections_fingerprint);
        m.emplace_back("finetune.held_out", std::to_string(summary.held_out));
        m.emplace_back("finetune.rehearsal", std::to_string(summary.rehearsal));
        return m;
    };
    auto provenance = [&](double val_acc, double val_loss, std::size_t epoch) {
        facet::Provenance p;
        p.command_line = c.command_line;
        p.data_fingerprint = corrections_fingerprint;
        p.metrics = {{"val_accuracy", val_acc},
                     {"val_loss", val_loss},
                     {"epoch", static_cast<double>(epoch)}};
        p.notes = {{"parent", parent_name},
                   {"parent_fingerprint", parent_fingerprint},
                   {"parent_command", parent_provenance.command_line},
                   {"parent_data_fingerprint", parent_provenance.data_fingerprint},
                   {"corrections", std::to_string(summary.corrections)},
                   {"corrections_fingerprint", corrections_fingerprint},
                   {"duplicates", std::to_string(corrections.duplicates.size())},
                   {"rehearsal_data", c.data.describe()}};
        return p;
    };
    // The model written: the mean of the later epochs' weights, else the epoch the held-out faces
    // choose, else the last epoch.
    const bool averaging = c.averages();
    const bool choose_epoch = !averaging && !heldout_corrections.empty();
    if (choose_epoch)
        trainer.add<facet::BestModel>(
            c.out, [&](const facet::EpochReport& r) { return notes(r.val_accuracy, r.epoch); },
            [&](const facet::EpochReport& r) {
                return provenance(r.val_accuracy, r.val_loss, r.epoch);
            });
    std::optional<TrainedModel> average;  // the running mean of the weights, --average-from
    if (averaging) {
        average.emplace(load_trained(c.parent));
        trainer.add<facet::WeightAverage>(average->model, c.average_from);
    }
    const facet::TrainSummary s = trainer.fit(train_batches, val_batches);
    // A run of a soup writes a file of its own, removed when the soup stops.
    facet::check(s.reason != facet::StopReason::Interrupted, "finetune: interrupted",
                 choose_epoch && s.best_epoch > 0 && c.runs == 1
                     ? "; " + c.out + " holds the best epoch so far"
                     : "; nothing was written");
    // Writes `m` as OUT with the notes and provenance above, and key = value in both.
    auto write = [&](facet::Sequential<float>& m, double val_acc, double val_loss,
                     const std::string& key, const std::string& value) {
        facet::ModelMetadata metadata = notes(val_acc, summary.epoch);
        metadata.emplace_back("finetune." + key, value);
        facet::SaveOptions options;
        options.provenance = provenance(val_acc, val_loss, summary.epoch);
        options.provenance.notes.emplace_back(key, value);
        facet::save(m, c.out, metadata, options);
    };
    if (averaging) {
        summary.epoch = s.completed_epochs;
        if (c.reestimate_bn != "none") {
            const facet::Dataset& source = c.reestimate_bn == "mix" ? mix : rehearsal;
            facet::check(source.size() >= c.batch, "finetune: --reestimate-bn ", c.reestimate_bn,
                         " needs at least a batch (", c.batch, ") of those faces, there are ",
                         source.size());
            facet::BatchOptions again = bo;  // shuffled and augmented as in training
            again.drop_last = true;
            facet::BatchLoader loader_again(source, parent.norm, again);
            facet::LoaderBatches batches(loader_again);
            const std::size_t n = facet::reestimate_running_statistics(
                average->model, batches, c.epochs, facet::detail::mix_seed(seed, 14));
            std::cout << "re-estimated " << n << " batch norms' statistics on the "
                      << (c.reestimate_bn == "mix" ? "training faces" : "rehearsal faces") << " ("
                      << loader_again.batches_per_epoch() << " batches)\n";
        }
        facet::DatasetBatches batches(validation, parent.norm, 256);
        const facet::ValidationResult r = facet::evaluate_batches(average->model, batches);
        write(average->model, r.accuracy, r.loss, "average_from", std::to_string(c.average_from));
        std::cout << "wrote the mean of the weights of epochs " << c.average_from << " to "
                  << s.completed_epochs << "\n";
    } else if (heldout_corrections.empty()) {
        facet::SaveOptions options;
        options.provenance = provenance(s.best_val_accuracy, NAN, s.completed_epochs);
        facet::save(model, c.out, notes(NAN, s.completed_epochs), options);
        summary.epoch = s.completed_epochs;
    } else {
        summary.epoch = s.best_epoch;
    }
    if (c.blend != 0) summary.blend = blend_with_parent(c, validation, write);
    TrainedModel tuned = load_trained(c.out);
    summary.heldout = detail::accuracy_on(tuned.model, heldout_corrections, tuned.norm);
    summary.val = detail::accuracy_on(tuned.model, val_original, tuned.norm);
    if (!averaging)
        std::cout << "kept epoch " << summary.epoch << " of " << c.epochs << " — model: " << c.out
                  << "\n";
    detail::print_changes(summary, faces);
    return summary;
}

/// Fine-tunes c.parent on `corrections` with rehearsal faces from `training` and writes c.out:
/// with c.runs > 1, the mean of the weights (batch-norm statistics too) of c.runs fine-tunings
/// that differ in their rehearsal faces, order and augmentation. Such a "model soup" (Wortsman et
/// al. 2022) works because every run starts from the parent and stays in its basin; the runs'
/// own errors, partly independent, average out.
inline FinetuneSummary finetune_on(const FinetuneConfig& c, const Corrections& corrections,
                                   const facet::Dataset& training) {
    if (c.runs <= 1) return finetune_run(c, 0, corrections, training);
    detail::check_out_and_parent(c);
    // The runs go to files beside OUT, removed whatever happens; OUT is written once, at the end.
    std::vector<std::string> parts;
    struct RemoveFiles {
        std::vector<std::string>& files;
        ~RemoveFiles() {
            for (const std::string& f : files) {
                std::error_code ignored;
                fs::remove(f, ignored);
            }
        }
    } remove_parts{parts};
    FinetuneSummary summary;
    for (std::size_t run = 0; run < c.runs; ++run) {
        FinetuneConfig one = c;
        one.blend = 0;  // the soup, not each run, is blended
        one.out = c.out + ".run" + std::to_string(run + 1) + ".tmp";
        parts.push_back(one.out);
        std::cout << "run " << run + 1 << " of " << c.runs << " (seed " << c.seed + run << ")\n";
        const FinetuneSummary s = finetune_run(one, run, corrections, training);
        if (run == 0) summary = s;
    }
    TrainedModel soup = load_trained(parts[0]);
    for (std::size_t run = 1; run < c.runs; ++run) {
        TrainedModel next = load_trained(parts[run]);
        facet::interpolate_weights(soup.model, soup.model, next.model, 1.0 / double(run + 1));
    }
    const TrainedModel parent = load_trained(c.parent);
    const detail::FinetuneFaces faces = detail::finetune_faces(c, parent, corrections, training);
    // Writes `m` as OUT with the first run's notes and provenance, the accuracy on the faces
    // that judge, the runs, and key = value (if any) in both.
    const facet::Provenance first = facet::load_model_file<float>(parts[0]).provenance;
    auto write = [&](facet::Sequential<float>& m, double val_acc, double val_loss,
                     const std::string& key, const std::string& value) {
        facet::ModelMetadata metadata;
        for (const auto& [k, v] : soup.metadata)
            if (k != "val_accuracy") metadata.emplace_back(k, v);
        metadata.emplace_back("val_accuracy", facet::detail::round_trip_digits(val_acc));
        metadata.emplace_back("finetune.runs", std::to_string(c.runs));
        if (!key.empty()) metadata.emplace_back("finetune." + key, value);
        facet::SaveOptions options;
        options.provenance = first;
        for (auto& [name, metric] : options.provenance.metrics) {
            if (name == "val_accuracy") metric = val_acc;
            if (name == "val_loss") metric = val_loss;
        }
        options.provenance.notes.emplace_back("runs", std::to_string(c.runs));
        options.provenance.notes.emplace_back(
            "seeds", std::to_string(c.seed) + " to " + std::to_string(c.seed + c.runs - 1));
        if (!key.empty()) options.provenance.notes.emplace_back(key, value);
        facet::save(m, c.out, metadata, options);
    };
    facet::DatasetBatches batches(faces.validation, soup.norm, 256);
    const facet::ValidationResult r = facet::evaluate_batches(soup.model, batches);
    write(soup.model, r.accuracy, r.loss, "", "");
    std::cout << "wrote the mean of the weights of the " << c.runs << " runs to " << c.out << "\n";
    if (c.blend != 0) summary.blend = blend_with_parent(c, faces.validation, write);
    TrainedModel tuned = load_trained(c.out);
    summary.heldout = detail::accuracy_on(tuned.model, faces.heldout_corrections, tuned.norm);
    summary.val = detail::accuracy_on(tuned.model, faces.val_original, tuned.norm);
    detail::print_changes(summary, faces);
    return summary;
}

/// Runs `fer finetune`.
inline int run_finetune(const Cli& cli) {
    const FinetuneConfig c = finetune_config(cli);
    facet::set_num_threads(c.threads);
    const Corrections corrections = read_corrections(c.corrections);
    std::cout << "corrections: " << corrections.faces.size() << " faces in " << c.corrections
              << " (" << corrections.fingerprint() << ")\n";
    for (const auto& [kept, dropped] : corrections.duplicates)
        std::cout << "duplicate: " << dropped << " holds the same face as " << kept
                  << " (used once)\n";
    const facet::DataSplits splits = load_splits(c.data, {});
    const facet::Dataset* training = splits.training();
    facet::check(training && !training->empty(), "finetune: ", c.data.describe(),
                 " has no training split for the rehearsal faces");
    finetune_on(c, corrections, *training);
    return 0;
}

}  // namespace fer
