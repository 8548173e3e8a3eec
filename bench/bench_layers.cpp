// bench_layers.cpp — forward and backward time of every layer of the reference model fer-cnn-s
// (examples/fer/model_zoo.hpp) at batch 64, and BM_ConvStack: forward + backward (data and
// weights) of its six convolutions, the figure bench/compare_pytorch.py puts beside oneDNN's.
//
// Names: BM_LayerForward/<layer>/t<threads>, BM_LayerBackward/<layer>/t<threads>,
// BM_ConvStack/<threads>, and for the breakdown of the stack BM_ConvStackIm2col/<threads> and
// BM_ConvStackCol2im/<threads> (the unrolling work alone, as the stack does it: im2col twice per
// image and layer, forward and backward; col2im once, except for the first layer).
// Counters: GFLOPS (forward: flops() per second; backward: twice that, the data and weight
// products), max_err for the convolutions (relative error of one image's forward output
// against the direct convolution: a fast but wrong layer must never look good).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "facet/core/parallel.hpp"
#include "facet/core/random.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/conv_reference.hpp"
#include "facet/kernels/im2col.hpp"
#include "facet/layers/activations.hpp"
#include "facet/layers/batchnorm.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/dropout.hpp"
#include "facet/layers/flatten.hpp"
#include "facet/layers/maxpool2d.hpp"

