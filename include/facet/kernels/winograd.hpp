// facet/kernels/winograd.hpp — Winograd's minimal filtering F(2x2, 3x3): a 3x3 convolution with
// stride 1 computed on 2x2 output tiles with 16 multiplications per tile and channel pair instead
// of 36 (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//
// For a 4x4 input tile d and a 3x3 filter g, the 2x2 output tile is
//   Y = A^T [ (G g G^T) .* (B^T d B) ] A
// with
//   B^T = [1  0 -1  0]    G = [ 1    0    0 ]    A^T = [1 1  1  0]
//         [0  1  1  0]        [1/2  1/2  1/2]          [0 1 -1 -1]
//         [0 -1  1  0]        [1/2 -1/2  1/2]
//         [0  1  0 -1]        [ 0    0    1 ]
// Summed over input channels, the element-wise product becomes 16 independent matrix products:
// for each of the 16 positions xi of a tile, M_xi (OC x tiles) = U_xi (OC x C) * V_xi (C x tiles),
// with U = G g G^T of every filter and V = B^T d B of every input tile. Conv2d runs those 16
// products through gemm, so the multiplications keep the GEMM's micro-kernels; the transforms
// are additions only. The input gradient is the same algorithm on dy (the adjoint convolution),
// and the weight gradient runs the three steps backwards (see "The weight gradient" below).
// F(4x4, 3x3) (kernels/winograd_f4.hpp) has the same structure with 36 products; Conv2d uses it
// for the forward pass and the input gradient. Read next: kernels/conv_plan.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "facet/core/parallel.hpp"
#include "facet/kernels/gemm.hpp"
#include "facet/kernels/im2col.hpp"
#include "facet/kernels/vector_loops.hpp"
#include "facet/kernels/winograd_f4.hpp"
#include "facet/kernels/winograd_tiles.hpp"

