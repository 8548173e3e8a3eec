// facet/layers/dropout.hpp — Dropout: zeroes each input with probability p in training and scales
// the survivors by 1/(1-p) ("inverted" dropout, so evaluation is the plain identity).
// Read next: layers/flatten.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/vector_loops.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/registry.hpp"

namespace facet {

/// Inverted dropout with its own seeded random stream. The mask of sample n in the k-th training
/// forward since the last reseed is a hash of (seed, k, n) and each element's index, so it is the
/// same whatever the thread count and whichever thread draws it.
template <typename T>
class Dropout : public Layer<T> {
  public:
    /// Drops with probability p in [0, 1); `seed` starts the mask stream.
    explicit Dropout(double p, std::uint64_t seed = 1) : p_(p), seed_(seed) {
        check(p >= 0 && p < 1, "Dropout: p must lie in [0, 1), got ", p);
    }

    std::string type() const override { return "Dropout"; }
    std::string describe() const override { return detail::concat("Dropout(", p_, ")"); }
    Shape output_shape(const Shape& input) const override { return input; }

    void reseed(std::uint64_t seed) override {
        seed_ = seed;
        calls_ = 0;
    }

    // Training: y = x * mask, mask = 1/(1-p) with probability 1-p, else 0. Eval: y = x.
    void forward(const Tensor<T>& x, Tensor<T>& y) override {
        check(x.rank() >= 1, "Dropout: input needs a batch extent");
        y.resize(x.shape());
        masked_ = this->training() && p_ > 0;
        if (!masked_) {
            std::copy(x.begin(), x.end(), y.begin());
            return;
        }
        mask_.resize(x.shape());
        const std::size_t batch = x.dim(0), per_sample = x.shape().inner_size();
        check(per_sample <= 0xffffffffULL, "Dropout: more than 2^32 elements per sample (",
              per_sample, ")");
        const std::uint64_t call = calls_++;
        const T keep_scale = T(1.0 / (1.0 - p_));
        // An element is dropped when its 32-bit uniform falls below p * 2^32 (resolution 2^-32,
        // far finer than any p used); p < 1, so the threshold fits in 32 bits.
        const auto drop_below = static_cast<std::uint32_t>(std::ldexp(p_, 32));
        // Every sample has its own mask (keyed by n): the threads take the next as they come free.
        parallel_for_dynamic(batch, 1, [&](std::size_t, std::size_t b, std::size_t e) {
            for (std::size_t n = b; n < e; ++n) {
                const std::uint64_t key = mix(seed_, call, n);
                const T* in = x.data() + n * per_sample;
                T* m = mask_.data() + n * per_sample;
                T* out = y.data() + n * per_sample;
                run_vectorized([&] {
                    for (std::size_t i = 0; i < per_sample; ++i) {
                        const T keep =
                            T(element_bits(key, static_cast<std::uint32_t>(i)) >= drop_below);
                        m[i] = keep_scale * keep;  // a product, not a branch: it vectorises
                        out[i] = in[i] * m[i];
                    }
                });
            }
        });
    }
    // dy/dx = mask (the same mask as the forward pass), or 1 in Eval.
    void backward(const Tensor<T>& x, const Tensor<T>& /*y*/, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        check(dy.shape() == x.shape(), "Dropout::backward: dy is ", dy.shape().str(), ", expected ",
              x.shape().str());
        dx.resize(x.shape());
        if (!masked_) {
            std::copy(dy.begin(), dy.end(), dx.begin());
            return;
        }
        check(mask_.shape() == x.shape(), "Dropout::backward: x differs from the forward input");
        const std::size_t batch = x.dim(0), per_sample = x.shape().inner_size();
        parallel_for_dynamic(batch, 2, [&](std::size_t, std::size_t b, std::size_t e) {
            const T* g = dy.data() + b * per_sample;
            const T* m = mask_.data() + b * per_sample;
            T* out = dx.data() + b * per_sample;
            run_vectorized([&] {
                for (std::size_t i = 0; i < (e - b) * per_sample; ++i) out[i] = g[i] * m[i];
            });
        });
    }

    std::size_t flops(const Shape& input) const override { return input.size(); }
    /// In Mode::Eval, y = x: predict() skips the layer.
    bool identity_in_eval() const override { return true; }
    LayerConfig config() const override {
        // Seeds above 2^53 do not survive the double; they are rare and only change the masks.
        // A double holds integers exactly only up to 2^53, so the 64-bit seed goes in two halves.
        return {"Dropout", {{"p", p_}, {"seed_hi", seed_ >> 32}, {"seed_lo", seed_ & 0xffffffffu}}};
    }
    /// The layer a config describes (registry.hpp); "p" defaults to 0.5, the seed to 1.
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& c) {
        const double max_half = 4294967295.0;  // the seed is stored as two 32-bit halves
        const std::uint64_t hi = detail::config_count(c, "seed_hi", 0, max_half, 0);
        const std::uint64_t lo = detail::config_count(c, "seed_lo", 0, max_half, 1);
        return std::make_unique<Dropout<T>>(detail::config_real(c, "p", 0.5), (hi << 32) | lo);
    }
    double p() const { return p_; }
    /// The last training mask (0 or 1/(1-p) per element).
    const Tensor<T>& mask() const { return mask_; }

  private:
    /// murmur3's 32-bit finalizer: every input bit flips each output bit with probability ~1/2.
    static std::uint32_t fmix32(std::uint32_t h) {
        h ^= h >> 16;
        h *= 0x85ebca6bu;
        h ^= h >> 13;
        h *= 0xc2b2ae35u;
        return h ^ (h >> 16);
    }
    /// The 32-bit uniform of element i of the sample whose key is `key`: the element's index,
    /// spread by the golden ratio, mixed with the key's two halves through two finalizer rounds.
    /// Counter-based rather than a sequential generator: each draw stands alone, so the mask
    /// loop runs a vector of elements at a time (a xoshiro stream, one draw after the other,
    /// took 2.3 ns per element).
    static std::uint32_t element_bits(std::uint64_t key, std::uint32_t i) {
        const std::uint32_t h = fmix32(i * 0x9e3779b9u + static_cast<std::uint32_t>(key));
        return fmix32(h ^ static_cast<std::uint32_t>(key >> 32));
    }
    /// A well-mixed seed for one (stream, call, sample) triple: splitmix64 steps chained.
    static std::uint64_t mix(std::uint64_t seed, std::uint64_t call, std::uint64_t sample) {
        auto step = [](std::uint64_t z) {
            z += 0x9e3779b97f4a7c15ULL;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
            return z ^ (z >> 31);
        };
        return step(step(step(seed) ^ call) ^ sample);
    }

    double p_;
    std::uint64_t seed_;
    std::uint64_t calls_ = 0;
    bool masked_ = false;
    Tensor<T> mask_;
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class Dropout<float>;
extern template class Dropout<double>;
#endif

inline const bool dropout_registered = register_layer<Dropout>("Dropout");

}  // namespace facet
