// facet/kernels/im2col.hpp — the convolution geometry, and im2col / col2im: the unrolling that
// turns a convolution into one matrix product (see docs/internals/convolution.md).
// Read next: kernels/conv_reference.hpp (the naive convolution the tests compare against).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "facet/core/error.hpp"
#include "facet/core/parallel.hpp"

namespace facet {

/// Shape of one 2-D convolution over a C x H x W image (NCHW), square or not.
struct ConvGeometry {
    std::size_t channels = 1, height = 1, width = 1;
    std::size_t kernel_h = 3, kernel_w = 3;
    std::size_t stride_h = 1, stride_w = 1;
    std::size_t pad_h = 0, pad_w = 0;
    std::size_t dilation_h = 1, dilation_w = 1;

    std::size_t extent_h() const { return dilation_h * (kernel_h - 1) + 1; }
    std::size_t extent_w() const { return dilation_w * (kernel_w - 1) + 1; }
    std::size_t out_h() const { return (height + 2 * pad_h - extent_h()) / stride_h + 1; }
    std::size_t out_w() const { return (width + 2 * pad_w - extent_w()) / stride_w + 1; }
    /// Rows of the unrolled matrix: one per (channel, kernel row, kernel column).
    std::size_t col_rows() const { return channels * kernel_h * kernel_w; }
    /// Columns of the unrolled matrix for one image: one per output pixel.
    std::size_t col_cols() const { return out_h() * out_w(); }
    std::size_t image_size() const { return channels * height * width; }

