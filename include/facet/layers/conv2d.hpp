// facet/layers/conv2d.hpp — Conv2d: the 2-D convolution layer, computed as im2col + GEMM per
// image (3x3 stride-1 layers by Winograd's F(4x4, 3x3) and F(2x2, 3x3)), images split over
// threads. Read layers/dense.hpp first (the same product without patches), kernels/im2col.hpp
// for the unrolling, kernels/winograd.hpp for the tiles. Read next: layers/batchnorm.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/core/random.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/gemm.hpp"
#include "facet/kernels/im2col.hpp"
#include "facet/kernels/prefetch.hpp"
#include "facet/kernels/vector_loops.hpp"
#include "facet/kernels/winograd.hpp"
#include "facet/layers/channel_affine.hpp"
#include "facet/layers/init.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/registry.hpp"

namespace facet {

/// Everything that defines a Conv2d, for kernels that are not square or strides that differ
/// between the axes. Conv2d's short constructor covers the square case.
struct Conv2dOptions {
    std::size_t in_channels = 1, out_channels = 1;
    std::size_t kernel_h = 3, kernel_w = 3;
    std::size_t stride_h = 1, stride_w = 1;
    std::size_t pad_h = 0, pad_w = 0;
    bool bias = true;
    std::uint64_t seed = 1;  ///< seeds the He-normal initialisation of the weights
};

/// A 2-D convolution (cross-correlation, as in every framework). x is (N, C, H, W), weight is
/// (OC, C, kh, kw), bias is (OC), y is (N, OC, OH, OW).
///
/// Each image is unrolled by im2col into a (C*kh*kw) x (OH*OW) matrix `col`; then
/// y_n = W * col_n is one GEMM that writes straight into NCHW. The batch is split into one
/// contiguous chunk of images per thread, each with its own workspace, so a thread's GEMMs run
/// single-threaded on cache-sized operands and no transpose of the output is needed.
///
/// A 3x3 kernel with stride 1 (and at least 16 input channels) takes Winograd's F(4x4, 3x3) for
/// the forward pass instead (4x fewer multiplications; F(2x2, 3x3), 2.25x, after
/// set_winograd_tile(2)); with at least 16 output channels and padding <= 2, the same for the
/// input gradient; with at least 32 input and output channels, the same for the weight
/// gradient. The results equal im2col's up to rounding (docs/internals/convolution.md derives
/// all of them). set_winograd(false) turns Winograd off.
template <typename T>
class Conv2d : public Layer<T> {
  public:
    /// Winograd needs this many input channels (output channels for the input gradient). Below
    /// it the 16 products are too thin (K = C) and the transforms dominate: measured per image
    /// on 48 x 48 with 32 outputs, 1 thread, Winograd against im2col took 0.097 / 0.064 ms for
    /// C = 8, 0.134 / 0.129 ms for C = 16 and 0.176 / 0.195 ms for C = 24.
    static constexpr std::size_t winograd_min_channels = 16;
    /// The weight gradient by Winograd needs this many input and output channels: its 16 (or
    /// 36) products are OC x C x tiles (gemm's dot-product path for C, OC <= 64). Measured per
    /// image, 1 thread, F(2x2, 3x3) against im2col: 0.173 / 0.268 ms for 32->32 on 48 x 48,
    /// 0.108 / 0.119 for 32->64 and 0.176 / 0.236 for 64->64 on 24 x 24, 0.078 / 0.114 for
    /// 64->128 and 0.128 / 0.228 for 128->128 on 12 x 12; F(4x4, 3x3) is 25-30 % faster still.
    static constexpr std::size_t winograd_weights_min_channels = 32;

    /// A square convolution: `kernel` x `kernel`, the same stride and zero padding on both axes.
    Conv2d(std::size_t in_channels, std::size_t out_channels, std::size_t kernel,
           std::size_t stride = 1, std::size_t pad = 0, bool bias = true, std::uint64_t seed = 1)
        : Conv2d(Conv2dOptions{in_channels, out_channels, kernel, kernel, stride, stride, pad, pad,
                               bias, seed}) {}

