// facet/layers/batchnorm.hpp — BatchNorm2d (per channel of NCHW images) and BatchNorm1d (per
// feature of (N, F) vectors): normalise by batch statistics in training, by running statistics
// in evaluation, then scale by gamma and shift by beta. Read next: layers/activations.hpp.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/vector_loops.hpp"
#include "facet/layers/channel_affine.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/registry.hpp"

namespace facet {

namespace detail {
// The per-plane sums of batch norm. Each keeps 32 independent partial sums in T, a pattern the
// compiler turns into vector adds without -ffast-math (one running sum would be a serial chain
// it may not reorder), and adds them to 32 running totals in double that the caller keeps for
// the whole channel: element i of a plane goes to lane i mod 32, the last partial block
// included. Nothing is reduced per plane: reducing 32 lanes to one double (a chain of 32
// dependent additions) and a scalar tail per plane took longer than the sums themselves on
// fer-cnn-s's 12 x 12 planes. 32 lanes rather than 16: compiled for AVX-512 (run_vectorized), 16
// would be a single register and one chain of dependent adds, which made backward 30 % slower
// than with SSE2; 32 gives two chains there and eight with SSE2.
// Three plain functions rather than one with flags: a loop whose body tests a flag is not
// vectorised.
inline constexpr std::size_t bn_lanes = 32;

/// The sum of a channel's lane totals (see above), in a fixed order.
inline double lane_total(const double* lanes) {
    double total = 0;
    for (std::size_t l = 0; l < bn_lanes; ++l) total += lanes[l];
    return total;
}

/// Adds p[0..n) to the lane totals `sum`.
template <typename T>
void add_plane_sum(const T* p, std::size_t n, double* sum) {
    T acc[bn_lanes] = {};
    std::size_t i = 0;
    for (; i + bn_lanes <= n; i += bn_lanes)
        for (std::size_t l = 0; l < bn_lanes; ++l) acc[l] += p[i + l];
    for (std::size_t l = 0; i + l < n; ++l) acc[l] += p[i + l];
    for (std::size_t l = 0; l < bn_lanes; ++l) sum[l] += static_cast<double>(acc[l]);
}

/// Adds (p[i] - mean)^2 over [0, n) to the lane totals `sq`.
template <typename T>
void add_plane_squared_deviation(const T* p, std::size_t n, T mean, double* sq) {
    T acc[bn_lanes] = {};
    std::size_t i = 0;
    for (; i + bn_lanes <= n; i += bn_lanes)
        for (std::size_t l = 0; l < bn_lanes; ++l) {
            const T d = p[i + l] - mean;
            acc[l] += d * d;
        }
    for (std::size_t l = 0; i + l < n; ++l) {
        const T d = p[i + l] - mean;
        acc[l] += d * d;
    }
    for (std::size_t l = 0; l < bn_lanes; ++l) sq[l] += static_cast<double>(acc[l]);
}

/// g where v > 0, else +0: ReLU's backward select as bit operations, which the compiler
/// vectorises where it leaves a `v > 0 ? g : 0` inside an unrolled loop as branches.
template <typename T>
T pass_where_positive(T v, T g) {
    using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    static_assert(sizeof(Bits) == sizeof(T), "float or double");
    const Bits mask = Bits(0) - Bits(v > T(0));  // all ones or all zeros
    return std::bit_cast<T>(static_cast<Bits>(std::bit_cast<Bits>(g) & mask));
}

/// The gradient batch norm's backward works with at element i: dy[i] itself, or, for
/// relu(batchnorm(x)) (Relu, dy being dL/dz), dy[i] where the batch-norm output
/// (x[i] - mean) * scale + shift is positive and 0 elsewhere: the ReLU mask recomputed from x with
/// the forward pass's own expression.
template <bool Relu, typename T>
T incoming_gradient(const T* x, const T* dy, std::size_t i, T mean, T scale, T shift) {
    if constexpr (Relu)
        return pass_where_positive(batch_norm_value<false>(x[i], mean, scale, shift), dy[i]);
    else
        return dy[i];
}

/// Adds g[i] and g[i] * (x[i] - mean) over [0, n), g = incoming_gradient<Relu>, to the lane
/// totals `sum_dy` and `sum_dy_xc`, in one pass over both arrays.
template <bool Relu, typename T>
void add_plane_dy_and_dy_xc(const T* x, const T* dy, std::size_t n, T mean, T scale, T shift,
                            double* sum_dy, double* sum_dy_xc) {
    T a[bn_lanes] = {}, b[bn_lanes] = {};
    std::size_t i = 0;
    for (; i + bn_lanes <= n; i += bn_lanes)
        for (std::size_t l = 0; l < bn_lanes; ++l) {
            const T g = incoming_gradient<Relu>(x, dy, i + l, mean, scale, shift);
            a[l] += g;
            b[l] += g * (x[i + l] - mean);
        }
    for (std::size_t l = 0; i + l < n; ++l) {
        const T g = incoming_gradient<Relu>(x, dy, i + l, mean, scale, shift);
        a[l] += g;
        b[l] += g * (x[i + l] - mean);
    }
    for (std::size_t l = 0; l < bn_lanes; ++l) {
        sum_dy[l] += static_cast<double>(a[l]);
        sum_dy_xc[l] += static_cast<double>(b[l]);
    }
}
}  // namespace detail

/// Batch normalisation over the values of each channel: x is viewed as (N, C, S), S = H*W for
/// images and 1 for feature vectors, and every channel c is normalised over its N*S values.
/// The two concrete layers below only fix the expected input shape.
template <typename T>
class BatchNorm : public Layer<T> {
  public:
    /// `channels` to normalise; eps guards the square root; the running statistics follow
    /// r = (1 - momentum) r + momentum * batch (PyTorch's convention); affine adds gamma, beta.
    BatchNorm(std::string name, std::size_t channels, double eps, double momentum, bool affine)
        : type_name_(std::move(name)),
          channels_(channels),
          eps_(eps),
          momentum_(momentum),
          affine_(affine) {
        check(channels > 0, type_name(), ": channels must be positive");
        check(eps > 0 && std::isfinite(eps), type_name(), ": eps must be positive, got ", eps);
        check(momentum >= 0 && momentum <= 1, type_name(), ": momentum must lie in [0, 1], got ",
              momentum);
        gamma_.resize(Shape{channels});
        gamma_.fill(T(1));
        beta_.resize(Shape{channels});
        gamma_grad_.resize(Shape{channels});
        beta_grad_.resize(Shape{channels});
        running_mean_.resize(Shape{channels});
        running_var_.resize(Shape{channels});
        running_var_.fill(T(1));
    }

