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
/// with the notes `notes(report)` gives (e.g. the input normalisation a program needs again).
class BestModel : public Callback {
  public:
    explicit BestModel(std::string path,
                       std::function<ModelMetadata(const EpochReport&)> notes = {})
        : path_(std::move(path)), notes_(std::move(notes)) {}
    void on_epoch_end(Trainer& t, const EpochReport& r) override {
        if (r.improved) save(t.model(), path_, notes_ ? notes_(r) : ModelMetadata{});
    }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
    std::function<ModelMetadata(const EpochReport&)> notes_;
};

}  // namespace facet
