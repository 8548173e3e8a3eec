// facet/train/mixup.hpp — Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019): a callback that
// trains on blends of two samples with a target blended in the same proportion. Before each step
// it draws lam ~ Beta(alpha, alpha) and pairs every sample n of the batch with sample perm(n):
//
//   mixup:   x_n <- lam x_n + (1 - lam) x_perm(n)
//   cutmix:  a box of x_perm(n), about (1 - lam) of the picture's area, pasted into x_n;
//            lam becomes the share of x_n's own pixels left
//
// and the loss's target becomes lam q(y_n) + (1 - lam) q(y_perm(n)), q the label-smoothed one-hot
// row: the loss is linear in its target, so this is lam times the loss against y_n plus
// (1 - lam) times the loss against y_perm(n). The second row is handed to the loss as a teacher
// with share 1 - lam (SoftmaxCrossEntropy::set_teacher), so the gradient needs nothing new.
//
//     trainer.add<Mixup>(MixupOptions{MixupKind::CutMix, 1.0}, classes, seed);
//
// The draws of step s come from an Rng seeded by (seed, s), so a resumed run draws the same.
// Read next: train/distillation.hpp (the other user of the loss's teacher rows).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/random.hpp"
#include "facet/train/callback.hpp"
#include "facet/train/trainer.hpp"

namespace facet {

enum class MixupKind { Mixup, CutMix };

struct MixupOptions {
    MixupKind kind = MixupKind::Mixup;
    double alpha = 0.2;        ///< lam ~ Beta(alpha, alpha); small alpha: lam mostly near 0 or 1
    double probability = 1.0;  ///< the share of batches blended; the others train as they are

    void validate() const {
        check(std::isfinite(alpha) && alpha > 0 && alpha <= 100, "Mixup: alpha ", alpha,
              " outside (0, 100]");
        check(probability >= 0 && probability <= 1, "Mixup: probability ", probability,
              " outside [0, 1]");
    }
};

/// A Gamma(shape, 1) draw (Marsaglia and Tsang 2000; shape < 1 through Gamma(shape + 1)
/// U^(1/shape)).
inline double gamma_draw(double shape, Rng& rng) {
    if (shape < 1) {
        const double u = std::max(rng.uniform(), 1e-300);
        return gamma_draw(shape + 1, rng) * std::pow(u, 1 / shape);
    }
    const double d = shape - 1.0 / 3.0, c = 1 / std::sqrt(9 * d);
    for (;;) {
        double x, v;
        do {
            x = rng.normal();
            v = 1 + c * x;
        } while (v <= 0);
        v = v * v * v;
        const double u = rng.uniform();
        if (u < 1 - 0.0331 * x * x * x * x) return d * v;
        if (std::log(std::max(u, 1e-300)) < 0.5 * x * x + d * (1 - v + std::log(v))) return d * v;
    }
}

/// A Beta(a, b) draw: X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b).
inline double beta_draw(double a, double b, Rng& rng) {
    const double x = gamma_draw(a, rng), y = gamma_draw(b, rng);
    return x + y > 0 ? x / (x + y) : 0.5;
}

/// What one batch's blend was (for tests and logs).
struct MixupDraw {
    bool applied = false;
    double lam = 1;  ///< the share of each sample's own target (after CutMix's box, its pixels)
    std::vector<std::size_t> partner;  ///< sample n is blended with sample partner[n]
    std::size_t box_x = 0, box_y = 0, box_w = 0, box_h = 0;  ///< CutMix's box, in pixels
};

class Mixup : public Callback {
  public:
    /// `classes`: the width of the model's output (the loss's K).
    Mixup(MixupOptions options, std::size_t classes, std::uint64_t seed)
        : options_(options), classes_(classes), seed_(seed) {
        options_.validate();
        check(classes_ >= 2, "Mixup: ", classes_, " classes; blending needs at least 2");
    }

