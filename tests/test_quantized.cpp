// Tests of the int8 layers (layers/quantized_conv2d.hpp, layers/quantized_dense.hpp) and of
// post-training quantisation (model/quantize.hpp): each layer against an independent naive integer
// computation, exactly; against the float layer within the error bound the scheme implies; model
// files round trip; corrupt scales and values are refused naming the layer and the tensor.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "facet/core/random.hpp"
#include "facet/kernels/int8_prepare.hpp"
#include "facet/layers/activations.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/flatten.hpp"
#include "facet/layers/maxpool2d.hpp"
#include "facet/layers/quantized_conv2d.hpp"
#include "facet/layers/quantized_dense.hpp"
#include "facet/model/quantize.hpp"
#include "facet/model/serialize.hpp"

using namespace facet;

namespace {

/// The input code of x, written out: round half up of x / s + z, clamped to [0, 127].
int code_of(float x, const ActivationQuantization& q) {
    const float v = x * (1.0f / q.scale) + static_cast<float>(q.zero_point);
    return static_cast<int>(std::floor(std::clamp(v, 0.0f, 127.0f) + 0.5f));
}

/// The epilogue, written out from the formula of layers/int8_quantization.hpp.
float dequantized(std::int64_t sum, std::int64_t weight_sum, const ActivationQuantization& q,
                  float weight_scale, float bias, bool relu) {
    const float y = static_cast<float>(static_cast<std::int32_t>(sum - q.zero_point * weight_sum)) *
                        (q.scale * weight_scale) +
                    bias;
    return relu ? std::max(y, 0.0f) : y;
}

/// QuantizedConv2d's output by direct convolution over the codes (no unrolling, no GEMM).
Tensor<float> naive_quantized_conv(const QuantizedConv2d<float>& layer, const Tensor<float>& x) {
    const Conv2dOptions& o = layer.options();
    const ActivationQuantization q = layer.activation();
    const ConvGeometry g = layer.geometry(sample_shape(x.shape()));
    const std::size_t N = x.dim(0), C = o.in_channels, H = x.dim(2), W = x.dim(3);
    Tensor<float> y(Shape{N, o.out_channels, g.out_h(), g.out_w()});
    const QuantizedTensor& w = layer.weight();
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t oc = 0; oc < o.out_channels; ++oc)
            for (std::size_t oy = 0; oy < g.out_h(); ++oy)
                for (std::size_t ox = 0; ox < g.out_w(); ++ox) {
                    std::int64_t sum = 0, wsum = 0;
                    for (std::size_t c = 0; c < C; ++c)
                        for (std::size_t i = 0; i < o.kernel_h; ++i)
                            for (std::size_t j = 0; j < o.kernel_w; ++j) {
                                const long iy = long(oy * o.stride_h + i) - long(o.pad_h);
                                const long ix = long(ox * o.stride_w + j) - long(o.pad_w);
                                const bool inside =
                                    iy >= 0 && iy < long(H) && ix >= 0 && ix < long(W);
                                const int a =
                                    inside ? code_of(x(n, c, std::size_t(iy), std::size_t(ix)), q)
                                           : q.zero_point;
                                const int wv =
                                    w.values[((oc * C + c) * o.kernel_h + i) * o.kernel_w + j];
                                sum += std::int64_t{a} * wv;
                                wsum += wv;
                            }
                    y(n, oc, oy, ox) =
                        dequantized(sum, wsum, q, w.scales[oc], layer.bias()[oc], layer.relu());
                }
    return y;
}

Tensor<float> random_tensor(const Shape& s, std::uint64_t seed, float lo, float hi) {
    Rng rng(seed);
    Tensor<float> t(s);
    for (auto& v : t) v = static_cast<float>(rng.uniform(lo, hi));
    return t;
}

Conv2d<float> random_conv(const Conv2dOptions& o) {
    Conv2d<float> conv(o);
    Rng rng(o.seed + 100);
    for (auto& b : conv.bias()) b = static_cast<float>(rng.uniform(-0.5, 0.5));
    return conv;
}

}  // namespace

