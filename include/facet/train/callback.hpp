// facet/train/callback.hpp — Callback: the hooks a Trainer calls while it trains (begin and end
// of the run, of each epoch and of each step, a step with NaN or infinite values), and the
// reports those hooks receive. Progress output, logs, checkpoints, best-model files and early
// stopping are all callbacks (train/progress.hpp, json_log.hpp, checkpoint.hpp, best_model.hpp,
// early_stopping.hpp); a program adds its own the same way.
// Read next: train/trainer.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include "facet/data/batch_loader.hpp"
#include "facet/model/sequential.hpp"

namespace facet {

class Trainer;

/// Why Trainer::fit() returned.
enum class StopReason {
    Completed,     ///< every epoch ran
    EarlyStopped,  ///< a callback asked to stop after an epoch (e.g. EarlyStopping)
    MaxSteps,      ///< TrainerOptions::max_steps optimiser steps were done
    Interrupted,   ///< SIGINT or SIGTERM (see StopSignals)
};

/// What on_step_end() receives after each step.
struct StepReport {
    std::uint64_t step = 0;       ///< steps completed in the whole run (this one included)
    std::size_t epoch = 0;        ///< 0-based
    std::size_t batch_index = 0;  ///< the batch's position in its epoch
    std::size_t batch_size = 0;
    bool skipped = false;       ///< non-finite values: the step changed nothing
    StepResult result;          ///< loss, accuracy, gradient norm (zeros when skipped)
    double learning_rate = 0;   ///< the rate this step used
    double epoch_loss = 0;      ///< mean loss of this epoch's steps so far (skips excluded)
    double epoch_accuracy = 0;  ///< their mean accuracy
    std::size_t skipped_in_epoch = 0;
    double seconds = 0;  ///< since the epoch (or the resumed part of it) began
};

/// What on_epoch_end() receives after each epoch's validation.
struct EpochReport {
    std::size_t epoch = 0;  ///< 1-based: the number of epochs now completed
    double train_loss = std::numeric_limits<double>::quiet_NaN();
    double train_accuracy = std::numeric_limits<double>::quiet_NaN();
    double val_loss = 0, val_accuracy = 0;
    std::size_t val_samples = 0;
    double seconds = 0;             ///< training and validation
    double images_per_second = 0;   ///< training images per second of training
    double learning_rate = 0;       ///< the rate of the epoch's last step
    std::uint64_t steps = 0;        ///< steps completed in the whole run
    std::size_t skipped_steps = 0;  ///< steps of this epoch skipped for non-finite values
    bool improved = false;          ///< the best validation accuracy so far (model selection)
};

/// What fit() returns and on_train_end() receives.
struct TrainSummary {
    StopReason reason = StopReason::Completed;
    bool mid_epoch = false;  ///< stopped inside an epoch (no validation ran for it)
    std::size_t completed_epochs = 0;
    std::uint64_t steps = 0;
    std::size_t skipped_steps = 0;  ///< in the whole run, resumed parts included
    double best_val_accuracy = -1;  ///< -1 before the first validation
    std::size_t best_epoch = 0;     ///< 1-based; 0 before the first validation
};

/// The base of every callback: each hook does nothing unless overridden. Hooks run in the order
/// the callbacks were added to the Trainer.
class Callback {
  public:
    virtual ~Callback() = default;
    /// Before the first step (of a fresh run, or of a resumed one: see Trainer::state()).
    virtual void on_train_begin(Trainer&) {}
    /// At the start of epoch `epoch` (0-based), also when it resumes in the middle.
    virtual void on_epoch_begin(Trainer&, std::size_t /*epoch*/) {}
    /// Just before a batch is trained on; the batch may be changed (tests poison batches here).
    virtual void on_batch_begin(Trainer&, Batch&) {}
    /// After each step, done or skipped.
    virtual void on_step_end(Trainer&, const StepReport&) {}
    /// When a step gave NaN or infinity: `skipped` says whether the run goes on (it stops with
    /// the error when false). `error` carries the step number.
    virtual void on_nonfinite(Trainer&, const NonFiniteError& /*error*/, bool /*skipped*/) {}
    /// After each epoch's validation, once the trainer has updated its best accuracy, its
    /// early-stopping count and the schedule.
    virtual void on_epoch_end(Trainer&, const EpochReport&) {}
    /// After every callback's on_epoch_end: the place to persist the run (Checkpoint saves here,
    /// so that the files on_epoch_end wrote are never older than the checkpoint).
    virtual void after_epoch(Trainer&, const EpochReport&) {}
    /// When fit() returns normally (not on an exception).
    virtual void on_train_end(Trainer&, const TrainSummary&) {}
};

}  // namespace facet