    std::string type() const override { return type_name_; }
    std::string describe() const override {
        return detail::concat(type_name_, "(", channels_, ", eps ", eps_, ", momentum ", momentum_,
                              affine_ ? "" : ", no affine", ")");
    }
    Shape output_shape(const Shape& input) const override {
        check_sample_shape(input);
        return input;
    }

    // Per channel c over its M = N*S values:
    //   training: mu = mean(x), var = mean((x - mu)^2) (biased, used to normalise),
    //             running_var follows the unbiased var * M / (M - 1);
    //   eval:     mu, var = the running statistics;
    //   y = gamma * (x - mu) / sqrt(var + eps) + beta.
    void forward(const Tensor<T>& x, Tensor<T>& y) override { forward_impl<false>(x, y); }

    /// forward() and a ReLU after it in one pass: z = max(y, 0). Sequential calls this for a
    /// batch norm directly followed by a ReLU, which saves the ReLU's read and write of the whole
    /// activation (about 5 % of a fer-cnn-s training step); y itself is then never stored.
    void forward_relu(const Tensor<T>& x, Tensor<T>& z) override { forward_impl<true>(x, z); }
    bool fuses_relu() const override { return true; }

    // With xhat = (x - mu) * invstd and g = gamma (1 without affine):
    //   dbeta = sum dy,   dgamma = sum dy * xhat;
    //   training (mu and var depend on every x of the channel, M values):
    //     dx = g * invstd * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M)
    //   eval (running statistics are constants): dx = g * invstd * dy.
    void backward(const Tensor<T>& x, const Tensor<T>& /*y*/, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        backward_impl<false>(x, dy, dx);
    }

    /// backward() of z = relu(batchnorm(x)) from dz = dL/dz: the same formulas with
    /// dy = dz where y > 0 and 0 elsewhere (ReLU's derivative). The mask is recomputed from x
    /// with forward's expression, so neither y nor a mask has to be kept or read.
    void backward_relu(const Tensor<T>& x, const Tensor<T>& dz, Tensor<T>& dx) override {
        backward_impl<true>(x, dz, dx);
    }