TEST_CASE("QuantizedConv2d equals a naive integer convolution exactly") {
    struct Case {
        Conv2dOptions o;
        std::size_t n, h, w;
        float lo, hi;
        bool relu;
    };
    const std::vector<Case> cases = {
        {{1, 3, 3, 3, 1, 1, 1, 1, true, 1}, 2, 7, 5, -1.5f, 2.0f, false},  // signed input
        {{3, 5, 3, 3, 2, 2, 1, 1, true, 2}, 1, 9, 8, 0.0f, 3.0f, true},    // stride 2
        {{2, 17, 1, 3, 1, 2, 0, 1, true, 3}, 3, 4, 6, -0.5f, 0.5f, true},  // 1x3, K = 6
        {{5, 4, 2, 2, 1, 1, 0, 0, false, 4}, 1, 3, 3, 0.0f, 1.0f, false},  // K = 20
        // C a multiple of 4: patches packed straight from the image (pack_patch_panels)
        {{4, 6, 3, 3, 1, 1, 1, 1, true, 5}, 2, 7, 5, -1.0f, 1.0f, false},  // P = 35, edge panel
        {{8, 20, 3, 3, 2, 2, 1, 1, true, 6}, 1, 9, 8, 0.0f, 2.0f, true},   // stride 2, N > NR
        {{12, 3, 1, 1, 1, 1, 0, 0, true, 7}, 1, 5, 5, -0.5f, 1.5f, true},  // 1 x 1
        // big enough for the GEMM to share its row blocks among threads
        {{16, 24, 3, 3, 1, 1, 1, 1, true, 8}, 2, 13, 12, -1.0f, 2.0f, true},
    };
    set_num_threads(2);
    for (const Case& c : cases) {
        Conv2d<float> conv = random_conv(c.o);
        const auto input = ActivationQuantization::covering(c.lo, c.hi * 0.8);  // some clipping
        auto q = QuantizedConv2d<float>::from_layer(conv, input, c.relu);
        const Tensor<float> x = random_tensor(Shape{c.n, c.o.in_channels, c.h, c.w}, 9, c.lo, c.hi);
        Tensor<float> y;
        for (Int8Isa isa : {Int8Isa::Portable, Int8Isa::Auto}) {
            Context context = current_context();
            context.int8_isa = isa;
            const ContextScope scope(context);
            q->forward(x, y);
            const Tensor<float> expected = naive_quantized_conv(*q, x);
            REQUIRE(y.shape() == expected.shape());
            INFO(q->describe(), " isa ", int8_isa_name(int8_isa()));
            for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == expected[i]);
        }
    }
    set_num_threads(0);
}

