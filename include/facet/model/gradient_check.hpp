// facet/model/gradient_check.hpp — check_gradients(): compares a layer's (or a model's) backward
// pass against central finite differences, the test every new layer must pass.
// Read next: model/sequential.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/random.hpp"
#include "facet/core/tensor.hpp"
#include "facet/layers/layer.hpp"

namespace facet {

/// How check_gradients() probes a network.
struct GradientCheckOptions {
    /// Central-difference step h. The error of (f(v+h) - f(v-h)) / 2h is about h^2 f''' from
    /// truncation plus 1e-16 |f| / h from rounding; 1e-5 balances the two in double.
    double step = 1e-5;
    /// Largest relative error (see TensorGradientCheck) that passes.
    double tolerance = 1e-5;
    /// Seeds the upstream gradient g and, through reseed(), every random layer before each forward.
    std::uint64_t seed = 7;
    /// Whether dL/dx is checked (off for inputs that are not differentiable, e.g. class indices).
    bool check_input = true;
    /// At most this many (randomly chosen) entries per tensor; 0 checks every entry.
    std::size_t max_entries = 0;
};

/// The comparison for one tensor: the input ("input") or one parameter (by its name).
struct TensorGradientCheck {
    std::string name;
    std::size_t entries_checked = 0;
    /// Entries that backward left unwritten (they kept the NaN they were pre-filled with).
    std::size_t unwritten = 0;
    double max_abs_error = 0;
    /// max_i |a_i - n_i| / max(|a_i|, |n_i|, 1e-3 * s, 1e-9), analytic a, numeric n, s the largest
    /// |a| or |n| of the tensor: relative per entry, except that entries far below the tensor's
    /// scale are judged against that scale (their finite difference is mostly rounding noise).
    double max_rel_error = 0;
    std::size_t worst_index = 0;
    double worst_analytic = 0, worst_numeric = 0;
    bool passed = false;
};

/// What check_gradients() found; passed is true when every tensor passed.
struct GradientCheckReport {
    std::vector<TensorGradientCheck> tensors;
    bool passed = false;

