// facet/layers/int8_quantizers.hpp — which layers post-training quantisation can turn into int8
// ones, and how. Each int8 layer registers itself under the type name of the float layer it
// replaces, as layers register their factories (layers/registry.hpp), so quantize_model
// (model/quantize.hpp) decides by what is registered, never by a list of classes:
//
//     inline const bool conv2d_int8 = register_int8_quantizer<QuantizedConv2d>("Conv2d");
//
// The int8 layer Q names the float layer it is made from as Q<T>::Source and builds itself with
// Q<T>::from_layer(source, input_range, relu_after).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "facet/core/error.hpp"
#include "facet/layers/int8_quantization.hpp"
#include "facet/layers/layer.hpp"

namespace facet {

/// Makes the int8 replacement of a float layer, given the range of its input and whether the
/// ReLU after it is fused into the replacement.
template <typename T>
using Int8Quantizer = std::function<std::unique_ptr<Layer<T>>(
    Layer<T>& layer, const ActivationQuantization& input, bool relu)>;

namespace detail {
/// The table, created on first use (so registering from any static initialiser is safe).
template <typename T>
std::map<std::string, Int8Quantizer<T>>& int8_quantizer_table() {
    static std::map<std::string, Int8Quantizer<T>> table;
    return table;
}
}  // namespace detail

/// Registers the int8 layer template Q as the replacement of the float layers of type `type`
/// (for float and double models).
template <template <typename> class Q>
bool register_int8_quantizer(const std::string& type) {
    check(!type.empty(), "register_int8_quantizer: empty type name");
    auto add = [&](auto tag) {
        using T = decltype(tag);
        detail::int8_quantizer_table<T>()[type] = [](Layer<T>& layer,
                                                     const ActivationQuantization& input,
                                                     bool relu) -> std::unique_ptr<Layer<T>> {
            // The table was found by the layer's type name, which only Q's Source answers.
            return Q<T>::from_layer(static_cast<typename Q<T>::Source&>(layer), input, relu);
        };
    };
    add(float{});
    add(double{});
    return true;
}

/// The quantiser registered for `layer`'s type, or null when it has none (the layer then stays
/// in float).
template <typename T>
const Int8Quantizer<T>* int8_quantizer(const Layer<T>& layer) {
    const auto& table = detail::int8_quantizer_table<T>();
    auto it = table.find(layer.type());
    return it == table.end() ? nullptr : &it->second;
}

}  // namespace facet