    /// The eval-mode map of this layer (running statistics, gamma and beta) with `relu` after
    /// it, for a convolution or dense layer to apply to its output (Sequential::predict does):
    /// the same numbers and expression as forward() in Mode::Eval. Throws in training mode,
    /// where the statistics come from the batch.
    ChannelAffine<T> inference_affine(bool relu) const override {
        check(!this->training(), type_name(),
              "::inference_affine: needs Mode::Eval (training normalises by batch statistics)");
        ChannelAffine<T> a;
        a.relu = relu;
        a.mean.resize(channels_);
        a.scale.resize(channels_);
        a.shift.resize(channels_);
        for (std::size_t c = 0; c < channels_; ++c) {
            a.mean[c] = T(double(running_mean_[c]));
            a.scale[c] = scale_for(c, inverse_std(double(running_var_[c]), eps_));
            a.shift[c] = out_shift(c);
        }
        return a;
    }

    /// In Mode::Eval, (x - running_mean) * scale + shift per channel: inference_affine().
    bool affine_in_eval() const override { return true; }

    std::vector<Parameter<T>> parameters() override {
        if (!affine_) return {};
        return {{"gamma", &gamma_, &gamma_grad_, false}, {"beta", &beta_, &beta_grad_, false}};
    }
    std::vector<std::pair<std::string, Tensor<T>*>> buffers() override {
        return {{"running_mean", &running_mean_}, {"running_var", &running_var_}};
    }
    std::size_t flops(const Shape& input) const override { return 2 * input.size(); }
    LayerConfig config() const override {
        return {
            type_name_,
            {{"channels", channels_}, {"eps", eps_}, {"momentum", momentum_}, {"affine", affine_}}};
    }
    /// The running mean and variance a model file holds for this config (stored even without
    /// affine), 2 * channels values.
    static double stored_values_lower_bound(const LayerConfig& c) {
        return 2 * detail::config_positive(c, "channels");
    }

    std::size_t channels() const { return channels_; }
    bool affine() const { return affine_; }

    /// A batch norm L(channels, eps, momentum, affine) from a config, for the subclasses'
    /// from_config.
    template <typename L>
    static std::unique_ptr<Layer<T>> build(const LayerConfig& c) {
        return std::make_unique<L>(
            detail::config_count(c, "channels", 1), detail::config_real(c, "eps", 1e-5),
            detail::config_real(c, "momentum", 0.1), detail::config_flag(c, "affine", true));
    }
    Tensor<T>& gamma() { return gamma_; }
    Tensor<T>& beta() { return beta_; }
    void visit_statistics_momentum(const std::function<void(double&)>& visit) override {
        visit(momentum_);
        check(momentum_ >= 0 && momentum_ <= 1, type_name(), ": momentum must lie in [0, 1], got ",
              momentum_);
    }
    Tensor<T>& running_mean() { return running_mean_; }
    Tensor<T>& running_var() { return running_var_; }

  protected:
    /// Throws unless `sample` (the per-sample shape) fits this layer.
    virtual void check_sample_shape(const Shape& sample) const = 0;

  private:
    // The output of channel c is (x - mean) * scale + shift, written by forward_impl and, for the
    // ReLU mask, recomputed by backward_impl: both take these three numbers from here, so that
    // they compute the same float expression on the same values.
    T out_scale(std::size_t c) const { return scale_for(c, invstd_[c]); }
    T scale_for(std::size_t c, double invstd) const {
        return T((affine_ ? gamma_[c] : T(1)) * invstd);
    }
    static double inverse_std(double var, double eps) { return 1.0 / std::sqrt(var + eps); }
    T out_shift(std::size_t c) const { return affine_ ? beta_[c] : T(0); }

    template <bool Relu>
    void forward_impl(const Tensor<T>& x, Tensor<T>& y) {
        check(x.rank() >= 1, type_name(), ": empty input shape");
        check_sample_shape(sample_shape(x.shape()));
        const std::size_t batch = x.dim(0), S = spatial(x.shape());
        const std::size_t M = batch * S;
        y.resize(x.shape());
        mean_.resize(channels_);
        invstd_.resize(channels_);
        used_batch_stats_ = this->training();
        if (used_batch_stats_)
            check(M > 1, type_name(),
                  ": training needs more than one value per channel, got input ", x.shape().str());
        if (S == 1) {
            parallel_for(channels_, [&](std::size_t cb, std::size_t ce) {
                run_vectorized([&] { forward_features<Relu>(x, y, cb, ce); });
            });
            return;
        }
        // Every channel is its own: the threads take the next one as they come free.
        parallel_for_dynamic(channels_, 1, [&](std::size_t, std::size_t cb, std::size_t ce) {
            run_vectorized([&] { forward_channels<Relu>(x, y, cb, ce); });
        });
    }

