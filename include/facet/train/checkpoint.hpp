// facet/train/checkpoint.hpp — CheckpointSaver: writes a training checkpoint
// (facet::save_checkpoint, atomically: the file is always a complete old or new one) every N steps,
// at the end of every epoch, and when training stops inside an epoch (a stop signal, max_steps), so
// that Trainer::resume() continues exactly. Read next: train/json_log.hpp.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

#include "facet/train/callback.hpp"
#include "facet/train/trainer.hpp"

namespace facet {

/// Saves Trainer::save_checkpoint(path) every `every_steps` steps (0: at epoch ends only), after
/// every epoch (in after_epoch, so files the epoch's callbacks wrote are never older than it),
/// and when fit() stops in the middle of an epoch.
class CheckpointSaver : public Callback {
  public:
    explicit CheckpointSaver(std::string path, std::size_t every_steps = 0)
        : path_(std::move(path)), every_(every_steps) {}
    void on_step_end(Trainer& t, const StepReport& r) override {
        if (every_ && r.step % every_ == 0) t.save_checkpoint(path_);
    }
    void after_epoch(Trainer& t, const EpochReport&) override { t.save_checkpoint(path_); }
    void on_train_end(Trainer& t, const TrainSummary& s) override {
        if (s.mid_epoch) t.save_checkpoint(path_);
    }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
    std::size_t every_;
};

}  // namespace facet
