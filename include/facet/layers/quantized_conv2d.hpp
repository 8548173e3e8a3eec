// facet/layers/quantized_conv2d.hpp — QuantizedConv2d: a Conv2d computed in int8 for inference
// (model/quantize.hpp builds it from a trained Conv2d). Its input is quantised per tensor to
// codes in [0, 127], unrolled into one row of K = kh*kw*C codes per output pixel, multiplied by
// the int8 weights (OC x K) with int32 sums (kernels/int8_gemm.hpp), and the sums become floats
// again with the bias and, when fused, the ReLU (layers/int8_quantization.hpp gives the formula).
// When C is a multiple of 4 the rows are never written: the GEMM's panels are packed from the
// channels-last codes themselves (pack_patch_panels), the same bytes unrolling would give.
// Read layers/conv2d.hpp first. Read next: layers/quantized_dense.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/im2col.hpp"
#include "facet/kernels/int8_gemm.hpp"
#include "facet/kernels/int8_prepare.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/layers/int8_quantization.hpp"
#include "facet/layers/int8_quantizers.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/registry.hpp"

namespace facet {

/// An int8 convolution for inference. x is (N, C, H, W) floats, the weights (OC, C, kh, kw) int8
/// with a scale per output channel, y is (N, OC, OH, OW) floats; backward() is an Error.
template <typename T>
class QuantizedConv2d : public Layer<T> {
  public:
    /// A layer of these options (their `bias` and `seed` are ignored: the layer always has a
    /// bias, zero until set) with zero weights, scales 1 and input scale 1.
    QuantizedConv2d(const Conv2dOptions& o, bool relu) : opt_(o), relu_(relu) {
        check(o.in_channels > 0 && o.out_channels > 0 && o.kernel_h > 0 && o.kernel_w > 0 &&
                  o.stride_h > 0 && o.stride_w > 0,
              "QuantizedConv2d: channels, kernel and stride must be positive");
        weight_.values.resize(Shape{o.out_channels, o.in_channels, o.kernel_h, o.kernel_w});
        weight_.scales.assign(o.out_channels, 1.0f);
        bias_.resize(Shape{o.out_channels});
        input_scale_.resize(Shape{1});
        input_scale_[0] = T(1);
        input_zero_point_.resize(Shape{1});
    }

    /// The int8 version of `conv` for inputs quantised by `input`, with a ReLU after it when
    /// `relu`.
    /// The float layer this one replaces (layers/int8_quantizers.hpp).
    using Source = Conv2d<T>;

    static std::unique_ptr<QuantizedConv2d<T>> from_layer(Conv2d<T>& conv,
                                                          const ActivationQuantization& input,
                                                          bool relu) {
        auto q = std::make_unique<QuantizedConv2d<T>>(conv.options(), relu);
        q->weight_ = quantize_weights_per_channel(conv.weight());
        if (conv.options().bias) q->bias_ = conv.bias();
        q->input_scale_[0] = static_cast<T>(input.scale);
        q->input_zero_point_[0] = static_cast<T>(input.zero_point);
        q->check_loaded();
        return q;
    }

    std::string type() const override { return "QuantizedConv2d"; }
    std::string describe() const override {
        return detail::concat("QuantizedConv2d(", opt_.in_channels, "->", opt_.out_channels, ", ",
                              opt_.kernel_h, "x", opt_.kernel_w, ", stride ", opt_.stride_h, "x",
                              opt_.stride_w, ", pad ", opt_.pad_h, "x", opt_.pad_w,
                              relu_ ? ", ReLU" : "", ", int8)");
    }
    Shape output_shape(const Shape& input) const override {
        const ConvGeometry g = geometry(input);
        return Shape{opt_.out_channels, g.out_h(), g.out_w()};
    }