    /// Sets channel c's mean and inverse standard deviation: from the batch (mean mu, biased
    /// variance var of its M values), which also moves the running statistics, or in eval mode
    /// from the running statistics.
    void set_statistics(std::size_t c, double mu, double var, std::size_t M) {
        if (used_batch_stats_) {
            running_mean_[c] = T((1 - momentum_) * running_mean_[c] + momentum_ * mu);
            running_var_[c] =
                T((1 - momentum_) * running_var_[c] + momentum_ * var * double(M) / double(M - 1));
        } else {
            mu = running_mean_[c];
            var = running_var_[c];
        }
        mean_[c] = mu;
        invstd_[c] = inverse_std(var, eps_);
    }

    /// forward_impl's work on channels [cb, ce) (one thread's share).
    template <bool Relu>
    void forward_channels(const Tensor<T>& x, Tensor<T>& y, std::size_t cb, std::size_t ce) {
        const std::size_t batch = x.dim(0), S = spatial(x.shape());
        const std::size_t M = batch * S;
        for (std::size_t c = cb; c < ce; ++c) {
            double mu = 0, var = 0;
            if (used_batch_stats_) {
                double sum[detail::bn_lanes] = {}, sq[detail::bn_lanes] = {};
                for (std::size_t n = 0; n < batch; ++n)
                    detail::add_plane_sum(plane(x, n, c, S), S, sum);
                mu = detail::lane_total(sum) / double(M);
                // Two passes (mean first, then squared deviations) avoid the cancellation
                // of E[x^2] - E[x]^2; the channel (N*S values) is still in L2 for the second.
                for (std::size_t n = 0; n < batch; ++n)
                    detail::add_plane_squared_deviation(plane(x, n, c, S), S, T(mu), sq);
                var = detail::lane_total(sq) / double(M);
            }
            set_statistics(c, mu, var, M);
            const T scale = out_scale(c), shift = out_shift(c), mean = T(mean_[c]);
            for (std::size_t n = 0; n < batch; ++n) {
                const T* xp = plane(x, n, c, S);
                T* yp = y.data() + (n * channels_ + c) * S;
                for (std::size_t s = 0; s < S; ++s)
                    yp[s] = detail::batch_norm_value<Relu>(xp[s], mean, scale, shift);
            }
        }
    }

    /// forward_channels for one value per channel and sample (BatchNorm1d, x is N x F): the
    /// same two passes and the same formulas, but each pass runs along the samples with the
    /// features [cb, ce) side by side, a vector of features at a time. Per feature, the N values
    /// are F apart: the per-channel loop, summing planes of one value each, is about 40 times
    /// slower on 64 x 256.
    template <bool Relu>
    void forward_features(const Tensor<T>& x, Tensor<T>& y, std::size_t cb, std::size_t ce) {
        const std::size_t batch = x.dim(0), F = channels_, width = ce - cb;
        std::vector<T> mean(width), scale(width), shift(width);
        if (used_batch_stats_) {
            std::vector<double> sum(width), sq(width);
            for (std::size_t n = 0; n < batch; ++n) {
                const T* xr = x.data() + n * F + cb;
                for (std::size_t f = 0; f < width; ++f) sum[f] += static_cast<double>(xr[f]);
            }
            for (std::size_t f = 0; f < width; ++f) mean[f] = T(sum[f] / double(batch));
            for (std::size_t n = 0; n < batch; ++n) {
                const T* xr = x.data() + n * F + cb;
                for (std::size_t f = 0; f < width; ++f) {
                    const T d = xr[f] - mean[f];
                    sq[f] += static_cast<double>(d * d);
                }
            }
            for (std::size_t f = 0; f < width; ++f)
                set_statistics(cb + f, sum[f] / double(batch), sq[f] / double(batch), batch);
        } else {
            for (std::size_t f = 0; f < width; ++f) set_statistics(cb + f, 0, 0, batch);
        }
        for (std::size_t f = 0; f < width; ++f) {
            mean[f] = T(mean_[cb + f]);
            scale[f] = out_scale(cb + f);
            shift[f] = out_shift(cb + f);
        }
        for (std::size_t n = 0; n < batch; ++n) {
            const T* xr = x.data() + n * F + cb;
            T* yr = y.data() + n * F + cb;
            for (std::size_t f = 0; f < width; ++f)
                yr[f] = detail::batch_norm_value<Relu>(xr[f], mean[f], scale[f], shift[f]);
        }
    }

