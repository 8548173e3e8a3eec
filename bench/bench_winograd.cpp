// bench_winograd.cpp — the transforms of Winograd's F(4x4, 3x3) alone, on a batch of 64 images of
// fer-cnn-s's three Winograd input sizes, one thread, each image transformed into one
// workspace as winograd_convolve does it: the input transform (B^T d B), the output transform
// (A^T M A) and the output gradient's (A dY A^T), beside the least any of them must do, reading
// the batch into that workspace (BM_WinogradStream: a copy of each image, the same bytes as the
// input transform reads; from L3 where the batch fits there, as the largest, 19 MB, does on CPUs
// with 32 MB). A transform's time over the stream's, in one run, is how far
// it is from the memory's limit.
//
// Names: BM_WinogradInput/<C>x<H>, BM_WinogradOutput/<C>x<H>, BM_WinogradOutputGradient/<C>x<H>,
// BM_WinogradStream/<C>x<H>. Counter: bytes_per_second, the batch's images (64 x C x H x H floats)
// per second.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "facet/core/parallel.hpp"
#include "facet/core/random.hpp"
#include "facet/kernels/winograd.hpp"

namespace {

constexpr std::size_t batch = 64;

enum class Transform { input, output, output_gradient, stream };

facet::ConvGeometry geometry(std::size_t channels, std::size_t side) {
    facet::ConvGeometry g;
    g.channels = channels, g.height = g.width = side;
    g.kernel_h = g.kernel_w = 3, g.stride_h = g.stride_w = 1, g.pad_h = g.pad_w = 1;
    return g;
}

void BM_Winograd(benchmark::State& state, Transform transform, std::size_t channels,
                 std::size_t side) {
    facet::set_num_threads(1);
    const facet::ConvGeometry g = geometry(channels, side);
    const facet::WinogradTiling tiling = facet::winograd_tiling(g, 4);
    const std::size_t image = g.image_size(), tiles = tiling.tiles();
    // The batch (input, output or output gradient: channels x side x side each) and one image's
    // transformed matrices, 36 of them, channels x tiles each.
    std::vector<float> images(batch * image);
    facet::Rng rng(1);
    for (float& v : images) v = float(rng.uniform(-1, 1));
    const std::size_t stride = facet::winograd_stride<float>(channels * tiles);
    std::vector<float> workspace(tiling.positions() * stride, 0.5f);
    for (auto _ : state) {
        facet::run_vectorized([&] {
            for (std::size_t n = 0; n < batch; ++n) {
                float* x = images.data() + n * image;
                switch (transform) {
                    case Transform::input:
                        facet::winograd4_transform_input(x, g, tiling, 0, tiling.tiles_h,
                                                         workspace.data(), stride);
                        break;
                    case Transform::output:
                        facet::winograd4_transform_output(workspace.data(), stride, channels, g,
                                                          tiling, 0, tiling.tiles_h, x);
                        break;
                    case Transform::output_gradient:
                        facet::winograd4_transform_output_gradient(x, channels, g, tiling,
                                                                   workspace.data(), stride);
                        break;
                    case Transform::stream:
                        std::memcpy(workspace.data(), x, image * sizeof(float));
                        break;
                }
            }
        });
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(std::int64_t(state.iterations()) *
                            std::int64_t(batch * image * sizeof(float)));
}

void register_all() {
    const std::pair<const char*, Transform> transforms[] = {
        {"BM_WinogradInput/", Transform::input},
        {"BM_WinogradOutput/", Transform::output},
        {"BM_WinogradOutputGradient/", Transform::output_gradient},
        {"BM_WinogradStream/", Transform::stream}};
    for (const auto& [shape_channels, shape_side] :
         {std::pair<std::size_t, std::size_t>{32, 48}, {64, 24}, {128, 12}})
        for (const auto& [name, transform] : transforms)
            benchmark::RegisterBenchmark(
                (name + std::to_string(shape_channels) + "x" + std::to_string(shape_side)).c_str(),
                [transform = transform, c = shape_channels, s = shape_side](benchmark::State& st) {
                    BM_Winograd(st, transform, c, s);
                })
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime();
}

const bool registered = (register_all(), true);

}  // namespace