    // y[n] = epilogue(patch_rows(codes(x[n])) * Wq^T): (P x K) * (K x OC), P = OH*OW.
    void forward(const Tensor<T>& x, Tensor<T>& y) override {
        check(x.rank() == 4, "QuantizedConv2d: input must be (N, C, H, W), got ", x.shape().str());
        const ConvGeometry g = geometry(sample_shape(x.shape()));
        const std::size_t OC = opt_.out_channels, P = g.col_cols(), K = g.col_rows();
        const std::size_t C = g.channels, HW = g.height * g.width;
        y.resize(Shape{x.dim(0), OC, g.out_h(), g.out_w()});
        prepare();
        Int8Scratch& scratch = int8_scratch();
        std::vector<std::uint8_t>&planes = scratch.planes, &codes = scratch.codes;
        std::vector<std::int32_t>& sums = scratch.sums;
        planes.resize(g.image_size());
        codes.resize(g.image_size());
        sums.resize(P * OC);
        const auto pad = static_cast<std::uint8_t>(input_.zero_point);
        for (std::size_t n = 0; n < x.dim(0); ++n) {
            // Codes channels-last, so that each kernel position's C codes are contiguous.
            if (C == 1) {
                input_.quantize(x.data() + n * HW, HW, codes.data());
            } else {
                input_.quantize(x.data() + n * g.image_size(), g.image_size(), planes.data());
                planes_to_channels_last(planes.data(), C, HW, codes.data());
            }
            if (C % 4 == 0) {
                // Each group of four k's lies in one kernel position: pack straight from the
                // image, without the unrolled rows (the codes are in [0, 127] by quantize()).
                int8_gemm_packing_a(
                    P, OC, K,
                    [&](auto mr, std::size_t begin, std::size_t end, std::uint8_t* panels) {
                        pack_patch_panels<decltype(mr)::value>(g, codes.data(), pad, panels, begin,
                                                               end);
                    },
                    packed_, sums.data(), OC);
            } else {
                scratch.rows.resize(P * K);
                patch_rows(g, codes.data(), pad, scratch.rows.data());
                int8_gemm(P, OC, K, scratch.rows.data(), K, packed_, sums.data(), OC);
            }
            epilogue_to_planes(sums.data(), P, OC, epilogue_.view(), y.data() + n * OC * P);
        }
    }
    void backward(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, Tensor<T>&) override {
        throw Error(
            "QuantizedConv2d is for inference only: it has no backward pass (train the float "
            "model, then quantise it)");
    }

    // Both hand out writable tensors (the loader fills them): the packing is redone afterwards.
    std::vector<std::pair<std::string, Tensor<T>*>> buffers() override {
        packed_ = Int8PackedWeights();
        return {{"bias", &bias_},
                {"input_scale", &input_scale_},
                {"input_zero_point", &input_zero_point_}};
    }
    std::vector<std::pair<std::string, QuantizedTensor*>> quantized_tensors() override {
        packed_ = Int8PackedWeights();
        return {{"weight", &weight_}};
    }
    void check_loaded() const override {
        const std::string name = describe();
        const T z = input_zero_point_[0];
        check(z >= T(0) && z <= T(int8_activation_max) && z == std::floor(z), name,
              ": input_zero_point must be a whole number in [0, ", int8_activation_max, "], got ",
              z);
        activation().check_valid(name);
        check_quantized_weights(weight_, name, "weight");
    }
    std::size_t flops(const Shape& input) const override {
        const ConvGeometry g = geometry(input);
        return 2 * g.col_rows() * g.col_cols() * opt_.out_channels;
    }
    LayerConfig config() const override {
        return {"QuantizedConv2d",
                {{"in_channels", opt_.in_channels},
                 {"out_channels", opt_.out_channels},
                 {"kernel_h", opt_.kernel_h},
                 {"kernel_w", opt_.kernel_w},
                 {"stride_h", opt_.stride_h},
                 {"stride_w", opt_.stride_w},
                 {"pad_h", opt_.pad_h},
                 {"pad_w", opt_.pad_w},
                 {"relu", relu_}}};
    }
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& c) {
        using detail::config_count;
        const double most = double(std::size_t{1} << 32);
        Conv2dOptions o;
        o.in_channels = config_count(c, "in_channels", 1);
        o.out_channels = config_count(c, "out_channels", 1);
        o.kernel_h = config_count(c, "kernel_h", 1);
        o.kernel_w = config_count(c, "kernel_w", 1);
        o.stride_h = config_count(c, "stride_h", 1, most, 1);
        o.stride_w = config_count(c, "stride_w", 1, most, 1);
        o.pad_h = config_count(c, "pad_h", 0, most, 0);
        o.pad_w = config_count(c, "pad_w", 0, most, 0);
        return std::make_unique<QuantizedConv2d<T>>(o, detail::config_flag(c, "relu", false));
    }
    /// The int8 weights a model file holds for this config: OC * C * kh * kw bytes.
    static double stored_values_lower_bound(const LayerConfig& c) {
        using detail::config_positive;
        return config_positive(c, "in_channels") * config_positive(c, "out_channels") *
               config_positive(c, "kernel_h") * config_positive(c, "kernel_w");
    }

