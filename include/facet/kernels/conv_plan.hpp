// facet/kernels/conv_plan.hpp — ConvPlan: how a 2-D convolution is computed. It chooses the
// algorithm for each pass (Winograd's F(4x4, 3x3) or F(2x2, 3x3), im2col + GEMM, or, for a
// pointwise convolution, the GEMM straight on the image), owns the workspaces, and shares the
// batch (or, below one image per thread, each image's rows) among the threads. layers/conv2d.hpp
// holds the weights and asks a plan for its forward and backward passes.
// Read first: kernels/im2col.hpp and kernels/winograd.hpp. Read next: layers/conv2d.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/gemm.hpp"
#include "facet/kernels/im2col.hpp"
#include "facet/kernels/prefetch.hpp"
#include "facet/kernels/winograd.hpp"

namespace facet {

/// The ways ConvPlan computes a pass.
enum class ConvAlgorithm {
    Im2col,     ///< each image unrolled by im2col, then one GEMM
    Pointwise,  ///< a 1x1 stride-1 unpadded convolution: the GEMM reads the image itself
    Winograd,   ///< Winograd's F(m x m, 3x3), m = the context's winograd_tile()
};

/// Lower-case name of an algorithm ("im2col", "pointwise", "winograd").
inline const char* conv_algorithm_name(ConvAlgorithm a) {
    switch (a) {
        case ConvAlgorithm::Pointwise:
            return "pointwise";
        case ConvAlgorithm::Winograd:
            return "winograd";
        default:
            return "im2col";
    }
}

/// A 1x1 convolution with stride 1 and no padding: im2col would copy the image unchanged.
inline bool is_pointwise(const ConvGeometry& g) {
    return g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 &&
           g.pad_h == 0 && g.pad_w == 0;
}

/// The computation of one convolution layer: y = W * x (OC x C x kh x kw weights, NCHW images),
/// its weight and input gradients, and their workspaces, kept between calls so that a training
/// loop allocates nothing in steady state. The choice follows the calling thread's context
/// (winograd_enabled(), winograd_tile(), num_threads()); the results are the same bits for a
/// given context and thread count.
///
/// Forward: y_n = W * col_n with col_n = im2col(x_n) (the image itself for a pointwise
/// convolution), the threads taking the next image as they come free; below one image per
/// thread, each image's output rows are split among them. A 3x3 stride-1 convolution with at
/// least winograd_min_channels inputs goes by Winograd instead. Backward: dW = sum_n dy_n col_n^T
/// (or by Winograd, with winograd_weights_min_channels in and out), summed in fixed chunks of
/// images; dx_n = col2im(W^T dy_n) (or Winograd's adjoint convolution), by whichever thread is
/// free. docs/internals/convolution.md derives all of them.
template <typename T>
class ConvPlan {
  public:
    /// Winograd needs this many input channels (output channels for the input gradient). Below
    /// it the 16 products are too thin (K = C) and the transforms dominate (the timings are in
    /// docs/internals/convolution.md).
    static constexpr std::size_t winograd_min_channels = 16;
    /// The weight gradient by Winograd needs this many input and output channels: its 16 (or
    /// 36) products are OC x C x tiles (gemm's dot-product path for C, OC <= 64), too thin below
    /// it to beat im2col (docs/internals/convolution.md).
    static constexpr std::size_t winograd_weights_min_channels = 32;

    /// With `on`, every pass goes by im2col + GEMM, even a pointwise or Winograd-shaped one: the
    /// reference the tests compare the other algorithms with.
    void set_im2col_only(bool on) { im2col_only_ = on; }

    /// The forward pass's algorithm for geometry g with `out_channels` outputs, in the current
    /// context.
    ConvAlgorithm forward_algorithm(const ConvGeometry& g) const {
        if (im2col_only_) return ConvAlgorithm::Im2col;
        if (winograd_enabled() && winograd_applies(g) && g.channels >= winograd_min_channels)
            return ConvAlgorithm::Winograd;
        return is_pointwise(g) ? ConvAlgorithm::Pointwise : ConvAlgorithm::Im2col;
    }

