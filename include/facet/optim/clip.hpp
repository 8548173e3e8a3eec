// facet/optim/clip.hpp — global gradient-norm clipping: if the L2 norm of all gradients together
// exceeds a limit, every gradient is scaled by the same factor so that the norm equals the limit
// (the direction of the update is kept, only its length is capped).
// Read next: model/sequential.hpp.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/kernels/vector_loops.hpp"
#include "facet/layers/layer.hpp"

namespace facet {

/// The sum of squares of one gradient tensor, in double: 16 partial sums in a fixed order, then
/// those. One running sum is one chain of dependent additions, an addition's latency per element,
/// on one core whatever the threads: about ten times slower.
template <typename T>
double squared_norm(const Tensor<T>& grad) {
    constexpr std::size_t lanes = 16;
    double partial[lanes] = {};
    const T* g = grad.data();
    const std::size_t n = grad.size(), whole = n - n % lanes;
    run_vectorized([&] {
        for (std::size_t i = 0; i < whole; i += lanes)
            for (std::size_t l = 0; l < lanes; ++l)
                partial[l] += static_cast<double>(g[i + l]) * static_cast<double>(g[i + l]);
    });
    for (std::size_t i = whole; i < n; ++i)
        partial[i - whole] += static_cast<double>(g[i]) * static_cast<double>(g[i]);
    double sum = 0;
    for (const double part : partial) sum += part;
    return sum;
}

/// The L2 norm of all gradients of `params` taken as one vector, summed in double. An Error naming
/// the first parameter with a NaN or infinite gradient, since no step can recover from one.
template <typename T>
double gradient_norm(const std::vector<Parameter<T>>& params) {
    double sum = 0;
    for (const Parameter<T>& p : params) {
        const double part = squared_norm(*p.grad);
        check(std::isfinite(part), "gradient of '", p.name, "' contains NaN or infinite values");
        sum += part;
    }
    return std::sqrt(sum);
}

/// Given `norm`, the global norm of the gradients of `params`, scales every gradient by
/// max_norm / norm when norm exceeds max_norm.
template <typename T>
void scale_to_max_norm(const std::vector<Parameter<T>>& params, double norm, double max_norm) {
    if (!(norm > max_norm)) return;
    const T scale = static_cast<T>(max_norm / norm);
    for (const Parameter<T>& p : params)
        for (T& g : *p.grad) g *= scale;
}

/// Scales all gradients by max_norm / norm when their global norm exceeds max_norm (> 0).
/// Returns the norm before clipping, worth logging: a norm that keeps hitting the limit means
/// the learning rate is too high.
template <typename T>
double clip_gradient_norm(const std::vector<Parameter<T>>& params, double max_norm) {
    check(max_norm > 0 && std::isfinite(max_norm), "clip_gradient_norm: limit must be > 0, got ",
          max_norm);
    const double norm = gradient_norm(params);
    scale_to_max_norm(params, norm, max_norm);
    return norm;
}

}  // namespace facet
