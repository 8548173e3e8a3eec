// facet/train/weight_average.hpp — WeightAverage: the running mean of a model's weights at the ends
// of the later epochs, the averaging of stochastic weight averaging (SWA: Izmailov et al.,
// "Averaging weights leads to wider optima and better generalization", 2018). Training at a rate
// that stays high enough to move keeps the weights circling a wide minimum; their mean sits nearer
// its centre than any one of them. The mean holds the mean of the batch norms' statistics, which
// are not its own activations' statistics: re-estimate them before using it
// (train/running_statistics.hpp).
// Read next: train/running_statistics.hpp.
#pragma once

#include <cstddef>

#include "facet/model/interpolate.hpp"
#include "facet/model/sequential.hpp"
#include "facet/train/callback.hpp"
#include "facet/train/trainer.hpp"

namespace facet {

/// Keeps in `average` the mean of the trained model's weights and buffers at the ends of epochs
/// `from`, from + 1, ... (1-based): after n of them, average = (1 - 1/n) average + (1/n) weights.
/// `average` must have the trained model's architecture; what it holds before the first of those
/// epochs is overwritten then.
class WeightAverage : public Callback {
  public:
    WeightAverage(Sequential<float>& average, std::size_t from) : average_(average), from_(from) {}
    void on_epoch_end(Trainer& t, const EpochReport& r) override {
        if (r.epoch < from_) return;
        ++count_;
        last_epoch_ = r.epoch;
        interpolate_weights(average_, average_, t.model(), 1.0 / static_cast<double>(count_));
    }
    /// How many epochs' weights the mean holds (0: none yet).
    std::size_t count() const { return count_; }
    /// The first epoch averaged.
    std::size_t from() const { return from_; }
    /// The last epoch averaged (0: none yet).
    std::size_t last_epoch() const { return last_epoch_; }

  private:
    Sequential<float>& average_;
    std::size_t from_, count_ = 0, last_epoch_ = 0;
};

}  // namespace facet