    /// The input gradient's algorithm (Winograd needs the padding at most 2, see
    /// winograd_adjoint).
    ConvAlgorithm input_gradient_algorithm(const ConvGeometry& g, std::size_t out_channels) const {
        ConvGeometry adjoint;
        if (winograd_adjoint(g, out_channels, adjoint)) return ConvAlgorithm::Winograd;
        return is_pointwise(g) && !im2col_only_ ? ConvAlgorithm::Pointwise : ConvAlgorithm::Im2col;
    }

    /// The weight gradient's algorithm.
    ConvAlgorithm weight_gradient_algorithm(const ConvGeometry& g, std::size_t out_channels) const {
        if (winograd_for_weights(g, out_channels)) return ConvAlgorithm::Winograd;
        return is_pointwise(g) && !im2col_only_ ? ConvAlgorithm::Pointwise : ConvAlgorithm::Im2col;
    }

    /// y (batch x OC x OH x OW) = W * x for `batch` images x (batch x C x H x W), W
    /// (out_channels x C x kh x kw). After each block of outputs is computed, while it is in
    /// cache, calls finish(y_block, ld, cols) on it: out_channels rows of `cols` values, rows
    /// `ld` apart (the bias and any epilogue go there). finish may run on any of the threads.
    template <typename Finish>
    void forward(const ConvGeometry& g, std::size_t out_channels, const T* weight, const T* x,
                 std::size_t batch, T* y, Finish&& finish) {
        out_channels_ = out_channels, weight_ = weight;
        const std::size_t OC = out_channels, K = g.col_rows(), P = g.col_cols();
        const std::size_t threads = in_parallel() ? 1 : std::size_t(num_threads());
        const ConvAlgorithm algorithm = forward_algorithm(g);
        const bool winograd = algorithm == ConvAlgorithm::Winograd;
        const std::size_t tile = winograd_tile(), tile_rows = winograd_tiling(g, tile).tiles_h;
        const std::size_t rows = winograd ? tile_rows : g.out_h();
        if (batch < threads && rows > 1 &&
            static_cast<double>(OC) * static_cast<double>(P) * static_cast<double>(K) >=
                detail::gemm_parallel_threshold) {
            forward_split_rows(g, x, batch, y, std::min(threads, rows), algorithm, tile, finish);
            return;
        }
        // Every image's output is its own: the threads take the next image (or group of small
        // images) as they come free, with the same bits as any other split, and bring the
        // next one's input into L2 while they compute this one.
        const auto prefetch_images = [&](std::size_t n0, std::size_t n1) {
            prefetch_to_l2(x + n0 * g.image_size(), (n1 - n0) * g.image_size() * sizeof(T));
        };
        if (winograd) {  // small images a few at a time (winograd_group_size)
            const std::size_t group = winograd_group_size(g, tile);
            prepare_winograd(g, group * tile_rows, chunk_count(batch), tile);
            parallel_for_dynamic_ahead(
                batch, group,
                [&](std::size_t worker, std::size_t n0, std::size_t n1) {
                    winograd_convolve(x + n0 * g.image_size(), n1 - n0, g, winograd_forward_, 0,
                                      tile_rows, y + n0 * OC * P, winograd_ws_[worker].data());
                    for (std::size_t n = n0; n < n1; ++n) finish(y + n * OC * P, P, P);
                },
                prefetch_images);
            return;
        }
        packed_weight_.pack(Trans::No, OC, K, weight, K);  // once for the whole batch
        prepare_workspace(g, batch, false, algorithm);
        parallel_for_dynamic_ahead(
            batch, 1,
            [&](std::size_t worker, std::size_t n, std::size_t) {
                const T* col = unroll(x + n * g.image_size(), g, algorithm, worker);
                T* yn = y + n * OC * P;
                packed_weight_.multiply(Trans::No, P, T(1), col, P, T(0), yn, P);
                finish(yn, P, P);
            },
            prefetch_images);
    }