    /// Any rectangular convolution.
    explicit Conv2d(const Conv2dOptions& o) : opt_(o) {
        check(o.in_channels > 0 && o.out_channels > 0, "Conv2d: channels must be positive, got ",
              o.in_channels, "->", o.out_channels);
        check(o.kernel_h > 0 && o.kernel_w > 0, "Conv2d: kernel must be positive, got ", o.kernel_h,
              "x", o.kernel_w);
        check(o.stride_h > 0 && o.stride_w > 0, "Conv2d: stride must be positive, got ", o.stride_h,
              "x", o.stride_w);
        const Shape wshape{o.out_channels, o.in_channels, o.kernel_h, o.kernel_w};
        weight_.resize(wshape);
        weight_grad_.resize(wshape);
        if (o.bias) {
            bias_.resize(Shape{o.out_channels});
            bias_grad_.resize(Shape{o.out_channels});
        }
        Rng rng(o.seed);
        reset_parameters(rng);
    }

    /// Re-draws the weights (He normal, fan_in = C*kh*kw) from `rng` and zeroes the bias.
    void reset_parameters(Rng& rng) {
        he_normal(weight_, rng);
        bias_.zero();
    }

    std::string type() const override { return "Conv2d"; }
    std::string describe() const override {
        return detail::concat(
            "Conv2d(", opt_.in_channels, "->", opt_.out_channels, ", ", opt_.kernel_h, "x",
            opt_.kernel_w, ", stride ", opt_.stride_h,
            opt_.stride_h == opt_.stride_w ? "" : detail::concat("x", opt_.stride_w), ", pad ",
            opt_.pad_h, opt_.pad_h == opt_.pad_w ? "" : detail::concat("x", opt_.pad_w),
            opt_.bias ? "" : ", no bias", ")");
    }
    Shape output_shape(const Shape& input) const override {
        const ConvGeometry g = geometry(input);
        return Shape{opt_.out_channels, g.out_h(), g.out_w()};
    }

    // y[n] = W * im2col(x[n]) + b: (OC x K) * (K x P), K = C*kh*kw, P = OH*OW.
    void forward(const Tensor<T>& x, Tensor<T>& y) override { forward_affine(x, y, nullptr); }
    bool applies_affine_epilogue() const override { return true; }

    /// forward(), then, when `affine` is given, that map on each output channel of each image
    /// right after the image's GEMM, while its output is still in cache: an eval-mode batch norm
    /// (and ReLU) after this layer for one pass over cached data instead of two over memory.
    /// Sequential::predict uses it.
    void forward_affine(const Tensor<T>& x, Tensor<T>& y, const ChannelAffine<T>* affine) override {
        check(!affine || affine->channels() == opt_.out_channels,
              "Conv2d::forward_affine: ", affine ? affine->channels() : 0,
              " channels in the map, the layer has ", opt_.out_channels);
        check(x.rank() == 4, "Conv2d: input must be (N, C, H, W), got ", x.shape().str());
        const ConvGeometry g = geometry(sample_shape(x.shape()));
        const std::size_t batch = x.dim(0), OC = opt_.out_channels;
        const std::size_t K = g.col_rows(), P = g.col_cols();
        y.resize(Shape{batch, OC, g.out_h(), g.out_w()});
        const std::size_t threads = in_parallel() ? 1 : std::size_t(num_threads());
        const bool winograd = use_winograd(g);
        const std::size_t tile = winograd_tile(), tile_rows = winograd_tiling(g, tile).tiles_h;
        const std::size_t rows = winograd ? tile_rows : g.out_h();
        if (batch < threads && rows > 1 &&
            static_cast<double>(OC) * static_cast<double>(P) * static_cast<double>(K) >=
                detail::gemm_parallel_threshold) {
            forward_split_rows(x, y, affine, g, std::min(threads, rows), winograd, tile);
            return;
        }
        // Every image's output is its own: the threads take the next image (or group of small
        // images) as they come free, with the same bits as any other split, and bring the
        // next one's input into L2 while they compute this one.
        const auto prefetch_images = [&](std::size_t n0, std::size_t n1) {
            prefetch_to_l2(x.data() + n0 * g.image_size(), (n1 - n0) * g.image_size() * sizeof(T));
        };
        if (winograd) {  // small images a few at a time (winograd_group_size)
            const std::size_t group = winograd_group_size(g, tile);
            prepare_winograd(g, group * tile_rows, chunk_count(batch), tile);
            parallel_for_dynamic_ahead(
                batch, group,
                [&](std::size_t worker, std::size_t n0, std::size_t n1) {
                    winograd_images(x, y, affine, g, n0, n1, worker, tile);
                },
                prefetch_images);
            return;
        }
        packed_weight_.pack(Trans::No, OC, K, weight_.data(), K);  // once for the whole batch
        prepare_workspace(batch, K, P, false);
        parallel_for_dynamic_ahead(
            batch, 1,
            [&](std::size_t worker, std::size_t n, std::size_t) {
                const T* col = unroll(x.data() + n * g.image_size(), g, col_ws_[worker].data());
                T* yn = y.data() + n * OC * P;
                packed_weight_.multiply(Trans::No, P, T(1), col, P, T(0), yn, P);
                finish_output(yn, P, P, affine);
            },
            prefetch_images);
    }

