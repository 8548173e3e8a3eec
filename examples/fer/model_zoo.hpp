// fer/model_zoo.hpp — the networks `fer train` can build: fer-cnn-s, the reference model (a
// VGG-style CNN, docs/benchmarks.md), fer-cnn-m, the same design with twice the channels (about 4x
// the FLOPs), fer-cnn-mc, fer-cnn-m's convolutions with a compact head that fits the 3 MB a shipped
// model may take in fp16, and fer-resnet-s, a small residual network (each block a facet::Graph
// inside the Sequential).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <facet/layers/activations.hpp>
#include <facet/layers/batchnorm.hpp>
#include <facet/layers/conv2d.hpp>
#include <facet/layers/dense.hpp>
#include <facet/layers/dropout.hpp>
#include <facet/layers/flatten.hpp>
#include <facet/layers/global_avgpool2d.hpp>
#include <facet/layers/maxpool2d.hpp>
#include <facet/model/graph.hpp>
#include <facet/model/residual_block.hpp>
#include <facet/model/sequential.hpp>

namespace fer {

/// Three blocks of [conv3x3 - BN - ReLU] x 2 - maxpool 2 - dropout, then dense - BN - ReLU -
/// dropout - dense. No conv bias where batch norm follows (BN's beta is the bias). With
/// `squeeze` > 0, a conv1x1 - BN - ReLU to `squeeze` channels comes before the dense layer: most
/// of the parameters sit in that dense layer, and the 1x1 convolution divides them by
/// 4 width / squeeze while the 6 x 6 map keeps where on the face each feature was.
inline facet::Sequential<float> build_vgg_style(std::size_t width, std::size_t hidden,
                                                std::uint64_t seed, std::size_t classes = 7,
                                                std::size_t squeeze = 0) {
    using namespace facet;
    Sequential<float> model(Shape{1, 48, 48});
    std::uint64_t s = seed;
    std::size_t in = 1;
    for (std::size_t block = 0; block < 3; ++block) {
        const std::size_t out = width << block;
        for (int rep = 0; rep < 2; ++rep) {
            model.add<Conv2d<float>>(rep == 0 ? in : out, out, 3, 1, 1, false, ++s);
            model.add<BatchNorm2d<float>>(out);
            model.add<ReLU<float>>();
        }
        model.add<MaxPool2d<float>>(2);
        model.add<Dropout<float>>(0.25, ++s);
        in = out;
    }
    if (squeeze > 0) {
        model.add<Conv2d<float>>(in, squeeze, 1, 1, 0, false, ++s);
        model.add<BatchNorm2d<float>>(squeeze);
        model.add<ReLU<float>>();
        in = squeeze;
    }
    model.add<Flatten<float>>();
    model.add<Dense<float>>(in * 6 * 6, hidden, false, ++s);
    model.add<BatchNorm1d<float>>(hidden);
    model.add<ReLU<float>>();
    model.add<Dropout<float>>(0.5, ++s);
    model.add<Dense<float>>(hidden, classes, true, ++s);
    return model;
}

/// A conv3x3 - BN - ReLU stem at 48 x 48, then three stages of `blocks` basic residual blocks
/// (model/residual_block.hpp) of width, 2 width and 4 width channels at 48, 24 and 12 pixels,
/// the first block of stages 2 and 3 halving the size with a 1x1-projection shortcut; then
/// global average pooling, dropout and a dense layer to the classes.
inline facet::Sequential<float> build_resnet(std::size_t width, std::size_t blocks,
                                             std::uint64_t seed, std::size_t classes = 7) {
    using namespace facet;
    Sequential<float> model(Shape{1, 48, 48});
    std::uint64_t s = seed;
    model.add<Conv2d<float>>(1, width, 3, 1, 1, false, ++s);
    model.add<BatchNorm2d<float>>(width);
    model.add<ReLU<float>>();
    std::size_t channels = width;
    for (std::size_t stage = 0; stage < 3; ++stage)
        for (std::size_t b = 0; b < blocks; ++b) {
            const std::size_t stride = stage > 0 && b == 0 ? 2 : 1;
            model.add(std::make_unique<Graph<float>>(
                residual_block<float>(model.output_shape(), width << stage, stride, s += 4)));
            channels = width << stage;
        }
    model.add<GlobalAvgPool2d<float>>();
    model.add<Dropout<float>>(0.25, ++s);
    model.add<Dense<float>>(channels, classes, true, ++s);
    return model;
}

/// Builds a model by name: "fer-cnn-s" (default; 1,468,839 parameters), "fer-cnn-m" (5.87 M),
/// "fer-cnn-mc" (1,450,631) or "fer-resnet-s" (0.31 M).
inline facet::Sequential<float> build_model(const std::string& name, std::uint64_t seed,
                                            std::size_t classes = 7) {
    if (name == "fer-cnn-s") return build_vgg_style(32, 256, seed, classes);
    if (name == "fer-cnn-m") return build_vgg_style(64, 512, seed, classes);
    if (name == "fer-cnn-mc") return build_vgg_style(64, 256, seed, classes, 32);
    if (name == "fer-resnet-s") return build_resnet(32, 1, seed, classes);
    throw facet::Error("unknown model '" + name +
                       "' (known: fer-cnn-s, fer-cnn-m, fer-cnn-mc, fer-resnet-s)");
}

}  // namespace fer