    /// backward (Relu false, dy given) or backward_relu (Relu true, dz given, dy derived).
    template <bool Relu>
    void backward_impl(const Tensor<T>& x, const Tensor<T>& dy, Tensor<T>& dx) {
        check(dy.shape() == x.shape(), type_name(), "::backward: dy is ", dy.shape().str(),
              ", expected ", x.shape().str());
        check(mean_.size() == channels_, type_name(), "::backward called before forward");
        dx.resize(x.shape());
        const std::size_t S = spatial(x.shape());
        if (S == 1) {
            parallel_for(channels_, [&](std::size_t cb, std::size_t ce) {
                run_vectorized([&] { backward_features<Relu>(x, dy, dx, cb, ce); });
            });
            return;
        }
        parallel_for_dynamic(channels_, 1, [&](std::size_t, std::size_t cb, std::size_t ce) {
            run_vectorized([&] { backward_channels<Relu>(x, dy, dx, cb, ce); });
        });
    }

    /// dx = a * dy + b * (x - mean) + d for channel c, its M values summing to sum_dy and
    /// sum_dy_xc = sum dy * (x - mean); also sets the channel's gamma and beta gradients.
    struct GradientMap {
        T a, b, d;
    };
    GradientMap gradient_map(std::size_t c, double sum_dy, double sum_dy_xc, double M) {
        const double invstd = invstd_[c], sum_dy_xhat = sum_dy_xc * invstd;
        if (affine_) {
            gamma_grad_[c] = T(sum_dy_xhat);
            beta_grad_[c] = T(sum_dy);
        }
        const double g = affine_ ? double(gamma_[c]) : 1.0;
        GradientMap map{T(g * invstd), T(0), T(0)};
        if (used_batch_stats_) {
            map.b = T(-g * invstd * invstd * sum_dy_xhat / M);
            map.d = T(-g * invstd * sum_dy / M);
        }
        return map;
    }

    /// backward_impl's work on channels [cb, ce) (one thread's share).
    template <bool Relu>
    void backward_channels(const Tensor<T>& x, const Tensor<T>& dy, Tensor<T>& dx, std::size_t cb,
                           std::size_t ce) {
        const std::size_t batch = x.dim(0), S = spatial(x.shape());
        const double M = double(batch * S);
        for (std::size_t c = cb; c < ce; ++c) {
            const double mu = mean_[c];
            const T scale = out_scale(c), shift = out_shift(c);
            double lanes_dy[detail::bn_lanes] = {}, lanes_dy_xc[detail::bn_lanes] = {};
            for (std::size_t n = 0; n < batch; ++n)
                detail::add_plane_dy_and_dy_xc<Relu>(plane(x, n, c, S), plane(dy, n, c, S), S,
                                                     T(mu), scale, shift, lanes_dy, lanes_dy_xc);
            // dx = a * dy + b * (x - mu) + d, the constants folded per channel.
            const auto [a, b, d] =
                gradient_map(c, detail::lane_total(lanes_dy), detail::lane_total(lanes_dy_xc), M);
            const T mean = T(mu);
            for (std::size_t n = 0; n < batch; ++n) {
                const T* xp = plane(x, n, c, S);
                const T* dyp = plane(dy, n, c, S);
                T* dxp = dx.data() + (n * channels_ + c) * S;
                for (std::size_t s = 0; s < S; ++s)
                    dxp[s] = a * detail::incoming_gradient<Relu>(xp, dyp, s, mean, scale, shift) +
                             b * (xp[s] - mean) + d;
            }
        }
    }

