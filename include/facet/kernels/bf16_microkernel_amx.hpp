// facet/kernels/bf16_microkernel_amx.hpp — the AMX-BF16 micro-kernel (Intel Sapphire Rapids and
// later): tdpbf16ps multiplies a 16-row tile of A pairs by a 16-column tile of B pairs into a
// 16 x 16 tile of fp32 sums, 16 x 16 x 32 multiply-adds per instruction. Beside it, its plain C++
// twin walks the same packed layouts tile by tile and sums as Intel's manual defines the
// instruction, so that every machine tests the layouts and the tiling the AMX kernel reads.
//
// The layouts (kernels/bf16_pack.hpp; k is padded with zero pairs to whole blocks of 16 pairs):
//   A (pack_bf16_a_tiles): for each block of 16 pairs, for each of the MR rows, its 16 pairs:
//     64 bytes, one tile row, so a tile of 16 rows is 1 KiB read with a stride of 64 bytes;
//   B (pack_bf16_b, as every bf16 kernel): for each pair, the NR columns' pairs. Sixteen pairs
//     of 16 columns are one tile: rows of 64 bytes, 4 x NR bytes apart.
// Linux lends a process the tile registers only when it asks (arch_prctl ARCH_REQ_XCOMP_PERM,
// amx_tiles_permitted()), and a thread must load a tile configuration before its first tile
// instruction: the GEMM calls begin() and end() around each thread's share.
// Read next: kernels/bf16_gemm.hpp.
#pragma once

#include <cstddef>
#include <cstdint>

#include "facet/kernels/bf16_microkernel_portable.hpp"
#include "facet/kernels/cpu_features.hpp"

#if FACET_GEMM_HAVE_X86_KERNELS
#include <immintrin.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif

namespace facet {

/// Pairs of k in one tile row (64 bytes of bf16 pairs).
inline constexpr std::size_t amx_tile_pairs = 16;

/// The AMX kernel's path in plain C++: the same tiles of the same packed operands, each tile
/// product summed as tdpbf16ps is defined (Intel SDM: per fp32 lane, for each pair, the even
/// product added first, then the odd, each addition rounded to nearest even; subnormal inputs
/// read as zeros, subnormal sums flushed). 32 x 32 sums, as 2 x 2 tiles.
struct Bf16KernelAmxReference {
    static constexpr std::size_t MR = 32;
    static constexpr std::size_t NR = 32;
    static constexpr std::size_t pair_block = amx_tile_pairs;  ///< k padded to whole tiles
    static constexpr bool a_tiles = true;                      ///< A packed by pack_bf16_a_tiles
    static constexpr const char* name = "amx-reference";

    /// C (MR x NR, row stride ldc) = [C +] A_panel * B_panel over `pairs` pairs of k's, a
    /// multiple of 16.
    static void run(std::size_t pairs, const std::uint16_t* a, const std::uint16_t* b, float* c,
                    std::size_t ldc, bool accumulate) {
        float acc[MR][NR];
        for (std::size_t i = 0; i < MR; ++i)
            for (std::size_t j = 0; j < NR; ++j)
                acc[i][j] = accumulate ? detail::flush_subnormal(c[i * ldc + j]) : 0.0f;
        for (std::size_t q = 0; q < pairs / amx_tile_pairs; ++q) {
            const std::uint16_t* a_block = a + q * MR * 2 * amx_tile_pairs;
            const std::uint16_t* b_block = b + q * amx_tile_pairs * 2 * NR;
            for (std::size_t i = 0; i < MR; ++i)
                for (std::size_t t = 0; t < amx_tile_pairs; ++t) {
                    const std::uint16_t* ai = a_block + i * 2 * amx_tile_pairs + 2 * t;
                    const float a_even = detail::bf16_operand(ai[0]);
                    const float a_odd = detail::bf16_operand(ai[1]);
                    for (std::size_t j = 0; j < NR; ++j) {
                        const std::uint16_t* bj = b_block + t * 2 * NR + 2 * j;
                        const float even = a_even * detail::bf16_operand(bj[0]);
                        const float odd = a_odd * detail::bf16_operand(bj[1]);
                        acc[i][j] = detail::flush_subnormal(
                            detail::flush_subnormal(acc[i][j] + even) + odd);
                    }
                }
        }
        for (std::size_t i = 0; i < MR; ++i)
            for (std::size_t j = 0; j < NR; ++j) c[i * ldc + j] = acc[i][j];
    }
};

#if FACET_GEMM_HAVE_X86_KERNELS

/// True once Linux has granted this process the AMX tile data (asked on the first call); false
/// elsewhere, or when the kernel refuses.
inline bool amx_tiles_permitted() {
#if defined(__linux__) && defined(SYS_arch_prctl)
    static const bool permitted = [] {
        constexpr int request_permission = 0x1023;  // ARCH_REQ_XCOMP_PERM
        constexpr int tile_data = 18;               // XFEATURE_XTILEDATA
        return syscall(SYS_arch_prctl, request_permission, tile_data) == 0;
    }();
    return permitted;
#else
    return false;
#endif
}

/// AMX-BF16 kernel, 32 x 32: four accumulator tiles (tmm0-3), two tiles of A (tmm4-5) and two of
/// B (tmm6-7), each k-step of 16 pairs four tdpbf16ps.
struct Bf16KernelAmx {
    static constexpr std::size_t MR = 32;
    static constexpr std::size_t NR = 32;
    static constexpr std::size_t pair_block = amx_tile_pairs;
    static constexpr bool a_tiles = true;
    static constexpr const char* name = "amx-bf16";