    /// Throws facet::Error when the geometry is impossible (zero sizes, kernel larger than the
    /// padded image, sizes whose products overflow).
    void validate() const {
        check(channels > 0 && height > 0 && width > 0, "ConvGeometry: empty input ", channels, "x",
              height, "x", width);
        check(kernel_h > 0 && kernel_w > 0, "ConvGeometry: kernel size must be positive");
        check(stride_h > 0 && stride_w > 0, "ConvGeometry: stride must be positive");
        check(dilation_h > 0 && dilation_w > 0, "ConvGeometry: dilation must be positive");
        // Huge dilations or paddings must not wrap around and pass the size test below.
        checked_add(checked_mul(dilation_h, kernel_h - 1, "ConvGeometry: dilated kernel height"),
                    1);
        checked_add(checked_mul(dilation_w, kernel_w - 1, "ConvGeometry: dilated kernel width"), 1);
        checked_add(height, checked_mul(2, pad_h, "ConvGeometry: padding"),
                    "ConvGeometry: padded height");
        checked_add(width, checked_mul(2, pad_w, "ConvGeometry: padding"),
                    "ConvGeometry: padded width");
        check(extent_h() <= height + 2 * pad_h && extent_w() <= width + 2 * pad_w,
              "ConvGeometry: kernel ", extent_h(), "x", extent_w(), " larger than padded input ",
              height + 2 * pad_h, "x", width + 2 * pad_w);
        checked_mul(checked_mul(channels, kernel_h * kernel_w, "im2col rows"),
                    checked_mul(out_h(), out_w(), "im2col cols"), "im2col matrix");
        checked_mul(channels, checked_mul(height, width), "conv input");
    }
};

/// Unrolls the output rows [oh_begin, oh_end) of one C x H x W image into the col_rows() x
/// ((oh_end - oh_begin) * out_w()) matrix `col` (row stride ldcol): the columns of im2col() for
/// those output pixels only. Threads that share one image each unroll the rows they compute, so
/// the matrix each one multiplies stays in its own core's cache.
template <typename T>
void im2col_rows(const T* image, const ConvGeometry& g, std::size_t oh_begin, std::size_t oh_end,
                 T* col, std::size_t ldcol) {
    check(oh_begin <= oh_end && oh_end <= g.out_h(), "im2col_rows: rows [", oh_begin, ", ", oh_end,
          ") outside the ", g.out_h(), " output rows");
    const std::size_t ow_n = g.out_w();
    const auto H = static_cast<std::ptrdiff_t>(g.height), W = static_cast<std::ptrdiff_t>(g.width);
    std::size_t row = 0;
    for (std::size_t c = 0; c < g.channels; ++c) {
        const T* plane = image + c * g.height * g.width;
        for (std::size_t ki = 0; ki < g.kernel_h; ++ki) {
            for (std::size_t kj = 0; kj < g.kernel_w; ++kj, ++row) {
                T* out = col + row * ldcol;
                // Output columns ow whose input column iw = ow*s - pad + kj*dil lies inside [0, W):
                // computed once per row so the inner loop has no bounds test.
                const auto off_w = static_cast<std::ptrdiff_t>(kj * g.dilation_w) -
                                   static_cast<std::ptrdiff_t>(g.pad_w);
                const auto sw = static_cast<std::ptrdiff_t>(g.stride_w);
                std::ptrdiff_t lo = off_w >= 0 ? 0 : (-off_w + sw - 1) / sw;
                std::ptrdiff_t hi = W - off_w <= 0 ? 0 : (W - off_w + sw - 1) / sw;
                lo = std::min<std::ptrdiff_t>(lo, static_cast<std::ptrdiff_t>(ow_n));
                hi = std::clamp<std::ptrdiff_t>(hi, lo, static_cast<std::ptrdiff_t>(ow_n));
                for (std::size_t oh = oh_begin; oh < oh_end; ++oh, out += ow_n) {
                    const auto ih =
                        static_cast<std::ptrdiff_t>(oh * g.stride_h + ki * g.dilation_h) -
                        static_cast<std::ptrdiff_t>(g.pad_h);
                    if (ih < 0 || ih >= H) {  // the whole output row reads padding
                        std::fill(out, out + ow_n, T(0));
                        continue;
                    }
                    const T* in = plane + ih * W + off_w;
                    std::fill(out, out + lo, T(0));
                    if (sw == 1) {
                        std::memcpy(out + lo, in + lo,
                                    static_cast<std::size_t>(hi - lo) * sizeof(T));
                    } else {
                        for (std::ptrdiff_t ow = lo; ow < hi; ++ow) out[ow] = in[ow * sw];
                    }
                    std::fill(out + hi, out + ow_n, T(0));
                }
            }
        }
    }
}

/// Unrolls one C x H x W image into the col_rows() x col_cols() matrix `col` (row stride ldcol):
/// col[(c, ki, kj), (oh, ow)] = image[c, oh*stride - pad + ki*dil, ow*stride - pad + kj*dil],
/// and 0 where that index falls in the padding. Then conv = weights (OC x C*kh*kw) * col.
template <typename T>
void im2col(const T* image, const ConvGeometry& g, T* col, std::size_t ldcol) {
    im2col_rows(image, g, 0, g.out_h(), col, ldcol);
}

/// The adjoint of im2col: adds every entry of `col` back to the image pixel it was read from
/// (entries that came from padding are dropped). `image` is overwritten, not accumulated into.
/// Used for the convolution's input gradient: dX = col2im(W^T * dY).
template <typename T>
void col2im(const T* col, std::size_t ldcol, const ConvGeometry& g, T* image) {
    const std::size_t oh_n = g.out_h(), ow_n = g.out_w();
    const auto H = static_cast<std::ptrdiff_t>(g.height), W = static_cast<std::ptrdiff_t>(g.width);
    std::fill(image, image + g.image_size(), T(0));
    std::size_t row = 0;
    for (std::size_t c = 0; c < g.channels; ++c) {
        T* plane = image + c * g.height * g.width;
        for (std::size_t ki = 0; ki < g.kernel_h; ++ki) {
            for (std::size_t kj = 0; kj < g.kernel_w; ++kj, ++row) {
                const T* in = col + row * ldcol;
                const auto off_w = static_cast<std::ptrdiff_t>(kj * g.dilation_w) -
                                   static_cast<std::ptrdiff_t>(g.pad_w);
                const auto sw = static_cast<std::ptrdiff_t>(g.stride_w);
                std::ptrdiff_t lo = off_w >= 0 ? 0 : (-off_w + sw - 1) / sw;
                std::ptrdiff_t hi = W - off_w <= 0 ? 0 : (W - off_w + sw - 1) / sw;
                lo = std::min<std::ptrdiff_t>(lo, static_cast<std::ptrdiff_t>(ow_n));
                hi = std::clamp<std::ptrdiff_t>(hi, lo, static_cast<std::ptrdiff_t>(ow_n));
                for (std::size_t oh = 0; oh < oh_n; ++oh, in += ow_n) {
                    const auto ih =
                        static_cast<std::ptrdiff_t>(oh * g.stride_h + ki * g.dilation_h) -
                        static_cast<std::ptrdiff_t>(g.pad_h);
                    if (ih < 0 || ih >= H) continue;
                    T* out = plane + ih * W + off_w;
                    for (std::ptrdiff_t ow = lo; ow < hi; ++ow) out[ow * sw] += in[ow];
                }
            }
        }
    }
}

/// im2col over a batch of N images into one col_rows() x (N * col_cols()) matrix, image n taking
/// columns [n*P, (n+1)*P): one GEMM then convolves the whole batch. Images are unrolled in
/// parallel.
template <typename T>
void im2col_batch(const T* images, std::size_t batch, const ConvGeometry& g, T* col) {
    const std::size_t P = g.col_cols(), ld = checked_mul(batch, P, "im2col_batch");
    parallel_for(batch, [&](std::size_t b, std::size_t e) {
        for (std::size_t n = b; n < e; ++n) im2col(images + n * g.image_size(), g, col + n * P, ld);
    });
}

/// col2im over a batch: the adjoint of im2col_batch.
template <typename T>
void col2im_batch(const T* col, std::size_t batch, const ConvGeometry& g, T* images) {
    const std::size_t P = g.col_cols(), ld = checked_mul(batch, P, "col2im_batch");
    parallel_for(batch, [&](std::size_t b, std::size_t e) {
        for (std::size_t n = b; n < e; ++n) col2im(col + n * P, ld, g, images + n * g.image_size());
    });
}

}  // namespace facet
