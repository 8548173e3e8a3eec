// facet/optim/schedule.hpp — learning-rate schedules: constant, step decay, cosine with linear
// warm-up (all functions of the global step), and reduce-on-plateau (driven by an epoch metric).
// Before every optimiser step the training loop calls
//     optimizer.set_learning_rate(schedule.rate(step));
// and after every epoch schedule.end_epoch(validation_metric).
// Read next: optim/clip.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "facet/core/error.hpp"

namespace facet {

/// A schedule's type and every number it needs to continue exactly, for training checkpoints.
struct ScheduleState {
    std::string type;
    std::vector<std::pair<std::string, double>> values;

    /// The number stored under `key`, or an Error naming the schedule type and the key.
    double get(const std::string& key) const {
        for (const auto& [k, v] : values)
            if (k == key) return v;
        throw Error(detail::concat("schedule state ", type, ": missing value '", key, "'"));
    }
};

/// The base of all schedules.
class Schedule {
  public:
    virtual ~Schedule() = default;
    /// The name saved in checkpoints, e.g. "Cosine".
    virtual std::string type() const = 0;
    /// The learning rate for global step `step` (counted from 0 over the whole run).
    virtual double rate(std::size_t step) const = 0;
    /// Reports the end of an epoch with its validation metric; only reduce-on-plateau uses it.
    virtual void end_epoch(double /*metric*/) {}
    virtual ScheduleState state() const = 0;
    /// Restores what state() saved; an Error when the type differs or a value is missing.
    virtual void load_state(const ScheduleState& state) = 0;

  protected:
    void check_state_type(const ScheduleState& s) const {
        check(s.type == type(), "schedule: cannot load the state of a ", s.type, " schedule into ",
              type());
    }
    static void check_rate(double lr, const char* what) {
        check(std::isfinite(lr) && lr >= 0, what, " must be finite and >= 0, got ", lr);
    }
};

/// The same rate at every step.
class ConstantSchedule : public Schedule {
  public:
    explicit ConstantSchedule(double lr) : lr_(lr) {
        check_rate(lr, "ConstantSchedule: learning rate");
    }
    std::string type() const override { return "Constant"; }
    double rate(std::size_t) const override { return lr_; }
    ScheduleState state() const override { return {type(), {{"lr", lr_}}}; }
    void load_state(const ScheduleState& s) override {
        check_state_type(s);
        *this = ConstantSchedule(s.get("lr"));
    }

  private:
    double lr_;
};

/// Step decay: lr * gamma^floor(step / step_size), e.g. x0.1 every 30 epochs' worth of steps.
class StepSchedule : public Schedule {
  public:
    StepSchedule(double lr, std::size_t step_size, double gamma)
        : lr_(lr), step_size_(step_size), gamma_(gamma) {
        check_rate(lr, "StepSchedule: learning rate");
        check(step_size > 0, "StepSchedule: step size must be > 0");
        check(gamma > 0 && gamma <= 1, "StepSchedule: gamma must be in (0, 1], got ", gamma);
    }
    std::string type() const override { return "Step"; }
    double rate(std::size_t step) const override {
        return lr_ * std::pow(gamma_, static_cast<double>(step / step_size_));
    }
    ScheduleState state() const override {
        return {type(),
                {{"lr", lr_}, {"step_size", static_cast<double>(step_size_)}, {"gamma", gamma_}}};
    }
    void load_state(const ScheduleState& s) override {
        check_state_type(s);
        const double size = s.get("step_size");
        check(size >= 1 && size == std::floor(size), "StepSchedule state: bad step size ", size);
        *this = StepSchedule(s.get("lr"), static_cast<std::size_t>(size), s.get("gamma"));
    }

  private:
    double lr_;
    std::size_t step_size_;
    double gamma_;
};

/// Linear warm-up then cosine annealing. Steps 0 .. warmup-1 rise linearly to lr (step s gets
/// lr * (s + 1) / warmup, so the first step is not wasted at rate 0); afterwards
///   rate = min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2,   p = (step - warmup) / (total -
///   warmup),
/// which falls from lr to min_lr at step `total` and stays there.
class CosineSchedule : public Schedule {
  public:
    CosineSchedule(double lr, std::size_t warmup_steps, std::size_t total_steps,
                   double min_lr = 0.0)
        : lr_(lr), warmup_(warmup_steps), total_(total_steps), min_lr_(min_lr) {
        check_rate(lr, "CosineSchedule: learning rate");
        check_rate(min_lr, "CosineSchedule: minimum learning rate");
        check(min_lr <= lr, "CosineSchedule: minimum learning rate ", min_lr, " exceeds the rate ",
              lr);
        check(warmup_steps < total_steps, "CosineSchedule: warm-up (", warmup_steps,
              " steps) must be shorter than the run (", total_steps, " steps)");
    }
    std::string type() const override { return "Cosine"; }
    double rate(std::size_t step) const override {
        if (step < warmup_)
            return lr_ * static_cast<double>(step + 1) / static_cast<double>(warmup_);
        if (step >= total_) return min_lr_;
        constexpr double pi = 3.14159265358979323846;
        const double progress =
            static_cast<double>(step - warmup_) / static_cast<double>(total_ - warmup_);
        return min_lr_ + (lr_ - min_lr_) * 0.5 * (1.0 + std::cos(pi * progress));
    }
    ScheduleState state() const override {
        return {type(),
                {{"lr", lr_},
                 {"warmup_steps", static_cast<double>(warmup_)},
                 {"total_steps", static_cast<double>(total_)},
                 {"min_lr", min_lr_}}};
    }
    void load_state(const ScheduleState& s) override {
        check_state_type(s);
        const double warmup = s.get("warmup_steps"), total = s.get("total_steps");
        check(warmup >= 0 && warmup == std::floor(warmup) && total >= 1 &&
                  total == std::floor(total) && total < 1e18,
              "CosineSchedule state: bad step counts ", warmup, ", ", total);
        *this = CosineSchedule(s.get("lr"), static_cast<std::size_t>(warmup),
                               static_cast<std::size_t>(total), s.get("min_lr"));
    }