TEST_CASE(
    "QuantizedConv2d packs patches straight from the image as unrolling, then packing, does") {
    // geometry: C (a multiple of 4), H, W, kernel, stride, pad
    struct Case {
        std::size_t c, h, w, k, stride, pad;
    };
    for (const Case& c : {Case{4, 5, 7, 3, 1, 1}, Case{8, 6, 6, 3, 2, 1}, Case{12, 3, 4, 1, 1, 0},
                          Case{4, 9, 2, 2, 1, 0}}) {
        ConvGeometry g;
        g.channels = c.c, g.height = c.h, g.width = c.w;
        g.kernel_h = g.kernel_w = c.k;
        g.stride_h = g.stride_w = c.stride;
        g.pad_h = g.pad_w = c.pad;
        const std::size_t P = g.col_cols(), K = g.col_rows();
        Rng rng(c.c * 100 + c.h);
        std::vector<std::uint8_t> image(c.c * c.h * c.w);
        for (auto& v : image) v = static_cast<std::uint8_t>(rng.uniform(0, 127.99));
        const std::uint8_t pad = 37;
        std::vector<std::uint8_t> rows(P * K);
        QuantizedConv2d<float>::patch_rows(g, image.data(), pad, rows.data());
        auto check_mr = [&](auto mr) {
            constexpr std::size_t MR = decltype(mr)::value;
            const std::size_t size = (P + MR - 1) / MR * MR * K;
            std::vector<std::uint8_t> expected(size, 1), packed(size, 2);
            pack_int8_a<MR>(P, K, rows.data(), K, expected.data());
            QuantizedConv2d<float>::pack_patch_panels<MR>(g, image.data(), pad, packed.data());
            INFO("C ", c.c, " ", c.h, "x", c.w, " kernel ", c.k, " stride ", c.stride, " MR ", MR);
            CHECK(packed == expected);
            // In two parts, as the GEMM packs a block of rows at a time.
            const std::size_t split = (P / MR + 1) / 2 * MR;
            std::vector<std::uint8_t> parts(size, 3);
            QuantizedConv2d<float>::pack_patch_panels<MR>(g, image.data(), pad, parts.data(), 0,
                                                          split);
            QuantizedConv2d<float>::pack_patch_panels<MR>(g, image.data(), pad,
                                                          parts.data() + split * K, split, P);
            CHECK(parts == expected);
        };
        check_mr(std::integral_constant<std::size_t, 1>{});
        check_mr(std::integral_constant<std::size_t, 4>{});
        check_mr(std::integral_constant<std::size_t, 8>{});
        check_mr(std::integral_constant<std::size_t, 16>{});
    }
}

TEST_CASE("int8 data preparation: each vector path gives its reference's bits") {
    Rng rng(91);
    SUBCASE("quantize_codes") {
        for (std::size_t n : {0, 1, 7, 8, 33, 1000}) {
            std::vector<float> x(n);
            for (auto& v : x) v = static_cast<float>(rng.uniform(-40, 300));
            const float specials[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 0.5f, 1.5f, -0.0f};
            for (std::size_t i = 0; i < n && i < 8; ++i) x[i * n / 8] = specials[i];
            for (float inverse : {1.0f, 0.37f, 3.0f})
                for (float offset : {0.5f, 64.5f}) {
                    std::vector<std::uint8_t> fast(n, 200), reference(n, 201);
                    quantize_codes(x.data(), n, fast.data(), inverse, offset, 127.5f);
                    detail::quantize_codes_reference(x.data(), n, reference.data(), inverse, offset,
                                                     127.5f);
                    INFO("n ", n, " inverse ", inverse, " offset ", offset);
                    CHECK(fast == reference);
                    for (std::uint8_t c : fast) CHECK(c <= 127);
                }
        }
    }
    SUBCASE("planes_to_channels_last") {
        for (std::size_t C : {1, 3, 16, 17, 32, 40})
            for (std::size_t HW : {1, 15, 16, 37, 64}) {
                std::vector<std::uint8_t> planes(C * HW);
                for (auto& v : planes) v = static_cast<std::uint8_t>(rng.below(256));
                std::vector<std::uint8_t> fast(C * HW, 1), reference(C * HW, 2);
                planes_to_channels_last(planes.data(), C, HW, fast.data());
                detail::planes_to_channels_last_reference(planes.data(), C, HW, reference.data());
                INFO("C ", C, " HW ", HW);
                CHECK(fast == reference);
                CHECK(reference[(HW - 1) * C + C - 1] == planes[(C - 1) * HW + HW - 1]);
            }
    }
    SUBCASE("interleave_four_rows") {
        for (std::size_t groups : {0, 1, 3, 4, 5, 8, 13}) {
            std::vector<std::uint8_t> rows(4 * 4 * groups + 4);
            for (auto& v : rows) v = static_cast<std::uint8_t>(rng.below(256));
            const std::uint8_t* starts[4] = {rows.data() + 4 * groups * 3, rows.data() + 1,
                                             rows.data() + 4 * groups * 2 + 3, rows.data() + 2};
            std::vector<std::uint8_t> fast(16 * groups, 1), reference(16 * groups, 2);
            interleave_four_rows(starts, groups, fast.data());
            detail::interleave_four_rows_reference(starts, groups, reference.data());
            INFO("groups ", groups);
            CHECK(fast == reference);
        }
    }
    SUBCASE("epilogue_to_planes") {
        for (std::size_t OC : {1, 7, 8, 9, 16, 32, 35})
            for (std::size_t P : {1, 7, 8, 13, 64, 70}) {
                std::vector<std::int32_t> sums(P * OC), weight_sum(OC);
                std::vector<float> multiplier(OC), bias(OC);
                for (auto& v : sums) v = static_cast<std::int32_t>(rng.below(2000001)) - 1000000;
                sums[0] = 2000000000, sums.back() = -2000000000;  // no overflow with the offsets
                for (std::size_t o = 0; o < OC; ++o) {
                    weight_sum[o] = static_cast<std::int32_t>(rng.below(20001)) - 10000;
                    multiplier[o] = static_cast<float>(rng.uniform(1e-6, 1e-3));
                    bias[o] = static_cast<float>(rng.uniform(-2, 2));
                }
                for (int zero_point : {0, 37})
                    for (bool relu : {false, true}) {
                        const detail::EpiloguePlanes e{zero_point, weight_sum.data(),
                                                       multiplier.data(), bias.data(), relu};
                        std::vector<float> fast(P * OC, 1), reference(P * OC, 2);
                        epilogue_to_planes(sums.data(), P, OC, e, fast.data());
                        detail::epilogue_to_planes_reference(sums.data(), P, OC, e,
                                                             reference.data());
                        INFO("OC ", OC, " P ", P, " zero point ", zero_point, " relu ", relu);
                        CHECK(std::memcmp(fast.data(), reference.data(), fast.size() * 4) == 0);
                        // The reference against the formula, in double.
                        const std::size_t p = P - 1, o = OC / 2;
                        double y =
                            double(sums[p * OC + o] - zero_point * weight_sum[o]) * multiplier[o] +
                            bias[o];
                        if (relu) y = std::max(y, 0.0);
                        CHECK(reference[o * P + p] == doctest::Approx(y).epsilon(1e-6).scale(1e-6));
                    }
            }
    }
}