    // Per image, with col = im2col(x[n]):
    //   dW += dy[n] * col^T            (dL/dW_ok = sum_p dy_op * col_kp)
    //   db += sum_p dy[n]              (the bias is added to every output pixel)
    //   dx[n] = col2im(W^T * dy[n])    (the adjoint of the unrolling routes each patch entry home)
    // Each chunk sums its images' dW and db into its own buffer; the chunks are then added in a
    // fixed order, so a given thread count always gives the same bits.
    void backward(const Tensor<T>& x, const Tensor<T>& /*y*/, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        check(x.rank() == 4, "Conv2d::backward: input must be (N, C, H, W), got ", x.shape().str());
        const ConvGeometry g = geometry(sample_shape(x.shape()));
        const std::size_t batch = x.dim(0), OC = opt_.out_channels;
        const std::size_t K = g.col_rows(), P = g.col_cols();
        check(dy.shape() == Shape{batch, OC, g.out_h(), g.out_w()}, "Conv2d::backward: dy is ",
              dy.shape().str(), ", expected ", Shape{batch, OC, g.out_h(), g.out_w()}.str());
        dx.resize(x.shape());
        const std::size_t chunks = prepare_workspace(batch, K, P, true);
        const bool input_gradient = this->input_gradient();
        ConvGeometry adjoint;
        const bool winograd = input_gradient && winograd_adjoint(g, adjoint);
        const bool winograd_weights = use_winograd_for_weights(g);
        // Small images go a few at a time through the Winograd products (winograd_group_size),
        // the weight gradient's and the input gradient's each in steps of their own inside the
        // same groups (the geometries differ when the padding is not 1).
        const std::size_t tile = winograd_tile(), positions = (tile + 2) * (tile + 2);
        const std::size_t group_dx = winograd ? winograd_group_size(adjoint, tile) : 1;
        const std::size_t group_dw = winograd_weights ? winograd_group_size(g, tile) : 1;
        std::size_t workspace = 0;
        if (winograd) {
            winograd_backward_.update(weight_.data(), OC, opt_.in_channels, true, tile);
            workspace = winograd_workspace_size<T>(
                adjoint, opt_.in_channels, group_dx * winograd_tiling(adjoint, tile).tiles_h, tile);
        } else if (input_gradient) {
            packed_weight_t_.pack(Trans::Yes, K, OC, weight_.data(), K);
        }
        if (winograd_weights) {  // each chunk sums dU (16 or 36 x OC x C) instead of dW
            workspace =
                std::max(workspace, winograd_workspace_size<T>(
                                        g, OC, group_dw * winograd_tiling(g, tile).tiles_h, tile));
            for (std::size_t c = 0; c < chunks; ++c)
                resize_worker_buffer(dw_part_[c], {positions, OC, opt_.in_channels});
        }
        if (workspace > 0) size_winograd_workspaces(chunks, workspace);
        const std::size_t dx_tile_rows = winograd ? winograd_tiling(adjoint, tile).tiles_h : 0;
        // The weight gradient sums fixed chunks of images; dx goes to whichever thread is free.
        parallel_for_sharing(
            batch, chunks, std::max(group_dx, group_dw),
            [&](std::size_t chunk, std::size_t n0, std::size_t n1) {  // dW and db, summed
                const bool first = n0 == batch * chunk / chunks;
                // The chunk's next group, into L2 while this one computes (as in forward).
                const std::size_t next_end =
                    std::min(batch * (chunk + 1) / chunks, n1 + std::max(group_dx, group_dw));
                if (n1 < next_end) {
                    prefetch_to_l2(x.data() + n1 * g.image_size(),
                                   (next_end - n1) * g.image_size() * sizeof(T));
                    prefetch_to_l2(dy.data() + n1 * OC * P, (next_end - n1) * OC * P * sizeof(T));
                }
                if (winograd_weights)
                    for (std::size_t i = n0; i < n1; i += group_dw)
                        winograd_accumulate_weight_gradient(
                            x.data() + i * g.image_size(), dy.data() + i * OC * P,
                            std::min(n1, i + group_dw) - i, g, OC, first && i == n0,
                            dw_part_[chunk].data(), winograd_ws_[chunk].data(), tile);
                for (std::size_t n = n0; n < n1; ++n)
                    weight_gradient_image(x, dy, g, n, chunk, first && n == n0, !winograd_weights);
            },
            [&](std::size_t chunk, std::size_t n0, std::size_t n1) {  // dx, image by image
                if (!winograd) {
                    for (std::size_t n = n0; n < n1; ++n)
                        input_gradient_image(dy, dx, g, n, chunk, input_gradient);
                    return;
                }
                for (std::size_t i = n0; i < n1; i += group_dx)  // the adjoint convolution of dy
                    winograd_convolve(dy.data() + i * OC * P, std::min(n1, i + group_dx) - i,
                                      adjoint, winograd_backward_, 0, dx_tile_rows,
                                      dx.data() + i * g.image_size(), winograd_ws_[chunk].data());
            });
        const std::size_t used = batch == 0 ? 0 : chunks;  // an empty batch has zero gradients
        weight_grad_.zero();
        bias_grad_.zero();
        if (winograd_weights && used > 0) {
            // The chunks' dU added in a fixed order, then G^T dU G, each thread for some rows of
            // filters (o0 .. o1 of each of the 16 or 36 matrices): the same bits at any split.
            const std::size_t C = opt_.in_channels, plane = OC * C;
            parallel_for(OC, [&](std::size_t o0, std::size_t o1) {
                T* total = dw_part_[0].data();
                for (std::size_t c = 1; c < used; ++c) {
                    const T* part = dw_part_[c].data();
                    for (std::size_t xi = 0; xi < positions; ++xi)
                        for (std::size_t i = xi * plane + o0 * C; i < xi * plane + o1 * C; ++i)
                            total[i] += part[i];
                }
                T* dw = weight_grad_.data() + o0 * C * 9;
                if (tile == 4)
                    winograd4_weight_gradient(total + o0 * C, o1 - o0, C, dw, plane);
                else
                    winograd_weight_gradient(total + o0 * C, o1 - o0, C, dw, plane);
            });
        } else {
            for (std::size_t c = 0; c < used; ++c) {
                const T* part = dw_part_[c].data();
                for (std::size_t i = 0; i < weight_grad_.size(); ++i) weight_grad_[i] += part[i];
            }
        }
        if (opt_.bias)
            for (std::size_t c = 0; c < used; ++c)
                for (std::size_t o = 0; o < OC; ++o) bias_grad_[o] += db_part_[c][o];
    }

