// facet/layers/maxpool2d.hpp — MaxPool2d: the maximum of each kernel x kernel window, with the
// position of the maximum remembered so backward can route the gradient to it.
// Read next: layers/dropout.hpp.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/vector_loops.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/registry.hpp"

namespace facet {

/// Max pooling over kernel x kernel windows taken every `stride` pixels, no padding; the output
/// of an H x W plane is ((H - k) / s + 1) x ((W - k) / s + 1), extra rows/columns are dropped.
template <typename T>
class MaxPool2d : public Layer<T> {
  public:
    /// Windows of `kernel` x `kernel`, stride `stride` (0: equal to the kernel, the usual case).
    explicit MaxPool2d(std::size_t kernel, std::size_t stride = 0)
        : kernel_(kernel), stride_(stride == 0 ? kernel : stride) {
        check(kernel_ > 0, "MaxPool2d: kernel must be positive");
    }

    std::string type() const override { return "MaxPool2d"; }
    std::string describe() const override {
        return detail::concat("MaxPool2d(", kernel_, "x", kernel_, ", stride ", stride_, ")");
    }
    Shape output_shape(const Shape& input) const override {
        check(input.rank() == 3, "MaxPool2d: per-sample input must be (C, H, W), got ",
              input.str());
        check(input[1] >= kernel_ && input[2] >= kernel_, "MaxPool2d: ", kernel_, "x", kernel_,
              " window larger than the ", input[1], "x", input[2], " input");
        return Shape{input[0], (input[1] - kernel_) / stride_ + 1,
                     (input[2] - kernel_) / stride_ + 1};
    }

    // y = max over the window; argmax_ keeps the flat in-plane index of the first maximum in
    // scan order (a strict > comparison keeps the earliest of equal values).
    void forward(const Tensor<T>& x, Tensor<T>& y) override {
        check(x.rank() == 4, "MaxPool2d: input must be (N, C, H, W), got ", x.shape().str());
        const Shape out = output_shape(sample_shape(x.shape()));
        const std::size_t planes = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3);
        const std::size_t OH = out[1], OW = out[2];
        check(H * W <= UINT32_MAX, "MaxPool2d: plane of ", H, "x", W, " too large");
        y.resize(Shape{x.dim(0), out[0], OH, OW});
        argmax_.resize(y.size());
        // Compiled for AVX-512, the 2x2 path's loop over a row is 16 outputs wide, and rows of
        // 8-15 outputs (fer-cnn-s's 24x24 maps) would all run in its scalar remainder, about 5x
        // slower than the build's 4-wide loop.
        const bool narrow_rows = is_2x2_stride_2(OW) && OW < 16;
        parallel_for_dynamic(planes, plane_grain(planes),
                             [&](std::size_t, std::size_t pb, std::size_t pe) {
                                 if (narrow_rows)
                                     forward_planes(x, y, pb, pe);
                                 else
                                     run_vectorized([&] { forward_planes(x, y, pb, pe); });
                             });
    }

    /// forward's work on planes [pb, pe) (one thread's share).
    void forward_planes(const Tensor<T>& x, Tensor<T>& y, std::size_t pb, std::size_t pe) {
        const std::size_t H = x.dim(2), W = x.dim(3), OH = y.dim(2), OW = y.dim(3);
        for (std::size_t p = pb; p < pe; ++p) {
            const T* in = x.data() + p * H * W;
            T* outp = y.data() + p * OH * OW;
            std::uint32_t* arg = argmax_.data() + p * OH * OW;
            if (is_2x2_stride_2(OW)) {
                pool_2x2(in, W, OH, OW, outp, arg);
                continue;
            }
            for (std::size_t oh = 0; oh < OH; ++oh)
                for (std::size_t ow = 0; ow < OW; ++ow) {
                    std::size_t best = oh * stride_ * W + ow * stride_;
                    for (std::size_t i = 0; i < kernel_; ++i)
                        for (std::size_t j = 0; j < kernel_; ++j) {
                            const std::size_t at = (oh * stride_ + i) * W + ow * stride_ + j;
                            if (in[at] > in[best]) best = at;
                        }
                    outp[oh * OW + ow] = in[best];
                    arg[oh * OW + ow] = static_cast<std::uint32_t>(best);
                }
        }
    }

