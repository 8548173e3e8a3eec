// facet/train/progress.hpp — ProgressBar: a Keras-style progress line per epoch,
//   " 120/449 [======>.......] - 31s - ETA: 1:25 - loss: 1.4000 - acc: 0.4400",
// redrawn in place on a terminal and printed at every tenth of the epoch on a pipe or a file (so
// logs stay short), then the epoch's validation figures. Read next: train/json_log.hpp.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <ostream>
#include <string>

#include "facet/train/callback.hpp"
#include "facet/train/trainer.hpp"

namespace facet {

/// Prints "Epoch e/E", a progress line after each step, and after validation
/// "  val_loss: ... - val_acc: ... - N images/s - lr X" (with " - new best" when the validation
/// accuracy is the best so far). Writes to std::cout unless given another stream.
class ProgressBar : public Callback {
  public:
    /// `terminal`: redraw in place; by default, when standard output is a terminal.
    explicit ProgressBar(std::ostream& out = std::cout, int terminal = -1)
        : out_(out), tty_(terminal < 0 ? isatty(STDOUT_FILENO) != 0 : terminal != 0) {}

    void on_epoch_begin(Trainer& t, std::size_t epoch) override {
        out_ << "Epoch " << epoch + 1 << "/" << t.options().epochs << "\n" << std::flush;
        total_ = t.state().steps_per_epoch;
        last_tenth_ = 11;
    }
    void on_step_end(Trainer&, const StepReport& r) override {
        loss_ = r.epoch_loss, acc_ = r.epoch_accuracy, skipped_ = r.skipped_in_epoch;
        draw(r.batch_index + 1, r.seconds, false);
    }
    void on_nonfinite(Trainer&, const NonFiniteError& e, bool skipped) override {
        out_ << "\n";
        if (skipped) out_ << "skipped: " << e.what() << "\n";
        out_ << std::flush;
    }
    void on_epoch_end(Trainer&, const EpochReport& r) override {
        skipped_ = r.skipped_steps;
        draw(total_, r.seconds, true);
        out_ << "  val_loss: " << number(r.val_loss) << " - val_acc: " << number(r.val_accuracy)
             << " - " << number(r.images_per_second) << " images/s - lr " << number(r.learning_rate)
             << (r.improved ? " - new best" : "") << "\n"
             << std::flush;
    }

  private:
    static std::string number(double v) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.6g", v);
        return buf;
    }
    static std::string clock(double s) {
        char buf[32];
        const long t = static_cast<long>(s + 0.5);
        std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
        return buf;
    }
    void draw(std::size_t done, double elapsed, bool final) {
        const std::size_t tenth = total_ ? done * 10 / total_ : 10;
        if (!tty_ && !final && tenth == last_tenth_) return;
        last_tenth_ = tenth;
        const std::size_t width = 30;
        const std::size_t filled = total_ ? width * done / total_ : width;
        std::string bar(width, '.');
        for (std::size_t i = 0; i < filled && i < width; ++i) bar[i] = '=';
        if (filled < width) bar[filled] = '>';
        const double eta =
            done ? elapsed / static_cast<double>(done) * static_cast<double>(total_ - done) : 0.0;
        char line[256];
        std::snprintf(line, sizeof line, "%5zu/%zu [%s] - %.0fs%s - loss: %.4f - acc: %.4f", done,
                      total_, bar.c_str(), elapsed, final ? "" : (" - ETA: " + clock(eta)).c_str(),
                      loss_, acc_);
        out_ << (tty_ ? "\r" : "") << line;
        if (skipped_) out_ << " - skipped_steps: " << skipped_;
        out_ << (tty_ && !final ? "" : "\n") << std::flush;
    }

    std::ostream& out_;
    bool tty_;
    std::size_t total_ = 0, last_tenth_ = 11, skipped_ = 0;
    double loss_ = 0, acc_ = 0;
};

}  // namespace facet