TEST_CASE("QuantizedDense equals a naive integer product exactly") {
    Dense<float> dense(37, 11, true, 5);
    Rng rng(6);
    for (auto& b : dense.bias()) b = static_cast<float>(rng.uniform(-1, 1));
    for (bool relu : {false, true}) {
        const auto input = ActivationQuantization::covering(-1.0, 2.0);
        auto q = QuantizedDense<float>::from_layer(dense, input, relu);
        const Tensor<float> x = random_tensor(Shape{5, 37}, 8, -1.2f, 2.2f);
        Tensor<float> y;
        q->forward(x, y);
        const QuantizedTensor& w = q->weight();
        for (std::size_t n = 0; n < 5; ++n)
            for (std::size_t o = 0; o < 11; ++o) {
                std::int64_t sum = 0, wsum = 0;
                for (std::size_t k = 0; k < 37; ++k) {
                    sum += std::int64_t{code_of(x[n * 37 + k], input)} * w.values[o * 37 + k];
                    wsum += w.values[o * 37 + k];
                }
                REQUIRE(y[n * 11 + o] ==
                        dequantized(sum, wsum, input, w.scales[o], q->bias()[o], relu));
            }
    }
}

TEST_CASE("int8 layers stay within the error bound of the scheme from the float layers") {
    // |y8 - y| <= sum_k |dx_k| |w_k| + |x_k| |dw_k| + |dx_k| |dw_k|, with |dw_k| <= sw / 2 and
    // |dx_k| <= s / 2 for inputs inside the calibrated range; plus a little float rounding.
    Conv2dOptions o{4, 6, 3, 3, 1, 1, 1, 1, true, 11};
    Conv2d<float> conv = random_conv(o);
    const Tensor<float> x = random_tensor(Shape{2, 4, 6, 6}, 12, -1.0f, 3.0f);
    const auto input = ActivationQuantization::covering(-1.0, 3.0);
    auto q = QuantizedConv2d<float>::from_layer(conv, input, false);
    Tensor<float> y, y8;
    conv.forward(x, y);
    q->forward(x, y8);
    const QuantizedTensor& w = q->weight();
    double worst = 0;
    for (std::size_t n = 0; n < 2; ++n)
        for (std::size_t oc = 0; oc < 6; ++oc)
            for (std::size_t oy = 0; oy < 6; ++oy)
                for (std::size_t ox = 0; ox < 6; ++ox) {
                    double bound = 1e-4;
                    for (std::size_t c = 0; c < 4; ++c)
                        for (std::size_t i = 0; i < 3; ++i)
                            for (std::size_t j = 0; j < 3; ++j) {
                                const long iy = long(oy + i) - 1, ix = long(ox + j) - 1;
                                if (iy < 0 || iy >= 6 || ix < 0 || ix >= 6) continue;
                                const double xv =
                                    std::abs(x(n, c, std::size_t(iy), std::size_t(ix)));
                                const double wv = std::abs(conv.weight()(oc, c, i, j));
                                const double dx = input.scale / 2.0, dw = w.scales[oc] / 2.0;
                                bound += dx * wv + xv * dw + dx * dw;
                            }
                    const double err = std::abs(y8(n, oc, oy, ox) - y(n, oc, oy, ox));
                    REQUIRE(err <= bound);
                    worst = std::max(worst, err / bound);
                }
    CHECK(worst > 0.01);  // the bound is not vacuous: some error reaches a few % of it

    Dense<float> dense(50, 7, true, 13);
    const Tensor<float> xd = random_tensor(Shape{3, 50}, 14, 0.0f, 2.0f);
    const auto dense_input = ActivationQuantization::covering(0.0, 2.0);
    auto qd = QuantizedDense<float>::from_layer(dense, dense_input, false);
    Tensor<float> yd, yd8;
    dense.forward(xd, yd);
    qd->forward(xd, yd8);
    for (std::size_t n = 0; n < 3; ++n)
        for (std::size_t oc = 0; oc < 7; ++oc) {
            double bound = 1e-4;
            for (std::size_t k = 0; k < 50; ++k) {
                const double dx = dense_input.scale / 2.0, dw = qd->weight().scales[oc] / 2.0;
                bound += dx * std::abs(dense.weight()[oc * 50 + k]) +
                         std::abs(xd[n * 50 + k]) * dw + dx * dw;
            }
            REQUIRE(std::abs(yd8[n * 7 + oc] - yd[n * 7 + oc]) <= bound);
        }
}