    // dx[argmax] += dy: the maximum passes its gradient on, every other input gets 0. (+= because
    // overlapping windows, stride < kernel, can share a maximum.)
    void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        check(dy.shape() == y.shape() && argmax_.size() == y.size(), "MaxPool2d::backward: dy is ",
              dy.shape().str(), ", expected the forward output ", y.shape().str());
        const std::size_t planes = x.dim(0) * x.dim(1), HW = x.dim(2) * x.dim(3);
        const std::size_t OHW = y.dim(2) * y.dim(3);
        dx.resize(x.shape());
        const std::size_t OW = y.dim(3);
        if (is_2x2_stride_2(OW)) {  // as in forward: narrow rows stay on the build's loop
            const std::size_t H = x.dim(2), W = x.dim(3), OH = y.dim(2);
            parallel_for_dynamic(
                planes, plane_grain(planes), [&](std::size_t, std::size_t pb, std::size_t pe) {
                    auto planes_2x2 = [&] {
                        for (std::size_t p = pb; p < pe; ++p)
                            unpool_2x2(dy.data() + p * OHW, argmax_.data() + p * OHW, H, W, OH, OW,
                                       dx.data() + p * HW);
                    };
                    if (OW < 16)
                        planes_2x2();
                    else
                        run_vectorized(planes_2x2);
                });
            return;
        }
        parallel_for_dynamic(planes, plane_grain(planes),
                             [&](std::size_t, std::size_t pb, std::size_t pe) {
                                 for (std::size_t p = pb; p < pe; ++p) {
                                     T* d = dx.data() + p * HW;
                                     for (std::size_t i = 0; i < HW; ++i) d[i] = T(0);
                                     const T* g = dy.data() + p * OHW;
                                     const std::uint32_t* arg = argmax_.data() + p * OHW;
                                     for (std::size_t o = 0; o < OHW; ++o) d[arg[o]] += g[o];
                                 }
                             });
    }

    std::size_t flops(const Shape& input) const override {
        return output_shape(input).size() * kernel_ * kernel_;
    }
    LayerConfig config() const override {
        return {"MaxPool2d", {{"kernel", kernel_}, {"stride", stride_}}};
    }
    /// The layer a config describes (registry.hpp); "stride" defaults to the kernel.
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& c) {
        const std::size_t kernel = detail::config_count(c, "kernel", 1);
        return std::make_unique<MaxPool2d<T>>(
            kernel, detail::config_count(c, "stride", 1, double(std::size_t{1} << 32), kernel));
    }

    std::size_t kernel() const { return kernel_; }
    std::size_t stride() const { return stride_; }

  private:
    /// Planes per piece of the parallel loops: every plane is pooled on its own, so the threads
    /// take the next of about 32 pieces as they come free, with the same bits at any split.
    static std::size_t plane_grain(std::size_t planes) { return (planes + 31) / 32; }

    /// Whether forward takes pool_2x2 for rows of OW outputs.
    bool is_2x2_stride_2(std::size_t OW) const { return kernel_ == 2 && stride_ == 2 && OW >= 8; }

    /// v when `keep`, else +0, by a bit mask: as a `keep ? v : 0` the compiler left a branch,
    /// which mispredicts on data-dependent maxima (the backward pass took 3x as long).
    static T keep_if(bool keep, T v) {
        using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
        static_assert(sizeof(Bits) == sizeof(T), "float or double");
        const Bits mask = Bits(0) - Bits(keep);  // all ones or all zeros
        return std::bit_cast<T>(static_cast<Bits>(std::bit_cast<Bits>(v) & mask));
    }

    /// backward for the 2x2, stride-2 window (rows of at least 8 outputs; for rows of 6 the
    /// scatter is faster, by about a third), whose windows do not
    /// overlap: each input gets its window's dy if it was the window's maximum, else 0, written row
    /// by row, instead of zeroing the plane and scattering (a loop the compiler cannot vectorise).
    /// Computed as 0 + dy, as the scatter does, so the same bits (a -0 gradient becomes +0 in
    /// both).
    static void unpool_2x2(const T* __restrict dy, const std::uint32_t* __restrict arg,
                           std::size_t H, std::size_t W, std::size_t OH, std::size_t OW,
                           T* __restrict dx) {
        for (std::size_t oh = 0; oh < OH; ++oh)
            for (std::size_t a = 0; a < 2; ++a) {
                T* row = dx + (2 * oh + a) * W;
                const auto first = static_cast<std::uint32_t>((2 * oh + a) * W);
                const T* g = dy + oh * OW;
                const std::uint32_t* at = arg + oh * OW;
                for (std::size_t ow = 0; ow < OW; ++ow) {
                    const auto left = first + static_cast<std::uint32_t>(2 * ow);
                    row[2 * ow] = T(0) + keep_if(at[ow] == left, g[ow]);
                    row[2 * ow + 1] = T(0) + keep_if(at[ow] == left + 1, g[ow]);
                }
                for (std::size_t c = 2 * OW; c < W; ++c) row[c] = T(0);  // an odd last column
            }
        for (std::size_t i = 2 * OH * W; i < H * W; ++i) dx[i] = T(0);  // an odd last row
    }

    /// The common 2x2, stride-2 window without the generic loops: the four candidates are
    /// compared in scan order with selects, not branches (which maxima win is data-dependent,
    /// so branches mispredict), and the compiler can vectorise across output columns: about
    /// 2.5x faster than the generic loop for rows of 12 and 24 outputs, but 2x slower for
    /// rows of 6 (the vector loop's set-up does not pay off), hence forward()'s OW >= 8.
    static void pool_2x2(const T* __restrict in, std::size_t W, std::size_t OH, std::size_t OW,
                         T* __restrict out, std::uint32_t* __restrict arg) {
        for (std::size_t oh = 0; oh < OH; ++oh) {
            const T* r0 = in + 2 * oh * W;
            const T* r1 = r0 + W;
            const auto base = static_cast<std::uint32_t>(2 * oh * W);
            const auto w = static_cast<std::uint32_t>(W);
            for (std::size_t ow = 0; ow < OW; ++ow) {
                const auto col = static_cast<std::uint32_t>(2 * ow);
                T best = r0[2 * ow];
                std::uint32_t at = base + col;
                const T b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
                at = b > best ? base + col + 1 : at;  // strict >: the earliest maximum stays
                best = b > best ? b : best;
                at = c > best ? base + w + col : at;
                best = c > best ? c : best;
                at = d > best ? base + w + col + 1 : at;
                best = d > best ? d : best;
                out[oh * OW + ow] = best;
                arg[oh * OW + ow] = at;
            }
        }
    }

    std::size_t kernel_, stride_;
    std::vector<std::uint32_t> argmax_;  // per output: in-plane index of its input maximum
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class MaxPool2d<float>;
extern template class MaxPool2d<double>;
#endif

inline const bool max_pool_2d_registered = register_layer<MaxPool2d>("MaxPool2d");

}  // namespace facet