namespace facet {

/// U_xi = (G g G^T)_xi of every filter: w is OC x C x 3 x 3, u is 16 x OC x C (position-major, so
/// that u + xi * OC * C is the xi-th product's left operand, row-major OC x C). Made once per
/// batch and packed, so its 16 streams need no padding.
template <typename T>
void winograd_transform_weights(const T* w, std::size_t OC, std::size_t C, T* u,
                                std::size_t plane = 0) {
    if (plane == 0) plane = OC * C;  // as winograd4_transform_weights: matrices `plane` apart
    for (std::size_t f = 0; f < OC * C; ++f) {
        const T* g = w + f * 9;
        T t[4][3];  // G g: rows g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2
        for (std::size_t j = 0; j < 3; ++j) {
            const T g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
            t[0][j] = g0;
            t[1][j] = T(0.5) * (g0 + g1 + g2);
            t[2][j] = T(0.5) * (g0 - g1 + g2);
            t[3][j] = g2;
        }
        for (std::size_t i = 0; i < 4; ++i) {  // (G g) G^T, the same on each row
            const T q0 = t[i][0], q1 = t[i][1], q2 = t[i][2];
            u[(i * 4 + 0) * plane + f] = q0;
            u[(i * 4 + 1) * plane + f] = T(0.5) * (q0 + q1 + q2);
            u[(i * 4 + 2) * plane + f] = T(0.5) * (q0 - q1 + q2);
            u[(i * 4 + 3) * plane + f] = q2;
        }
    }
}

namespace detail {
/// Row r of a plane of `width` columns as the padded image holds it (shifted right by `pad`,
/// zeros where it has no column, and everywhere when r lies outside [0, height)), split into its
/// even columns 0, 2, .., 2n - 2 and odd columns 1, 3, .., 2n - 1: a tile's four columns are then
/// even[tj], odd[tj], even[tj + 1], odd[tj + 1], and a block of tiles reads each with unit stride.
template <typename T>
void winograd_split_row(const T* plane, std::ptrdiff_t r, std::size_t height, std::size_t width,
                        std::size_t pad, std::size_t n, T* __restrict even, T* __restrict odd) {
    if (r < 0 || r >= static_cast<std::ptrdiff_t>(height)) {
        for (std::size_t j = 0; j < n; ++j) even[j] = odd[j] = T(0);
        return;
    }
    const T* __restrict row = plane + static_cast<std::size_t>(r) * width;
    const auto W = static_cast<std::ptrdiff_t>(width), P = static_cast<std::ptrdiff_t>(pad);
    const auto at = [&](std::ptrdiff_t s) { return s >= 0 && s < W ? row[s] : T(0); };
    // Columns 2j - pad and 2j + 1 - pad both inside the row for j in [lo, hi).
    const std::size_t lo = std::min(n, (pad + 1) / 2);
    const std::size_t hi = std::max(lo, std::min<std::size_t>(n, (width + pad) / 2));
    for (std::size_t j = 0; j < lo; ++j)
        even[j] = at(2 * std::ptrdiff_t(j) - P), odd[j] = at(2 * std::ptrdiff_t(j) + 1 - P);
    const T* inside = row + 2 * lo - pad;
    for (std::size_t j = lo; j < hi; ++j) {
        even[j] = inside[2 * (j - lo)];
        odd[j] = inside[2 * (j - lo) + 1];
    }
    for (std::size_t j = hi; j < n; ++j)
        even[j] = at(2 * std::ptrdiff_t(j) - P), odd[j] = at(2 * std::ptrdiff_t(j) + 1 - P);
}

/// d B for one padded row split into even and odd columns: tile tj's columns 2tj .. 2tj + 3 are
/// even[tj], odd[tj], even[tj + 1], odd[tj + 1], and x_b[tj] = sum_j d_j B[j][b].
template <typename T>
void winograd_combine_columns(const T* __restrict even, const T* __restrict odd, std::size_t n,
                              T* __restrict x0, T* __restrict x1, T* __restrict x2,
                              T* __restrict x3) {
    for (std::size_t j = 0; j < n; ++j) {
        x0[j] = even[j] - even[j + 1];
        x1[j] = odd[j] + even[j + 1];
        x2[j] = even[j + 1] - odd[j];
        x3[j] = odd[j] - odd[j + 1];
    }
}

/// B^T X for n tiles at once, given each tile's rows 0..3 of X in r0..r3: the same four
/// combinations as the columns, v_a = sum_i B^T[a][i] r_i.
template <typename T>
void winograd_combine_rows(const T* __restrict r0, const T* __restrict r1, const T* __restrict r2,
                           const T* __restrict r3, std::size_t n, T* __restrict v0,
                           T* __restrict v1, T* __restrict v2, T* __restrict v3) {
    for (std::size_t t = 0; t < n; ++t) {
        v0[t] = r0[t] - r2[t];
        v1[t] = r1[t] + r2[t];
        v2[t] = r2[t] - r1[t];
        v3[t] = r1[t] - r3[t];
    }
}

/// (y0, y1) A^T = (y0, y0 + y1, y0 - y1, -y1) for n pairs at once: the one step of the output
/// gradient's transform, on the columns of a tile and then on its rows.
template <typename T>
void winograd_spread_pairs(const T* __restrict y0, const T* __restrict y1, std::size_t n,
                           T* __restrict z0, T* __restrict z1, T* __restrict z2, T* __restrict z3) {
    for (std::size_t i = 0; i < n; ++i) {
        z0[i] = y0[i];
        z1[i] = y0[i] + y1[i];
        z2[i] = y0[i] - y1[i];
        z3[i] = -y1[i];
    }
}
}  // namespace detail

/// V_xi = (B^T d B)_xi of every 4x4 input tile d of one C x H x W image (zero outside the image,
/// as the padding): v holds 16 matrices `stride` elements apart (see winograd_stride), the xi-th
/// being the xi-th product's right operand, row-major C x tiles, tile t = ti * tiles_w + tj.
/// Only the tile rows [row_begin, row_end) are transformed, tile (ti, tj) going to column
/// (ti - row_begin) * tiles_w + tj: threads sharing one image each take some rows. The rows of
/// the 16 matrices are `ld` elements long (0: just this range's tiles), so that several images
/// can sit side by side in one product (see winograd_convolve).
///
/// Separably, columns first: X = d B combines the columns 2tj .. 2tj + 3 of each padded image row
/// once (a row belongs to two tile rows); B^T X then combines the rows 2ti .. 2ti + 3. X is kept
/// in two halves, the even padded rows 2q in one and the odd rows 2q + 1 in the other, q * tiles_w
/// + tj apart: tile t = (ti - row_begin) * tiles_w + tj then finds its four rows at t and
/// t + tiles_w of the two halves, so the row pass is one unit-stride loop over all the tiles.
template <typename T>
void winograd_transform_input(const T* image, const ConvGeometry& g, const WinogradTiling& tl,
                              std::size_t row_begin, std::size_t row_end, T* v, std::size_t stride,
                              std::size_t ld = 0) {
    const std::size_t tw = tl.tiles_w, rows = row_end - row_begin, tiles = rows * tw;
    if (ld == 0) ld = tiles;
    const std::size_t half = (rows + 1) * tw;  // X of padded rows 2q (or 2q + 1), q in the range
    std::vector<T> buffer(2 * (tw + 1) + 8 * half);
    T* even = buffer.data();
    T* odd = even + (tw + 1);
    T* x[2][4];  // x[parity][b]: column b of d B, for the padded rows of that parity
    for (std::size_t b = 0; b < 4; ++b) {
        x[0][b] = odd + (tw + 1) + b * half;
        x[1][b] = odd + (tw + 1) + (4 + b) * half;
    }
    for (std::size_t c = 0; c < g.channels; ++c) {
        const T* plane = image + c * g.height * g.width;
        for (std::size_t pr = 2 * row_begin; pr < 2 * row_end + 2; ++pr) {  // d B, row by row
            detail::winograd_split_row(
                plane, static_cast<std::ptrdiff_t>(pr) - static_cast<std::ptrdiff_t>(g.pad_h),
                g.height, g.width, g.pad_w, tw + 1, even, odd);
            const std::size_t at = (pr / 2 - row_begin) * tw;
            T* const* out = x[pr % 2];
            detail::winograd_combine_columns(even, odd, tw, out[0] + at, out[1] + at, out[2] + at,
                                             out[3] + at);
        }
        T* vc = v + c * ld;
        for (std::size_t b = 0; b < 4; ++b)  // B^T (d B), every tile at once
            detail::winograd_combine_rows(x[0][b], x[1][b], x[0][b] + tw, x[1][b] + tw, tiles,
                                          vc + b * stride, vc + (4 + b) * stride,
                                          vc + (8 + b) * stride, vc + (12 + b) * stride);
    }
}

/// Y = A^T M A of every tile of the rows [row_begin, row_end): m holds the 16 products' results
/// (OC x tiles each, `stride` elements apart, columns as winograd_transform_input placed them),
/// y is one image's whole output, OC x out_h x out_w; outputs past the image's edge are dropped.
/// Rows of m are `ld` long (0: the range's tiles). A block of neighbouring tiles at a time, as
/// the input transform.
template <typename T>
void winograd_transform_output(const T* m, std::size_t stride, std::size_t OC,
                               const ConvGeometry& g, const WinogradTiling& tl,
                               std::size_t row_begin, std::size_t row_end, T* y,
                               std::size_t ld = 0) {
    const std::size_t OH = g.out_h(), OW = g.out_w();
    if (ld == 0) ld = (row_end - row_begin) * tl.tiles_w;
    for (std::size_t o = 0; o < OC; ++o) {
        const T* mo = m + o * ld;
        T* yo = y + o * OH * OW;
        for (std::size_t ti = row_begin; ti < row_end; ++ti)
            detail::for_each_tile_block(tl.tiles_w, [&](auto width, std::size_t tj) {
                constexpr std::size_t B = decltype(width)::value;
                const T* p = mo + (ti - row_begin) * tl.tiles_w + tj;
                T pair[2][2 * B];  // the block's two output rows
                for (std::size_t l = 0; l < B; ++l) {
                    T t[2][4];  // A^T M
                    for (std::size_t b = 0; b < 4; ++b) {
                        t[0][b] =
                            p[b * stride + l] + p[(4 + b) * stride + l] + p[(8 + b) * stride + l];
                        t[1][b] = p[(4 + b) * stride + l] - p[(8 + b) * stride + l] -
                                  p[(12 + b) * stride + l];
                    }
                    for (std::size_t a = 0; a < 2; ++a) {  // (A^T M) A
                        pair[a][2 * l] = t[a][0] + t[a][1] + t[a][2];
                        pair[a][2 * l + 1] = t[a][1] - t[a][2] - t[a][3];
                    }
                }
                const std::size_t oh = 2 * ti, ow = 2 * tj;
                for (std::size_t a = 0; a < 2 && oh + a < OH; ++a) {
                    T* row = yo + (oh + a) * OW + ow;
                    if (ow + 2 * B <= OW)
                        for (std::size_t k = 0; k < 2 * B; ++k) row[k] = pair[a][k];
                    else  // the last tile reaches one column past the output
                        for (std::size_t k = 0; k < OW - ow; ++k) row[k] = pair[a][k];
                }
            });
    }
}

// The weight gradient. With M = sum_c U_c .* V_c and Y = A^T M A for every tile, the chain rule
// gives dM = A dY A^T per tile, dU_oc = sum over tiles of dM_o .* V_c — for each position xi one
// product dU_xi (OC x C) = dM_xi (OC x tiles) * V_xi^T — and, from U = G g G^T, dg = G^T dU G.
// The same 2.25x fewer multiplications as the forward pass, and V is the forward pass's own input
// transform.

/// dM_xi = (A dY A^T)_xi of every 2x2 tile of one image's output gradient dy (OC x out_h x out_w;
/// zero past the output's edge, where the forward pass dropped its values): m holds 16 matrices
/// `stride` elements apart, row-major OC x tiles, tile t = ti * tiles_w + tj, as
/// winograd_transform_input places V, rows `ld` long (0: the image's tiles). Separably, as the
/// input transform: Z = dY A^T on each output row (kept in halves for the even and the odd rows),
/// then A Z on every tile at once.
template <typename T>
void winograd_transform_output_gradient(const T* dy, std::size_t OC, const ConvGeometry& g,
                                        const WinogradTiling& tl, T* m, std::size_t stride,
                                        std::size_t ld = 0) {
    const std::size_t OH = g.out_h(), OW = g.out_w(), tw = tl.tiles_w, tiles = tl.tiles();
    std::vector<T> buffer(2 * tw + 8 * tiles);
    T* even = buffer.data();
    T* odd = even + tw;
    T* z[2][4];  // z[parity][j]: column j of dY A^T, for the output rows of that parity
    for (std::size_t j = 0; j < 4; ++j) {
        z[0][j] = odd + tw + j * tiles;
        z[1][j] = odd + tw + (4 + j) * tiles;
    }
    for (std::size_t o = 0; o < OC; ++o) {
        const T* plane = dy + o * OH * OW;
        for (std::size_t r = 0; r < 2 * tl.tiles_h; ++r) {  // dY A^T, row by row
            const auto row = static_cast<std::ptrdiff_t>(r);
            detail::winograd_split_row(plane, row, OH, OW, 0, tw, even, odd);
            T* const* out = z[r % 2];
            const std::size_t at = (r / 2) * tw;  // columns (y0, y1) A^T
            detail::winograd_spread_pairs(even, odd, tw, out[0] + at, out[1] + at, out[2] + at,
                                          out[3] + at);
        }
        T* mo = m + o * (ld == 0 ? tiles : ld);
        for (std::size_t j = 0; j < 4; ++j)  // A Z: rows z0 (output row 2ti) and z1 (2ti + 1)
            detail::winograd_spread_pairs(z[0][j], z[1][j], tiles, mo + j * stride,
                                          mo + (4 + j) * stride, mo + (8 + j) * stride,
                                          mo + (12 + j) * stride);
    }
}

/// dw (OC x C x 3 x 3) = G^T dU G for every filter, from du laid out as winograd_transform_weights
/// lays out U (16 x OC x C): the adjoint of that transform.
template <typename T>
void winograd_weight_gradient(const T* du, std::size_t OC, std::size_t C, T* dw,
                              std::size_t plane = 0) {
    if (plane == 0) plane = OC * C;  // du's matrices `plane` apart, as for the weights
    for (std::size_t f = 0; f < OC * C; ++f) {
        T x[4][4];
        for (std::size_t xi = 0; xi < 16; ++xi) x[xi / 4][xi % 4] = du[xi * plane + f];
        T t[3][4];  // G^T dU: rows x0 + (x1 + x2) / 2, (x1 - x2) / 2, (x1 + x2) / 2 + x3
        for (std::size_t j = 0; j < 4; ++j) {
            const T half_sum = T(0.5) * (x[1][j] + x[2][j]);
            t[0][j] = x[0][j] + half_sum;
            t[1][j] = T(0.5) * (x[1][j] - x[2][j]);
            t[2][j] = half_sum + x[3][j];
        }
        T* out = dw + f * 9;
        for (std::size_t a = 0; a < 3; ++a) {  // (G^T dU) G, the same on each row
            const T half_sum = T(0.5) * (t[a][1] + t[a][2]);
            out[a * 3 + 0] = t[a][0] + half_sum;
            out[a * 3 + 1] = T(0.5) * (t[a][1] - t[a][2]);
            out[a * 3 + 2] = half_sum + t[a][3];
        }
    }
}

/// Adds the share of dU of `count` consecutive images to du (16 x OC x C for `tile` 2, 36 x OC x C
/// for 4), or stores it when `first`: x holds the images (each g.channels x height x width), dy
/// their output gradients (each OC x out_h x out_w). The images' tiles sit side by side in one
/// product per position, so its sum runs over count * tiles. The workspace holds
/// winograd_workspace_size(g, OC, count * tiles_h, tile) elements, as winograd_convolve's.
/// winograd_weight_gradient (or winograd4_weight_gradient) then makes dW of the sum.
template <typename T>
void winograd_accumulate_weight_gradient(const T* x, const T* dy, std::size_t count,
                                         const ConvGeometry& g, std::size_t OC, bool first, T* du,
                                         T* workspace, std::size_t tile = 2) {
    const WinogradTiling tiling = winograd_tiling(g, tile);
    const std::size_t tiles = tiling.tiles(), n = count * tiles, C = g.channels;
    const std::size_t v_stride = winograd_stride<T>(C * n), m_stride = winograd_stride<T>(OC * n);
    T* v = workspace;
    T* m = v + tiling.positions() * v_stride;
    run_vectorized([&] {
        for (std::size_t i = 0; i < count; ++i) {
            const T* image = x + i * g.image_size();
            const T* gradient = dy + i * OC * g.col_cols();
            if (tile == 4) {
                winograd4_transform_input(image, g, tiling, 0, tiling.tiles_h, v + i * tiles,
                                          v_stride, n);
                winograd4_transform_output_gradient(gradient, OC, g, tiling, m + i * tiles,
                                                    m_stride, n);
            } else {
                winograd_transform_input(image, g, tiling, 0, tiling.tiles_h, v + i * tiles,
                                         v_stride, n);
                winograd_transform_output_gradient(gradient, OC, g, tiling, m + i * tiles, m_stride,
                                                   n);
            }
        }
    });
    for (std::size_t xi = 0; xi < tiling.positions(); ++xi)
        gemm(Trans::No, Trans::Yes, OC, C, n, T(1), m + xi * m_stride, n, v + xi * v_stride, n,
             first ? T(0) : T(1), du + xi * OC * C, C);
}

/// The transformed filter matrices of one Winograd convolution (16 for F(2x2, 3x3), 36 for
/// F(4x4, 3x3)), packed for gemm; remade only when the weights they come from (or the tile)
/// change (comparing the weights with a copy costs far less than transforming and packing them
/// again, which at batch 1 took as long as the products).
template <typename T>
class WinogradFilters {
  public:
    WinogradFilters() = default;
    // A copy starts empty and makes its own filters on first use: the packed matrices keep a
    // pointer to the filters they were packed from, which are the original's.
    WinogradFilters(const WinogradFilters&) {}
    WinogradFilters& operator=(const WinogradFilters&) {
        source_.clear();  // the next update() remakes everything
        return *this;
    }
    // A move takes the storage along, so the packed matrices' pointers stay valid.
    WinogradFilters(WinogradFilters&&) noexcept = default;
    WinogradFilters& operator=(WinogradFilters&&) noexcept = default;

