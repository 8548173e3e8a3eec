// facet/layers/registry.hpp — make_layer(): rebuilds any facet layer from its LayerConfig (its
// type name and hyper-parameters), the way a model file is turned back into a network.
// Read next: model/sequential.hpp.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>

#include "facet/core/error.hpp"
#include "facet/layers/activations.hpp"
#include "facet/layers/add.hpp"
#include "facet/layers/avgpool2d.hpp"
#include "facet/layers/batchnorm.hpp"
#include "facet/layers/concat.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/dropout.hpp"
#include "facet/layers/flatten.hpp"
#include "facet/layers/global_avgpool2d.hpp"
#include "facet/layers/grouped_conv2d.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/maxpool2d.hpp"
#include "facet/layers/softmax.hpp"
#include "facet/model/graph.hpp"

namespace facet {

namespace detail {
/// config value `key` as a whole number in [min, max]; an Error names the layer and the key.
inline std::size_t config_count(const LayerConfig& c, const std::string& key, std::size_t min,
                                double max = double(std::size_t{1} << 32)) {
    const double v = c.get(key);
    check(std::isfinite(v) && v == std::floor(v) && v >= double(min) && v <= max, "LayerConfig ",
          c.type, ": '", key, "' must be a whole number in [", min, ", ", max, "], got ", v);
    return static_cast<std::size_t>(v);
}
/// config value `key` (or `fallback` when absent) as a flag: 0 or 1.
inline bool config_flag(const LayerConfig& c, const std::string& key, double fallback) {
    const double v = c.get(key, fallback);
    check(v == 0 || v == 1, "LayerConfig ", c.type, ": '", key, "' must be 0 or 1, got ", v);
    return v == 1;
}
/// config value `key` (or `fallback`), which must be finite.
inline double config_real(const LayerConfig& c, const std::string& key, double fallback) {
    const double v = c.get(key, fallback);
    check(std::isfinite(v), "LayerConfig ", c.type, ": '", key, "' must be finite, got ", v);
    return v;
}
}  // namespace detail

/// A new layer of config.type with config's hyper-parameters (parameters freshly initialised;
/// load trained values into parameters() afterwards). Throws facet::Error for an unknown type,
/// a missing required value or a value out of range. "Linear" is accepted for "Dense".
template <typename T>
std::unique_ptr<Layer<T>> make_layer(const LayerConfig& c) {
    using detail::config_count, detail::config_flag, detail::config_real;
    const std::string& t = c.type;
    if (t == "Conv2d") {
        Conv2dOptions o;
        o.in_channels = config_count(c, "in_channels", 1);
        o.out_channels = config_count(c, "out_channels", 1);
        // Square kernels may be given as "kernel", "stride", "pad".
        const bool square = c.get("kernel_h", -1) < 0;
        o.kernel_h = config_count(c, square ? "kernel" : "kernel_h", 1);
        o.kernel_w = config_count(c, square ? "kernel" : "kernel_w", 1);
        LayerConfig defaults = c;
        for (const char* k : {"stride", "stride_h", "stride_w"})
            defaults.values.emplace_back(k, 1.0);
        for (const char* k : {"pad", "pad_h", "pad_w"}) defaults.values.emplace_back(k, 0.0);
        o.stride_h = config_count(defaults, square ? "stride" : "stride_h", 1);
        o.stride_w = config_count(defaults, square ? "stride" : "stride_w", 1);
        o.pad_h = config_count(defaults, square ? "pad" : "pad_h", 0);
        o.pad_w = config_count(defaults, square ? "pad" : "pad_w", 0);
        o.bias = config_flag(c, "bias", 1);
        return std::make_unique<Conv2d<T>>(o);
    }
    if (t == "BatchNorm2d" || t == "BatchNorm1d") {
        const std::size_t channels = config_count(c, "channels", 1);
        const double eps = config_real(c, "eps", 1e-5), momentum = config_real(c, "momentum", 0.1);
        const bool affine = config_flag(c, "affine", 1);
        if (t == "BatchNorm2d")
            return std::make_unique<BatchNorm2d<T>>(channels, eps, momentum, affine);
        return std::make_unique<BatchNorm1d<T>>(channels, eps, momentum, affine);
    }
    if (t == "MaxPool2d") {
        const std::size_t kernel = config_count(c, "kernel", 1);
        LayerConfig defaults = c;
        defaults.values.emplace_back("stride", double(kernel));
        return std::make_unique<MaxPool2d<T>>(kernel, config_count(defaults, "stride", 1));
    }
    if (t == "Dropout") {
        LayerConfig defaults = c;  // a config without a seed gets seed 1
        defaults.values.emplace_back("seed_hi", 0.0);
        defaults.values.emplace_back("seed_lo", 1.0);
        const double max_half = 4294967295.0;  // the seed is stored as two 32-bit halves
        const std::uint64_t seed =
            (std::uint64_t(config_count(defaults, "seed_hi", 0, max_half)) << 32) |
            std::uint64_t(config_count(defaults, "seed_lo", 0, max_half));
        return std::make_unique<Dropout<T>>(config_real(c, "p", 0.5), seed);
    }
    if (t == "Dense" || t == "Linear")
        return std::make_unique<Dense<T>>(config_count(c, "in_features", 1),
                                          config_count(c, "out_features", 1),
                                          config_flag(c, "bias", 1));
    if (t == "Flatten") return std::make_unique<Flatten<T>>();
    if (t == "ReLU") return std::make_unique<ReLU<T>>();
    if (t == "LeakyReLU") return std::make_unique<LeakyReLU<T>>(config_real(c, "slope", 0.01));
    if (t == "ELU") return std::make_unique<ELU<T>>(config_real(c, "alpha", 1.0));
    if (t == "Softmax") return std::make_unique<Softmax<T>>();
    if (t == "Add") return Add<T>::from_config(c);
    if (t == "Concat") return Concat<T>::from_config(c);
    if (t == "AvgPool2d") return AvgPool2d<T>::from_config(c);
    if (t == "GlobalAvgPool2d") return GlobalAvgPool2d<T>::from_config(c);
    if (t == "GroupedConv2d") return GroupedConv2d<T>::from_config(c);
    if (t == "Graph") return Graph<T>::from_config(c);
    throw Error(
        detail::concat("make_layer: unknown layer type '", t,
                       "' (known: Conv2d, BatchNorm2d, BatchNorm1d, MaxPool2d, Dropout, "
                       "Dense, Linear, Flatten, ReLU, LeakyReLU, ELU, Softmax, Add, Concat, "
                       "AvgPool2d, GlobalAvgPool2d, GroupedConv2d, Graph)"));
}

}  // namespace facet
