// facet/train/trainer.hpp — Trainer: fits a Sequential<float> classifier with an optimiser and a
// learning-rate schedule, epoch by epoch over a BatchSource, validating after every epoch and
// keeping the best validation accuracy (model selection), with callbacks for everything else.
// It owns the parts of a run that must agree exactly between an uninterrupted and a resumed run:
// the step count, the dropout seed of each step, the loader position, the non-finite policy and
// the counters a checkpoint carries (save_checkpoint / resume).
//
//     Trainer trainer(model, optimizer, schedule, {.epochs = 10});
//     trainer.add<ProgressBar>();
//     trainer.add<BestModel>("best.facet");
//     trainer.fit(train_batches, validation_batches);
//
// Read next: train/progress.hpp, train/checkpoint.hpp.
#pragma once

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "facet/core/atomic_file.hpp"
#include "facet/core/communicator.hpp"
#include "facet/core/error.hpp"
#include "facet/data/batch_loader.hpp"
#include "facet/loss/softmax_cross_entropy.hpp"
#include "facet/model/sequential.hpp"
#include "facet/model/serialize.hpp"
#include "facet/optim/optimizer.hpp"
#include "facet/optim/schedule.hpp"
#include "facet/train/batch_source.hpp"
#include "facet/train/callback.hpp"
#include "facet/train/signals.hpp"
#include "facet/train/validation.hpp"

namespace facet {

/// What a step with a NaN or infinite loss or gradient does.
enum class NonFinitePolicy {
    Stop,  ///< fit() throws the NonFiniteError, numbered with the step
    Skip,  ///< the batch changes nothing, is counted, and training goes on
};

/// The validation number Schedule::end_epoch() receives (ReduceOnPlateau acts on it).
enum class ScheduleMetric { ValidationAccuracy, ValidationLoss };

/// Where a run stands; saved in checkpoints and restored by Trainer::resume().
struct TrainState {
    std::size_t completed_epochs = 0;
    std::uint64_t step = 0;  ///< completed optimiser steps (skipped ones included)
    std::size_t steps_per_epoch = 0;
    double best_val_accuracy = -1;  ///< -1 before the first validation
    std::size_t best_epoch = 0;     ///< 1-based; 0 before the first validation
    std::size_t epochs_without_improvement = 0;
    std::size_t skipped_total = 0, skipped_in_epoch = 0, skipped_in_a_row = 0;
    bool resumed = false;  ///< resume() was called before fit()
};

/// How a Trainer trains.
struct TrainerOptions {
    std::size_t epochs = 10;
    std::size_t max_steps = 0;     ///< stop after this many steps in the whole run (0: no limit)
    std::uint64_t seed = 1;        ///< step s draws its dropout masks from (seed, s)
    double max_gradient_norm = 0;  ///< clip the global gradient norm (0: off)
    double label_smoothing = 0;    ///< of the training loss
    NonFinitePolicy on_nonfinite = NonFinitePolicy::Stop;
    std::size_t max_consecutive_skips = 50;  ///< with Skip: give up after this many in a row
    bool handle_signals = true;              ///< SIGINT / SIGTERM stop after the step (StopSignals)
    ScheduleMetric schedule_metric = ScheduleMetric::ValidationAccuracy;
    /// Notes written into every checkpoint besides the trainer's own (e.g. what a program needs
    /// to rebuild its set-up); called at each save with the state being saved.
    std::function<ModelMetadata(const TrainState&)> notes = {};
    /// Data-parallel training (docs/distributed.md): the processes that train together, each
    /// fit() given its shard of every batch (BatchOptions::shard_index). Null: this process
    /// alone. The communicator must outlive the Trainer.
    Communicator* communicator = nullptr;
    /// With a communicator: what becomes of batch-norm running statistics (BufferSync).
    BufferSync buffer_sync = BufferSync::Average;
};

namespace detail {
/// A double with enough digits to read back the same bits: a resumed run must compare later
/// accuracies with the very number the uninterrupted run holds.
inline std::string round_trip_digits(double v) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

inline double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace detail

/// Loads the checkpoint at `path`. With a communicator, rank 0 reads the file and every process
/// decodes rank 0's bytes, so the others need no access to rank 0's disk; an error reading it
/// is thrown on every process.
inline Checkpoint<float> read_checkpoint(const std::string& path, Communicator* communicator) {
    if (!communicator) return load_checkpoint<float>(path);
    std::vector<unsigned char> bytes;
    std::string failure;
    if (communicator->is_root()) {
        try {
            bytes = read_whole_file(path, serial::max_file_size);
            check(!bytes.empty(), "read_checkpoint: ", path, " is empty");
        } catch (const std::exception& e) {
            failure = e.what();
            bytes.clear();
        }
    }
    bytes = communicator->broadcast_vector(std::move(bytes), 0);
    check(!bytes.empty(), "read_checkpoint: rank 0 could not read ", path,
          failure.empty() ? "" : ": ", failure);
    return decode_checkpoint<float>(bytes, path);
}

/// Trains a Sequential<float> classifier (softmax cross-entropy on integer labels). The model,
/// optimiser (bound to model.parameters()) and schedule are the caller's and must outlive it.
class Trainer {
  public:
    Trainer(Sequential<float>& model, Optimizer<float>& optimizer, Schedule& schedule,
            TrainerOptions options = {})
        : model_(model),
          optimizer_(optimizer),
          schedule_(schedule),
          options_(std::move(options)),
          loss_(options_.label_smoothing) {
        check(options_.epochs > 0, "Trainer: epochs must be > 0");
        check(options_.max_consecutive_skips > 0, "Trainer: max_consecutive_skips must be > 0");
        check(options_.max_gradient_norm >= 0 && std::isfinite(options_.max_gradient_norm),
              "Trainer: max_gradient_norm must be >= 0, got ", options_.max_gradient_norm);
    }
    Trainer(const Trainer&) = delete;
    Trainer& operator=(const Trainer&) = delete;

