// facet/train/early_stopping.hpp — EarlyStopping: ends training once the validation accuracy has
// not improved for `patience` epochs in a row. The count is the Trainer's own (it is saved in
// checkpoints), so a resumed run stops where the uninterrupted one would.
// Read next: train/best_model.hpp.
#pragma once

#include <cstddef>

#include "facet/core/error.hpp"
#include "facet/train/callback.hpp"
#include "facet/train/trainer.hpp"

namespace facet {

/// Stops fit() (StopReason::EarlyStopped) after `patience` epochs without a better validation
/// accuracy; the epoch's checkpoint is still written.
class EarlyStopping : public Callback {
  public:
    explicit EarlyStopping(std::size_t patience) : patience_(patience) {
        check(patience > 0, "EarlyStopping: patience must be > 0");
    }
    void on_epoch_end(Trainer& t, const EpochReport&) override {
        if (t.state().epochs_without_improvement >= patience_)
            t.request_stop(StopReason::EarlyStopped);
    }
    std::size_t patience() const { return patience_; }

  private:
    std::size_t patience_;
};

}  // namespace facet