    const Conv2dOptions& options() const { return opt_; }
    bool relu() const { return relu_; }
    const QuantizedTensor& weight() const { return weight_; }
    const Tensor<T>& bias() const { return bias_; }
    /// The quantisation of the input, as stored.
    ActivationQuantization activation() const {
        ActivationQuantization q;
        q.scale = static_cast<float>(input_scale_[0]);
        const T z = input_zero_point_[0];
        q.zero_point = z >= T(0) && z <= T(int8_activation_max) && z == std::floor(z) ? int(z) : -1;
        return q;
    }

    ConvGeometry geometry(const Shape& input) const {
        check(input.rank() == 3 && input[0] == opt_.in_channels, "QuantizedConv2d(",
              opt_.in_channels, "->", opt_.out_channels, "): per-sample input must be (",
              opt_.in_channels, ", H, W), got ", input.str());
        ConvGeometry g;
        g.channels = input[0], g.height = input[1], g.width = input[2];
        g.kernel_h = opt_.kernel_h, g.kernel_w = opt_.kernel_w;
        g.stride_h = opt_.stride_h, g.stride_w = opt_.stride_w;
        g.pad_h = opt_.pad_h, g.pad_w = opt_.pad_w;
        g.validate();
        return g;
    }

    /// The unrolled codes of one image whose codes are stored channels-last (H, W, C): row p
    /// (an output pixel) holds the K = kh*kw*C codes its kernel window covers, in (i, j, c)
    /// order, the order of the packed weights; a position in the padding gets `pad`, the code of
    /// 0.0 (the zero point), as the float layer's zero padding.
    static void patch_rows(const ConvGeometry& g, const std::uint8_t* image_hwc, std::uint8_t pad,
                           std::uint8_t* rows) {
        const std::size_t OW = g.out_w(), P = g.col_cols(), C = g.channels;
        for (std::size_t p = 0; p < P; ++p) {
            const std::size_t oy = p / OW, ox = p % OW;
            for (std::size_t i = 0; i < g.kernel_h; ++i) {
                // Unsigned wrap-around makes a row above the image huge, so one test covers
                // both edges.
                const std::size_t y = oy * g.stride_h + i - g.pad_h;
                for (std::size_t j = 0; j < g.kernel_w; ++j, rows += C) {
                    const std::size_t x = ox * g.stride_w + j - g.pad_w;
                    const bool inside = y < g.height && x < g.width;
                    if (C == 1)  // a byte, not a call (the first layer of a gray-image model)
                        *rows = inside ? image_hwc[y * g.width + x] : pad;
                    else if (inside)
                        std::memcpy(rows, image_hwc + (y * g.width + x) * C, C);
                    else
                        std::memset(rows, pad, C);
                }
            }
        }
    }

