// facet/optim/adam.hpp — Adam (Kingma & Ba, 2015) with L2 weight decay added to the gradient, and
// AdamW (Loshchilov & Hutter, 2019) with weight decay decoupled from the gradient; the same update
// rules as PyTorch's torch.optim.Adam and torch.optim.AdamW.
// Read next: optim/schedule.hpp.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

#include "facet/kernels/cpu_features.hpp"
#include "facet/kernels/vector_loops.hpp"
#include "facet/optim/optimizer.hpp"

#if FACET_GEMM_HAVE_X86_KERNELS
#include <immintrin.h>
#endif

namespace facet {

namespace detail {
/// The constants of one Adam step for one parameter tensor (see Adam::step).
template <typename T>
struct AdamStep {
    T l2, beta1, beta2, shrink, step_size, inv_sqrt_correction2, eps;
};

/// Adam's update of elements [begin, end), element by element.
template <typename T>
void adam_update(const AdamStep<T>& s, T* w, const T* grad, T* m, T* v, std::size_t begin,
                 std::size_t end) {
    for (std::size_t k = begin; k < end; ++k) {
        const T g = grad[k] + s.l2 * w[k];
        m[k] = s.beta1 * m[k] + (T(1) - s.beta1) * g;
        v[k] = s.beta2 * v[k] + (T(1) - s.beta2) * g * g;
        w[k] = w[k] * s.shrink -
               s.step_size * m[k] / (std::sqrt(v[k]) * s.inv_sqrt_correction2 + s.eps);
    }
}

#if FACET_GEMM_HAVE_X86_KERNELS
// (The square root is the masked form with every lane selected: GCC 12's plain one warns about its
// own undefined vector.)
// GCC treats the intrinsics' products and sums as plain vector arithmetic and would fuse them
// into FMAs; fp-contract=off keeps each one rounded on its own, as in the scalar loop. (Clang
// contracts only within one expression, which an intrinsic's body is not.)
#if defined(__clang__)
#define FACET_ADAM_AVX512_ATTRIBUTES __attribute__((target("avx512f")))
#else
#define FACET_ADAM_AVX512_ATTRIBUTES __attribute__((target("avx512f"), optimize("fp-contract=off")))
#endif
/// The same in float, 16 elements at a time. The compiler leaves adam_update's loop scalar
/// (std::sqrt keeps a branch for errno), where the scalar square root and division then set the
/// pace, about 4x this loop's time. Each operation here is the scalar one, in the same order,
/// correctly rounded and not fused, so the results are the same bits.
FACET_ADAM_AVX512_ATTRIBUTES inline void adam_update_avx512(const AdamStep<float>& s, float* w,
                                                            const float* grad, float* m, float* v,
                                                            std::size_t begin, std::size_t end) {
    const __m512 l2 = _mm512_set1_ps(s.l2), beta1 = _mm512_set1_ps(s.beta1),
                 rest1 = _mm512_set1_ps(1.0f - s.beta1), beta2 = _mm512_set1_ps(s.beta2),
                 rest2 = _mm512_set1_ps(1.0f - s.beta2), shrink = _mm512_set1_ps(s.shrink),
                 step = _mm512_set1_ps(s.step_size),
                 correction = _mm512_set1_ps(s.inv_sqrt_correction2), eps = _mm512_set1_ps(s.eps);
    for (std::size_t k = begin; k < end; k += 16) {
        const auto mask =
            end - k >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (end - k)) - 1);
        const __m512 wk = _mm512_maskz_loadu_ps(mask, w + k);
        const __m512 g =
            _mm512_add_ps(_mm512_maskz_loadu_ps(mask, grad + k), _mm512_mul_ps(l2, wk));
        const __m512 mk = _mm512_add_ps(_mm512_mul_ps(beta1, _mm512_maskz_loadu_ps(mask, m + k)),
                                        _mm512_mul_ps(rest1, g));
        const __m512 vk = _mm512_add_ps(_mm512_mul_ps(beta2, _mm512_maskz_loadu_ps(mask, v + k)),
                                        _mm512_mul_ps(_mm512_mul_ps(rest2, g), g));
        const __m512 denominator =
            _mm512_add_ps(_mm512_mul_ps(_mm512_mask_sqrt_ps(vk, 0xFFFF, vk), correction), eps);
        const __m512 wn = _mm512_sub_ps(_mm512_mul_ps(wk, shrink),
                                        _mm512_div_ps(_mm512_mul_ps(step, mk), denominator));
        _mm512_mask_storeu_ps(m + k, mask, mk);
        _mm512_mask_storeu_ps(v + k, mask, vk);
        _mm512_mask_storeu_ps(w + k, mask, wn);
    }
}
#undef FACET_ADAM_AVX512_ATTRIBUTES
#endif
}  // namespace detail

/// Hyper-parameters of Adam and AdamW.
struct AdamOptions {
    double learning_rate = 1e-3;
    double beta1 = 0.9;         ///< decay of the first moment (mean of gradients)
    double beta2 = 0.999;       ///< decay of the second moment (mean of squared gradients)
    double epsilon = 1e-8;      ///< keeps the step finite where the second moment is ~0
    double weight_decay = 0.0;  ///< applied to parameters with decay == true only
};