    /// backward_channels for one value per channel and sample, along the samples with the
    /// features [cb, ce) side by side (see forward_features).
    template <bool Relu>
    void backward_features(const Tensor<T>& x, const Tensor<T>& dy, Tensor<T>& dx, std::size_t cb,
                           std::size_t ce) {
        const std::size_t batch = x.dim(0), F = channels_, width = ce - cb;
        std::vector<T> mean(width), scale(width), shift(width), a(width), b(width), d(width);
        for (std::size_t f = 0; f < width; ++f) {
            mean[f] = T(mean_[cb + f]);
            scale[f] = out_scale(cb + f);
            shift[f] = out_shift(cb + f);
        }
        std::vector<double> sum_dy(width), sum_dy_xc(width);
        for (std::size_t n = 0; n < batch; ++n) {
            const T* xr = x.data() + n * F + cb;
            const T* dyr = dy.data() + n * F + cb;
            for (std::size_t f = 0; f < width; ++f) {
                const T g =
                    detail::incoming_gradient<Relu>(xr, dyr, f, mean[f], scale[f], shift[f]);
                sum_dy[f] += static_cast<double>(g);
                sum_dy_xc[f] += static_cast<double>(g * (xr[f] - mean[f]));
            }
        }
        for (std::size_t f = 0; f < width; ++f) {
            const GradientMap map = gradient_map(cb + f, sum_dy[f], sum_dy_xc[f], double(batch));
            a[f] = map.a, b[f] = map.b, d[f] = map.d;
        }
        for (std::size_t n = 0; n < batch; ++n) {
            const T* xr = x.data() + n * F + cb;
            const T* dyr = dy.data() + n * F + cb;
            T* dxr = dx.data() + n * F + cb;
            for (std::size_t f = 0; f < width; ++f)
                dxr[f] = a[f] * detail::incoming_gradient<Relu>(xr, dyr, f, mean[f], scale[f],
                                                                shift[f]) +
                         b[f] * (xr[f] - mean[f]) + d[f];
        }
    }

    std::size_t spatial(const Shape& batch) const { return batch.inner_size() / channels_; }
    const T* plane(const Tensor<T>& t, std::size_t n, std::size_t c, std::size_t S) const {
        return t.data() + (n * channels_ + c) * S;
    }

    const std::string& type_name() const { return type_name_; }

    std::string type_name_;
    std::size_t channels_;
    double eps_, momentum_;
    bool affine_;
    Tensor<T> gamma_, beta_, gamma_grad_, beta_grad_, running_mean_, running_var_;
    std::vector<double> mean_, invstd_;  // statistics the last forward normalised with
    bool used_batch_stats_ = false;
};

/// Batch normalisation of NCHW images, one mean and variance per channel over N*H*W values.
template <typename T>
class BatchNorm2d : public BatchNorm<T> {
  public:
    explicit BatchNorm2d(std::size_t channels, double eps = 1e-5, double momentum = 0.1,
                         bool affine = true)
        : BatchNorm<T>("BatchNorm2d", channels, eps, momentum, affine) {}

    /// The layer a config describes (registry.hpp): "channels", optional "eps", "momentum",
    /// "affine".
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& c) {
        return BatchNorm<T>::template build<BatchNorm2d<T>>(c);
    }

  protected:
    void check_sample_shape(const Shape& s) const override {
        check(s.rank() == 3 && s[0] == this->channels(), "BatchNorm2d(", this->channels(),
              "): per-sample input must be (", this->channels(), ", H, W), got ", s.str());
    }
};

/// Batch normalisation of (N, F) feature vectors, one mean and variance per feature.
template <typename T>
class BatchNorm1d : public BatchNorm<T> {
  public:
    explicit BatchNorm1d(std::size_t features, double eps = 1e-5, double momentum = 0.1,
                         bool affine = true)
        : BatchNorm<T>("BatchNorm1d", features, eps, momentum, affine) {}

    /// The layer a config describes (registry.hpp): "channels", optional "eps", "momentum",
    /// "affine".
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& c) {
        return BatchNorm<T>::template build<BatchNorm1d<T>>(c);
    }

  protected:
    void check_sample_shape(const Shape& s) const override {
        check(s.rank() == 1 && s[0] == this->channels(), "BatchNorm1d(", this->channels(),
              "): per-sample input must be (", this->channels(), "), got ", s.str());
    }
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class BatchNorm<float>;
extern template class BatchNorm<double>;
extern template class BatchNorm2d<float>;
extern template class BatchNorm2d<double>;
extern template class BatchNorm1d<float>;
extern template class BatchNorm1d<double>;
#endif

inline const bool batch_norm_2d_registered = register_layer<BatchNorm2d>("BatchNorm2d");
inline const bool batch_norm_1d_registered = register_layer<BatchNorm1d>("BatchNorm1d");

}  // namespace facet
