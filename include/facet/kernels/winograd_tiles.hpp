// facet/kernels/winograd_tiles.hpp — what Winograd's F(2x2, 3x3) and F(4x4, 3x3) share: the
// tiling of an image into m x m output tiles, the switches that choose the algorithm, the spacing
// of the transformed matrices in memory, and the two loops the transforms are built from (blocks
// of neighbouring tiles, and a padded row split by column phase). Read next: kernels/winograd.hpp
// (F(2x2, 3x3), the weight gradient, the convolution) and kernels/winograd_f4.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "facet/core/error.hpp"
#include "facet/kernels/im2col.hpp"

namespace facet {

/// Tiling of one image into tiles_h x tiles_w tiles of `tile` x `tile` outputs (2 for
/// F(2x2, 3x3), 4 for F(4x4, 3x3)); the last row or column of tiles may reach past the output
/// (those values are computed and dropped).
struct WinogradTiling {
    std::size_t tiles_h = 0, tiles_w = 0, tile = 2;
    std::size_t tiles() const { return tiles_h * tiles_w; }
    /// Positions of a transformed tile, (tile + 2)^2: the number of products per convolution.
    std::size_t positions() const { return (tile + 2) * (tile + 2); }
};

namespace detail {
inline bool& winograd_setting() {
    static bool enabled = true;
    return enabled;
}
inline std::size_t& winograd_tile_setting() {
    static std::size_t tile = 4;
    return tile;
}
}  // namespace detail

/// Whether Conv2d computes its 3x3, stride-1 convolutions by Winograd's minimal filtering (the
/// default) or by im2col + GEMM like every other convolution. Tests and benchmarks compare the
/// two. Not synchronised: call it while no layer is running.
inline void set_winograd(bool enabled) {
    detail::winograd_setting() = enabled;
}
inline bool winograd_enabled() {
    return detail::winograd_setting();
}

/// The output tile of Conv2d's Winograd convolutions (forward pass, input and weight
/// gradients): 4 for F(4x4, 3x3) (the default, 36 multiplications per 16 outputs), 2 for
/// F(2x2, 3x3) (16 per 4: more multiplications, less rounding). Not synchronised, as
/// set_winograd.
inline void set_winograd_tile(std::size_t tile) {
    check(tile == 2 || tile == 4, "set_winograd_tile: the output tile is 2 or 4, got ", tile);
    detail::winograd_tile_setting() = tile;
}
inline std::size_t winograd_tile() {
    return detail::winograd_tile_setting();
}

/// Whether Winograd's F(m x m, 3x3) applies to a geometry: a 3x3 kernel, stride 1, no dilation.
inline bool winograd_applies(const ConvGeometry& g) {
    return g.kernel_h == 3 && g.kernel_w == 3 && g.stride_h == 1 && g.stride_w == 1 &&
           g.dilation_h == 1 && g.dilation_w == 1;
}

inline WinogradTiling winograd_tiling(const ConvGeometry& g, std::size_t tile = 2) {
    return {(g.out_h() + tile - 1) / tile, (g.out_w() + tile - 1) / tile, tile};
}

/// Distance, in elements, between the matrices of one transform holding n elements each: n
/// rounded up to an odd number of cache lines. The transforms touch all 16 (or 36) at once, and
/// at a distance of a multiple of 4 KiB (32 x 576 floats for a 48x48 image is 18 x 4 KiB) those
/// streams fall into the same cache sets: the input transform ran 7x slower.
template <typename T>
std::size_t winograd_stride(std::size_t n) {
    constexpr std::size_t line = 64 / sizeof(T);
    std::size_t lines = (n + line - 1) / line;
    if (lines % 2 == 0) ++lines;
    return lines * line;
}

namespace detail {
/// Calls f(width, tj) on blocks of neighbouring tiles that cover tiles [0, n): as many blocks of
/// 16 as fit, then one each of 8, 4, 2 and 1 as needed. `width` is a std::integral_constant, so
/// every per-tile formula inside f is a loop of fixed length, which the compiler turns into
/// vector instructions (16 floats is one AVX-512 register) whatever the image's width.
template <typename F>
void for_each_tile_block(std::size_t n, F&& f) {
    std::size_t tj = 0;
    for (; tj + 16 <= n; tj += 16) f(std::integral_constant<std::size_t, 16>{}, tj);
    if (tj + 8 <= n) f(std::integral_constant<std::size_t, 8>{}, tj), tj += 8;
    if (tj + 4 <= n) f(std::integral_constant<std::size_t, 4>{}, tj), tj += 4;
    if (tj + 2 <= n) f(std::integral_constant<std::size_t, 2>{}, tj), tj += 2;
    if (tj < n) f(std::integral_constant<std::size_t, 1>{}, tj);
}

/// Row r of a plane of `width` columns as the padded image holds it (shifted right by `pad`,
/// zeros where it has no column, and everywhere when r lies outside [0, height)), split by
/// column phase: phase[k][j] = padded column Step * j + k, for j in [0, n). With tiles Step
/// columns apart, tile tj's columns are then phase[0..Step)[tj] followed by phase[0..)[tj + 1],
/// and a block of tiles reads each with unit stride. Step is 2 for F(2x2, 3x3) (even and odd
/// columns), 4 for F(4x4, 3x3).
template <std::size_t Step, typename T>
void winograd_split_row(const T* plane, std::ptrdiff_t r, std::size_t height, std::size_t width,
                        std::size_t pad, std::size_t n, T* const* phase) {
    if (r < 0 || r >= static_cast<std::ptrdiff_t>(height)) {
        for (std::size_t k = 0; k < Step; ++k)
            for (std::size_t j = 0; j < n; ++j) phase[k][j] = T(0);
        return;
    }
    const T* __restrict row = plane + static_cast<std::size_t>(r) * width;
    const auto W = static_cast<std::ptrdiff_t>(width), P = static_cast<std::ptrdiff_t>(pad);
    const auto at = [&](std::ptrdiff_t s) { return s >= 0 && s < W ? row[s] : T(0); };
    const auto one_by_one = [&](std::size_t j) {
        for (std::size_t k = 0; k < Step; ++k) phase[k][j] = at(std::ptrdiff_t(Step * j + k) - P);
    };
    // Columns Step j - pad .. Step j + Step - 1 - pad all inside the row for j in [lo, hi).
    const std::size_t lo = std::min(n, (pad + Step - 1) / Step);
    const std::size_t hi = std::max(lo, std::min<std::size_t>(n, (width + pad) / Step));
    for (std::size_t j = 0; j < lo; ++j) one_by_one(j);
    const T* inside = row + Step * lo - pad;
    if constexpr (Step == 2) {
        T* __restrict even = phase[0];
        T* __restrict odd = phase[1];
        for (std::size_t j = lo; j < hi; ++j) {
            even[j] = inside[2 * (j - lo)];
            odd[j] = inside[2 * (j - lo) + 1];
        }
    } else {
        static_assert(Step == 4, "winograd_split_row: tiles 2 or 4 columns apart");
        T* __restrict p0 = phase[0];
        T* __restrict p1 = phase[1];
        T* __restrict p2 = phase[2];
        T* __restrict p3 = phase[3];
        for (std::size_t j = lo; j < hi; ++j) {
            const T* q = inside + 4 * (j - lo);
            p0[j] = q[0];
            p1[j] = q[1];
            p2[j] = q[2];
            p3[j] = q[3];
        }
    }
    for (std::size_t j = hi; j < n; ++j) one_by_one(j);
}
}  // namespace detail

}  // namespace facet
