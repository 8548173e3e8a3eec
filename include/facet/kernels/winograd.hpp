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
// are additions only.
// Read next: layers/conv2d.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "facet/kernels/gemm.hpp"
#include "facet/kernels/im2col.hpp"
#include "facet/kernels/vector_loops.hpp"

namespace facet {

/// Tiling of one image for F(2x2, 3x3): tiles_h x tiles_w tiles of 2x2 outputs; the last row or
/// column of tiles may reach past the output (those values are computed and dropped).
struct WinogradTiling {
    std::size_t tiles_h = 0, tiles_w = 0;
    std::size_t tiles() const { return tiles_h * tiles_w; }
};

namespace detail {
inline bool& winograd_setting() {
    static bool enabled = true;
    return enabled;
}
}  // namespace detail

/// Whether Conv2d computes its 3x3, stride-1 forward passes by F(2x2, 3x3) (the default) or by
/// im2col + GEMM like every other convolution. Tests and benchmarks compare the two.
/// Not synchronised: call it while no layer is running.
inline void set_winograd(bool enabled) {
    detail::winograd_setting() = enabled;
}
inline bool winograd_enabled() {
    return detail::winograd_setting();
}

/// Whether F(2x2, 3x3) applies to a geometry: a 3x3 kernel, stride 1 and no dilation.
inline bool winograd_applies(const ConvGeometry& g) {
    return g.kernel_h == 3 && g.kernel_w == 3 && g.stride_h == 1 && g.stride_w == 1 &&
           g.dilation_h == 1 && g.dilation_w == 1;
}

inline WinogradTiling winograd_tiling(const ConvGeometry& g) {
    return {(g.out_h() + 1) / 2, (g.out_w() + 1) / 2};
}

/// Distance, in elements, between the 16 matrices of one transform holding n elements each: n
/// rounded up to an odd number of cache lines. The transforms touch all 16 at once, and at a
/// distance of a multiple of 4 KiB (32 x 576 floats for a 48x48 image is 18 x 4 KiB) those 16
/// streams fall into the same cache sets: the input transform ran 7x slower.
template <typename T>
std::size_t winograd_stride(std::size_t n) {
    constexpr std::size_t line = 64 / sizeof(T);
    std::size_t lines = (n + line - 1) / line;
    if (lines % 2 == 0) ++lines;
    return lines * line;
}

/// U_xi = (G g G^T)_xi of every filter: w is OC x C x 3 x 3, u is 16 x OC x C (position-major, so
/// that u + xi * OC * C is the xi-th product's left operand, row-major OC x C). Made once per
/// batch and packed, so its 16 streams need no padding.
template <typename T>
void winograd_transform_weights(const T* w, std::size_t OC, std::size_t C, T* u) {
    const std::size_t plane = OC * C;
    for (std::size_t f = 0; f < plane; ++f) {
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

/// V_xi = (B^T d B)_xi of every 4x4 input tile d of one C x H x W image (zero outside the image,
/// as the padding): v holds 16 matrices `stride` elements apart (see winograd_stride), the xi-th
/// being the xi-th product's right operand, row-major C x tiles, tile t = ti * tiles_w + tj.
/// Only the tile rows [row_begin, row_end) are transformed, tile (ti, tj) going to column
/// (ti - row_begin) * tiles_w + tj: threads sharing one image each take some rows.
template <typename T>
void winograd_transform_input(const T* image, const ConvGeometry& g, const WinogradTiling& tl,
                              std::size_t row_begin, std::size_t row_end, T* v,
                              std::size_t stride) {
    const auto H = static_cast<std::ptrdiff_t>(g.height), W = static_cast<std::ptrdiff_t>(g.width);
    const std::size_t tiles = (row_end - row_begin) * tl.tiles_w;
    for (std::size_t c = 0; c < g.channels; ++c) {
        const T* plane = image + c * g.height * g.width;
        T* vc = v + c * tiles;
        for (std::size_t ti = row_begin; ti < row_end; ++ti) {
            const std::ptrdiff_t r0 =
                static_cast<std::ptrdiff_t>(2 * ti) - static_cast<std::ptrdiff_t>(g.pad_h);
            for (std::size_t tj = 0; tj < tl.tiles_w; ++tj) {
                const std::ptrdiff_t s0 =
                    static_cast<std::ptrdiff_t>(2 * tj) - static_cast<std::ptrdiff_t>(g.pad_w);
                T d[4][4];
                if (r0 >= 0 && s0 >= 0 && r0 + 4 <= H && s0 + 4 <= W) {
                    for (std::size_t a = 0; a < 4; ++a)
                        for (std::size_t b = 0; b < 4; ++b)
                            d[a][b] = plane[(r0 + std::ptrdiff_t(a)) * W + s0 + std::ptrdiff_t(b)];
                } else {  // a border tile: what lies outside the image is padding
                    for (std::size_t a = 0; a < 4; ++a)
                        for (std::size_t b = 0; b < 4; ++b) {
                            const std::ptrdiff_t r = r0 + std::ptrdiff_t(a),
                                                 s = s0 + std::ptrdiff_t(b);
                            d[a][b] = r >= 0 && r < H && s >= 0 && s < W ? plane[r * W + s] : T(0);
                        }
                }
                T t[4][4];  // B^T d, column by column
                for (std::size_t b = 0; b < 4; ++b) {
                    t[0][b] = d[0][b] - d[2][b];
                    t[1][b] = d[1][b] + d[2][b];
                    t[2][b] = d[2][b] - d[1][b];
                    t[3][b] = d[1][b] - d[3][b];
                }
                const std::size_t at = (ti - row_begin) * tl.tiles_w + tj;
                for (std::size_t a = 0; a < 4; ++a) {  // (B^T d) B, row by row
                    T* out = vc + (a * 4) * stride + at;
                    out[0 * stride] = t[a][0] - t[a][2];
                    out[1 * stride] = t[a][1] + t[a][2];
                    out[2 * stride] = t[a][2] - t[a][1];
                    out[3 * stride] = t[a][1] - t[a][3];
                }
            }
        }
    }
}

/// Y = A^T M A of every tile of the rows [row_begin, row_end): m holds the 16 products' results
/// (OC x tiles each, `stride` elements apart, columns as winograd_transform_input placed them),
/// y is one image's whole output, OC x out_h x out_w; outputs past the image's edge are dropped.
template <typename T>
void winograd_transform_output(const T* m, std::size_t stride, std::size_t OC,
                               const ConvGeometry& g, const WinogradTiling& tl,
                               std::size_t row_begin, std::size_t row_end, T* y) {
    const std::size_t OH = g.out_h(), OW = g.out_w(), tiles = (row_end - row_begin) * tl.tiles_w;
    for (std::size_t o = 0; o < OC; ++o) {
        const T* mo = m + o * tiles;
        T* yo = y + o * OH * OW;
        for (std::size_t ti = row_begin; ti < row_end; ++ti)
            for (std::size_t tj = 0; tj < tl.tiles_w; ++tj) {
                const T* p = mo + (ti - row_begin) * tl.tiles_w + tj;
                T q[4][4];
                for (std::size_t xi = 0; xi < 16; ++xi) q[xi / 4][xi % 4] = p[xi * stride];
                T t[2][4];  // A^T M
                for (std::size_t b = 0; b < 4; ++b) {
                    t[0][b] = q[0][b] + q[1][b] + q[2][b];
                    t[1][b] = q[1][b] - q[2][b] - q[3][b];
                }
                const std::size_t oh = 2 * ti, ow = 2 * tj;
                for (std::size_t a = 0; a < 2 && oh + a < OH; ++a) {  // (A^T M) A
                    T* row = yo + (oh + a) * OW + ow;
                    row[0] = t[a][0] + t[a][1] + t[a][2];
                    if (ow + 1 < OW) row[1] = t[a][1] - t[a][2] - t[a][3];
                }
            }
    }
}

/// The 16 transformed filter matrices of one F(2x2, 3x3) convolution, packed for gemm; remade
/// only when the weights they come from change (comparing the weights with a copy costs far
/// less than transforming and packing them again, which at batch 1 took as long as the products).
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

    /// For weights w (OC x C x 3 x 3): the convolution itself (C channels in, OC out), or with
    /// `adjoint` the convolution that gives its input gradient (OC in, C out, each 3x3 kernel
    /// turned by 180 degrees: dx = sum_o dy_o correlated with rot180(w_oc)).
    void update(const T* w, std::size_t OC, std::size_t C, bool adjoint) {
        const std::size_t n = OC * C * 9;
        if (adjoint == adjoint_ && OC == OC_ && C == C_ && source_.size() == n &&
            std::equal(w, w + n, source_.begin()))
            return;
        source_.assign(w, w + n);
        adjoint_ = adjoint, OC_ = OC, C_ = C;
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
        filters_.resize(16 * out_ * in_);
        winograd_transform_weights(kernels, out_, in_, filters_.data());
        packed_.resize(16);
        for (std::size_t xi = 0; xi < 16; ++xi)
            packed_[xi].pack(Trans::No, out_, in_, filters_.data() + xi * out_ * in_, in_);
    }

    std::size_t in_channels() const { return in_; }
    std::size_t out_channels() const { return out_; }
    const GemmPackedA<T>& matrix(std::size_t xi) const { return packed_[xi]; }

  private:
    std::vector<T> source_, filters_;
    std::vector<GemmPackedA<T>> packed_;
    bool adjoint_ = false;
    std::size_t OC_ = 0, C_ = 0, in_ = 0, out_ = 0;
};

/// Elements of workspace winograd_convolve_rows needs for `rows` tile rows.
template <typename T>
std::size_t winograd_workspace_size(const ConvGeometry& g, std::size_t out_channels,
                                    std::size_t rows) {
    const std::size_t tiles = rows * winograd_tiling(g).tiles_w;
    return 16 * (winograd_stride<T>(g.channels * tiles) + winograd_stride<T>(out_channels * tiles));
}

/// One image's convolution by F(2x2, 3x3), the outputs of tile rows [r0, r1) only: image is
/// g.channels x height x width, out the whole output image (f.out_channels() x out_h x out_w).
/// Each tile's values do not depend on which rows are asked for, so threads may share an image.
template <typename T>
void winograd_convolve_rows(const T* image, const ConvGeometry& g, const WinogradFilters<T>& f,
                            std::size_t r0, std::size_t r1, T* out, T* workspace) {
    const WinogradTiling tiling = winograd_tiling(g);
    const std::size_t tiles = (r1 - r0) * tiling.tiles_w, OC = f.out_channels();
    const std::size_t v_stride = winograd_stride<T>(g.channels * tiles),
                      m_stride = winograd_stride<T>(OC * tiles);
    T* v = workspace;
    T* m = v + 16 * v_stride;
    run_vectorized([&] { winograd_transform_input(image, g, tiling, r0, r1, v, v_stride); });
    for (std::size_t xi = 0; xi < 16; ++xi)
        f.matrix(xi).multiply(Trans::No, tiles, T(1), v + xi * v_stride, tiles, T(0),
                              m + xi * m_stride, tiles);
    run_vectorized([&] { winograd_transform_output(m, m_stride, OC, g, tiling, r0, r1, out); });
}

}  // namespace facet
