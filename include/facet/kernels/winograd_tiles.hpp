// facet/kernels/winograd_tiles.hpp — what Winograd's F(2x2, 3x3) and F(4x4, 3x3) share: the
// tiling of an image into m x m output tiles, the settings that choose the algorithm, the spacing
// of the transformed matrices in memory, and the loop over blocks of neighbouring tiles the
// transforms are built from. Read next: kernels/winograd.hpp
// (F(2x2, 3x3), the weight gradient, the convolution) and kernels/winograd_f4.hpp.
#pragma once

#include <cstddef>
#include <type_traits>

#include "facet/core/context.hpp"
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

/// Whether Conv2d computes its 3x3, stride-1 convolutions by Winograd's minimal filtering (the
/// default) or by im2col + GEMM like every other convolution, in the process default context
/// (Context::winograd for one model's). Tests and benchmarks compare the two. Not synchronised:
/// call it while no layer is running.
inline void set_winograd(bool enabled) {
    process_context().winograd = enabled;
}
/// Whether the current context computes 3x3 stride-1 convolutions by Winograd.
inline bool winograd_enabled() {
    return current_context().winograd;
}

/// The output tile of Conv2d's Winograd convolutions (forward pass, input and weight
/// gradients) in the process default context: 4 for F(4x4, 3x3) (the default, 36
/// multiplications per 16 outputs), 2 for F(2x2, 3x3) (16 per 4: more multiplications, less
/// rounding). Not synchronised, as set_winograd.
inline void set_winograd_tile(std::size_t tile) {
    check(tile == 2 || tile == 4, "set_winograd_tile: the output tile is 2 or 4, got ", tile);
    process_context().winograd_tile = tile;
}
/// The current context's Winograd output tile (2 or 4); 2 in a bf16 context, whatever it says:
/// F(4x4, 3x3)'s transforms add up the rounding errors of bf16 products with coefficients up to
/// 8, about 16 times those of F(2x2, 3x3) or of im2col (docs/internals/convolution.md).
inline std::size_t winograd_tile() {
    const Context& context = current_context();
    check(context.winograd_tile == 2 || context.winograd_tile == 4,
          "winograd_tile: the context's output tile is 2 or 4, got ", context.winograd_tile);
    return context.precision == Precision::Bf16 ? 2 : context.winograd_tile;
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
}  // namespace detail

}  // namespace facet
