// facet/model/quantize.hpp — post-training int8 quantisation of a Sequential model: every Conv2d
// and Dense becomes a QuantizedConv2d / QuantizedDense (with the ReLU after it, if any, fused into
// its epilogue); the other layers are copied as they are. Fold the batch norms first
// (model/fold_batchnorm.hpp), so that the convolutions carry them in their int8 weights.
//
// Which layers are quantised is decided by what is registered (layers/int8_quantizers.hpp).
//
// Weights need no data: symmetric int8, one scale per output channel (max |w| / 127).
// Activations are quantised per tensor, so each quantised layer needs a range for its input,
// measured on calibration batches run through the float model: the `percentile`-th percentile of
// the input values (the high end) and of their negatives (the low end). The default, 99.99,
// ignores the rarest 0.01 % of the values: with 127 codes per tensor, the range is set by the
// bulk of the values rather than by a few outliers (one value 3x the next would cost every other
// value a third of its resolution), and the few clipped values lose little. percentile = 100 gives
// the plain maximum. Read next: layers/int8_quantization.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/int8_quantization.hpp"
#include "facet/layers/quantized_conv2d.hpp"
#include "facet/layers/quantized_dense.hpp"
#include "facet/layers/registry.hpp"
#include "facet/model/sequential.hpp"

namespace facet {

/// How quantize_model calibrates.
struct QuantizeOptions {
    /// The percentile of each quantised layer's input values (and of their negatives) that sets
    /// the ends of its range; 100 takes the maximum.
    double percentile = 99.99;
};

/// The range of the values a layer sees, over all calibration batches: the k-th largest value
/// and the k-th largest negative, with k the count the percentile leaves out (at least 1), known
/// in advance from the total number of values. Keeps only the k largest of each, so the memory
/// is small however many values pass.
class CalibrationRange {
  public:
    CalibrationRange(double total_values, double percentile) {
        check(percentile > 50 && percentile <= 100,
              "quantize: the percentile must be in (50, 100], got ", percentile);
        keep_ = static_cast<std::size_t>(std::floor(total_values * (100 - percentile) / 100)) + 1;
    }
    template <typename T>
    void add(const T* x, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) {
            high_.push_back(static_cast<float>(x[i]));
            low_.push_back(-static_cast<float>(x[i]));
        }
        shrink(high_), shrink(low_);
    }
    /// The ends of the range; an Error before any value was added.
    double high() const { return at_rank(high_); }
    double low() const { return -at_rank(low_); }

  private:
    void shrink(std::vector<float>& v) const {
        if (v.size() <= keep_) return;
        std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(keep_ - 1), v.end(),
                         std::greater<float>());
        v.resize(keep_);
    }
    double at_rank(const std::vector<float>& v) const {
        check(!v.empty(), "quantize: no calibration values");
        return *std::min_element(v.begin(), v.end());
    }
    std::size_t keep_ = 1;
    std::vector<float> high_, low_;
};

/// The int8 version of `model` (put in Mode::Eval): each Conv2d and Dense quantised, its input
/// range calibrated on `calibration` (batches of the model's input), the ReLU after it fused.
/// `model` itself is not changed. An Error when no batch is given or a batch has the wrong shape.
template <typename T>
Sequential<T> quantize_model(Sequential<T>& model, const std::vector<Tensor<T>>& calibration,
                             const QuantizeOptions& options = {}) {
    check(!calibration.empty(), "quantize: no calibration batches");
    model.set_mode(Mode::Eval);
    const std::size_t L = model.size();
    auto quantizable = [&](std::size_t i) { return int8_quantizer(model.layer(i)) != nullptr; };
    // The ranges of the quantised layers' inputs, over every calibration batch.
    double samples = 0;
    for (const Tensor<T>& batch : calibration) {
        check(batch.rank() == model.input_shape().rank() + 1 &&
                  sample_shape(batch.shape()) == model.input_shape(),
              "quantize: a calibration batch is ", batch.shape().str(), ", the model takes (N, ",
              model.input_shape().str().substr(1));
        samples += static_cast<double>(batch.dim(0));
    }
    std::vector<std::unique_ptr<CalibrationRange>> ranges(L);
    Shape shape = model.input_shape();
    for (std::size_t i = 0; i < L; ++i) {
        if (quantizable(i))
            ranges[i] = std::make_unique<CalibrationRange>(
                samples * static_cast<double>(shape.size()), options.percentile);
        shape = model.layer(i).output_shape(shape);
    }
    Tensor<T> a, b;
    for (const Tensor<T>& batch : calibration) {
        const Tensor<T>* in = &batch;
        for (std::size_t i = 0; i < L; ++i) {
            if (ranges[i]) ranges[i]->add(in->data(), in->size());
            Tensor<T>& out = in == &a ? b : a;
            model.layer(i).forward(*in, out);
            in = &out;
        }
    }
    // The new model: quantised layers, copies of the others.
    Sequential<T> out(model.input_shape());
    for (std::size_t i = 0; i < L; ++i) {
        Layer<T>& layer = model.layer(i);
        if (ranges[i]) {
            const ActivationQuantization input =
                ActivationQuantization::covering(ranges[i]->low(), ranges[i]->high());
            const bool relu = i + 1 < L && model.layer(i + 1).is_relu();
            out.add((*int8_quantizer(layer))(layer, input, relu));
            if (relu) ++i;
            continue;
        }
        std::unique_ptr<Layer<T>> copy = make_layer<T>(layer.config());
        auto from = layer.parameters();
        auto to = copy->parameters();
        for (std::size_t p = 0; p < from.size(); ++p) *to[p].value = *from[p].value;
        auto from_buffers = layer.buffers();
        auto to_buffers = copy->buffers();
        for (std::size_t p = 0; p < from_buffers.size(); ++p)
            *to_buffers[p].second = *from_buffers[p].second;
        out.add(std::move(copy));
    }
    out.set_mode(Mode::Eval);
    return out;
}

}  // namespace facet