namespace {

/// A small float network and its quantised version, calibrated on random images.
struct SmallInt8Model {
    Sequential<float> fp32{Shape{1, 8, 8}};
    Sequential<float> int8{Shape{1, 8, 8}};
    Tensor<float> x;
    SmallInt8Model() {
        fp32.add<Conv2d<float>>(1, 4, 3, 1, 1, true, 21);
        fp32.add<ReLU<float>>();
        fp32.add<MaxPool2d<float>>(2);
        fp32.add<Flatten<float>>();
        fp32.add<Dense<float>>(64, 5, true, 22);
        x = random_tensor(Shape{6, 1, 8, 8}, 23, -1.0f, 1.0f);
        int8 = quantize_model(fp32, {x});
    }
};

}  // namespace

TEST_CASE("quantize_model fuses the ReLU, keeps the other layers and follows the float model") {
    SmallInt8Model m;
    REQUIRE(m.int8.size() == 4);
    CHECK(m.int8.layer(0).type() == "QuantizedConv2d");
    CHECK(m.int8.layer(1).type() == "MaxPool2d");
    CHECK(m.int8.layer(3).type() == "QuantizedDense");
    const Tensor<float> p32 = m.fp32.predict(m.x);
    const Tensor<float> p8 = m.int8.predict(m.x);
    for (std::size_t i = 0; i < p32.size(); ++i) CHECK(std::abs(p8[i] - p32[i]) < 0.05);
    Tensor<float> dx;
    CHECK_THROWS_WITH_AS(m.int8.layer(0).backward(m.x, p8, p8, dx),
                         doctest::Contains("inference only"), Error);
}