    /// The 64-byte tile configuration of ldtilecfg, palette 1.
    struct alignas(64) TileConfig {
        std::uint8_t palette = 1;
        std::uint8_t start_row = 0;
        std::uint8_t reserved[14] = {};
        std::uint16_t bytes_per_row[16] = {};
        std::uint8_t rows[16] = {};
    };

    /// Every tile used is 16 rows of 64 bytes (16 fp32 sums, or 16 pairs of bf16).
    __attribute__((target("amx-tile"))) static void begin() {
        TileConfig config;
        for (int t = 0; t < 8; ++t) config.rows[t] = 16, config.bytes_per_row[t] = 64;
        _tile_loadconfig(&config);
    }
    /// Gives the tile registers back, so that the thread's saved state shrinks again.
    __attribute__((target("amx-tile"))) static void end() { _tile_release(); }

    /// C (MR x NR, row stride ldc) = [C +] A_panel * B_panel over `pairs` pairs of k's, a
    /// multiple of 16. Between begin() and end() of the same thread.
    __attribute__((target("amx-tile,amx-bf16"))) static void run(std::size_t pairs,
                                                                 const std::uint16_t* a,
                                                                 const std::uint16_t* b, float* c,
                                                                 std::size_t ldc, bool accumulate) {
        // The tile intrinsics are asm statements that do not tell the compiler they touch
        // memory: the barriers keep C's stores before them and their stores before C's reads.
        __asm__ volatile("" ::: "memory");
        const long c_stride = static_cast<long>(ldc * sizeof(float));
        float* c_low = c + 16 * ldc;
        if (accumulate) {
            _tile_loadd(0, c, c_stride);
            _tile_loadd(1, c + 16, c_stride);
            _tile_loadd(2, c_low, c_stride);
            _tile_loadd(3, c_low + 16, c_stride);
        } else {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
        }
        constexpr long a_stride = 2 * amx_tile_pairs * sizeof(std::uint16_t);  // 64 bytes
        constexpr long b_stride = 2 * NR * sizeof(std::uint16_t);              // 128 bytes
        for (std::size_t q = 0; q < pairs / amx_tile_pairs; ++q) {
            const std::uint16_t* a_block = a + q * MR * 2 * amx_tile_pairs;
            const std::uint16_t* b_block = b + q * amx_tile_pairs * 2 * NR;
            _tile_loadd(4, a_block, a_stride);
            _tile_loadd(5, a_block + 16 * 2 * amx_tile_pairs, a_stride);
            _tile_loadd(6, b_block, b_stride);
            _tile_loadd(7, b_block + 2 * 16, b_stride);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
        _tile_stored(0, c, c_stride);
        _tile_stored(1, c + 16, c_stride);
        _tile_stored(2, c_low, c_stride);
        _tile_stored(3, c_low + 16, c_stride);
        __asm__ volatile("" ::: "memory");
    }
};

#endif

}  // namespace facet
