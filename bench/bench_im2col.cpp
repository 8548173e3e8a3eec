// bench_im2col.cpp — im2col / col2im throughput for the six conv layers of fer-cnn-s at batch 64.
// Names: BM_Im2col/t<threads>/<C>x<H>x<W>_k3p1 (and BM_Col2im/...). Counter GBps: bytes of the
// unrolled matrix written (im2col) or read (col2im) plus the images, per second.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <string>
#include <vector>

#include <facet/facet.hpp>

namespace {

constexpr std::size_t batch = 64;

facet::ConvGeometry conv3x3(std::size_t channels, std::size_t size) {
    facet::ConvGeometry g;
    g.channels = channels;
    g.height = g.width = size;
    g.pad_h = g.pad_w = 1;
    return g;
}

// Inputs of the six 3x3 convolutions of fer-cnn-s (examples/fer/model_zoo.hpp).
const std::vector<facet::ConvGeometry> reference_convs = {conv3x3(1, 48),  conv3x3(32, 48),
                                                          conv3x3(32, 24), conv3x3(64, 24),
                                                          conv3x3(64, 12), conv3x3(128, 12)};

void BM_Im2col(benchmark::State& state, int threads, facet::ConvGeometry g, bool adjoint) {
    facet::set_num_threads(threads);
    std::vector<float> images(batch * g.image_size()), col(g.col_rows() * batch * g.col_cols());
    facet::Rng rng(3);
    for (float& x : images) x = static_cast<float>(rng.uniform(-1, 1));
    for (auto _ : state) {
        if (adjoint)
            facet::col2im_batch(col.data(), batch, g, images.data());
        else
            facet::im2col_batch(images.data(), batch, g, col.data());
        benchmark::ClobberMemory();
    }
    const double bytes = static_cast<double>((images.size() + col.size()) * sizeof(float));
    state.counters["GBps"] =
        benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

int register_im2col_benchmarks() {
    for (bool adjoint : {false, true})
        for (int threads : {1, 2})
            for (const facet::ConvGeometry& g : reference_convs) {
                const std::string name =
                    std::string(adjoint ? "BM_Col2im" : "BM_Im2col") + "/t" +
                    std::to_string(threads) + "/" + std::to_string(g.channels) + "x" +
                    std::to_string(g.height) + "x" + std::to_string(g.width) + "_k3p1";
                benchmark::RegisterBenchmark(name.c_str(), BM_Im2col, threads, g, adjoint)
                    ->Unit(benchmark::kMillisecond)
                    ->UseRealTime();
            }
    return 0;
}

const int im2col_benchmarks_registered = register_im2col_benchmarks();

}  // namespace