TEST_CASE("CalibrationRange takes the percentile of the values and of their negatives") {
    std::vector<float> v(10000);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) - 2000.0f;
    CalibrationRange max_range(10000, 100), p99(10000, 99);
    for (std::size_t i = 0; i < v.size(); i += 1000) {  // in pieces, as batches arrive
        max_range.add(v.data() + i, 1000);
        p99.add(v.data() + i, 1000);
    }
    CHECK(max_range.high() == 7999.0);
    CHECK(max_range.low() == -2000.0);
    CHECK(p99.high() == 7899.0);  // the 101st largest: 100 values left out
    CHECK(p99.low() == -1900.0);
}

TEST_CASE("int8 model files round trip and store int8 weights with their scales") {
    SmallInt8Model m;
    const std::vector<unsigned char> bytes = encode_model(m.int8);
    ModelFile<float> file = decode_model_file<float>(bytes, "int8.facet");
    Sequential<float>& loaded = file.model;
    const Tensor<float> before = m.int8.predict(m.x);
    const Tensor<float> after = loaded.predict(m.x);
    REQUIRE(before.size() == after.size());
    for (std::size_t i = 0; i < before.size(); ++i) CHECK(before[i] == after[i]);
    int int8_tensors = 0;
    for (const auto& [name, type] : file.tensor_types) int8_tensors += type == DType::I8;
    CHECK(int8_tensors == 2);
    // The 356 weights take one byte each instead of four: at least two bytes saved per weight
    // after the scales and the input quantisation tensors are paid for.
    CHECK(encode_model(m.fp32).size() >= bytes.size() + 2 * 356);
}

TEST_CASE("int8 model files with corrupt scales or values are refused, naming layer and tensor") {
    struct Corruption {
        const char* what;
        void (*apply)(Sequential<float>&);
        const char* message;
    };
    const std::vector<Corruption> corruptions = {
        {"zero weight scale",
         [](Sequential<float>& s) { s.quantized_tensors()[0].second->scales[1] = 0; },
         "'weight' has scale 0 for output channel 1"},
        {"negative weight scale",
         [](Sequential<float>& s) { s.quantized_tensors()[1].second->scales[0] = -0.5f; },
         "has scale -0.5"},
        {"NaN weight scale",
         [](Sequential<float>& s) { s.quantized_tensors()[1].second->scales[2] = std::nanf(""); },
         "must be finite and > 0"},
        {"weight -128",
         [](Sequential<float>& s) { s.quantized_tensors()[0].second->values[3] = -128; },
         "holds -128 at element 3"},
        {"zero input scale", [](Sequential<float>& s) { (*s.buffers()[1].second)[0] = 0; },
         "input_scale must be finite and > 0"},
        {"fractional zero point", [](Sequential<float>& s) { (*s.buffers()[2].second)[0] = 1.5f; },
         "input_zero_point must be a whole number"},
        {"zero point out of range", [](Sequential<float>& s) { (*s.buffers()[2].second)[0] = 128; },
         "input_zero_point must be a whole number"},
    };
    for (const Corruption& c : corruptions) {
        SmallInt8Model m;
        c.apply(m.int8);
        const std::vector<unsigned char> bytes = encode_model(m.int8);
        INFO(c.what);
        CHECK_THROWS_WITH_AS(decode_model<float>(bytes, "bad.facet"), doctest::Contains(c.message),
                             Error);
        CHECK_THROWS_WITH_AS(decode_model<float>(bytes, "bad.facet"),
                             doctest::Contains("bad.facet"), Error);
        CHECK_THROWS_WITH_AS(decode_model<float>(bytes, "bad.facet"),
                             doctest::Contains("Quantized"), Error);
    }
}
