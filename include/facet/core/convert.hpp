// facet/core/convert.hpp — tensors from one element type to another: float <-> bf16 / f16
// (rounded to nearest, ties to even, core/dtype.hpp), and symmetric int8 quantisation with one
// scale per outer index (per output channel of a weight), with its dequantisation. Model files
// store weights this way (model/serialize.hpp). Read next: core/parallel.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "facet/core/dtype.hpp"
#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"

namespace facet {

/// One element as type To: floats to bf16 / f16 round to nearest even, bf16 / f16 widen
/// exactly, float <-> double as C++ converts them.
template <typename To, typename From>
To element_cast(From v) {
    if constexpr (std::is_same_v<To, From>)
        return v;
    else if constexpr (std::is_same_v<To, bf16> || std::is_same_v<To, f16>)
        return To(static_cast<float>(v));
    else if constexpr (std::is_same_v<From, bf16> || std::is_same_v<From, f16>)
        return static_cast<To>(static_cast<float>(v));
    else
        return static_cast<To>(v);
}

/// A new tensor of the same shape with every element converted by element_cast (float, double,
/// bf16 and f16; int8 goes through quantize_int8).
template <typename To, typename From>
Tensor<To> convert(const Tensor<From>& t) {
    static_assert(!std::is_same_v<To, std::int8_t> && !std::is_same_v<From, std::int8_t>,
                  "convert: use quantize_int8 / dequantize for int8");
    Tensor<To> out(t.shape());
    for (std::size_t i = 0; i < t.size(); ++i) out[i] = element_cast<To>(t[i]);
    return out;
}

/// t as bf16 / f16 (rounded), and back to float (exact).
template <typename T>
Tensor<bf16> to_bf16(const Tensor<T>& t) {
    return convert<bf16>(t);
}
template <typename T>
Tensor<f16> to_f16(const Tensor<T>& t) {
    return convert<f16>(t);
}
template <typename From>
Tensor<float> to_float(const Tensor<From>& t) {
    return convert<float>(t);
}

/// A tensor quantised to int8: values[i] * scales[outer index of i] approximates the original.
struct QuantizedTensor {
    Tensor<std::int8_t> values;
    std::vector<float> scales;  ///< one per index of the outermost extent

    /// Elements per scale: the product of the extents after the first.
    std::size_t group_size() const { return scales.empty() ? 0 : values.size() / scales.size(); }
};

/// Symmetric int8 quantisation with a scale per outer index (per output channel of a weight
/// (OC, C, kh, kw) or (out, in)): scale = max|x| / 127 over the index's values, q = x / scale
/// rounded to nearest (ties to even) in [-127, 127]. An all-zero group gets scale 0 and q = 0.
/// The error of each value is at most scale / 2. An Error for a NaN or infinite value.
template <typename T>
QuantizedTensor quantize_int8(const Tensor<T>& t) {
    static_assert(std::is_floating_point_v<T>, "quantize_int8: float or double tensors");
    QuantizedTensor q;
    q.values.resize(t.shape());
    const std::size_t groups = t.rank() == 0 ? 1 : t.dim(0);
    q.scales.assign(groups, 0.0f);
    const std::size_t per = groups ? t.size() / groups : 0;
    for (std::size_t g = 0; g < groups; ++g) {
        const T* x = t.data() + g * per;
        double largest = 0;
        for (std::size_t i = 0; i < per; ++i) {
            check(std::isfinite(x[i]), "quantize_int8: element ", g * per + i, " is not finite");
            largest = std::max(largest, std::abs(static_cast<double>(x[i])));
        }
        const float scale = static_cast<float>(largest / 127.0);
        q.scales[g] = scale;
        std::int8_t* out = q.values.data() + g * per;
        for (std::size_t i = 0; i < per; ++i) {
            const double r = scale > 0 ? std::nearbyint(static_cast<double>(x[i]) / scale) : 0.0;
            out[i] = static_cast<std::int8_t>(std::clamp(r, -127.0, 127.0));
        }
    }
    return q;
}

/// The values a QuantizedTensor stands for: values[i] * scale, as T.
template <typename T = float>
Tensor<T> dequantize(const QuantizedTensor& q) {
    static_assert(std::is_floating_point_v<T>, "dequantize: to float or double");
    Tensor<T> out(q.values.shape());
    const std::size_t per = q.group_size();
    check(per * q.scales.size() == q.values.size(), "dequantize: ", q.scales.size(),
          " scales do not divide ", q.values.size(), " values");
    for (std::size_t i = 0; i < out.size(); ++i)
        out[i] = static_cast<T>(static_cast<float>(q.values[i]) * q.scales[i / per]);
    return out;
}

}  // namespace facet