/// Adam with L2 weight decay. At step t (from 1), for every parameter w with gradient g:
///   g <- g + weight_decay * w        (if the parameter decays; AdamW does not do this)
///   m <- beta1 * m + (1 - beta1) * g
///   v <- beta2 * v + (1 - beta2) * g^2
///   w <- w - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + epsilon)
/// The two (1 - beta^t) factors undo the bias of m and v towards their zero start.
template <typename T>
class Adam : public Optimizer<T> {
  public:
    /// Binds to `params`; an Error when an option is out of range.
    Adam(std::vector<Parameter<T>> params, const AdamOptions& options = {})
        : Optimizer<T>(std::move(params), options.learning_rate), options_(options) {
        validate(options_);
        first_moment_ = this->zeros_like_parameters();
        second_moment_ = this->zeros_like_parameters();
    }

    std::string type() const override { return "Adam"; }
    const AdamOptions& options() const { return options_; }

    void step() override {
        this->check_gradients();
        ++this->steps_;
        const double t = static_cast<double>(this->steps_);
        const T step_size =
            static_cast<T>(this->learning_rate_ / (1.0 - std::pow(options_.beta1, t)));
        const T inv_sqrt_correction2 =
            static_cast<T>(1.0 / std::sqrt(1.0 - std::pow(options_.beta2, t)));
        const T beta1 = static_cast<T>(options_.beta1), beta2 = static_cast<T>(options_.beta2);
        const T eps = static_cast<T>(options_.epsilon);
        const bool decoupled = decoupled_decay();
        for (std::size_t i = 0; i < this->params_.size(); ++i) {
            const Parameter<T>& p = this->params_[i];
            T* w = p.value->data();
            const T* grad = p.grad->data();
            T* m = first_moment_[i].data();
            T* v = second_moment_[i].data();
            const T decay = p.decay ? static_cast<T>(options_.weight_decay) : T(0);
            // AdamW shrinks the weight directly, by lr * weight_decay, before the Adam step.
            const T shrink = decoupled ? T(1) - static_cast<T>(this->learning_rate_) * decay : T(1);
            const T l2 = decoupled ? T(0) : decay;
            const detail::AdamStep<T> constants{
                l2, beta1, beta2, shrink, step_size, inv_sqrt_correction2, eps};
            this->for_elements(p.value->size(), [&](std::size_t begin, std::size_t end) {
#if FACET_GEMM_HAVE_X86_KERNELS
                if constexpr (std::is_same_v<T, float>)
                    if (avx512_loops_active())
                        return detail::adam_update_avx512(constants, w, grad, m, v, begin, end);
#endif
                detail::adam_update(constants, w, grad, m, v, begin, end);
            });
        }
    }

    OptimizerState<T> state() const override {
        OptimizerState<T> s;
        s.type = type();
        s.scalars = {{"learning_rate", this->learning_rate_},
                     {"beta1", options_.beta1},
                     {"beta2", options_.beta2},
                     {"epsilon", options_.epsilon},
                     {"weight_decay", options_.weight_decay},
                     {"steps", static_cast<double>(this->steps_)}};
        for (std::size_t i = 0; i < this->params_.size(); ++i) {
            s.tensors.emplace_back(this->params_[i].name + ".m", first_moment_[i]);
            s.tensors.emplace_back(this->params_[i].name + ".v", second_moment_[i]);
        }
        return s;
    }

    void load_state(const OptimizerState<T>& s) override {
        this->check_state_type(s);
        AdamOptions restored;
        restored.learning_rate = s.scalar("learning_rate");
        restored.beta1 = s.scalar("beta1");
        restored.beta2 = s.scalar("beta2");
        restored.epsilon = s.scalar("epsilon");
        restored.weight_decay = s.scalar("weight_decay");
        validate(restored);
        const double steps = s.scalar("steps");
        check(steps >= 0 && steps == std::floor(steps), type(), " state: bad step count ", steps);
        std::vector<Tensor<T>> m, v;
        for (const Parameter<T>& p : this->params_) {
            m.push_back(s.tensor(p.name + ".m", p.value->shape()));
            v.push_back(s.tensor(p.name + ".v", p.value->shape()));
        }
        // Everything is validated: only now change this optimiser.
        this->set_learning_rate(restored.learning_rate);
        options_ = restored;
        first_moment_ = std::move(m);
        second_moment_ = std::move(v);
        this->steps_ = static_cast<std::size_t>(steps);
    }

  protected:
    /// True for AdamW: weight decay shrinks the weights instead of entering the moments.
    virtual bool decoupled_decay() const {
        return false;
    }

  private:
    void validate(const AdamOptions& o) const {
        check(o.learning_rate >= 0, type(), ": learning rate must be >= 0, got ", o.learning_rate);
        check(o.beta1 >= 0 && o.beta1 < 1, type(), ": beta1 must be in [0, 1), got ", o.beta1);
        check(o.beta2 >= 0 && o.beta2 < 1, type(), ": beta2 must be in [0, 1), got ", o.beta2);
        check(o.epsilon > 0, type(), ": epsilon must be > 0, got ", o.epsilon);
        check(o.weight_decay >= 0, type(), ": weight decay must be >= 0, got ", o.weight_decay);
    }

    AdamOptions options_;
    std::vector<Tensor<T>> first_moment_, second_moment_;
};

/// AdamW: Adam whose weight decay multiplies each decaying weight by (1 - lr * weight_decay) before
/// the Adam step, instead of adding weight_decay * w to the gradient. Decay then no longer gets
/// divided by sqrt(v), so it acts the same on every weight.
template <typename T>
class AdamW : public Adam<T> {
  public:
    AdamW(std::vector<Parameter<T>> params, const AdamOptions& options = {})
        : Adam<T>(std::move(params), options) {}
    std::string type() const override { return "AdamW"; }

  protected:
    bool decoupled_decay() const override { return true; }
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class Adam<float>;
extern template class Adam<double>;
extern template class AdamW<float>;
extern template class AdamW<double>;
#endif

}  // namespace facet
