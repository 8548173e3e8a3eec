// facet/layers/init.hpp — weight initialisers: He/Kaiming and Glorot/Xavier, normal and uniform,
// drawn from a seeded facet::Rng so that a seed reproduces a model exactly.
// Read next: layers/dense.hpp (the simplest layer that uses them).
#pragma once

#include <cmath>
#include <cstddef>
#include <string>

#include "facet/core/error.hpp"
#include "facet/core/random.hpp"
#include "facet/core/tensor.hpp"

namespace facet {

/// The initialisation schemes facet offers.
enum class Init { HeNormal, HeUniform, GlorotNormal, GlorotUniform };

/// Fan-in and fan-out of a weight tensor stored (out, in) for dense layers or
/// (out, in, kh, kw) for convolutions: each output sums fan_in inputs.
struct Fans {
    std::size_t fan_in = 0, fan_out = 0;
};

/// The fans of a weight tensor of rank 2 (dense) or 4 (convolution).
inline Fans compute_fans(const Shape& weight) {
    check(weight.rank() == 2 || weight.rank() == 4, "compute_fans: weight shape ", weight.str(),
          " is neither (out, in) nor (out, in, kh, kw)");
    const std::size_t receptive = weight.rank() == 4 ? weight[2] * weight[3] : 1;
    return {weight[1] * receptive, weight[0] * receptive};
}

/// Fills `w` by the scheme `init`:
///  He normal      N(0, 2 / fan_in)              (keeps the variance of ReLU activations)
///  He uniform     U(-b, b), b = sqrt(6 / fan_in) (the same variance)
///  Glorot normal  N(0, 2 / (fan_in + fan_out))   (balances forward and backward variance)
///  Glorot uniform U(-b, b), b = sqrt(6 / (fan_in + fan_out))
template <typename T>
void initialize(Tensor<T>& w, Init init, Rng& rng) {
    const Fans f = compute_fans(w.shape());
    check(f.fan_in > 0 && f.fan_out > 0, "initialize: weight shape ", w.shape().str(), " is empty");
    const double he = 2.0 / static_cast<double>(f.fan_in);
    const double glorot = 2.0 / static_cast<double>(f.fan_in + f.fan_out);
    switch (init) {
        case Init::HeNormal:
            w.fill_normal(rng, 0.0, std::sqrt(he));
            break;
        // A uniform U(-b, b) has variance b^2 / 3, hence b = sqrt(3 * variance).
        case Init::HeUniform:
            w.fill_uniform(rng, -std::sqrt(3 * he), std::sqrt(3 * he));
            break;
        case Init::GlorotNormal:
            w.fill_normal(rng, 0.0, std::sqrt(glorot));
            break;
        case Init::GlorotUniform:
            w.fill_uniform(rng, -std::sqrt(3 * glorot), std::sqrt(3 * glorot));
            break;
    }
}

/// He/Kaiming normal initialisation (fan_in mode), the default of Conv2d and Dense.
template <typename T>
void he_normal(Tensor<T>& w, Rng& rng) {
    initialize(w, Init::HeNormal, rng);
}
/// He/Kaiming uniform initialisation (fan_in mode).
template <typename T>
void he_uniform(Tensor<T>& w, Rng& rng) {
    initialize(w, Init::HeUniform, rng);
}
/// Glorot/Xavier normal initialisation.
template <typename T>
void glorot_normal(Tensor<T>& w, Rng& rng) {
    initialize(w, Init::GlorotNormal, rng);
}
/// Glorot/Xavier uniform initialisation.
template <typename T>
void glorot_uniform(Tensor<T>& w, Rng& rng) {
    initialize(w, Init::GlorotUniform, rng);
}

}  // namespace facet