    std::vector<Parameter<T>> parameters() override {
        std::vector<Parameter<T>> p{{"weight", &weight_, &weight_grad_, true}};
        if (opt_.bias) p.push_back({"bias", &bias_, &bias_grad_, false});
        return p;
    }
    std::size_t flops(const Shape& input) const override {
        const ConvGeometry g = geometry(input);
        return opt_.out_channels * g.col_cols() * (2 * g.col_rows() + (opt_.bias ? 1 : 0));
    }
    LayerConfig config() const override {
        return {"Conv2d",
                {{"in_channels", opt_.in_channels},
                 {"out_channels", opt_.out_channels},
                 {"kernel_h", opt_.kernel_h},
                 {"kernel_w", opt_.kernel_w},
                 {"stride_h", opt_.stride_h},
                 {"stride_w", opt_.stride_w},
                 {"pad_h", opt_.pad_h},
                 {"pad_w", opt_.pad_w},
                 {"bias", opt_.bias}}};
    }
    /// The layer a config describes (registry.hpp); a square kernel may be given as "kernel",
    /// "stride", "pad" instead of the _h / _w pairs. Strides default to 1, padding to 0.
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& c) {
        using detail::config_count;
        const double most = double(std::size_t{1} << 32);
        const bool square = !c.has("kernel_h");
        Conv2dOptions o;
        o.in_channels = config_count(c, "in_channels", 1);
        o.out_channels = config_count(c, "out_channels", 1);
        o.kernel_h = config_count(c, square ? "kernel" : "kernel_h", 1);
        o.kernel_w = config_count(c, square ? "kernel" : "kernel_w", 1);
        o.stride_h = config_count(c, square ? "stride" : "stride_h", 1, most, 1);
        o.stride_w = config_count(c, square ? "stride" : "stride_w", 1, most, 1);
        o.pad_h = config_count(c, square ? "pad" : "pad_h", 0, most, 0);
        o.pad_w = config_count(c, square ? "pad" : "pad_w", 0, most, 0);
        o.bias = detail::config_flag(c, "bias", true);
        return std::make_unique<Conv2d<T>>(o);
    }
    /// The weights a model file holds for this config: OC * C * kh * kw values.
    static double stored_values_lower_bound(const LayerConfig& c) {
        using detail::config_positive;
        const double kernel = c.has("kernel_h")
                                  ? config_positive(c, "kernel_h") * config_positive(c, "kernel_w")
                                  : config_positive(c, "kernel") * config_positive(c, "kernel");
        return config_positive(c, "in_channels") * config_positive(c, "out_channels") * kernel;
    }