    /// Adds a callback; hooks run in the order callbacks were added.
    Callback& add(std::unique_ptr<Callback> callback) {
        check(callback != nullptr, "Trainer::add: null callback");
        callbacks_.push_back(std::move(callback));
        return *callbacks_.back();
    }
    /// Builds a callback in place; returns it for further set-up.
    template <typename C, typename... Args>
    C& add(Args&&... args) {
        auto callback = std::make_unique<C>(std::forward<Args>(args)...);
        C& ref = *callback;
        add(std::move(callback));
        return ref;
    }

    Sequential<float>& model() { return model_; }
    Optimizer<float>& optimizer() { return optimizer_; }
    Schedule& schedule() { return schedule_; }
    /// The training loss (callbacks set a teacher on it: train/distillation.hpp).
    SoftmaxCrossEntropy<float>& loss() { return loss_; }
    const TrainerOptions& options() const { return options_; }
    const TrainState& state() const { return state_; }

    /// Asks fit() to stop after the current epoch (callbacks call it from on_epoch_end).
    void request_stop(StopReason reason) {
        if (!stop_) stop_ = reason;
    }

    /// What a checkpoint of the run as it stands holds besides model, optimiser and schedule:
    /// the position, the seed, the caller's notes and the trainer's counters.
    CheckpointInfo checkpoint_info() const {
        CheckpointInfo info;
        info.epoch = state_.completed_epochs, info.step = state_.step;
        info.seeds = {{"seed", options_.seed}};
        if (options_.notes) info.metadata = options_.notes(state_);
        auto note = [&](const char* key, std::string value) {
            info.metadata.emplace_back(key, std::move(value));
        };
        // A run computed in bf16 continues in bf16 only: the bits would differ in another.
        note("precision", precision_name(model_.running_context().precision));
        note("best_val_accuracy", detail::round_trip_digits(state_.best_val_accuracy));
        note("best_epoch", std::to_string(state_.best_epoch));
        note("epochs_without_improvement", std::to_string(state_.epochs_without_improvement));
        note("skipped_steps", std::to_string(state_.skipped_total));
        note("skipped_steps_in_epoch", std::to_string(state_.skipped_in_epoch));
        note("skipped_steps_in_a_row", std::to_string(state_.skipped_in_a_row));
        return info;
    }

    /// Writes a training checkpoint of the run as it stands to `path`, atomically.
    void save_checkpoint(const std::string& path) {
        facet::save_checkpoint(path, model_, optimizer_, schedule_, checkpoint_info());
    }