    /// One line per tensor, for test failure messages and logs.
    std::string str() const {
        std::ostringstream os;
        os << "gradient check " << (passed ? "passed" : "FAILED") << "\n";
        for (const auto& t : tensors) {
            os << "  " << t.name << ": " << t.entries_checked << " entries, max rel error "
               << t.max_rel_error << ", max abs error " << t.max_abs_error;
            if (t.unwritten) os << ", " << t.unwritten << " never written by backward";
            if (!t.passed)
                os << " (worst at " << t.worst_index << ": analytic " << t.worst_analytic
                   << ", numeric " << t.worst_numeric << ")";
            os << (t.passed ? "" : "  FAILED") << "\n";
        }
        return os.str();
    }
};

namespace detail {
/// f = <forward(x), g>, with every random stream restarted first so each call sees the same masks.
template <typename Net>
double probe(Net& net, const Tensor<double>& x, const Tensor<double>& g, Tensor<double>& y,
             std::uint64_t seed) {
    if constexpr (requires { net.reseed(seed); }) net.reseed(seed);
    net.forward(x, y);
    check(y.shape() == g.shape(), "check_gradients: output shape changed from ", g.shape().str(),
          " to ", y.shape().str(), " between forward passes");
    double f = 0;
    for (std::size_t i = 0; i < y.size(); ++i) f += y[i] * g[i];
    return f;
}

inline std::vector<std::size_t> entries_to_check(std::size_t size, std::size_t max_entries,
                                                 Rng& rng) {
    std::vector<std::size_t> idx;
    if (max_entries == 0 || size <= max_entries) {
        for (std::size_t i = 0; i < size; ++i) idx.push_back(i);
    } else {
        for (std::size_t i = 0; i < max_entries; ++i) idx.push_back(rng.below(size));
    }
    return idx;
}

/// Compares analytic against numeric over the checked entries and fills in the verdict.
inline TensorGradientCheck compare(std::string name, const std::vector<std::size_t>& idx,
                                   const Tensor<double>& analytic,
                                   const std::vector<double>& numeric, double tolerance) {
    TensorGradientCheck r;
    r.name = std::move(name);
    r.entries_checked = idx.size();
    double scale = 0;
    for (std::size_t j = 0; j < idx.size(); ++j) {
        const double a = analytic[idx[j]];
        if (std::isnan(a))
            ++r.unwritten;
        else
            scale = std::max({scale, std::abs(a), std::abs(numeric[j])});
    }
    bool ok = r.unwritten == 0;
    for (std::size_t j = 0; j < idx.size(); ++j) {
        const double a = analytic[idx[j]], n = numeric[j];
        const double inf = std::numeric_limits<double>::infinity();
        double abs_err = std::abs(a - n);
        double rel = abs_err / std::max({std::abs(a), std::abs(n), 1e-3 * scale, 1e-9});
        if (std::isnan(abs_err)) abs_err = rel = inf;  // an unwritten or NaN gradient
        if (j == 0 || rel > r.max_rel_error) {
            r.max_rel_error = rel;
            r.worst_index = idx[j];
            r.worst_analytic = a;
            r.worst_numeric = n;
        }
        r.max_abs_error = std::max(r.max_abs_error, abs_err);
        if (!(rel <= tolerance)) ok = false;
    }
    r.passed = ok;
    return r;
}
}  // namespace detail

/// Checks backward() of `net` (a Layer<double>, or a model with the same forward / backward /
/// parameters interface) at input x against central finite differences.
///
/// With a random upstream gradient g (fixed by options.seed), f(x, params) = <forward(x), g> has
/// df/dx = backward's dx for dy = g, and df/dp = each parameter gradient. Each entry v of x and
/// of every parameter is moved to v +- h and (f(v+h) - f(v-h)) / 2h is compared with the
/// analytic value. Before backward, every gradient and dx are filled with NaN, so an entry that
/// backward never assigns is reported (the dlib trick). The current mode is kept: in Train,
/// batch norm is checked through its batch statistics (f depends on the whole batch), and random
/// layers are reseeded before every forward so the dropout mask stays fixed. Parameters and
/// buffers (running statistics) are restored afterwards; random streams are left reseeded.
template <typename Net>
GradientCheckReport check_gradients(Net& net, const Tensor<double>& input,
                                    const GradientCheckOptions& options = {}) {
    check(options.step > 0 && std::isfinite(options.step), "check_gradients: step must be > 0");
    std::vector<std::pair<std::string, Tensor<double>>> saved_buffers;
    if constexpr (requires { net.buffers(); })
        for (auto& [name, buffer] : net.buffers()) saved_buffers.emplace_back(name, *buffer);

    Tensor<double> x = input, y, dx, probe_y;
    Rng rng(options.seed);
    if constexpr (requires { net.reseed(options.seed); }) net.reseed(options.seed);
    net.forward(x, y);
    Tensor<double> g(y.shape());
    g.fill_normal(rng, 0.0, 1.0);

    auto params = net.parameters();
    for (auto& p : params) {
        check(p.value && p.grad, "check_gradients: parameter '", p.name, "' has no tensors");
        p.grad->resize(p.value->shape());
        p.grad->fill(std::numeric_limits<double>::quiet_NaN());
    }
    dx.resize(x.shape());
    dx.fill(std::numeric_limits<double>::quiet_NaN());
    net.backward(x, y, g, dx);
    check(dx.shape() == x.shape(), "check_gradients: backward gave dx of shape ", dx.shape().str(),
          " for an input of shape ", x.shape().str());

    GradientCheckReport report;
    const double h = options.step;
    // Central difference of f in one entry `v`, which is restored exactly afterwards.
    auto numeric_derivative = [&](double& v) {
        const double original = v;
        v = original + h;
        const double f_plus = detail::probe(net, x, g, probe_y, options.seed);
        v = original - h;
        const double f_minus = detail::probe(net, x, g, probe_y, options.seed);
        v = original;
        return (f_plus - f_minus) / (2 * h);
    };

    if (options.check_input) {
        const auto idx = detail::entries_to_check(x.size(), options.max_entries, rng);
        std::vector<double> numeric;
        for (std::size_t i : idx) numeric.push_back(numeric_derivative(x[i]));
        report.tensors.push_back(detail::compare("input", idx, dx, numeric, options.tolerance));
    }
    for (auto& p : params) {
        const Tensor<double> analytic = *p.grad;  // later forwards may not touch it, but be safe
        const auto idx = detail::entries_to_check(p.value->size(), options.max_entries, rng);
        std::vector<double> numeric;
        for (std::size_t i : idx) numeric.push_back(numeric_derivative((*p.value)[i]));
        report.tensors.push_back(
            detail::compare(p.name, idx, analytic, numeric, options.tolerance));
    }

    if constexpr (requires { net.buffers(); }) {
        auto buffers = net.buffers();
        for (std::size_t i = 0; i < buffers.size() && i < saved_buffers.size(); ++i)
            *buffers[i].second = saved_buffers[i].second;
    }
    report.passed = std::all_of(report.tensors.begin(), report.tensors.end(),
                                [](const TensorGradientCheck& t) { return t.passed; });
    return report;
}

}  // namespace facet