    const Conv2dOptions& options() const { return opt_; }
    Tensor<T>& weight() { return weight_; }
    Tensor<T>& bias() { return bias_; }

    /// The im2col geometry for a per-sample input shape (C, H, W); throws when it does not fit.
    ConvGeometry geometry(const Shape& input) const {
        check(input.rank() == 3, "Conv2d: per-sample input must be (C, H, W), got ", input.str());
        check(input[0] == opt_.in_channels, "Conv2d(", opt_.in_channels, "->", opt_.out_channels,
              "): input has ", input[0], " channels, expected ", opt_.in_channels);
        ConvGeometry g;
        g.channels = input[0];
        g.height = input[1];
        g.width = input[2];
        g.kernel_h = opt_.kernel_h;
        g.kernel_w = opt_.kernel_w;
        g.stride_h = opt_.stride_h;
        g.stride_w = opt_.stride_w;
        g.pad_h = opt_.pad_h;
        g.pad_w = opt_.pad_w;
        g.validate();
        return g;
    }

  private:
    /// Image n's share of the summed gradients that the Winograd path did not add: dW += dy *
    /// col^T by im2col + GEMM when `by_im2col`, and db.
    void weight_gradient_image(const Tensor<T>& x, const Tensor<T>& dy, const ConvGeometry& g,
                               std::size_t n, std::size_t chunk, bool first, bool by_im2col) {
        const std::size_t OC = opt_.out_channels, K = g.col_rows(), P = g.col_cols();
        const T* dyn = dy.data() + n * OC * P;
        if (by_im2col) {
            const T* col = unroll(x.data() + n * g.image_size(), g, col_ws_[chunk].data());
            gemm(Trans::No, Trans::Yes, OC, K, P, T(1), dyn, P, col, P, first ? T(0) : T(1),
                 dw_part_[chunk].data(), K);
        }
        if (opt_.bias) {
            T* db = db_part_[chunk].data();
            for (std::size_t o = 0; o < OC; ++o) {
                T sum = 0;
                for (std::size_t p = 0; p < P; ++p) sum += dyn[o * P + p];
                db[o] = first ? sum : db[o] + sum;
            }
        }
    }

