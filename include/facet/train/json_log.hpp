// facet/train/json_log.hpp — JsonLog: the run's log as JSON lines (one object per line, written
// with nlohmann/json): the header records a program gives (e.g. how the validation data were
// chosen), one record per epoch, and the records it appends at the end (e.g. test results).
// The whole file is rewritten atomically after each epoch, so it is never torn; a resumed run
// keeps the lines up to the epochs its checkpoint completed. Needs nlohmann/json (Debian:
// nlohmann-json3-dev). Read next: train/early_stopping.hpp.
#pragma once

#include <cstddef>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "facet/core/atomic_file.hpp"
#include "facet/train/callback.hpp"
#include "facet/train/trainer.hpp"

namespace facet {

/// Writes `path`: the header records (on a fresh run), then per epoch
/// {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "images_per_second",
/// "lr", "steps", "skipped_steps"} (NaN and infinity as null). Header and appended records should
/// carry an "event" key so that readers can tell them from epoch records.
class JsonLog : public Callback {
  public:
    using Record = nlohmann::ordered_json;

    explicit JsonLog(std::string path, std::vector<Record> header = {})
        : path_(std::move(path)), header_(std::move(header)) {}

    /// Starts the file: the header on a fresh run; on a resumed one, the old file's header and
    /// its epoch records up to the epochs the checkpoint completed.
    void on_train_begin(Trainer& t) override {
        lines_.clear();
        if (t.state().resumed) {
            std::ifstream old(path_);
            bool epochs_begun = false;
            for (std::string line; std::getline(old, line);) {
                const Record r = Record::parse(line, nullptr, /*allow_exceptions=*/false);
                if (r.is_discarded()) continue;
                const bool epoch = r.contains("epoch") && r["epoch"].is_number();
                if (epoch &&
                    r["epoch"].get<double>() > static_cast<double>(t.state().completed_epochs))
                    break;
                // Records appended after the epochs described the end of an earlier fit().
                if (!epoch && epochs_begun) continue;
                epochs_begun = epochs_begun || epoch;
                lines_.push_back(line);
            }
        }
        if (lines_.empty())
            for (const Record& r : header_) lines_.push_back(r.dump());
        write();
    }
    void on_epoch_end(Trainer&, const EpochReport& r) override {
        Record line;
        line["epoch"] = r.epoch;
        line["train_loss"] = r.train_loss;
        line["train_acc"] = r.train_accuracy;
        line["val_loss"] = r.val_loss;
        line["val_acc"] = r.val_accuracy;
        line["seconds"] = r.seconds;
        line["images_per_second"] = r.images_per_second;
        line["lr"] = r.learning_rate;
        line["steps"] = r.steps;
        line["skipped_steps"] = r.skipped_steps;
        lines_.push_back(line.dump());
        write();
    }

    /// Adds a record at the end of the log and rewrites the file.
    void append(const Record& record) {
        lines_.push_back(record.dump());
        write();
    }
    const std::string& path() const { return path_; }

  private:
    void write() const {
        std::string all;
        for (const auto& l : lines_) all += l + "\n";
        write_file_atomically(path_, all.data(), all.size());
    }

    std::string path_;
    std::vector<Record> header_;
    std::vector<std::string> lines_;
};

}  // namespace facet