    void on_batch_begin(Trainer& trainer, Batch& batch) override {
        const std::size_t n = batch.size();
        Rng rng(detail::mix_seed(seed_, trainer.state().step, 0x6d6978));
        last_ = MixupDraw{};
        if (n < 2 || rng.uniform() >= options_.probability) {
            trainer.loss().clear_teacher();
            return;
        }
        const Tensor<float>& images = batch.images;
        check(images.rank() == 4 && images.dim(0) == n, "Mixup: images ", images.shape().str(),
              " for ", n, " labels");
        MixupDraw& d = last_;
        d.applied = true;
        d.lam = beta_draw(options_.alpha, options_.alpha, rng);
        d.partner.resize(n);
        std::iota(d.partner.begin(), d.partner.end(), std::size_t{0});
        for (std::size_t i = n - 1; i > 0; --i)  // Fisher-Yates
            std::swap(d.partner[i], d.partner[rng.below(i + 1)]);

        const std::size_t channels = images.dim(1), h = images.dim(2), w = images.dim(3);
        const std::size_t per_sample = channels * h * w;
        const Tensor<float> original = images;  // partners are read from the unblended batch
        float* x = batch.images.data();
        if (options_.kind == MixupKind::Mixup) {
            const auto a = static_cast<float>(d.lam), b = static_cast<float>(1 - d.lam);
            for (std::size_t s = 0; s < n; ++s) {
                const float* own = original.data() + s * per_sample;
                const float* other = original.data() + d.partner[s] * per_sample;
                for (std::size_t i = 0; i < per_sample; ++i)
                    x[s * per_sample + i] = a * own[i] + b * other[i];
            }
        } else {
            // A box of sides sqrt(1 - lam) times the picture's, centred uniformly, clipped.
            const double cut = std::sqrt(1 - d.lam);
            const double cx = rng.uniform() * static_cast<double>(w),
                         cy = rng.uniform() * static_cast<double>(h);
            const double half_w = 0.5 * cut * static_cast<double>(w),
                         half_h = 0.5 * cut * static_cast<double>(h);
            const auto clip = [](double v, std::size_t hi) {
                return static_cast<std::size_t>(std::clamp(std::round(v), 0.0, double(hi)));
            };
            const std::size_t x0 = clip(cx - half_w, w), x1 = clip(cx + half_w, w);
            const std::size_t y0 = clip(cy - half_h, h), y1 = clip(cy + half_h, h);
            d.box_x = x0, d.box_y = y0, d.box_w = x1 - x0, d.box_h = y1 - y0;
            for (std::size_t s = 0; s < n; ++s)
                for (std::size_t c = 0; c < channels; ++c)
                    for (std::size_t r = y0; r < y1; ++r) {
                        const std::size_t row = s * per_sample + (c * h + r) * w;
                        const std::size_t partner_row = d.partner[s] * per_sample + (c * h + r) * w;
                        std::copy(original.data() + partner_row + x0,
                                  original.data() + partner_row + x1, x + row + x0);
                    }
            d.lam = 1 - static_cast<double>(d.box_w * d.box_h) / static_cast<double>(h * w);
        }

        // The partner's label-smoothed one-hot rows, as the loss's teacher with share 1 - lam.
        const std::size_t classes = classes_;
        const double eps = trainer.loss().label_smoothing();
        Tensor<float> partner_rows(Shape{n, classes});
        for (std::size_t s = 0; s < n; ++s) {
            const int label = batch.labels[d.partner[s]];
            check(label >= 0 && static_cast<std::size_t>(label) < classes, "Mixup: label ", label,
                  " outside [0, ", classes, ")");
            for (std::size_t k = 0; k < classes; ++k)
                partner_rows.data()[s * classes + k] = static_cast<float>(
                    eps / double(classes) + (k == static_cast<std::size_t>(label) ? 1 - eps : 0.0));
        }
        trainer.loss().set_teacher(std::move(partner_rows), std::vector<double>(n, 1 - d.lam));
        ++blended_batches_;
    }
    void on_train_end(Trainer& trainer, const TrainSummary&) override {
        trainer.loss().clear_teacher();
    }

    /// The last batch's draw.
    const MixupDraw& last_draw() const { return last_; }
    std::size_t blended_batches() const { return blended_batches_; }

  private:
    MixupOptions options_;
    std::size_t classes_;
    std::uint64_t seed_;
    MixupDraw last_;
    std::size_t blended_batches_ = 0;
};

}  // namespace facet