    /// Continues the run a checkpoint recorded: copies its weights and buffers into the model
    /// (which must have the same layers), restores the optimiser and the schedule, the position
    /// and the counters. The next fit() then goes on exactly as the uninterrupted run did.
    void resume(Checkpoint<float>& checkpoint) {
        const std::string trained_in = checkpoint.info.note("precision", "fp32");
        const char* precision = precision_name(model_.running_context().precision);
        check(trained_in == precision, "resume: the checkpoint was trained in ", trained_in,
              ", this run computes in ", precision);
        copy_model_state(checkpoint.model);
        optimizer_.load_state(checkpoint.optimizer);
        schedule_.load_state(checkpoint.schedule);
        const CheckpointInfo& info = checkpoint.info;
        check(info.seed("seed") == options_.seed, "resume: the checkpoint was written with seed ",
              info.seed("seed"), ", this run has seed ", options_.seed);
        state_ = TrainState{};
        state_.completed_epochs = static_cast<std::size_t>(info.epoch);
        state_.step = info.step;
        auto count = [&](const char* key) {
            return static_cast<std::size_t>(std::stoull(info.note(key, "0")));
        };
        state_.best_val_accuracy = std::stod(info.note("best_val_accuracy", "-1"));
        state_.best_epoch = count("best_epoch");
        state_.epochs_without_improvement = count("epochs_without_improvement");
        state_.skipped_total = count("skipped_steps");
        state_.skipped_in_epoch = count("skipped_steps_in_epoch");
        state_.skipped_in_a_row = count("skipped_steps_in_a_row");
        state_.resumed = true;
    }
    /// resume() from the checkpoint file at `path` (distributed: rank 0's file, which rank 0
    /// reads and sends to the others; see read_checkpoint()).
    void resume(const std::string& path) {
        Checkpoint<float> checkpoint = read_checkpoint(path, options_.communicator);
        resume(checkpoint);
    }

    /// Trains until options().epochs epochs are complete (counting those a resumed checkpoint
    /// completed), a callback asks to stop, max_steps is reached or a stop signal arrives.
    /// Validates on `validation` after every epoch. A non-finite step throws NonFiniteError
    /// under NonFinitePolicy::Stop, and an Error after max_consecutive_skips skips in a row.
    TrainSummary fit(BatchSource& train, BatchSource& validation) {
        using clock = std::chrono::steady_clock;
        const std::size_t steps_per_epoch = train.batches_per_epoch();
        check(steps_per_epoch > 0, "Trainer::fit: the training source has no batches");
        check(state_.step <= state_.completed_epochs * steps_per_epoch + steps_per_epoch &&
                  state_.step >= state_.completed_epochs * steps_per_epoch,
              "Trainer::fit: step ", state_.step, " does not lie in epoch ",
              state_.completed_epochs + 1, " of ", steps_per_epoch,
              " steps (another batch size or data set than the checkpoint's?)");
        state_.steps_per_epoch = steps_per_epoch;
        std::optional<StopSignals> signals;
        if (options_.handle_signals) signals.emplace();
        stop_.reset();
        if (options_.communicator) broadcast_model_state();
        bool mid_epoch = false;
        for (auto& c : callbacks_) c->on_train_begin(*this);

        for (std::size_t epoch = state_.completed_epochs; epoch < options_.epochs && !stop_;
             ++epoch) {
            const std::size_t first_batch = static_cast<std::size_t>(
                state_.step - epoch * steps_per_epoch);  // > 0 when resuming mid-epoch
            if (first_batch == 0) state_.skipped_in_epoch = 0;
            train.start_epoch(epoch, first_batch);
            for (auto& c : callbacks_) c->on_epoch_begin(*this, epoch);
            const auto t0 = clock::now();
            double loss_sum = 0, correct = 0, seen = 0;
            std::size_t position = first_batch;
            for (Batch batch; position < steps_per_epoch && train.next(batch);) {
                StepReport r;
                r.learning_rate = schedule_.rate(static_cast<std::size_t>(state_.step));
                optimizer_.set_learning_rate(r.learning_rate);
                // Dropout masks are a function of the step, so a resumed run draws the same ones
                // (and of the rank, so that the shards of one batch draw different ones).
                std::uint64_t masks = detail::mix_seed(options_.seed, state_.step, 7);
                if (options_.communicator && options_.communicator->rank() > 0)
                    masks = detail::mix_seed(masks, options_.communicator->rank(), 8);
                model_.reseed(masks);
                for (auto& c : callbacks_) c->on_batch_begin(*this, batch);
                float signalled = StopSignals::requested() ? 1.0f : 0.0f;
                r.skipped = !train_step(batch, r.result, signalled);
                if (!r.skipped) {
                    const auto n = static_cast<double>(r.result.samples);
                    loss_sum += r.result.loss * n, correct += r.result.accuracy * n, seen += n;
                }
                ++state_.step, ++position;
                r.step = state_.step, r.epoch = epoch, r.batch_index = batch.index;
                r.batch_size = options_.communicator ? r.result.samples : batch.size();
                r.epoch_loss = loss_sum / seen, r.epoch_accuracy = correct / seen;
                r.skipped_in_epoch = state_.skipped_in_epoch;
                r.seconds = detail::seconds_since(t0);
                for (auto& c : callbacks_) c->on_step_end(*this, r);
                // Distributed: stop when a signal reached any process (summed with the step).
                if (signals && (options_.communicator ? signalled > 0 : StopSignals::requested()))
                    request_stop(StopReason::Interrupted);
                else if (options_.max_steps && state_.step >= options_.max_steps)
                    request_stop(StopReason::MaxSteps);
                if (stop_) break;
            }
            if (position < steps_per_epoch) {  // stopped inside the epoch: no validation
                mid_epoch = true;
                break;
            }
            end_epoch(epoch, validation, detail::seconds_since(t0), loss_sum, correct, seen);
            if (signals && any_process(StopSignals::requested()))
                request_stop(StopReason::Interrupted);
        }

        TrainSummary summary;
        summary.reason = stop_.value_or(StopReason::Completed);
        if (signals && any_process(StopSignals::requested()))
            summary.reason = StopReason::Interrupted;
        summary.mid_epoch = mid_epoch;
        summary.completed_epochs = state_.completed_epochs;
        summary.steps = state_.step;
        summary.skipped_steps = state_.skipped_total;
        summary.best_val_accuracy = state_.best_val_accuracy;
        summary.best_epoch = state_.best_epoch;
        for (auto& c : callbacks_) c->on_train_end(*this, summary);
        return summary;
    }