  private:
    double lr_;
    std::size_t warmup_, total_;
    double min_lr_;
};

/// Whether a smaller metric (a loss) or a larger one (an accuracy) is an improvement.
enum class MetricGoal { Minimize, Maximize };

/// Options of reduce-on-plateau.
struct PlateauOptions {
    double factor = 0.1;        ///< the rate is multiplied by this after a plateau
    std::size_t patience = 10;  ///< epochs without improvement that are tolerated
    double min_lr = 0.0;        ///< the rate never falls below this
    double threshold = 1e-4;    ///< an improvement must beat the best metric by more than this
    MetricGoal goal = MetricGoal::Minimize;
};

/// Reduce-on-plateau: keeps the rate until the epoch metric has not improved on its best value
/// (by more than `threshold`) for more than `patience` epochs in a row, then multiplies it by
/// `factor` (not below min_lr) and starts counting again.
class ReduceOnPlateau : public Schedule {
  public:
    ReduceOnPlateau(double lr, const PlateauOptions& options = {}) : lr_(lr), options_(options) {
        check_rate(lr, "ReduceOnPlateau: learning rate");
        check_rate(options.min_lr, "ReduceOnPlateau: minimum learning rate");
        check(options.factor > 0 && options.factor < 1,
              "ReduceOnPlateau: factor must be in (0, 1), got ", options.factor);
        check(options.threshold >= 0, "ReduceOnPlateau: threshold must be >= 0");
        best_ = options.goal == MetricGoal::Minimize ? std::numeric_limits<double>::infinity()
                                                     : -std::numeric_limits<double>::infinity();
    }
    std::string type() const override { return "ReduceOnPlateau"; }
    double rate(std::size_t) const override { return lr_; }

    /// Counts the epoch as an improvement or not, and reduces the rate after a plateau. A NaN
    /// metric counts as no improvement.
    void end_epoch(double metric) override {
        const bool improved = options_.goal == MetricGoal::Minimize
                                  ? metric < best_ - options_.threshold
                                  : metric > best_ + options_.threshold;
        if (improved) {
            best_ = metric;
            bad_epochs_ = 0;
            return;
        }
        if (++bad_epochs_ > options_.patience) {
            lr_ = std::max(lr_ * options_.factor, options_.min_lr);
            bad_epochs_ = 0;
        }
    }
    /// The best metric seen so far (+-infinity before the first epoch).
    double best() const { return best_; }
    std::size_t bad_epochs() const { return bad_epochs_; }

    ScheduleState state() const override {
        return {type(),
                {{"lr", lr_},
                 {"factor", options_.factor},
                 {"patience", static_cast<double>(options_.patience)},
                 {"min_lr", options_.min_lr},
                 {"threshold", options_.threshold},
                 {"maximize", options_.goal == MetricGoal::Maximize ? 1.0 : 0.0},
                 {"best", best_},
                 {"bad_epochs", static_cast<double>(bad_epochs_)}}};
    }
    void load_state(const ScheduleState& s) override {
        check_state_type(s);
        PlateauOptions o;
        o.factor = s.get("factor");
        const double patience = s.get("patience"), bad = s.get("bad_epochs");
        check(patience >= 0 && patience == std::floor(patience) && patience < 1e18 && bad >= 0 &&
                  bad == std::floor(bad) && bad < 1e18,
              "ReduceOnPlateau state: bad epoch counts ", patience, ", ", bad);
        o.patience = static_cast<std::size_t>(patience);
        o.min_lr = s.get("min_lr");
        o.threshold = s.get("threshold");
        o.goal = s.get("maximize") != 0.0 ? MetricGoal::Maximize : MetricGoal::Minimize;
        ReduceOnPlateau restored(s.get("lr"), o);
        restored.best_ = s.get("best");
        restored.bad_epochs_ = static_cast<std::size_t>(bad);
        *this = restored;
    }

  private:
    double lr_;
    PlateauOptions options_;
    double best_;
    std::size_t bad_epochs_ = 0;
};

}  // namespace facet