    /// Image n's dx = col2im(W^T dy) by im2col's adjoint, in chunk `chunk`'s workspace — or
    /// zeros when nobody reads dx (`wanted` false).
    void input_gradient_image(const Tensor<T>& dy, Tensor<T>& dx, const ConvGeometry& g,
                              std::size_t n, std::size_t chunk, bool wanted) {
        const std::size_t OC = opt_.out_channels, P = g.col_cols();
        const T* dyn = dy.data() + n * OC * P;
        T* dxn = dx.data() + n * g.image_size();
        if (!wanted) {  // the first layer: skip its GEMM
            std::fill(dxn, dxn + g.image_size(), T(0));
        } else if (is_pointwise(g)) {  // col is the image itself, so col2im is the identity
            packed_weight_t_.multiply(Trans::No, P, T(1), dyn, P, T(0), dxn, P);
        } else {
            T* dcol = dcol_ws_[chunk].data();
            packed_weight_t_.multiply(Trans::No, P, T(1), dyn, P, T(0), dcol, P);
            col2im(dcol, P, g, dxn);
        }
    }

    bool use_winograd(const ConvGeometry& g) const {
        return winograd_enabled() && winograd_applies(g) &&
               opt_.in_channels >= winograd_min_channels;
    }

    // The forward pass by Winograd's F(m x m, 3x3), m = winograd_tile() (kernels/winograd.hpp):
    // per group of images (or per band of tile rows), the input tiles' transform, 16 or 36
    // products with the transformed filters, and the output transform; then the bias and
    // `affine` as in the im2col path. The sums are formed in another order than im2col's, so the
    // results differ from it by rounding (about 1e-6 relative for m = 2, 1e-5 for m = 4); they
    // do not depend on how the tiles are shared out among threads.

    /// Updates the forward filters and sizes `parts` workspaces, each for at most `max_rows` tile
    /// rows.
    void prepare_winograd(const ConvGeometry& g, std::size_t max_rows, std::size_t parts,
                          std::size_t tile) {
        winograd_forward_.update(weight_.data(), opt_.out_channels, opt_.in_channels, false, tile);
        size_winograd_workspaces(parts,
                                 winograd_workspace_size<T>(g, opt_.out_channels, max_rows, tile));
    }
    void size_winograd_workspaces(std::size_t parts, std::size_t elements) {
        if (winograd_ws_.size() < parts) winograd_ws_.resize(parts);
        for (std::size_t c = 0; c < parts; ++c) resize_worker_buffer(winograd_ws_[c], {elements});
    }

    /// Image n's outputs of the tile rows [r0, r1), in workspace `part`.
    void winograd_rows(const Tensor<T>& x, Tensor<T>& y, const ChannelAffine<T>* affine,
                       const ConvGeometry& g, std::size_t n, std::size_t r0, std::size_t r1,
                       std::size_t part) {
        const std::size_t P = g.col_cols();
        T* yn = y.data() + n * opt_.out_channels * P;
        winograd_convolve(x.data() + n * g.image_size(), 1, g, winograd_forward_, r0, r1, yn,
                          winograd_ws_[part].data());
        const std::size_t tile = winograd_forward_.tile();
        const std::size_t first = std::min(g.out_h(), tile * r0),
                          last = std::min(g.out_h(), tile * r1);
        finish_output(yn + first * g.out_w(), P, (last - first) * g.out_w(), affine);
    }

    /// Whether the weight gradient is summed as dU over Winograd tiles
    /// (winograd_accumulate_weight_gradient) rather than as dy * im2col(x)^T.
    bool use_winograd_for_weights(const ConvGeometry& g) const {
        return winograd_enabled() && winograd_applies(g) &&
               std::min(opt_.in_channels, opt_.out_channels) >= winograd_weights_min_channels;
    }

    /// Images [n0, n1) through winograd_convolve in workspace `part`, then the bias and
    /// `affine` on each.
    void winograd_images(const Tensor<T>& x, Tensor<T>& y, const ChannelAffine<T>* affine,
                         const ConvGeometry& g, std::size_t n0, std::size_t n1, std::size_t part,
                         std::size_t tile) {
        const std::size_t P = g.col_cols(), OC = opt_.out_channels;
        winograd_convolve(x.data() + n0 * g.image_size(), n1 - n0, g, winograd_forward_, 0,
                          winograd_tiling(g, tile).tiles_h, y.data() + n0 * OC * P,
                          winograd_ws_[part].data());
        for (std::size_t n = n0; n < n1; ++n) finish_output(y.data() + n * OC * P, P, P, affine);
    }