  private:
    /// One optimiser step on `batch`; false when it was skipped for non-finite values.
    /// Distributed, `signalled` (this process's stop signal, 0 or 1) comes back summed over the
    /// processes.
    bool train_step(Batch& batch, StepResult& result, float& signalled) {
        try {
            if (options_.communicator) {
                result = model_.train_step(batch.images, batch.labels, loss_, optimizer_,
                                           options_.max_gradient_norm, *options_.communicator,
                                           options_.buffer_sync, std::span<float>(&signalled, 1));
            } else {
                result = model_.train_step(batch.images, batch.labels, loss_, optimizer_,
                                           options_.max_gradient_norm);
                result.samples = batch.size();
            }
            state_.skipped_in_a_row = 0;
            return true;
        } catch (const NonFiniteError& e) {
            // Nothing changed in the model or the optimiser (Sequential::train_step's promise),
            // so the files written so far still hold the last good state.
            const NonFiniteError numbered = e.at_step(state_.step + 1);
            const bool skip = options_.on_nonfinite == NonFinitePolicy::Skip;
            for (auto& c : callbacks_) c->on_nonfinite(*this, numbered, skip);
            if (!skip) throw numbered;
            ++state_.skipped_total, ++state_.skipped_in_epoch, ++state_.skipped_in_a_row;
            if (state_.skipped_in_a_row >= options_.max_consecutive_skips)
                throw Error(detail::concat("train: gave up after ", state_.skipped_in_a_row,
                                           " skipped steps in a row (max_consecutive_skips); the "
                                           "last: ",
                                           numbered.what()));
            return false;
        }
    }