    /// The gradients of forward() for images x and output gradient dy (batch x OC x OH x OW):
    /// assigns dweight (OC x C x kh x kw), dbias (OC; nullptr when there is no bias) and dx
    /// (batch x C x H x W; zeros when !input_gradient, which skips its products).
    void backward(const ConvGeometry& g, std::size_t out_channels, const T* weight, const T* x,
                  const T* dy, std::size_t batch, bool input_gradient, T* dx, T* dweight,
                  T* dbias) {
        out_channels_ = out_channels, weight_ = weight;
        const std::size_t OC = out_channels, C = g.channels, K = g.col_rows(), P = g.col_cols();
        const ConvAlgorithm dx_algorithm = input_gradient_algorithm(g, OC);
        const ConvAlgorithm dw_algorithm = weight_gradient_algorithm(g, OC);
        const std::size_t chunks = prepare_workspace(g, batch, true, dx_algorithm, dw_algorithm);
        ConvGeometry adjoint;
        const bool winograd = input_gradient && winograd_adjoint(g, OC, adjoint);
        const bool winograd_weights = dw_algorithm == ConvAlgorithm::Winograd;
        // Small images go a few at a time through the Winograd products (winograd_group_size),
        // the weight gradient's and the input gradient's each in steps of their own inside the
        // same groups (the geometries differ when the padding is not 1).
        const std::size_t tile = winograd_tile(), positions = (tile + 2) * (tile + 2);
        const std::size_t group_dx = winograd ? winograd_group_size(adjoint, tile) : 1;
        const std::size_t group_dw = winograd_weights ? winograd_group_size(g, tile) : 1;
        std::size_t workspace = 0;
        if (winograd) {
            winograd_backward_.update(weight, OC, C, true, tile);
            workspace = winograd_workspace_size<T>(
                adjoint, C, group_dx * winograd_tiling(adjoint, tile).tiles_h, tile);
        } else if (input_gradient) {
            packed_weight_t_.pack(Trans::Yes, K, OC, weight, K);
        }
        if (winograd_weights) {  // each chunk sums dU (16 or 36 x OC x C) instead of dW
            workspace =
                std::max(workspace, winograd_workspace_size<T>(
                                        g, OC, group_dw * winograd_tiling(g, tile).tiles_h, tile));
            for (std::size_t c = 0; c < chunks; ++c)
                resize_worker_buffer(dw_part_[c], {positions, OC, C});
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
                    const std::size_t half = prefetch_budget() / 2;  // shared by x and dy
                    prefetch_to_l2(x + n1 * g.image_size(),
                                   (next_end - n1) * g.image_size() * sizeof(T), half);
                    prefetch_to_l2(dy + n1 * OC * P, (next_end - n1) * OC * P * sizeof(T), half);
                }
                if (winograd_weights)
                    for (std::size_t i = n0; i < n1; i += group_dw)
                        winograd_accumulate_weight_gradient(
                            x + i * g.image_size(), dy + i * OC * P, std::min(n1, i + group_dw) - i,
                            g, OC, first && i == n0, dw_part_[chunk].data(),
                            winograd_ws_[chunk].data(), tile);
                for (std::size_t n = n0; n < n1; ++n)
                    weight_gradient_image(g, x, dy, n, chunk, first && n == n0, dw_algorithm,
                                          dbias != nullptr);
            },
            [&](std::size_t chunk, std::size_t n0, std::size_t n1) {  // dx, image by image
                if (!winograd) {
                    for (std::size_t n = n0; n < n1; ++n)
                        input_gradient_image(g, dy, dx, n, chunk, input_gradient, dx_algorithm);
                    return;
                }
                for (std::size_t i = n0; i < n1; i += group_dx)  // the adjoint convolution of dy
                    winograd_convolve(dy + i * OC * P, std::min(n1, i + group_dx) - i, adjoint,
                                      winograd_backward_, 0, dx_tile_rows, dx + i * g.image_size(),
                                      winograd_ws_[chunk].data());
            });
        const std::size_t used = batch == 0 ? 0 : chunks;  // an empty batch has zero gradients
        const std::size_t weights = OC * K;
        std::fill(dweight, dweight + weights, T(0));
        if (dbias) std::fill(dbias, dbias + OC, T(0));
        if (winograd_weights && used > 0) {
            // The chunks' dU added in a fixed order, then G^T dU G, each thread for some rows of
            // filters (o0 .. o1 of each of the 16 or 36 matrices): the same bits at any split.
            const std::size_t plane = OC * C;
            parallel_for(OC, [&](std::size_t o0, std::size_t o1) {
                T* total = dw_part_[0].data();
                for (std::size_t c = 1; c < used; ++c) {
                    const T* part = dw_part_[c].data();
                    for (std::size_t xi = 0; xi < positions; ++xi)
                        for (std::size_t i = xi * plane + o0 * C; i < xi * plane + o1 * C; ++i)
                            total[i] += part[i];
                }
                T* dw = dweight + o0 * C * 9;
                if (tile == 4)
                    winograd4_weight_gradient(total + o0 * C, o1 - o0, C, dw, plane);
                else
                    winograd_weight_gradient(total + o0 * C, o1 - o0, C, dw, plane);
            });
        } else {
            for (std::size_t c = 0; c < used; ++c) {
                const T* part = dw_part_[c].data();
                for (std::size_t i = 0; i < weights; ++i) dweight[i] += part[i];
            }
        }
        if (dbias)
            for (std::size_t c = 0; c < used; ++c)
                for (std::size_t o = 0; o < OC; ++o) dbias[o] += db_part_[c][o];
    }

  private:
    /// Image n's share of the summed gradients that the Winograd path did not add: dW += dy *
    /// col^T by the GEMM (col: im2col's, or the image itself for a pointwise convolution)
    /// unless `algorithm` is Winograd, and db when `bias`.
    void weight_gradient_image(const ConvGeometry& g, const T* x, const T* dy, std::size_t n,
                               std::size_t chunk, bool first, ConvAlgorithm algorithm, bool bias) {
        const std::size_t OC = out_channels_, K = g.col_rows(), P = g.col_cols();
        const T* dyn = dy + n * OC * P;
        if (algorithm != ConvAlgorithm::Winograd) {
            const T* col = unroll(x + n * g.image_size(), g, algorithm, chunk);
            gemm(Trans::No, Trans::Yes, OC, K, P, T(1), dyn, P, col, P, first ? T(0) : T(1),
                 dw_part_[chunk].data(), K);
        }
        if (bias) {
            T* db = db_part_[chunk].data();
            for (std::size_t o = 0; o < OC; ++o) {
                T sum = 0;
                for (std::size_t p = 0; p < P; ++p) sum += dyn[o * P + p];
                db[o] = first ? sum : db[o] + sum;
            }
        }
    }

    /// Image n's dx = col2im(W^T dy) by im2col's adjoint, in chunk `chunk`'s workspace (for a
    /// pointwise convolution col2im is the identity: the GEMM writes dx itself) — or zeros when
    /// nobody reads dx (`wanted` false).
    void input_gradient_image(const ConvGeometry& g, const T* dy, T* dx, std::size_t n,
                              std::size_t chunk, bool wanted, ConvAlgorithm algorithm) {
        const std::size_t OC = out_channels_, P = g.col_cols();
        const T* dyn = dy + n * OC * P;
        T* dxn = dx + n * g.image_size();
        if (!wanted) {  // the first layer: skip its GEMM
            std::fill(dxn, dxn + g.image_size(), T(0));
        } else if (algorithm == ConvAlgorithm::Pointwise) {
            packed_weight_t_.multiply(Trans::No, P, T(1), dyn, P, T(0), dxn, P);
        } else {
            T* dcol = dcol_ws_[chunk].data();
            packed_weight_t_.multiply(Trans::No, P, T(1), dyn, P, T(0), dcol, P);
            col2im(dcol, P, g, dxn);
        }
    }

    // The forward pass by Winograd's F(m x m, 3x3), m = winograd_tile() (kernels/winograd.hpp):
    // per group of images (or per band of tile rows), the input tiles' transform, 16 or 36
    // products with the transformed filters, and the output transform; then `finish` as in the
    // im2col path. The sums are formed in another order than im2col's, so the results differ
    // from it by rounding (about 1e-6 relative for m = 2, 1e-5 for m = 4); they do not depend on
    // how the tiles are shared out among threads.

    /// Updates the forward filters and sizes `parts` workspaces, each for at most `max_rows` tile
    /// rows.
    void prepare_winograd(const ConvGeometry& g, std::size_t max_rows, std::size_t parts,
                          std::size_t tile) {
        winograd_forward_.update(weight_, out_channels_, g.channels, false, tile);
        size_winograd_workspaces(parts,
                                 winograd_workspace_size<T>(g, out_channels_, max_rows, tile));
    }
    void size_winograd_workspaces(std::size_t parts, std::size_t elements) {
        if (winograd_ws_.size() < parts) winograd_ws_.resize(parts);
        for (std::size_t c = 0; c < parts; ++c) resize_worker_buffer(winograd_ws_[c], {elements});
    }

    /// Whether the weight gradient is summed as dU over Winograd tiles
    /// (winograd_accumulate_weight_gradient) rather than as dy * im2col(x)^T.
    bool winograd_for_weights(const ConvGeometry& g, std::size_t out_channels) const {
        return !im2col_only_ && winograd_enabled() && winograd_applies(g) &&
               std::min(g.channels, out_channels) >= winograd_weights_min_channels;
    }

    /// The geometry of the input gradient's convolution (dy in, dx out) when Winograd computes
    /// it: a 3x3 stride-1 convolution with padding p is adjoint to one over dy with padding
    /// 2 - p and the kernels turned by 180 degrees, so p may be 0, 1 or 2.
    bool winograd_adjoint(const ConvGeometry& g, std::size_t out_channels,
                          ConvGeometry& adjoint) const {
        if (im2col_only_ || !winograd_enabled() || !winograd_applies(g) ||
            out_channels < winograd_min_channels || g.pad_h > 2 || g.pad_w > 2)
            return false;
        adjoint = g;
        adjoint.channels = out_channels;
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
    template <typename Finish>
    void forward_split_rows(const ConvGeometry& g, const T* x, std::size_t batch, T* y,
                            std::size_t parts, ConvAlgorithm algorithm, std::size_t tile,
                            Finish& finish) {
        const std::size_t OC = out_channels_;
        const std::size_t K = g.col_rows(), P = g.col_cols(), OH = g.out_h(), OW = g.out_w();
        if (algorithm == ConvAlgorithm::Winograd) {  // the same split, over rows of tiles
            const std::size_t rows = winograd_tiling(g, tile).tiles_h;
            prepare_winograd(g, (rows + parts - 1) / parts, parts, tile);
            for (std::size_t n = 0; n < batch; ++n)
                parallel_for(parts, [&](std::size_t cb, std::size_t ce) {
                    for (std::size_t c = cb; c < ce; ++c) {
                        const std::size_t r0 = rows * c / parts, r1 = rows * (c + 1) / parts;
                        T* yn = y + n * OC * P;
                        winograd_convolve(x + n * g.image_size(), 1, g, winograd_forward_, r0, r1,
                                          yn, winograd_ws_[c].data());
                        const std::size_t first = std::min(OH, tile * r0),
                                          last = std::min(OH, tile * r1);
                        finish(yn + first * OW, P, (last - first) * OW);
                    }
                });
            return;
        }
        packed_weight_.pack(Trans::No, OC, K, weight_, K);
        const std::size_t max_rows = (OH + parts - 1) / parts;
        if (algorithm == ConvAlgorithm::Im2col) {
            if (col_ws_.size() < parts) col_ws_.resize(parts);
            for (std::size_t c = 0; c < parts; ++c)
                resize_worker_buffer(col_ws_[c], {K, max_rows * OW});
        }
        for (std::size_t n = 0; n < batch; ++n) {
            const T* image = x + n * g.image_size();
            parallel_for(parts, [&](std::size_t cb, std::size_t ce) {
                for (std::size_t c = cb; c < ce; ++c) {
                    const std::size_t r0 = OH * c / parts, r1 = OH * (c + 1) / parts;
                    const std::size_t cols = (r1 - r0) * OW;
                    const T* col = image + r0 * OW;  // a pointwise conv reads the image itself
                    std::size_t ld = P;
                    if (algorithm == ConvAlgorithm::Im2col) {
                        im2col_rows(image, g, r0, r1, col_ws_[c].data(), cols);
                        col = col_ws_[c].data();
                        ld = cols;
                    }
                    T* yn = y + n * OC * P + r0 * OW;
                    packed_weight_.multiply(Trans::No, cols, T(1), col, ld, T(0), yn, P);
                    finish(yn, P, cols);
                }
            });
        }
    }

    /// The unrolled matrix of one image: the image itself for the pointwise algorithm,
    /// otherwise im2col into worker `worker`'s workspace.
    const T* unroll(const T* image, const ConvGeometry& g, ConvAlgorithm algorithm,
                    std::size_t worker) {
        if (algorithm == ConvAlgorithm::Pointwise) return image;
        T* workspace = col_ws_[worker].data();
        im2col(image, g, workspace, g.col_cols());
        return workspace;
    }

    /// Sizes one thread's buffer with worker_buffer_gap bytes of its own after the data. The
    /// buffers are allocated one after another, and a core's hardware prefetcher, following
    /// a matrix read row by row (im2col's, 9 KB apart at 48 x 48), runs several rows past its
    /// end, into the next thread's buffer while that thread writes it: the lines then bounce
    /// between the cores, and the first convolution ran no faster on 2 threads than on 1.
    static void resize_worker_buffer(Tensor<T>& buffer, std::initializer_list<std::size_t> dims) {
        std::size_t elements = 1;
        for (std::size_t d : dims) elements = checked_mul(elements, d, "Conv2d workspace");
        // One allocation with the gap, kept once grown (a first one without it would stay
        // resident in the heap).
        buffer.resize(Shape{elements + worker_buffer_gap / sizeof(T)});
        buffer.resize(Shape(dims));
    }

    /// Chunks of a batch: one per thread, at most one per image, at least one.
    static std::size_t chunk_count(std::size_t batch) {
        return std::max<std::size_t>(1, std::min<std::size_t>(batch, std::size_t(num_threads())));
    }

    /// Sizes the per-chunk buffers (kept between calls, so steady state allocates nothing) and
    /// returns the number of chunks: one per thread, at most one per image. The im2col matrix
    /// is needed only when an algorithm unrolls (not for a pointwise convolution).
    std::size_t prepare_workspace(const ConvGeometry& g, std::size_t batch, bool backward,
                                  ConvAlgorithm first,
                                  ConvAlgorithm second = ConvAlgorithm::Pointwise) {
        const std::size_t K = g.col_rows(), P = g.col_cols(), OC = out_channels_;
        const std::size_t chunks = chunk_count(batch);
        const bool unrolls = first == ConvAlgorithm::Im2col || second == ConvAlgorithm::Im2col;
        if (col_ws_.size() < chunks) col_ws_.resize(chunks);
        if (unrolls)
            for (std::size_t c = 0; c < chunks; ++c) resize_worker_buffer(col_ws_[c], {K, P});
        if (backward) {
            if (dcol_ws_.size() < chunks) {
                dcol_ws_.resize(chunks);
                dw_part_.resize(chunks);
                db_part_.resize(chunks);
            }
            for (std::size_t c = 0; c < chunks; ++c) {
                if (first == ConvAlgorithm::Im2col) resize_worker_buffer(dcol_ws_[c], {K, P});
                resize_worker_buffer(dw_part_[c], {OC, K});
                resize_worker_buffer(db_part_[c], {OC});
            }
        }
        return chunks;
    }

    /// Unused room after each thread's buffer (see resize_worker_buffer): about 8 rows of
    /// the 48 x 48 im2col matrix's, which is as far as the prefetcher was seen to run ahead.
    static constexpr std::size_t worker_buffer_gap = 128 * 1024;

    bool im2col_only_ = false;
    std::size_t out_channels_ = 0;  // of the call in progress
    const T* weight_ = nullptr;     // of the call in progress
    std::vector<Tensor<T>> col_ws_, dcol_ws_, dw_part_, db_part_;
    GemmPackedA<T> packed_weight_, packed_weight_t_;           // W and W^T, packed once per call
    WinogradFilters<T> winograd_forward_, winograd_backward_;  // for y, and for dx
    std::vector<Tensor<T>> winograd_ws_;                       // per chunk: V and M of one image
};

}  // namespace facet