    /// For weights w (OC x C x 3 x 3) and output tiles of `tile` x `tile` (2 or 4): the
    /// convolution itself (C channels in, OC out), or with `adjoint` the convolution that gives
    /// its input gradient (OC in, C out, each 3x3 kernel turned by 180 degrees:
    /// dx = sum_o dy_o correlated with rot180(w_oc)).
    void update(const T* w, std::size_t OC, std::size_t C, bool adjoint, std::size_t tile = 2) {
        const std::size_t n = OC * C * 9;
        if (adjoint == adjoint_ && tile == tile_ && OC == OC_ && C == C_ && source_.size() == n &&
            std::equal(w, w + n, source_.begin()))
            return;
        source_.assign(w, w + n);
        adjoint_ = adjoint, tile_ = tile, OC_ = OC, C_ = C;
        in_ = adjoint ? OC : C;
        out_ = adjoint ? C : OC;
        std::vector<T> turned;
        const T* kernels = w;
        if (adjoint) {  // turned[c][o] = rot180(w[o][c])
            turned.resize(n);
            for (std::size_t o = 0; o < OC; ++o)
                for (std::size_t c = 0; c < C; ++c)
                    for (std::size_t k = 0; k < 9; ++k)
                        turned[(c * OC + o) * 9 + k] = w[(o * C + c) * 9 + (8 - k)];
            kernels = turned.data();
        }
        const std::size_t positions = (tile + 2) * (tile + 2), plane = out_ * in_;
        filters_.resize(positions * plane);
        packed_.resize(positions);
        // Twice per training step for every layer: the threads share the rows of filters, then
        // the matrices to pack.
        parallel_for(out_, [&](std::size_t o0, std::size_t o1) {
            const T* from = kernels + o0 * in_ * 9;
            T* to = filters_.data() + o0 * in_;
            if (tile == 4)
                winograd4_transform_weights(from, o1 - o0, in_, to, plane);
            else
                winograd_transform_weights(from, o1 - o0, in_, to, plane);
        });
        parallel_for(positions, [&](std::size_t x0, std::size_t x1) {
            for (std::size_t xi = x0; xi < x1; ++xi)
                packed_[xi].pack(Trans::No, out_, in_, filters_.data() + xi * plane, in_);
        });
    }