    /// Validation, model selection, the schedule's epoch hook, then the callbacks.
    void end_epoch(std::size_t epoch, BatchSource& validation, double train_seconds,
                   double loss_sum, double correct, double seen) {
        const auto t0 = std::chrono::steady_clock::now();
        ValidationResult v;
        if (options_.communicator) {  // each process validated its shard
            ValidationSums sums = validation_sums(model_, validation);
            double totals[3] = {sums.loss, sums.correct, sums.samples};
            options_.communicator->sum(std::span<double>(totals));
            v = validation_result({totals[0], totals[1], totals[2]});
        } else {
            v = evaluate_batches(model_, validation);
        }
        EpochReport report;
        report.epoch = epoch + 1;
        report.train_loss = loss_sum / seen, report.train_accuracy = correct / seen;
        report.val_loss = v.loss, report.val_accuracy = v.accuracy, report.val_samples = v.samples;
        report.seconds = train_seconds + detail::seconds_since(t0);
        report.images_per_second = seen / train_seconds;
        report.learning_rate =
            schedule_.rate(static_cast<std::size_t>(state_.step ? state_.step - 1 : 0));
        report.steps = state_.step;
        report.skipped_steps = state_.skipped_in_epoch;
        report.improved = v.accuracy > state_.best_val_accuracy;
        if (report.improved) {
            state_.best_val_accuracy = v.accuracy, state_.best_epoch = epoch + 1;
            state_.epochs_without_improvement = 0;
        } else {
            ++state_.epochs_without_improvement;
        }
        schedule_.end_epoch(
            options_.schedule_metric == ScheduleMetric::ValidationAccuracy ? v.accuracy : v.loss);
        state_.completed_epochs = epoch + 1;
        for (auto& c : callbacks_) c->on_epoch_end(*this, report);
        state_.skipped_in_epoch = 0;  // a checkpoint at an epoch's end starts the next one afresh
        for (auto& c : callbacks_) c->after_epoch(*this, report);
    }

    /// Whether `flag` holds on any process (this one's alone without a communicator).
    bool any_process(bool flag) {
        if (!options_.communicator) return flag;
        double count = flag ? 1 : 0;
        options_.communicator->sum(std::span<double>(&count, 1));
        return count > 0;
    }

    /// Gives every process rank 0's parameters and buffers: a fresh run starts from rank 0's
    /// initial weights (whatever the seeds of the others), a resumed one from the same state.
    void broadcast_model_state() {
        Communicator& comm = *options_.communicator;
        for (const auto& p : model_.parameters())
            comm.broadcast(std::span<float>(p.value->data(), p.value->size()), 0);
        for (auto& [name, tensor] : model_.buffers())
            comm.broadcast(std::span<float>(tensor->data(), tensor->size()), 0);
    }

    /// Copies every parameter and buffer of `source` into the model, checking that both have the
    /// same layers, parameter names and shapes.
    void copy_model_state(Sequential<float>& source) {
        check(source.size() == model_.size(), "resume: the checkpoint's model has ", source.size(),
              " layers, this model ", model_.size());
        for (std::size_t i = 0; i < model_.size(); ++i)
            check(source.layer(i).describe() == model_.layer(i).describe(), "resume: layer ", i,
                  " is ", source.layer(i).describe(), " in the checkpoint, ",
                  model_.layer(i).describe(), " in this model");
        const auto& from = source.parameters();
        const auto& to = model_.parameters();
        check(from.size() == to.size(), "resume: the checkpoint has ", from.size(),
              " parameters, the model ", to.size());
        for (std::size_t k = 0; k < to.size(); ++k) {
            check(from[k].name == to[k].name && from[k].value->shape() == to[k].value->shape(),
                  "resume: parameter ", k, " is ", from[k].name, " ", from[k].value->shape().str(),
                  " in the checkpoint, ", to[k].name, " ", to[k].value->shape().str(),
                  " in this model");
            *to[k].value = *from[k].value;
        }
        auto from_buffers = source.buffers();
        auto to_buffers = model_.buffers();
        check(from_buffers.size() == to_buffers.size(), "resume: the checkpoint has ",
              from_buffers.size(), " buffers, the model ", to_buffers.size());
        for (std::size_t k = 0; k < to_buffers.size(); ++k) {
            check(from_buffers[k].first == to_buffers[k].first &&
                      from_buffers[k].second->shape() == to_buffers[k].second->shape(),
                  "resume: buffer ", from_buffers[k].first, " differs from ", to_buffers[k].first);
            *to_buffers[k].second = *from_buffers[k].second;
        }
    }

    Sequential<float>& model_;
    Optimizer<float>& optimizer_;
    Schedule& schedule_;
    TrainerOptions options_;
    SoftmaxCrossEntropy<float> loss_;
    std::vector<std::unique_ptr<Callback>> callbacks_;
    TrainState state_;
    std::optional<StopReason> stop_;
};

}  // namespace facet