    /// The geometry of the input gradient's convolution (dy in, dx out) when Winograd computes
    /// it: a 3x3 stride-1 convolution with padding p is adjoint to one over dy with padding
    /// 2 - p and the kernels turned by 180 degrees, so p may be 0, 1 or 2.
    bool winograd_adjoint(const ConvGeometry& g, ConvGeometry& adjoint) const {
        if (!winograd_enabled() || !winograd_applies(g) ||
            opt_.out_channels < winograd_min_channels || g.pad_h > 2 || g.pad_w > 2)
            return false;
        adjoint = g;
        adjoint.channels = opt_.out_channels;
        adjoint.height = g.out_h();
        adjoint.width = g.out_w();
        adjoint.pad_h = 2 - g.pad_h;
        adjoint.pad_w = 2 - g.pad_w;
        return true;
    }

    /// Fewer images than threads (batch-1 inference): the threads split each image's output rows
    /// instead, each unrolling only the rows it multiplies. Splitting the one GEMM by columns
    /// instead had every thread read its slice of a col matrix another core had just written,
    /// and on this project's 2-core host that made a batch-1 conv slower on 2 threads than on 1.
    /// Each output value is the same K-long sum either way, so the results are the same bits.
    void forward_split_rows(const Tensor<T>& x, Tensor<T>& y, const ChannelAffine<T>* affine,
                            const ConvGeometry& g, std::size_t parts, bool winograd,
                            std::size_t tile) {
        const std::size_t batch = x.dim(0), OC = opt_.out_channels;
        const std::size_t K = g.col_rows(), P = g.col_cols(), OH = g.out_h(), OW = g.out_w();
        if (winograd) {  // the same split, over rows of 2x2 tiles
            const std::size_t rows = winograd_tiling(g, tile).tiles_h;
            prepare_winograd(g, (rows + parts - 1) / parts, parts, tile);
            for (std::size_t n = 0; n < batch; ++n)
                parallel_for(parts, [&](std::size_t cb, std::size_t ce) {
                    for (std::size_t c = cb; c < ce; ++c)
                        winograd_rows(x, y, affine, g, n, rows * c / parts, rows * (c + 1) / parts,
                                      c);
                });
            return;
        }
        packed_weight_.pack(Trans::No, OC, K, weight_.data(), K);
        const std::size_t max_rows = (OH + parts - 1) / parts;
        if (col_ws_.size() < parts) col_ws_.resize(parts);
        for (std::size_t c = 0; c < parts; ++c)
            resize_worker_buffer(col_ws_[c], {K, max_rows * OW});
        for (std::size_t n = 0; n < batch; ++n) {
            const T* image = x.data() + n * g.image_size();
            parallel_for(parts, [&](std::size_t cb, std::size_t ce) {
                for (std::size_t c = cb; c < ce; ++c) {
                    const std::size_t r0 = OH * c / parts, r1 = OH * (c + 1) / parts;
                    const std::size_t cols = (r1 - r0) * OW;
                    const T* col = image + r0 * OW;  // a pointwise conv reads the image itself
                    std::size_t ld = P;
                    if (!is_pointwise(g)) {
                        im2col_rows(image, g, r0, r1, col_ws_[c].data(), cols);
                        col = col_ws_[c].data();
                        ld = cols;
                    }
                    T* yn = y.data() + n * OC * P + r0 * OW;
                    packed_weight_.multiply(Trans::No, cols, T(1), col, ld, T(0), yn, P);
                    finish_output(yn, P, cols, affine);
                }
            });
        }
    }

    /// Adds the bias, then applies `affine` (when given), to `cols` columns of each of the
    /// OC output rows starting at y, rows `ld` apart.
    void finish_output(T* y, std::size_t ld, std::size_t cols, const ChannelAffine<T>* affine) {
        const std::size_t OC = opt_.out_channels;
        run_vectorized([&] {
            if (opt_.bias)
                for (std::size_t o = 0; o < OC; ++o) {
                    const T b = bias_[o];
                    for (std::size_t p = 0; p < cols; ++p) y[o * ld + p] += b;
                }
            if (affine)
                for (std::size_t o = 0; o < OC; ++o) affine->apply_plane(o, y + o * ld, cols);
        });
    }