namespace {

using facet::Shape;
using facet::Tensor;
constexpr std::size_t batch = 64;

/// One layer of fer-cnn-s with the per-sample shape it receives.
struct ReferenceLayer {
    std::string name;
    std::function<std::unique_ptr<facet::Layer<float>>()> make;
    Shape input;
};

std::unique_ptr<facet::Layer<float>> conv3x3(std::size_t in, std::size_t out) {
    return std::make_unique<facet::Conv2d<float>>(in, out, 3, 1, 1, false);
}

const std::vector<ReferenceLayer>& reference_layers() {
    using namespace facet;
    static const std::vector<ReferenceLayer> layers = {
        {"conv1_1x48x48", [] { return conv3x3(1, 32); }, Shape{1, 48, 48}},
        {"conv2_32x48x48", [] { return conv3x3(32, 32); }, Shape{32, 48, 48}},
        {"conv3_32x24x24", [] { return conv3x3(32, 64); }, Shape{32, 24, 24}},
        {"conv4_64x24x24", [] { return conv3x3(64, 64); }, Shape{64, 24, 24}},
        {"conv5_64x12x12", [] { return conv3x3(64, 128); }, Shape{64, 12, 12}},
        {"conv6_128x12x12", [] { return conv3x3(128, 128); }, Shape{128, 12, 12}},
        {"bn2d_32x48x48", [] { return std::make_unique<BatchNorm2d<float>>(32); },
         Shape{32, 48, 48}},
        {"bn2d_128x12x12", [] { return std::make_unique<BatchNorm2d<float>>(128); },
         Shape{128, 12, 12}},
        {"relu_32x48x48", [] { return std::make_unique<ReLU<float>>(); }, Shape{32, 48, 48}},
        {"maxpool_32x48x48", [] { return std::make_unique<MaxPool2d<float>>(2); },
         Shape{32, 48, 48}},
        {"dropout_32x24x24", [] { return std::make_unique<Dropout<float>>(0.25); },
         Shape{32, 24, 24}},
        {"flatten_128x6x6", [] { return std::make_unique<Flatten<float>>(); }, Shape{128, 6, 6}},
        {"dense_4608x256", [] { return std::make_unique<Dense<float>>(4608, 256); }, Shape{4608}},
        {"bn1d_256", [] { return std::make_unique<BatchNorm1d<float>>(256); }, Shape{256}},
        {"dense_256x7", [] { return std::make_unique<Dense<float>>(256, 7); }, Shape{256}},
    };
    return layers;
}

Tensor<float> random_batch(const Shape& sample, std::uint64_t seed) {
    Tensor<float> t(facet::batch_shape(batch, sample));
    facet::Rng rng(seed);
    t.fill_uniform(rng, -1, 1);
    return t;
}

/// Relative error of image 0 of a convolution's output against conv2d_direct.
double conv_error(facet::Conv2d<float>& conv, const Tensor<float>& x, const Tensor<float>& y) {
    const facet::ConvGeometry g = conv.geometry(facet::sample_shape(x.shape()));
    const std::size_t oc = conv.options().out_channels, per_image = oc * g.col_cols();
    std::vector<float> ref(per_image);
    facet::conv2d_direct(x.data(), std::size_t{1}, g, conv.weight().data(), oc,
                         static_cast<const float*>(nullptr), ref.data());
    double err = 0, scale = 0;
    for (std::size_t i = 0; i < per_image; ++i) {
        err = std::max(err, double(std::abs(y[i] - ref[i])));
        scale = std::max(scale, double(std::abs(ref[i])));
    }
    return err / std::max(scale, 1e-30);
}

void BM_Layer(benchmark::State& state, const ReferenceLayer& spec, bool backward, int threads) {
    facet::set_num_threads(threads);
    auto layer = spec.make();
    const Tensor<float> x = random_batch(spec.input, 1);
    Tensor<float> y, dx;
    layer->forward(x, y);
    const Tensor<float> dy = random_batch(facet::sample_shape(y.shape()), 2);
    if (backward) layer->backward(x, y, dy, dx);  // warm the workspaces
    for (auto _ : state) {
        if (backward)
            layer->backward(x, y, dy, dx);
        else
            layer->forward(x, y);
        benchmark::ClobberMemory();
    }
    const double flops = double(layer->flops(spec.input)) * batch * (backward ? 2 : 1);
    state.counters["GFLOPS"] =
        benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    if (auto* conv = dynamic_cast<facet::Conv2d<float>*>(layer.get())) {
        layer->forward(x, y);
        state.counters["max_err"] = conv_error(*conv, x, y);
    }
}

/// The six convolutions of fer-cnn-s with their inputs, output gradients and buffers.
struct ConvStack {
    std::vector<std::unique_ptr<facet::Layer<float>>> convs;
    std::vector<Tensor<float>> x, y, dy, dx;
    ConvStack() {
        for (const auto& spec : reference_layers()) {
            if (spec.name.rfind("conv", 0) != 0) continue;
            convs.push_back(spec.make());
            x.push_back(random_batch(spec.input, 3 + x.size()));
        }
        y.resize(convs.size());
        dx.resize(convs.size());
        for (std::size_t i = 0; i < convs.size(); ++i) {
            convs[i]->forward(x[i], y[i]);
            dy.push_back(random_batch(facet::sample_shape(y[i].shape()), 20 + i));
            convs[i]->backward(x[i], y[i], dy[i], dx[i]);  // sizes dx and warms the workspaces
        }
    }
    double flops_per_pass() const {
        double f = 0;
        for (std::size_t i = 0; i < convs.size(); ++i)
            f += 3.0 * double(convs[i]->flops(facet::sample_shape(x[i].shape()))) * batch;
        return f;
    }
};

// Forward + backward-data + backward-weights of the six convolutions at batch 64. Each layer
// gets its own input (not the previous layer's output): the work is the same and the inputs stay
// well-scaled random numbers.
void BM_ConvStack(benchmark::State& state) {
    facet::set_num_threads(int(state.range(0)));
    ConvStack stack;
    for (auto _ : state) {
        for (std::size_t i = 0; i < stack.convs.size(); ++i) {
            stack.convs[i]->forward(stack.x[i], stack.y[i]);
            // The first layer's input gradient is never needed in training; we compute it anyway
            // here, as oneDNN's figure includes backward-data of all six layers.
            stack.convs[i]->backward(stack.x[i], stack.y[i], stack.dy[i], stack.dx[i]);
        }
        benchmark::ClobberMemory();
    }
    state.counters["GFLOPS"] = benchmark::Counter(stack.flops_per_pass() * 1e-9,
                                                  benchmark::Counter::kIsIterationInvariantRate);
}

/// The unrolling part of BM_ConvStack alone: per layer and image, im2col twice (forward and
/// backward) and col2im once, with one workspace per thread as Conv2d does it.
void BM_ConvStackUnroll(benchmark::State& state, bool adjoint) {
    const int threads = int(state.range(0));
    facet::set_num_threads(threads);
    ConvStack stack;
    std::vector<facet::ConvGeometry> geometry;
    std::size_t largest = 0;
    for (std::size_t i = 0; i < stack.convs.size(); ++i) {
        auto* conv = static_cast<facet::Conv2d<float>*>(stack.convs[i].get());
        geometry.push_back(conv->geometry(facet::sample_shape(stack.x[i].shape())));
        largest = std::max(largest, geometry.back().col_rows() * geometry.back().col_cols());
    }
    std::vector<std::vector<float>> workspace(std::size_t(threads),
                                              std::vector<float>(largest, 1.0f));
    for (auto _ : state) {
        for (std::size_t i = 0; i < geometry.size(); ++i) {
            const facet::ConvGeometry& g = geometry[i];
            facet::parallel_for(std::size_t(threads), [&](std::size_t tb, std::size_t te) {
                for (std::size_t t = tb; t < te; ++t)
                    for (std::size_t n = batch * t / threads; n < batch * (t + 1) / threads; ++n) {
                        float* col = workspace[t].data();
                        if (adjoint) {
                            facet::col2im(col, g.col_cols(), g,
                                          stack.dx[i].data() + n * g.image_size());
                        } else {
                            for (int twice = 0; twice < 2; ++twice)
                                facet::im2col(stack.x[i].data() + n * g.image_size(), g, col,
                                              g.col_cols());
                        }
                    }
            });
        }
        benchmark::ClobberMemory();
    }
}

void register_all() {
    for (const auto& spec : reference_layers())
        for (bool backward : {false, true})
            for (int threads : {1, 2})
                benchmark::RegisterBenchmark(
                    ((backward ? "BM_LayerBackward/" : "BM_LayerForward/") + spec.name + "/t" +
                     std::to_string(threads))
                        .c_str(),
                    [&spec, backward, threads](benchmark::State& s) {
                        BM_Layer(s, spec, backward, threads);
                    })
                    ->Unit(benchmark::kMillisecond)
                    ->UseRealTime();
    benchmark::RegisterBenchmark("BM_ConvStack", BM_ConvStack)
        ->Arg(1)
        ->Arg(2)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark("BM_ConvStackIm2col",
                                 [](benchmark::State& s) { BM_ConvStackUnroll(s, false); })
        ->Arg(1)
        ->Arg(2)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark("BM_ConvStackCol2im",
                                 [](benchmark::State& s) { BM_ConvStackUnroll(s, true); })
        ->Arg(1)
        ->Arg(2)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
}

const bool registered = (register_all(), true);

}  // namespace
