// fer/model_zoo.hpp — the networks `fer train` can build: fer-cnn-s, the reference model of
// REFERENCE.md, and fer-cnn-m, the same design with twice the channels (about 4x the FLOPs).
#pragma once

#include <cstdint>
#include <string>

#include <facet/layers/activations.hpp>
#include <facet/layers/batchnorm.hpp>
#include <facet/layers/conv2d.hpp>
#include <facet/layers/dense.hpp>
#include <facet/layers/dropout.hpp>
#include <facet/layers/flatten.hpp>
#include <facet/layers/maxpool2d.hpp>
#include <facet/model/sequential.hpp>

namespace fer {

/// Three blocks of [conv3x3 - BN - ReLU] x 2 - maxpool 2 - dropout, then dense - BN - ReLU -
/// dropout - dense. No conv bias where batch norm follows (BN's beta is the bias).
inline facet::Sequential<float> build_vgg_style(std::size_t width, std::size_t hidden,
                                                std::uint64_t seed, std::size_t classes = 7) {
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
    model.add<Flatten<float>>();
    model.add<Dense<float>>(in * 6 * 6, hidden, false, ++s);
    model.add<BatchNorm1d<float>>(hidden);
    model.add<ReLU<float>>();
    model.add<Dropout<float>>(0.5, ++s);
    model.add<Dense<float>>(hidden, classes, true, ++s);
    return model;
}

/// Builds a model by name: "fer-cnn-s" (default; 1.28 M parameters) or "fer-cnn-m".
inline facet::Sequential<float> build_model(const std::string& name, std::uint64_t seed) {
    if (name == "fer-cnn-s") return build_vgg_style(32, 256, seed);
    if (name == "fer-cnn-m") return build_vgg_style(64, 512, seed);
    throw facet::Error("unknown model '" + name + "' (known: fer-cnn-s, fer-cnn-m)");
}

}  // namespace fer