    /// What pack_int8_a<MR> makes of patch_rows' rows, made straight from the channels-last
    /// image when C is a multiple of 4: group (i, j, c .. c+3) of output pixel p is the 4 bytes
    /// at the image position kernel offset (i, j) of p reads, so each is one 32-bit copy.
    /// Packs the panels of output pixels [begin, end) (all of them by default; begin a multiple
    /// of MR); pixels past the end (in the last panel) get zeros.
    template <std::size_t MR>
    static void pack_patch_panels(const ConvGeometry& g, const std::uint8_t* image_hwc,
                                  std::uint8_t pad, std::uint8_t* out, std::size_t begin = 0,
                                  std::size_t end = std::size_t(-1)) {
        const std::size_t OW = g.out_w(), P = std::min(end, g.col_cols()), C = g.channels,
                          quads = C / 4;
        const std::uint32_t pad4 = 0x01010101u * pad;
        for (std::size_t p0 = begin; p0 < P; p0 += MR) {
            // Where each pixel's window starts (unsigned: above or left of the image wraps round
            // to huge, so one comparison covers both edges); the divisions once per panel.
            std::size_t top[MR], left[MR];
            for (std::size_t r = 0; r < MR; ++r) {
                const std::size_t p = p0 + r, oy = p / OW, ox = p % OW;
                top[r] = p < P ? oy * g.stride_h - g.pad_h : g.height + g.pad_h + g.kernel_h;
                left[r] = ox * g.stride_w - g.pad_w;
            }
            for (std::size_t i = 0; i < g.kernel_h; ++i)
                for (std::size_t j = 0; j < g.kernel_w; ++j, out += quads * MR * 4) {
                    const std::uint8_t* source[MR];  // each pixel's C codes, or null: padding
                    std::uint32_t fill[MR];          // what a null source contributes
                    for (std::size_t r = 0; r < MR; ++r) {
                        const std::size_t y = top[r] + i, x = left[r] + j;
                        const bool inside = y < g.height && x < g.width;
                        source[r] = inside ? image_hwc + (y * g.width + x) * C : nullptr;
                        fill[r] = p0 + r < P ? pad4 : 0u;
                    }
                    if constexpr (MR == 4)
                        if (source[0] && source[1] && source[2] && source[3]) {
                            interleave_four_rows(source, quads, out);
                            continue;
                        }
                    for (std::size_t q = 0; q < quads; ++q)
                        for (std::size_t r = 0; r < MR; ++r) {
                            std::uint32_t four = fill[r];
                            if (source[r]) std::memcpy(&four, source[r] + 4 * q, 4);
                            std::memcpy(out + (q * MR + r) * 4, &four, 4);
                        }
                }
        }
    }

  private:
    /// Packs the weights for the current ISA and derives the epilogue, when either is stale.
    void prepare() {
        if (!packed_.empty() && packed_.isa == int8_isa()) return;
        check_loaded();
        input_ = activation();
        // The weights in (o, i, j, c) order, the order of patch_rows.
        const std::size_t OC = opt_.out_channels, C = opt_.in_channels, KH = opt_.kernel_h,
                          KW = opt_.kernel_w, K = weight_.group_size();
        std::vector<std::int8_t> ohwc(OC * K);
        for (std::size_t o = 0; o < OC; ++o)
            for (std::size_t c = 0; c < C; ++c)
                for (std::size_t i = 0; i < KH; ++i)
                    for (std::size_t j = 0; j < KW; ++j)
                        ohwc[o * K + (i * KW + j) * C + c] =
                            weight_.values[o * K + (c * KH + i) * KW + j];
        packed_ = pack_int8_weights(OC, K, ohwc.data(), K);
        epilogue_ = Int8Epilogue(weight_, input_, bias_, relu_);
    }

    Conv2dOptions opt_;
    bool relu_;
    QuantizedTensor weight_;
    Tensor<T> bias_, input_scale_, input_zero_point_;
    // Derived from the above by prepare().
    ActivationQuantization input_;
    Int8PackedWeights packed_;
    Int8Epilogue epilogue_;
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class QuantizedConv2d<float>;
extern template class QuantizedConv2d<double>;
#endif

inline const bool quantized_conv2d_registered = register_layer<QuantizedConv2d>("QuantizedConv2d");
inline const bool conv2d_int8_quantizer = register_int8_quantizer<QuantizedConv2d>("Conv2d");

}  // namespace facet
