// facet/kernels/winograd_f4.hpp — the transforms of Winograd's F(4x4, 3x3): 4x4 output tiles
// from 6x6 input tiles, 36 multiplications per tile and channel pair instead of the 144 of a
// direct convolution (F(2x2, 3x3) needs 16 for a quarter of the outputs, so 64 for the same 16).
// The interpolation points are 0, 1, -1, 2, -2 and infinity (Lavin & Gray 2016):
//
//   B^T = [4  0 -5  0  1  0]    G = [ 1/4     0     0  ]    A^T = [1 1  1 1  1 0]
//         [0 -4 -4  1  1  0]        [-1/6  -1/6  -1/6 ]          [0 1 -1 2 -2 0]
//         [0  4 -4 -1  1  0]        [-1/6   1/6  -1/6 ]          [0 1  1 4  4 0]
//         [0 -2 -1  2  1  0]        [1/24  1/12  1/6  ]          [0 1 -1 8 -8 1]
//         [0  2 -1 -2  1  0]        [1/24 -1/12  1/6  ]
//         [0  4  0 -5  0  1]        [  0     0     1  ]
//
// Y = A^T [ (G g G^T) .* (B^T d B) ] A, and as for F(2x2, 3x3) the element-wise products summed
// over channels become one matrix product per position, here 36 of them (winograd_convolve).
// The larger coefficients (up to 8 in A^T, 5 in B^T) cost accuracy: in float the results differ
// from a direct convolution by about 1e-5 of the largest output, 10-17x F(2x2, 3x3)'s error
// (measured on 16- to 128-channel layers; the tests bound both). The layout follows
// kernels/winograd.hpp's F(2x2, 3x3) transforms, with tiles 4 apart instead of 2: read those first.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

#include "facet/kernels/winograd_tiles.hpp"