    std::size_t in_channels() const { return in_; }
    std::size_t out_channels() const { return out_; }
    std::size_t tile() const { return tile_; }
    const GemmPackedA<T>& matrix(std::size_t xi) const { return packed_[xi]; }

  private:
    std::vector<T> source_, filters_;
    std::vector<GemmPackedA<T>> packed_;
    bool adjoint_ = false;
    std::size_t tile_ = 2, OC_ = 0, C_ = 0, in_ = 0, out_ = 0;
};

/// How many images winograd_convolve and winograd_accumulate_weight_gradient (with `tile` x
/// `tile` output tiles) take at once: enough for about 144 tiles (three
/// of the AVX-512 kernel's 48-column tiles), at most 16. A 12 x 12 image has 36 tiles of 2x2: its
/// products alone are 36 columns wide (or, for the weight gradient, 36 long), and the GEMM
/// computes a 48-wide tile and loads and stores C for them.
inline std::size_t winograd_group_size(const ConvGeometry& g, std::size_t tile = 2) {
    const std::size_t tiles = winograd_tiling(g, tile).tiles();
    return std::clamp<std::size_t>((144 + tiles - 1) / tiles, 1, 16);
}

/// Elements of workspace winograd_convolve needs for `rows` tile rows of all its images together
/// (count * (r1 - r0); count * tiles_h for winograd_accumulate_weight_gradient).
template <typename T>
std::size_t winograd_workspace_size(const ConvGeometry& g, std::size_t out_channels,
                                    std::size_t rows, std::size_t tile = 2) {
    const WinogradTiling tiling = winograd_tiling(g, tile);
    const std::size_t tiles = rows * tiling.tiles_w;
    return tiling.positions() *
           (winograd_stride<T>(g.channels * tiles) + winograd_stride<T>(out_channels * tiles));
}

/// The convolutions by F(m x m, 3x3), m = f.tile(), of `count` consecutive images (each
/// g.channels x height x width; out: each f.out_channels() x out_h x out_w), the outputs of tile
/// rows [r0, r1) only, with the images' tiles side by side in each of the 16 (or 36) products.
/// Each tile's values depend neither on which rows are asked for nor on its neighbours in the
/// product, so threads may share an image and small images may share a product, all with the
/// same bits.
template <typename T>
void winograd_convolve(const T* images, std::size_t count, const ConvGeometry& g,
                       const WinogradFilters<T>& f, std::size_t r0, std::size_t r1, T* out,
                       T* workspace) {
    const WinogradTiling tiling = winograd_tiling(g, f.tile());
    const std::size_t tiles = (r1 - r0) * tiling.tiles_w, n = count * tiles, OC = f.out_channels();
    const std::size_t v_stride = winograd_stride<T>(g.channels * n),
                      m_stride = winograd_stride<T>(OC * n);
    const bool f4 = f.tile() == 4;
    T* v = workspace;
    T* m = v + tiling.positions() * v_stride;
    run_vectorized([&] {
        for (std::size_t i = 0; i < count; ++i) {
            const T* image = images + i * g.image_size();
            if (f4)
                winograd4_transform_input(image, g, tiling, r0, r1, v + i * tiles, v_stride, n);
            else
                winograd_transform_input(image, g, tiling, r0, r1, v + i * tiles, v_stride, n);
        }
    });
    for (std::size_t xi = 0; xi < tiling.positions(); ++xi)
        f.matrix(xi).multiply(Trans::No, n, T(1), v + xi * v_stride, n, T(0), m + xi * m_stride, n);
    run_vectorized([&] {
        if (f4) {
            winograd4_transform_output(m, m_stride, OC, g, tiling, r0, r1, out, count);
            return;
        }
        for (std::size_t i = 0; i < count; ++i)
            winograd_transform_output(m + i * tiles, m_stride, OC, g, tiling, r0, r1,
                                      out + i * OC * g.col_cols(), n);
    });
}

}  // namespace facet
