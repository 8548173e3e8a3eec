// facet/train/signals.hpp — StopSignals: while it lives, SIGINT and SIGTERM ask a training loop
// to stop after its current step (the Trainer then saves a checkpoint and returns); a second
// signal ends the program at once, as if no handler were installed.
// Read next: train/callback.hpp.
#pragma once

#include <atomic>
#include <csignal>

namespace facet {

namespace detail {
/// Set by the handler; lock-free, so reading and writing it is async-signal-safe.
inline std::atomic<bool> stop_signal_received{false};

/// Records the request, then gives the signal back its default action, so that a user who does
/// not want to wait for the step and the save can press Ctrl-C again.
extern "C" inline void on_stop_signal(int signal) {
    stop_signal_received = true;
    std::signal(signal, SIG_DFL);
}
}  // namespace detail

/// Installs the stop handler for SIGINT and SIGTERM while it lives; the previous handlers come
/// back however the scope ends (an exception included). Clears any earlier request on entry.
class StopSignals {
  public:
    StopSignals() {
        detail::stop_signal_received = false;
        previous_int_ = std::signal(SIGINT, detail::on_stop_signal);
        previous_term_ = std::signal(SIGTERM, detail::on_stop_signal);
    }
    ~StopSignals() {
        std::signal(SIGINT, previous_int_);
        std::signal(SIGTERM, previous_term_);
    }
    StopSignals(const StopSignals&) = delete;
    StopSignals& operator=(const StopSignals&) = delete;

    /// True once SIGINT or SIGTERM arrived since the last StopSignals was installed.
    static bool requested() { return detail::stop_signal_received; }

  private:
    void (*previous_int_)(int) = SIG_DFL;
    void (*previous_term_)(int) = SIG_DFL;
};

}  // namespace facet