namespace facet {

/// U_xi = (G g G^T)_xi of every filter for F(4x4, 3x3): w is OC x C x 3 x 3, u is 36 x OC x C
/// (position xi = 6a + b major, as winograd_transform_weights lays out its 16). The fractions are
/// formed in double whatever T is, so each element of U is rounded once. Made twice per training
/// step (for the forward pass and, turned, for the input gradient), for every filter: 8 filters
/// at a time, so that the compiler vectorises across them, and with the divisions by 4, 6 and 24
/// as multiplications (a chain of scalar divisions made this 8 % of a training step).
/// The 36 matrices are `plane` elements apart (0: OC * C), so that threads can each transform
/// some rows of filters into one U.
template <typename T>
void winograd4_transform_weights(const T* w, std::size_t OC, std::size_t C, T* u,
                                 std::size_t plane = 0) {
    const std::size_t filters = OC * C;
    if (plane == 0) plane = filters;
    constexpr std::size_t B = 8;
    constexpr double sixth = 1.0 / 6, twelfth = 1.0 / 12, twenty_fourth = 1.0 / 24;
    // r = G q for B columns (or rows) q of three taps at once.
    const auto apply_g = [](const double* q0, const double* q1, const double* q2, double(*r)[B]) {
        for (std::size_t l = 0; l < B; ++l) {
            const double sum = q0[l] + q2[l];
            r[0][l] = 0.25 * q0[l];
            r[1][l] = -(sum + q1[l]) * sixth;
            r[2][l] = -(sum - q1[l]) * sixth;
            r[3][l] = (q0[l] + 4 * q2[l]) * twenty_fourth + q1[l] * twelfth;
            r[4][l] = (q0[l] + 4 * q2[l]) * twenty_fourth - q1[l] * twelfth;
            r[5][l] = q2[l];
        }
    };
    for (std::size_t f0 = 0; f0 < filters; f0 += B) {
        const std::size_t nb = std::min(B, filters - f0);
        double g[9][B] = {};  // tap k of filter f0 + l
        for (std::size_t l = 0; l < nb; ++l)
            for (std::size_t k = 0; k < 9; ++k) g[k][l] = double(w[(f0 + l) * 9 + k]);
        double t[3][6][B];  // t[j] = G times column j of g
        for (std::size_t j = 0; j < 3; ++j) apply_g(g[j], g[3 + j], g[6 + j], t[j]);
        for (std::size_t a = 0; a < 6; ++a) {  // (G g) G^T: G on each row of G g
            double r[6][B];
            apply_g(t[0][a], t[1][a], t[2][a], r);
            for (std::size_t b = 0; b < 6; ++b)
                for (std::size_t l = 0; l < nb; ++l)
                    u[(a * 6 + b) * plane + f0 + l] = static_cast<T>(r[b][l]);
        }
    }
}

namespace detail {
/// v_a = sum_i B^T[a][i] d_i for B tiles, B a compile-time width (so a vector loop without a
/// remainder). Shared terms: with p = d4 - 4 d2, q = d3 - 4 d1, v1 = p + q and v2 = p - q; with
/// e = d4 - d2, f = 2 (d3 - d1), v3 = e + f and v4 = e - f. The restrict-qualified parameters
/// tell the compiler that the outputs alias no input, which it could not prove.
template <std::size_t B, typename T>
void winograd4_combine_block(const T* __restrict d0, const T* __restrict d1, const T* __restrict d2,
                             const T* __restrict d3, const T* __restrict d4, const T* __restrict d5,
                             T* __restrict v0, T* __restrict v1, T* __restrict v2, T* __restrict v3,
                             T* __restrict v4, T* __restrict v5) {
    for (std::size_t l = 0; l < B; ++l) {
        const T p = d4[l] - T(4) * d2[l], q = d3[l] - T(4) * d1[l];
        const T e = d4[l] - d2[l], f = T(2) * (d3[l] - d1[l]);
        v0[l] = T(4) * d0[l] - T(5) * d2[l] + d4[l];
        v1[l] = p + q;
        v2[l] = p - q;
        v3[l] = e + f;
        v4[l] = e - f;
        v5[l] = T(4) * d1[l] - T(5) * d3[l] + d5[l];
    }
}

/// winograd4_combine_block over n tiles, each tile's six inputs d_0..d_5 in six arrays and the
/// outputs v_a at v[a]; the same combination serves the columns and the rows of a tile.
/// Blocks of 16, 8, .. tiles: a row has few tiles (12 for 48 x 48), too few for a vector loop
/// with a scalar remainder.
template <typename T>
void winograd4_combine(const T* d0, const T* d1, const T* d2, const T* d3, const T* d4, const T* d5,
                       std::size_t n, T* const* v) {
    for_each_tile_block(n, [&](auto width, std::size_t j) {
        winograd4_combine_block<decltype(width)::value>(d0 + j, d1 + j, d2 + j, d3 + j, d4 + j,
                                                        d5 + j, v[0] + j, v[1] + j, v[2] + j,
                                                        v[3] + j, v[4] + j, v[5] + j);
    });
}

/// p_k[i] = src[4i + k] for i < n: a plane of rows 4 tiles_w long split into its four column
/// phases in one loop (the compiler de-interleaves whole vectors).
template <typename T>
void winograd4_split_phases(const T* __restrict src, std::size_t n, T* __restrict p0,
                            T* __restrict p1, T* __restrict p2, T* __restrict p3) {
    for (std::size_t i = 0; i < n; ++i) {
        p0[i] = src[4 * i];
        p1[i] = src[4 * i + 1];
        p2[i] = src[4 * i + 2];
        p3[i] = src[4 * i + 3];
    }
}

/// to[4l + j] = r[j][l]: four rows of B values interleaved, each tile's four outputs side by
/// side. The compiler turns the plain loop into scalar inserts and spills; for a full block of
/// 16 floats it is written as two rounds of two-way interleaving with generic vector shuffles,
/// which become a few permutations whatever the instruction set.
template <typename T, std::size_t B>
void interleave4(const T (&r)[4][B], T* to) {
#if defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 12)
    if constexpr (std::is_same_v<T, float> && B == 16) {
        using V = float __attribute__((vector_size(64)));
        V r0, r1, r2, r3;
        std::memcpy(&r0, r[0], sizeof(V));
        std::memcpy(&r1, r[1], sizeof(V));
        std::memcpy(&r2, r[2], sizeof(V));
        std::memcpy(&r3, r[3], sizeof(V));
        // e = (r0[0], r2[0], r0[1], r2[1], ..), f = (r1[0], r3[0], ..), in halves lo and hi.
        const V e_lo =
            __builtin_shufflevector(r0, r2, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        const V e_hi = __builtin_shufflevector(r0, r2, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29,
                                               14, 30, 15, 31);
        const V f_lo =
            __builtin_shufflevector(r1, r3, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        const V f_hi = __builtin_shufflevector(r1, r3, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29,
                                               14, 30, 15, 31);
        // to = (e[0], f[0], e[1], f[1], ..) = (r0[0], r1[0], r2[0], r3[0], r0[1], ..)
        const V o[4] = {__builtin_shufflevector(e_lo, f_lo, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5,
                                                21, 6, 22, 7, 23),
                        __builtin_shufflevector(e_lo, f_lo, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28,
                                                13, 29, 14, 30, 15, 31),
                        __builtin_shufflevector(e_hi, f_hi, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5,
                                                21, 6, 22, 7, 23),
                        __builtin_shufflevector(e_hi, f_hi, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28,
                                                13, 29, 14, 30, 15, 31)};
        std::memcpy(to, o, sizeof(o));
        return;
    }
#endif
    for (std::size_t l = 0; l < B; ++l)
        for (std::size_t j = 0; j < 4; ++j) to[4 * l + j] = r[j][l];
}
}  // namespace detail

/// V_xi = (B^T d B)_xi of every 6x6 input tile d of one C x H x W image for F(4x4, 3x3), tiles
/// 4 apart; arguments and layout as winograd_transform_input's (36 matrices instead of 16).
///
/// A row of a 48 x 48 image has only 12 tiles, too few for vector loops row by row, so each
/// channel goes through three flat passes over all its padded rows at once:
///  1. the padded rows the range needs are copied into `plane`, 4 tiles_w columns each, the
///     rows in the order 4q + k for k = 0..3, then q: padded row 4 (row_begin + q) + k lands at
///     row k Q + q (Q = rows + 1);
///  2. X = d B: each row is split into its four column phases, so that tile tj's six columns are
///     phase 0..3 at tj and phase 0, 1 at tj + 1, and combined, for every tile of every row in
///     one loop;
///  3. B^T X: tile t = (ti - row_begin) tiles_w + tj finds its rows 0..3 at t in the blocks
///     k = 0..3 of X, and its rows 4 and 5 at t + tiles_w in blocks 0 and 1: one loop over all
///     the tiles.
/// In step 2 a row's last tile finds its columns 4 and 5 (past the plane's 4 tiles_w) at the
/// next row's first tile, as phases 0 and 1: column 0 of each row holds the previous row's
/// column 4 tiles_w instead of its own (kept aside), and the two outputs those columns reach,
/// v0 of each row's first tile and v5 of its last, are formed again from the right inputs, a
/// few scalars a row instead of a whole tile.
template <typename T>
void winograd4_transform_input(const T* image, const ConvGeometry& g, const WinogradTiling& tl,
                               std::size_t row_begin, std::size_t row_end, T* v, std::size_t stride,
                               std::size_t ld = 0) {
    const std::size_t tw = tl.tiles_w, rows = row_end - row_begin, tiles = rows * tw;
    if (ld == 0) ld = tiles;
    const std::size_t Q = rows + 1, R = 4 * Q;  // R: padded rows of the plane
    const std::size_t span = R * tw;            // span: tiles of all the rows
    const std::size_t width = 4 * tw;           // columns of a row of `plane`
    std::vector<T> buffer((R + 1) * width + 3 * R + 4 * (span + 1) + 6 * span, T(0));
    T* plane = buffer.data();  // R + 1 rows: the last one's column 0 is row R - 1's column width
    T* first0 = plane + (R + 1) * width;  // column 0 of each row
    T* last0 = first0 + R;                // columns width and width + 1 of each row
    T* last1 = last0 + R;
    T* phase[4];  // phase[k][i] = column 4j + k of row r, i = r tiles_w + j
    for (std::size_t k = 0; k < 4; ++k) phase[k] = last1 + R + k * (span + 1);
    T* x[6];  // x[b][i]: column b of d B for tile j of row r, i = r tiles_w + j
    for (std::size_t b = 0; b < 6; ++b) x[b] = phase[3] + (span + 1) + b * span;
    const auto H = static_cast<std::ptrdiff_t>(g.height), W = static_cast<std::ptrdiff_t>(g.width);
    const auto pad_w = static_cast<std::ptrdiff_t>(g.pad_w);
    // The columns of `plane` that hold image columns: [first, first + count).
    const std::size_t first = std::min(width, g.pad_w);
    const std::size_t count =
        std::size_t(std::clamp<std::ptrdiff_t>(W + pad_w, 0, std::ptrdiff_t(width))) - first;
    for (std::size_t c = 0; c < g.channels; ++c) {
        const T* image_plane = image + c * g.height * g.width;
        for (std::size_t k = 0; k < 4; ++k)  // 1. the padded rows, zero outside the image
            for (std::size_t q = 0; q < Q; ++q) {
                const std::size_t at = k * Q + q;
                const std::ptrdiff_t r =
                    std::ptrdiff_t(4 * (row_begin + q) + k) - std::ptrdiff_t(g.pad_h);
                if (r < 0 || r >= H) {  // stays zero but for column 0, rewritten below
                    first0[at] = last0[at] = last1[at] = T(0);
                    continue;
                }
                const T* row = image_plane + std::size_t(r) * g.width;
                const T* __restrict from = row + (first - g.pad_w);
                T* __restrict to = plane + at * width + first;
                for (std::size_t j = 0; j < count; ++j) to[j] = from[j];
                const auto column = [&](std::ptrdiff_t s) {
                    return s >= 0 && s < W ? row[s] : T(0);
                };
                first0[at] = column(-pad_w);
                last0[at] = column(std::ptrdiff_t(width) - pad_w);
                last1[at] = column(std::ptrdiff_t(width) + 1 - pad_w);
            }
        for (std::size_t at = 0; at < R; ++at) plane[(at + 1) * width] = last0[at];
        // 2. the column phases of every row, then d B of every tile
        detail::winograd4_split_phases(plane, span + 1, phase[0], phase[1], phase[2], phase[3]);
        detail::winograd4_combine(phase[0], phase[1], phase[2], phase[3], phase[0] + 1,
                                  phase[1] + 1, span, x);
        for (std::size_t at = 0; at < R; ++at) {  // v0 = 4 d0 - 5 d2 + d4, v5 = 4 d1 - 5 d3 + d5
            const std::size_t i = at * tw, end = i + tw - 1;
            x[0][i] = T(4) * first0[at] - T(5) * phase[2][i] + phase[0][i + 1];
            x[5][end] = T(4) * phase[1][end] - T(5) * phase[3][end] + last1[at];
        }
        T* vc = v + c * ld;
        const std::size_t block = Q * tw;      // rows 4q + k of X, for one k
        for (std::size_t b = 0; b < 6; ++b) {  // 3. B^T (d B), every tile at once
            T* out[6];
            for (std::size_t a = 0; a < 6; ++a) out[a] = vc + (a * 6 + b) * stride;
            const T* xb = x[b];
            detail::winograd4_combine(xb, xb + block, xb + 2 * block, xb + 3 * block, xb + tw,
                                      xb + block + tw, tiles, out);
        }
    }
}

namespace detail {
/// r_a = sum_k A^T[a][k] m_k for B tiles: with s = m1 + m2, d = m1 - m2, S = m3 + m4 and
/// D = m3 - m4, (m0 + s + S, d + 2D, s + 4S, d + 8D + m5); restrict-qualified as
/// winograd4_combine_block.
template <std::size_t B, typename T>
void winograd4_apply_at_block(const T* __restrict m0, const T* __restrict m1,
                              const T* __restrict m2, const T* __restrict m3,
                              const T* __restrict m4, const T* __restrict m5, T* __restrict r0,
                              T* __restrict r1, T* __restrict r2, T* __restrict r3) {
    for (std::size_t l = 0; l < B; ++l) {
        const T s = m1[l] + m2[l], d = m1[l] - m2[l], S = m3[l] + m4[l], D = m3[l] - m4[l];
        r0[l] = m0[l] + s + S;
        r1[l] = d + T(2) * D;
        r2[l] = s + T(4) * S;
        r3[l] = d + T(8) * D + m5[l];
    }
}
}  // namespace detail

/// Y = A^T M A of every 4x4 tile of the rows [row_begin, row_end) of `count` images side by
/// side for F(4x4, 3x3): m holds the 36 products' results (OC x count * tiles each, `stride`
/// elements apart, image i's tiles from column i * tiles), y the images' whole outputs, each
/// OC x out_h x out_w; outputs past the image's edge are dropped. With s = m1 + m2, d = m1 - m2,
/// S = m3 + m4 and D = m3 - m4, A^T m is (m0 + s + S, d + 2D, s + 4S, d + 8D + m5).
///
/// As the input transform, in flat passes over all the tiles of all the images, one output
/// channel at a time: A^T M into 24 rows of tiles, then (A^T M) A, each tile's four values of
/// output row a stored next to each other, so that a band of tiles is four whole output rows,
/// which are then copied into place.
template <typename T>
void winograd4_transform_output(const T* m, std::size_t stride, std::size_t OC,
                                const ConvGeometry& g, const WinogradTiling& tl,
                                std::size_t row_begin, std::size_t row_end, T* y,
                                std::size_t count = 1) {
    const std::size_t OH = g.out_h(), OW = g.out_w(), tw = tl.tiles_w;
    const std::size_t tiles = (row_end - row_begin) * tw, n = count * tiles;
    std::vector<T> buffer(24 * n + 16 * n);
    T* t = buffer.data();  // t[(a * 6 + b) * n + i]: (A^T M)[a][b] of tile i
    T* out = t + 24 * n;   // out[a * 4n + 4i + j]: output (4 ti + a, 4 tj + j) of tile i
    for (std::size_t o = 0; o < OC; ++o) {
        const T* mo = m + o * n;
        for (std::size_t b = 0; b < 6; ++b)  // A^T M
            detail::for_each_tile_block(n, [&](auto width, std::size_t i) {
                const T* column = mo + b * stride + i;  // position (a, b) at a * 6 * stride
                T* to = t + b * n + i;                  // (a, b) at a * 6 n
                detail::winograd4_apply_at_block<decltype(width)::value>(
                    column, column + 6 * stride, column + 12 * stride, column + 18 * stride,
                    column + 24 * stride, column + 30 * stride, to, to + 6 * n, to + 12 * n,
                    to + 18 * n);
            });
        for (std::size_t a = 0; a < 4; ++a)  // (A^T M) A, four neighbours per tile
            detail::for_each_tile_block(n, [&](auto width, std::size_t i0) {
                constexpr std::size_t B = decltype(width)::value;
                const T* row = t + a * 6 * n + i0;  // (a, b) at b * n
                T r[4][B];
                detail::winograd4_apply_at_block<B>(row, row + n, row + 2 * n, row + 3 * n,
                                                    row + 4 * n, row + 5 * n, r[0], r[1], r[2],
                                                    r[3]);
                detail::interleave4(r, out + a * 4 * n + 4 * i0);
            });
        const std::size_t cols = std::min(4 * tw, OW);  // the last tile may reach past the edge
        for (std::size_t image = 0; image < count; ++image) {
            T* yo = y + (image * OC + o) * OH * OW;
            for (std::size_t ti = row_begin; ti < row_end; ++ti)
                for (std::size_t a = 0; a < 4 && 4 * ti + a < OH; ++a) {
                    const T* __restrict from =
                        out + a * 4 * n + 4 * (image * tiles + (ti - row_begin) * tw);
                    T* __restrict to = yo + (4 * ti + a) * OW;
                    for (std::size_t k = 0; k < cols; ++k) to[k] = from[k];
                }
        }
    }
}

// The weight gradient, as for F(2x2, 3x3) (kernels/winograd.hpp): dM = A dY A^T per 4x4 tile of
// the output gradient, dU_xi = dM_xi * V_xi^T summed over the tiles, dg = G^T dU G.

namespace detail {
/// e_a = sum_j A[a][j] d_j for B tiles: (d0, d0 + d1 + d2 + d3, d0 - d1 + d2 - d3,
/// d0 + 2 d1 + 4 d2 + 8 d3, d0 - 2 d1 + 4 d2 - 8 d3, d3), restrict-qualified as
/// winograd4_combine_block.
template <std::size_t B, typename T>
void winograd4_apply_a_block(const T* __restrict d0, const T* __restrict d1, const T* __restrict d2,
                             const T* __restrict d3, T* __restrict e0, T* __restrict e1,
                             T* __restrict e2, T* __restrict e3, T* __restrict e4,
                             T* __restrict e5) {
    for (std::size_t l = 0; l < B; ++l) {
        const T s02 = d0[l] + d2[l], s13 = d1[l] + d3[l];
        const T p = d0[l] + T(4) * d2[l], q = T(2) * d1[l] + T(8) * d3[l];
        e0[l] = d0[l];
        e1[l] = s02 + s13;
        e2[l] = s02 - s13;
        e3[l] = p + q;
        e4[l] = p - q;
        e5[l] = d3[l];
    }
}
}  // namespace detail

/// dM_xi = (A dY A^T)_xi of every 4x4 tile of one image's output gradient dy (OC x out_h x
/// out_w; zero past the output's edge, where the forward pass dropped its values), for
/// F(4x4, 3x3); arguments and layout as winograd_transform_output_gradient's (36 matrices). A
/// applied to a tile's four values d0..d3 of a column (or row) gives (d0, d0 + d1 + d2 + d3,
/// d0 - d1 + d2 - d3, d0 + 2 d1 + 4 d2 + 8 d3, d0 - 2 d1 + 4 d2 - 8 d3, d3). Tiles do not
/// overlap, so the passes are those of winograd4_transform_input without the row ends: the rows
/// copied into a plane (4 tiles_w columns, the rows 4q + k in the order k, then q), split into
/// their four column phases, dY A^T for every tile of every row, then A Z for every tile.
template <typename T>
void winograd4_transform_output_gradient(const T* dy, std::size_t OC, const ConvGeometry& g,
                                         const WinogradTiling& tl, T* m, std::size_t stride,
                                         std::size_t ld = 0) {
    const std::size_t OH = g.out_h(), OW = g.out_w(), tw = tl.tiles_w, th = tl.tiles_h;
    const std::size_t tiles = tl.tiles(), span = 4 * tiles, width = 4 * tw;
    if (ld == 0) ld = tiles;
    std::vector<T> buffer(4 * th * width + 10 * span, T(0));
    T* plane = buffer.data();
    T* phase[4];
    for (std::size_t k = 0; k < 4; ++k) phase[k] = plane + 4 * th * width + k * span;
    T* z[6];  // z[b][i]: column b of dY A^T for tile j of plane row r, i = r tiles_w + j
    for (std::size_t b = 0; b < 6; ++b) z[b] = phase[3] + span + b * span;
    // A on four values of n tiles at once, in four arrays: e_a = sum_j A[a][j] d_j.
    const auto apply_a = [](const T* d0, const T* d1, const T* d2, const T* d3, std::size_t n,
                            T* const* e) {
        detail::for_each_tile_block(n, [&](auto width_, std::size_t j) {
            detail::winograd4_apply_a_block<decltype(width_)::value>(d0 + j, d1 + j, d2 + j, d3 + j,
                                                                     e[0] + j, e[1] + j, e[2] + j,
                                                                     e[3] + j, e[4] + j, e[5] + j);
        });
    };
    const std::size_t count = std::min(OW, width);
    for (std::size_t o = 0; o < OC; ++o) {
        const T* dy_plane = dy + o * OH * OW;
        for (std::size_t k = 0; k < 4; ++k)  // the rows, zero past the output's edge
            for (std::size_t q = 0; q < th && 4 * q + k < OH; ++q) {
                const T* __restrict from = dy_plane + (4 * q + k) * OW;
                T* __restrict to = plane + (k * th + q) * width;
                for (std::size_t j = 0; j < count; ++j) to[j] = from[j];
            }
        detail::winograd4_split_phases(plane, span, phase[0], phase[1], phase[2], phase[3]);
        apply_a(phase[0], phase[1], phase[2], phase[3], span, z);  // dY A^T
        T* mo = m + o * ld;
        for (std::size_t b = 0; b < 6; ++b) {  // A (dY A^T), every tile at once
            T* out[6];
            for (std::size_t a = 0; a < 6; ++a) out[a] = mo + (a * 6 + b) * stride;
            apply_a(z[b], z[b] + tiles, z[b] + 2 * tiles, z[b] + 3 * tiles, tiles, out);
        }
    }
}

/// dw (OC x C x 3 x 3) = G^T dU G for every filter, from du laid out as
/// winograd4_transform_weights lays out U (36 x OC x C): the adjoint of that transform, formed in
/// double whatever T is, 8 filters at a time as the forward transform.
template <typename T>
void winograd4_weight_gradient(const T* du, std::size_t OC, std::size_t C, T* dw,
                               std::size_t plane = 0) {
    const std::size_t filters = OC * C;
    if (plane == 0) plane = filters;  // du's matrices `plane` apart, as for the weights
    constexpr std::size_t B = 8;
    constexpr double sixth = 1.0 / 6, twelfth = 1.0 / 12, twenty_fourth = 1.0 / 24;
    // r = G^T x for B sets of six values x at once: the three taps' shares.
    const auto apply_gt = [](const double(*x)[B], double(*r)[B]) {
        for (std::size_t l = 0; l < B; ++l) {
            const double s12 = x[1][l] + x[2][l], s34 = x[3][l] + x[4][l];
            r[0][l] = 0.25 * x[0][l] - s12 * sixth + s34 * twenty_fourth;
            r[1][l] = (x[2][l] - x[1][l]) * sixth + (x[3][l] - x[4][l]) * twelfth;
            r[2][l] = (s34 - s12) * sixth + x[5][l];
        }
    };
    for (std::size_t f0 = 0; f0 < filters; f0 += B) {
        const std::size_t nb = std::min(B, filters - f0);
        double t[3][6][B];  // t[j][b] = (G^T times column b of dU)[j]
        for (std::size_t b = 0; b < 6; ++b) {
            double column[6][B] = {}, r[3][B];
            for (std::size_t a = 0; a < 6; ++a)
                for (std::size_t l = 0; l < nb; ++l)
                    column[a][l] = double(du[(a * 6 + b) * plane + f0 + l]);
            apply_gt(column, r);
            for (std::size_t j = 0; j < 3; ++j)
                for (std::size_t l = 0; l < B; ++l) t[j][b][l] = r[j][l];
        }
        for (std::size_t j = 0; j < 3; ++j) {  // (G^T dU) G: G^T on each row of G^T dU
            double r[3][B];
            apply_gt(t[j], r);
            for (std::size_t l = 0; l < nb; ++l)
                for (std::size_t k = 0; k < 3; ++k)
                    dw[(f0 + l) * 9 + j * 3 + k] = static_cast<T>(r[k][l]);
        }
    }
}

}  // namespace facet