    /// A 1x1 convolution with stride 1 and no padding: im2col would copy the image unchanged.
    static bool is_pointwise(const ConvGeometry& g) {
        return g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 &&
               g.pad_h == 0 && g.pad_w == 0;
    }

    /// The unrolled matrix of one image: the image itself for a pointwise convolution,
    /// otherwise im2col into `workspace`.
    static const T* unroll(const T* image, const ConvGeometry& g, T* workspace) {
        if (is_pointwise(g)) return image;
        im2col(image, g, workspace, g.col_cols());
        return workspace;
    }

    /// Sizes one thread's buffer with worker_buffer_gap bytes of its own after the data. The
    /// buffers are allocated one after another, and a core's hardware prefetcher, following
    /// a matrix read row by row (im2col's, 9 KB apart at 48 x 48), runs several rows past its
    /// end, into the next thread's buffer while that thread writes it: the lines then bounce
    /// between the cores. Without the gap the first convolution's forward pass took 0.80 ms
    /// on 2 threads, as long as on 1; with it, 0.44-0.51.
    static void resize_worker_buffer(Tensor<T>& buffer, std::initializer_list<std::size_t> dims) {
        std::size_t elements = 1;
        for (std::size_t d : dims) elements = checked_mul(elements, d, "Conv2d workspace");
        // One allocation with the gap, kept once grown (a first one without it stayed resident
        // in the heap: 7 and 12 MB more peak RSS in fer bench on 1 and 2 threads).
        buffer.resize(Shape{elements + worker_buffer_gap / sizeof(T)});
        buffer.resize(Shape(dims));
    }

    /// Chunks of a batch: one per thread, at most one per image, at least one.
    static std::size_t chunk_count(std::size_t batch) {
        return std::max<std::size_t>(1, std::min<std::size_t>(batch, std::size_t(num_threads())));
    }

    /// Sizes the per-chunk buffers (kept between calls, so steady state allocates nothing) and
    /// returns the number of chunks: one per thread, at most one per image.
    std::size_t prepare_workspace(std::size_t batch, std::size_t K, std::size_t P, bool backward) {
        const std::size_t chunks = chunk_count(batch);
        if (col_ws_.size() < chunks) col_ws_.resize(chunks);
        for (std::size_t c = 0; c < chunks; ++c) resize_worker_buffer(col_ws_[c], {K, P});
        if (backward) {
            if (dcol_ws_.size() < chunks) {
                dcol_ws_.resize(chunks);
                dw_part_.resize(chunks);
                db_part_.resize(chunks);
            }
            for (std::size_t c = 0; c < chunks; ++c) {
                resize_worker_buffer(dcol_ws_[c], {K, P});
                resize_worker_buffer(dw_part_[c], {opt_.out_channels, K});
                resize_worker_buffer(db_part_[c], {opt_.out_channels});
            }
        }
        return chunks;
    }

    /// Unused room after each thread's buffer (see resize_worker_buffer): about 8 rows of
    /// the 48 x 48 im2col matrix's, which is as far as the prefetcher was seen to run ahead.
    /// It costs 3.8 MB of peak RSS on 1 thread and 7.3 MB on 2 (fer-cnn-s, fer bench).
    static constexpr std::size_t worker_buffer_gap = 128 * 1024;

    Conv2dOptions opt_;
    Tensor<T> weight_, weight_grad_, bias_, bias_grad_;
    std::vector<Tensor<T>> col_ws_, dcol_ws_, dw_part_, db_part_;
    GemmPackedA<T> packed_weight_, packed_weight_t_;           // W and W^T, packed once per call
    WinogradFilters<T> winograd_forward_, winograd_backward_;  // for y, and for dx
    std::vector<Tensor<T>> winograd_ws_;                       // per chunk: V and M of one image
};

inline const bool conv2d_registered = register_layer<Conv2d>("Conv2d");

}  // namespace facet
