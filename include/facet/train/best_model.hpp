// facet/train/best_model.hpp — BestModel: saves the model (facet::save, atomically) whenever an
// epoch reaches the best validation accuracy so far, so the file always holds the model that
// validation selected. Read next: train/checkpoint.hpp.
#pragma once

#include <functional>
#include <string>
#include <utility>

#include "facet/model/serialize.hpp"
#include "facet/train/callback.hpp"
#include "facet/train/trainer.hpp"

namespace facet {

/// Writes the model to `path` after every epoch whose validation accuracy beats all earlier ones,
/// with the notes `notes(report)` gives (e.g. the input normalisation a program needs again) and
/// the provenance `provenance(report)` gives; without it, the epoch's validation metrics.
class BestModel : public Callback {
  public:
    explicit BestModel(std::string path,
                       std::function<ModelMetadata(const EpochReport&)> notes = {},
                       std::function<Provenance(const EpochReport&)> provenance = {})
        : path_(std::move(path)), notes_(std::move(notes)), provenance_(std::move(provenance)) {}
    void on_epoch_end(Trainer& t, const EpochReport& r) override {
        if (!r.improved) return;
        SaveOptions options;
        options.provenance = provenance_ ? provenance_(r) : Provenance{};
        if (!provenance_)
            options.provenance.metrics = {{"val_accuracy", r.val_accuracy},
                                          {"val_loss", r.val_loss},
                                          {"epoch", static_cast<double>(r.epoch)}};
        save(t.model(), path_, notes_ ? notes_(r) : ModelMetadata{}, options);
    }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
    std::function<ModelMetadata(const EpochReport&)> notes_;
    std::function<Provenance(const EpochReport&)> provenance_;
};

}  // namespace facet
