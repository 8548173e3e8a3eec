// Tests of facet's layers: forward passes against independent references, backward passes against
// central finite differences (through check_gradients), modes, statistics, the registry, bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "facet/core/parallel.hpp"
#include "facet/kernels/conv_reference.hpp"
#include "facet/kernels/vector_loops.hpp"
#include "facet/kernels/winograd.hpp"
#include "facet/layers/activations.hpp"
#include "facet/layers/batchnorm.hpp"
#include "facet/layers/channel_affine.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/dropout.hpp"
#include "facet/layers/flatten.hpp"
#include "facet/layers/init.hpp"
#include "facet/layers/maxpool2d.hpp"
#include "facet/layers/registry.hpp"
#include "facet/layers/softmax.hpp"
#include "facet/model/gradient_check.hpp"

using namespace facet;

namespace {

template <typename T>
Tensor<T> random_tensor(const Shape& s, std::uint64_t seed, double lo = -1, double hi = 1) {
    Tensor<T> t(s);
    Rng rng(seed);
    t.fill_uniform(rng, lo, hi);
    return t;
}

/// Uniform values whose magnitude is at least `gap`, random sign: keeps finite differences of
/// kinked functions (ReLU at 0) away from the kink.
Tensor<double> away_from_zero(const Shape& s, std::uint64_t seed, double gap = 0.05) {
    Tensor<double> t(s);
    Rng rng(seed);
    for (auto& v : t) v = (rng.uniform() < 0.5 ? -1 : 1) * rng.uniform(gap, 1.0);
    return t;
}

void require_gradients(Layer<double>& layer, const Tensor<double>& x, double tol = 1e-6) {
    GradientCheckOptions opt;
    opt.tolerance = tol;
    const GradientCheckReport r = check_gradients(layer, x, opt);
    INFO(layer.describe() << " at input " << x.shape().str() << "\n" << r.str());
    CHECK(r.passed);
    CHECK(r.tensors.size() == 1 + layer.parameters().size());
}

template <typename T>
double max_abs_diff(const Tensor<T>& a, const Tensor<T>& b) {
    REQUIRE(a.shape() == b.shape());
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        m = std::max(m, std::abs(double(a[i]) - double(b[i])));
    return m;
}

struct ConvCase {
    std::size_t cin, cout, kh, kw, stride, pad, h, w;
    bool bias;
};

const std::vector<ConvCase> conv_cases = {
    {3, 4, 3, 3, 1, 0, 7, 6, true},   // stride 1, pad 0, non-square input
    {3, 4, 3, 3, 1, 1, 6, 6, false},  // pad 1 ("same"), no bias
    {2, 5, 3, 3, 2, 0, 7, 8, true},   // stride 2 with a leftover column
    {2, 3, 3, 3, 2, 1, 5, 6, false},  // stride 2, pad 1
    {1, 4, 3, 2, 1, 1, 5, 4, true},   // rectangular kernel, one input channel
    {4, 3, 1, 1, 1, 0, 3, 5, true},   // pointwise: no im2col
    {2, 2, 3, 3, 1, 0, 3, 3, true},   // kernel as large as the image: a 1x1 output
    {8, 4, 3, 3, 1, 1, 6, 5, false},  // more channels, pad 1, as in fer-cnn-s
    {9, 3, 3, 3, 1, 0, 6, 7, true},   // more channels, pad 0
    {8, 5, 5, 3, 1, 2, 7, 6, true},   // rectangular 5x3 kernel, pad 2
    {8, 2, 3, 3, 1, 3, 4, 4, false},  // pad as large as the kernel: border outputs see only zeros
};

template <typename T>
Conv2d<T> make_conv(const ConvCase& c) {
    Conv2dOptions o;
    o.in_channels = c.cin;
    o.out_channels = c.cout;
    o.kernel_h = c.kh;
    o.kernel_w = c.kw;
    o.stride_h = o.stride_w = c.stride;
    o.pad_h = o.pad_w = c.pad;
    o.bias = c.bias;
    o.seed = 11;
    Conv2d<T> conv(o);
    Rng rng(5);
    conv.bias().fill_uniform(rng, -1, 1);  // non-zero, so a forgotten bias shows
    return conv;
}

}  // namespace

TEST_CASE("Conv2d forward matches the direct convolution") {
    for (const ConvCase& c : conv_cases) {
        for (int threads : {1, 2}) {
            set_num_threads(threads);
            Conv2d<float> conv = make_conv<float>(c);
            const std::size_t batch = 3;
            const auto x = random_tensor<float>(Shape{batch, c.cin, c.h, c.w}, 3);
            Tensor<float> y;
            conv.forward(x, y);
            const ConvGeometry g = conv.geometry(Shape{c.cin, c.h, c.w});
            Tensor<float> ref(Shape{batch, c.cout, g.out_h(), g.out_w()});
            conv2d_direct(x.data(), batch, g, conv.weight().data(), c.cout,
                          c.bias ? conv.bias().data() : nullptr, ref.data());
            INFO(conv.describe() << " on " << x.shape().str() << ", threads " << threads);
            CHECK(y.shape() == ref.shape());
            CHECK(max_abs_diff(y, ref) < 1e-5);
            CHECK(conv.output_shape(Shape{c.cin, c.h, c.w}) == sample_shape(y.shape()));
        }
    }
    set_num_threads(0);
}

TEST_CASE(
    "Conv2d's output and input gradient are the same bits at 1, 2 and 3 threads; its "
    "weight gradient the same bits on every run at a thread count") {
    // The threads take images as they come free (forward) and the input gradients of images
    // another thread owns (backward), so who computes an image varies from run to run; the
    // weight gradient's chunks do not. 9 images: the chunks are uneven at 2 threads.
    const std::vector<ConvCase> cases = {
        {32, 32, 3, 3, 1, 1, 6, 7, true},    // Winograd for y, dx and dW
        {16, 24, 3, 3, 1, 1, 10, 9, false},  // Winograd for y and dx, im2col for dW
        {3, 4, 3, 3, 2, 1, 7, 6, true},      // im2col throughout, stride 2
        {4, 3, 1, 1, 1, 0, 3, 5, true},      // pointwise
    };
    for (const ConvCase& c : cases)
        for (bool first_layer : {false, true}) {
            Conv2d<float> conv = make_conv<float>(c);
            conv.set_input_gradient(!first_layer);  // the first layer's dx: zeros
            const std::size_t batch = 9;
            const auto x = random_tensor<float>(Shape{batch, c.cin, c.h, c.w}, 71);
            set_num_threads(1);
            Tensor<float> y1, dx1;
            conv.forward(x, y1);
            const auto dy = random_tensor<float>(y1.shape(), 72);
            conv.backward(x, y1, dy, dx1);
            for (int threads : {2, 3}) {
                INFO(conv.describe() << " on " << x.shape().str() << ", threads " << threads
                                     << (first_layer ? ", first layer" : ""));
                set_num_threads(threads);
                Tensor<float> y, dx;
                conv.forward(x, y);
                CHECK(std::equal(y.begin(), y.end(), y1.begin(), y1.end()));
                conv.backward(x, y, dy, dx);
                const Tensor<float> dw = *conv.parameters()[0].grad;
                CHECK(std::equal(dx.begin(), dx.end(), dx1.begin(), dx1.end()));
                for (int run = 0; run < 5; ++run) {
                    conv.backward(x, y, dy, dx);
                    const Tensor<float>& again = *conv.parameters()[0].grad;
                    CHECK(std::equal(dw.begin(), dw.end(), again.begin(), again.end()));
                    CHECK(std::equal(dx.begin(), dx.end(), dx1.begin(), dx1.end()));
                }
                if (first_layer)
                    CHECK(std::all_of(dx.begin(), dx.end(), [](float v) { return v == 0; }));
            }
        }
    set_num_threads(0);
}

TEST_CASE(
    "a pointwise Conv2d reads the image itself: the bits of im2col's path, and the reference") {
    // A 1x1 stride-1 convolution's im2col matrix is the image, so the fast path hands the image
    // to the GEMM (forward, dW) and lets the GEMM write dx (col2im is the identity). Against
    // the same layer forced through im2col + col2im: the same bits for y, dx, dW and db, at 1
    // and 2 threads, for a batch (images shared out) and a single image (rows split); and
    // against the direct convolution and the gradients' own sums in double.
    const std::vector<ConvCase> cases = {
        {5, 7, 1, 1, 1, 0, 6, 9, true},
        {128, 128, 1, 1, 1, 0, 20, 20, false},  // large enough to split one image's rows
    };
    for (const ConvCase& c : cases)
        for (std::size_t batch : {1, 3})
            for (int threads : {1, 2}) {
                set_num_threads(threads);
                Conv2d<float> fast = make_conv<float>(c), slow = make_conv<float>(c);
                slow.plan().set_im2col_only(true);
                const ConvGeometry g = fast.geometry(Shape{c.cin, c.h, c.w});
                REQUIRE(fast.plan().forward_algorithm(g) == ConvAlgorithm::Pointwise);
                REQUIRE(fast.plan().input_gradient_algorithm(g, c.cout) ==
                        ConvAlgorithm::Pointwise);
                REQUIRE(fast.plan().weight_gradient_algorithm(g, c.cout) ==
                        ConvAlgorithm::Pointwise);
                REQUIRE(slow.plan().forward_algorithm(g) == ConvAlgorithm::Im2col);
                INFO(fast.describe() << ", batch " << batch << ", threads " << threads);
                const auto x = random_tensor<float>(Shape{batch, c.cin, c.h, c.w}, 41);
                Tensor<float> y_fast, y_slow, dx_fast, dx_slow;
                fast.forward(x, y_fast);
                slow.forward(x, y_slow);
                CHECK(std::equal(y_fast.begin(), y_fast.end(), y_slow.begin(), y_slow.end()));
                const auto dy = random_tensor<float>(y_fast.shape(), 42);
                fast.backward(x, y_fast, dy, dx_fast);
                slow.backward(x, y_slow, dy, dx_slow);
                CHECK(std::equal(dx_fast.begin(), dx_fast.end(), dx_slow.begin(), dx_slow.end()));
                for (std::size_t i = 0; i < fast.parameters().size(); ++i) {
                    const Tensor<float>& a = *fast.parameters()[i].grad;
                    const Tensor<float>& b = *slow.parameters()[i].grad;
                    CHECK(std::equal(a.begin(), a.end(), b.begin(), b.end()));
                }
                // The references: the direct convolution, and dW, db, dx summed in double.
                Tensor<float> ref(y_fast.shape());
                conv2d_direct(x.data(), batch, g, fast.weight().data(), c.cout,
                              c.bias ? fast.bias().data() : nullptr, ref.data());
                CHECK(max_abs_diff(y_fast, ref) < 1e-4);
                const std::size_t P = c.h * c.w;
                const float* w = fast.weight().data();
                double dw_err = 0, dx_err = 0, db_err = 0;
                for (std::size_t o = 0; o < c.cout; ++o) {
                    double db = 0;
                    for (std::size_t n = 0; n < batch; ++n)
                        for (std::size_t p = 0; p < P; ++p) db += dy[(n * c.cout + o) * P + p];
                    if (c.bias)
                        db_err = std::max(db_err, std::abs(db - (*fast.parameters()[1].grad)[o]));
                    for (std::size_t i = 0; i < c.cin; ++i) {
                        double dw = 0;
                        for (std::size_t n = 0; n < batch; ++n)
                            for (std::size_t p = 0; p < P; ++p)
                                dw += double(dy[(n * c.cout + o) * P + p]) *
                                      double(x[(n * c.cin + i) * P + p]);
                        dw_err = std::max(
                            dw_err, std::abs(dw - (*fast.parameters()[0].grad)[o * c.cin + i]));
                    }
                }
                for (std::size_t n = 0; n < batch; ++n)
                    for (std::size_t i = 0; i < c.cin; ++i)
                        for (std::size_t p = 0; p < P; ++p) {
                            double v = 0;
                            for (std::size_t o = 0; o < c.cout; ++o)
                                v +=
                                    double(w[o * c.cin + i]) * double(dy[(n * c.cout + o) * P + p]);
                            dx_err =
                                std::max(dx_err, std::abs(v - dx_fast[(n * c.cin + i) * P + p]));
                        }
                CHECK(dw_err < 1e-3);
                CHECK(dx_err < 1e-4);
                CHECK(db_err < 1e-3);
            }
}

TEST_CASE("Conv2d with fewer images than threads splits each image's rows: same bits as 1 thread") {
    // Large enough that the layer splits (OC * P * K >= gemm_parallel_threshold); odd row counts,
    // stride 2, pointwise, no bias, and more threads than a row split can use.
    const std::vector<ConvCase> cases = {
        {16, 16, 3, 3, 1, 1, 33, 20, true},  {16, 24, 3, 3, 2, 1, 37, 30, false},
        {64, 64, 1, 1, 1, 0, 25, 23, true},  {8, 32, 3, 5, 1, 2, 41, 19, true},
        {128, 128, 3, 3, 1, 0, 4, 40, true},  // two output rows: 2 parts even with 3 threads
    };
    for (const ConvCase& c : cases) {
        Conv2d<float> conv = make_conv<float>(c);
        const ConvGeometry g = conv.geometry(Shape{c.cin, c.h, c.w});
        REQUIRE(double(c.cout) * double(g.col_cols()) * double(g.col_rows()) >=
                detail::gemm_parallel_threshold);
        ChannelAffine<float> affine;
        Rng rng(9);
        for (std::size_t o = 0; o < c.cout; ++o) {
            affine.mean.push_back(float(rng.uniform(-1, 1)));
            affine.scale.push_back(float(rng.uniform(0.5, 2)));
            affine.shift.push_back(float(rng.uniform(-1, 1)));
        }
        affine.relu = true;
        for (std::size_t batch : {1, 2}) {
            const auto x = random_tensor<float>(Shape{batch, c.cin, c.h, c.w}, 3);
            Tensor<float> ref(Shape{batch, c.cout, g.out_h(), g.out_w()});
            conv2d_direct(x.data(), batch, g, conv.weight().data(), c.cout,
                          c.bias ? conv.bias().data() : nullptr, ref.data());
            set_num_threads(1);
            Tensor<float> y1, a1;
            conv.forward(x, y1);
            conv.forward_affine(x, a1, &affine);
            for (int threads : {2, 3}) {
                INFO(conv.describe() << " on " << x.shape().str() << ", threads " << threads);
                set_num_threads(threads);
                Tensor<float> y, a;
                conv.forward(x, y);
                conv.forward_affine(x, a, &affine);
                CHECK(max_abs_diff(y, ref) < 1e-4);
                CHECK(std::equal(y.begin(), y.end(), y1.begin(), y1.end()));
                CHECK(std::equal(a.begin(), a.end(), a1.begin(), a1.end()));
            }
        }
    }
    set_num_threads(0);
}

TEST_CASE_TEMPLATE(
    "Conv2d by Winograd F(4x4, 3x3) and F(2x2, 3x3) matches the direct "
    "convolution and im2col",
    T, float, double) {
    // 3x3, stride 1, at least winograd_min_channels (16) input channels: output sizes that are
    // not multiples of the tile (a last tile row or column partly outside), pads 0-2, outputs
    // of one row or column, bias on and off; both output tiles.
    REQUIRE(Conv2d<T>::winograd_min_channels == 16);
    REQUIRE(winograd_tile() == 4);  // the default
    const std::vector<ConvCase> cases = {
        {16, 5, 3, 3, 1, 1, 7, 9, true},  {16, 3, 3, 3, 1, 0, 6, 6, false},
        {20, 7, 3, 3, 1, 2, 5, 11, true}, {16, 8, 3, 3, 1, 1, 3, 3, true},
        {17, 4, 3, 3, 1, 0, 3, 8, true},  {32, 32, 3, 3, 1, 1, 48, 48, false},
    };
    for (std::size_t tile : {4, 2})
        for (const ConvCase& c : cases) {
            set_winograd_tile(tile);
            // F(4x4, 3x3)'s larger coefficients round more (in float, 10-17x F(2x2, 3x3)'s
            // error: about 1e-5 of the largest output on 32->32 48 x 48), still inside this bound.
            const double tol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
            Conv2d<T> conv = make_conv<T>(c);
            const ConvGeometry g = conv.geometry(Shape{c.cin, c.h, c.w});
            REQUIRE(winograd_applies(g));
            for (std::size_t batch : {1, 3}) {
                const auto x = random_tensor<T>(Shape{batch, c.cin, c.h, c.w}, 31);
                Tensor<T> ref(Shape{batch, c.cout, g.out_h(), g.out_w()}), by_winograd, by_im2col;
                conv2d_direct(x.data(), batch, g, conv.weight().data(), c.cout,
                              c.bias ? conv.bias().data() : nullptr, ref.data());
                conv.forward(x, by_winograd);
                set_winograd(false);
                conv.forward(x, by_im2col);
                set_winograd(true);
                INFO(conv.describe() << " on " << x.shape().str() << ", tile " << tile);
                CHECK(max_abs_diff(by_winograd, ref) < tol * (1 + c.cin));
                CHECK(max_abs_diff(by_im2col, ref) < tol * (1 + c.cin));
                // A different order of summation: equal to rounding, but not to the bit (which also
                // shows that Winograd ran).
                CHECK(max_abs_diff(by_winograd, by_im2col) > 0);
            }
        }
    set_winograd_tile(4);
    CHECK_THROWS_WITH_AS(set_winograd_tile(3),
                         "set_winograd_tile: the output tile is 2 or 4, got 3", Error);
    // Fewer input channels (fer-cnn-s's first layer has 1) stay with im2col: the same bits with
    // Winograd switched on or off.
    Conv2d<T> first = make_conv<T>({15, 32, 3, 3, 1, 1, 12, 12, true});
    const auto x = random_tensor<T>(Shape{2, 15, 12, 12}, 32);
    Tensor<T> on, off;
    first.forward(x, on);
    set_winograd(false);
    first.forward(x, off);
    set_winograd(true);
    CHECK(std::equal(on.begin(), on.end(), off.begin(), off.end()));
}

TEST_CASE("Conv2d's input gradient by Winograd (the adjoint convolution) matches im2col's") {
    // At least 16 output channels (the adjoint's inputs), pads 0-2, odd and even sizes, a
    // non-square image; few input channels are fine (the adjoint's outputs).
    const std::vector<ConvCase> cases = {
        {3, 16, 3, 3, 1, 1, 7, 6, true},
        {8, 20, 3, 3, 1, 0, 6, 9, false},
        {5, 17, 3, 3, 1, 2, 5, 5, true},
        {16, 16, 3, 3, 1, 1, 24, 24, false},
    };
    for (std::size_t tile : {4, 2})
        for (const ConvCase& c : cases) {
            set_winograd_tile(tile);
            Conv2d<double> conv = make_conv<double>(c);
            const auto x = random_tensor<double>(Shape{2, c.cin, c.h, c.w}, 41);
            Tensor<double> y, dx_w, dx_i;
            conv.forward(x, y);
            const auto dy = random_tensor<double>(y.shape(), 42);
            conv.backward(x, y, dy, dx_w);
            const Tensor<double> dw = *conv.parameters()[0].grad;
            set_winograd(false);
            conv.backward(x, y, dy, dx_i);
            const Tensor<double> dw_i = *conv.parameters()[0].grad;
            set_winograd(true);
            INFO(conv.describe() << " on " << x.shape().str() << ", tile " << tile);
            CHECK(max_abs_diff(dx_w, dx_i) < 1e-12 * (1 + c.cout));
            CHECK(max_abs_diff(dx_w, dx_i) > 0);  // Winograd ran: another order of summation
            // Fewer than 32 channels: the weight gradient stays with im2col, to the bit.
            CHECK(max_abs_diff(dw, dw_i) == 0);
        }
    set_winograd_tile(4);
    // And against finite differences, through the whole layer.
    Conv2d<double> conv = make_conv<double>(cases[1]);
    require_gradients(conv, random_tensor<double>(Shape{2, 8, 6, 9}, 43));
}

TEST_CASE_TEMPLATE("Conv2d's weight gradient by Winograd (G^T dU G) matches im2col's", T, float,
                   double) {
    // At least 32 input and 32 output channels; pads 0-2, odd output sizes (a last tile row or
    // column half outside, whose dy must count as zero), a single row, bias on and off.
    REQUIRE(Conv2d<T>::winograd_weights_min_channels == 32);
    const std::vector<ConvCase> cases = {
        {32, 32, 3, 3, 1, 1, 7, 9, true},    {32, 70, 3, 3, 1, 0, 6, 6, false},
        {70, 32, 3, 3, 1, 2, 5, 11, true},   {33, 32, 3, 3, 1, 0, 3, 8, true},
        {32, 32, 3, 3, 1, 1, 1, 5, false},   {32, 32, 3, 3, 1, 1, 48, 48, false},
        {64, 64, 3, 3, 1, 1, 12, 12, false},
    };
    const double tol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
    for (std::size_t tile : {4, 2})
        for (const ConvCase& c : cases)
            for (std::size_t batch : {1, 3})
                for (int threads : {1, 2}) {
                    set_winograd_tile(tile);
                    set_num_threads(threads);
                    Conv2d<T> conv = make_conv<T>(c);
                    const auto x = random_tensor<T>(Shape{batch, c.cin, c.h, c.w}, 61);
                    Tensor<T> y, dx;
                    conv.forward(x, y);
                    const auto dy = random_tensor<T>(y.shape(), 62);
                    conv.backward(x, y, dy, dx);
                    const Tensor<T> dw = *conv.parameters()[0].grad;
                    conv.backward(x, y, dy, dx);  // the same bits again
                    const Tensor<T> again = *conv.parameters()[0].grad;
                    set_winograd(false);
                    conv.backward(x, y, dy, dx);
                    const Tensor<T> dw_i = *conv.parameters()[0].grad;
                    set_winograd(true);
                    INFO(conv.describe() << " on " << x.shape().str() << ", threads " << threads
                                         << ", tile " << tile);
                    // The gradient's size grows with the number of terms summed: scale by their
                    // count's square root, as for a sum of random terms.
                    const double terms = double(batch * y.dim(2) * y.dim(3));
                    CHECK(max_abs_diff(dw, dw_i) < tol * (1 + std::sqrt(terms)));
                    CHECK(max_abs_diff(dw, dw_i) > 0);  // Winograd ran: another order of summation
                    CHECK(std::equal(dw.begin(), dw.end(), again.begin(), again.end()));
                }
    set_num_threads(0);
    set_winograd_tile(4);
    // Against finite differences, through the whole layer (x, W and the bias; 400 entries of
    // each, at random).
    if constexpr (std::is_same_v<T, double>) {
        Conv2d<double> conv = make_conv<double>({32, 32, 3, 3, 1, 1, 3, 5, true});
        GradientCheckOptions opt;
        opt.max_entries = 400;
        const GradientCheckReport r =
            check_gradients(conv, random_tensor<double>(Shape{2, 32, 3, 5}, 63), opt);
        INFO(r.str());
        CHECK(r.passed);
    }
    // Fewer channels stay with im2col, to the bit.
    Conv2d<T> narrow = make_conv<T>({16, 64, 3, 3, 1, 1, 6, 6, false});
    const auto x = random_tensor<T>(Shape{2, 16, 6, 6}, 64);
    Tensor<T> y, dx;
    narrow.forward(x, y);
    const auto dy = random_tensor<T>(y.shape(), 65);
    narrow.backward(x, y, dy, dx);
    const Tensor<T> on = *narrow.parameters()[0].grad;
    set_winograd(false);
    narrow.backward(x, y, dy, dx);
    set_winograd(true);
    const Tensor<T>& off = *narrow.parameters()[0].grad;
    CHECK(std::equal(on.begin(), on.end(), off.begin(), off.end()));
}

TEST_CASE("Conv2d takes small images a few at a time through Winograd: each one's bits unchanged") {
    // A 12 x 12 image has 36 tiles, so winograd_group_size puts 4 in one product; 5 x 7 has 12
    // (12 at once). Batches of 5 and 13 leave partial groups, on 1 and 2 threads (chunks of
    // 2 + 3 images). y and dx of every image must be the bits of that image run alone; dW sums
    // in another grouping, so it only matches to rounding.
    const ConvGeometry g12 =
        make_conv<float>({32, 32, 3, 3, 1, 1, 12, 12, false}).geometry(Shape{32, 12, 12});
    CHECK(winograd_group_size(g12) == 4);
    for (const ConvCase& c :
         {ConvCase{32, 32, 3, 3, 1, 1, 12, 12, false}, ConvCase{32, 40, 3, 3, 1, 0, 7, 9, true}})
        for (std::size_t batch : {5, 13})
            for (int threads : {1, 2}) {
                Conv2d<float> conv = make_conv<float>(c);
                const auto x = random_tensor<float>(Shape{batch, c.cin, c.h, c.w}, 71);
                set_num_threads(threads);
                Tensor<float> y, dx;
                conv.forward(x, y);
                const auto dy = random_tensor<float>(y.shape(), 72);
                conv.backward(x, y, dy, dx);
                const Tensor<float> dw = *conv.parameters()[0].grad;
                set_num_threads(1);
                Tensor<float> dw_sum(dw.shape());
                INFO(conv.describe() << " on " << x.shape().str() << ", threads " << threads);
                for (std::size_t n = 0; n < batch; ++n) {
                    Tensor<float> xn(Shape{1, c.cin, c.h, c.w}), yn,
                        dyn(Shape{1, y.dim(1), y.dim(2), y.dim(3)}), dxn;
                    std::copy_n(x.data() + n * xn.size(), xn.size(), xn.data());
                    std::copy_n(dy.data() + n * dyn.size(), dyn.size(), dyn.data());
                    conv.forward(xn, yn);
                    conv.backward(xn, yn, dyn, dxn);
                    CHECK(std::equal(yn.begin(), yn.end(), y.data() + n * yn.size()));
                    CHECK(std::equal(dxn.begin(), dxn.end(), dx.data() + n * dxn.size()));
                    const Tensor<float>& dwn = *conv.parameters()[0].grad;
                    for (std::size_t i = 0; i < dw_sum.size(); ++i) dw_sum[i] += dwn[i];
                }
                // Relative to the gradient's size: F(4x4, 3x3) rounds to 3e-6 - 6e-6 of it here.
                double largest = 0;
                for (float v : dw) largest = std::max(largest, double(std::abs(v)));
                INFO("largest |dW| " << largest);
                CHECK(max_abs_diff(dw, dw_sum) < 2e-5 * largest);
            }
    set_num_threads(0);
}

TEST_CASE("a copied Conv2d makes its own Winograd filters (the original may be gone)") {
    const ConvCase c{16, 16, 3, 3, 1, 1, 6, 6, true};
    auto original = std::make_unique<Conv2d<float>>(make_conv<float>(c));
    const auto x = random_tensor<float>(Shape{2, 16, 6, 6}, 51);
    Tensor<float> before, after;
    original->forward(x, before);  // makes and packs the filters
    Conv2d<float> copy = *original;
    original.reset();
    // With another kernel selected the packed filters cannot be used and the product falls back
    // to the source filters: they must be the copy's own.
    if (gemm_isa_supported(GemmIsa::Portable)) set_gemm_isa(GemmIsa::Portable);
    copy.forward(x, after);
    set_gemm_isa(GemmIsa::Auto);
    CHECK(max_abs_diff(before, after) < 1e-5);
}

// B^T of F(4x4, 3x3) as kernels/winograd_f4.hpp writes it down: the independent statement the
// transform tests below compare with.
const double BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                         {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};

TEST_CASE("F(4x4, 3x3)'s transforms are the matrices the header writes down") {
    // One channel, one tile, in double, against the products with B^T, G and A^T as written in
    // kernels/winograd_f4.hpp (an independent statement of the algorithm; the layer tests check
    // that the whole computes a convolution).
    const double G[6][3] = {{1.0 / 4, 0, 0},
                            {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                            {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                            {1.0 / 24, 1.0 / 12, 1.0 / 6},
                            {1.0 / 24, -1.0 / 12, 1.0 / 6},
                            {0, 0, 1}};
    const double AT[4][6] = {
        {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
    Rng rng(81);
    auto random = [&](std::size_t n) {
        std::vector<double> v(n);
        for (double& e : v) e = rng.uniform(-1, 1);
        return v;
    };
    // One 6 x 6 input (no padding) is one tile with a 4 x 4 output.
    ConvGeometry g;
    g.channels = 1, g.height = 6, g.width = 6, g.kernel_h = 3, g.kernel_w = 3;
    const WinogradTiling tl = winograd_tiling(g, 4);
    REQUIRE(tl.tiles() == 1);
    REQUIRE(tl.positions() == 36);
    const std::vector<double> d = random(36), m = random(36), w = random(9), dy = random(16);
    std::vector<double> v(36), y(16), u(36), dm(36), dw(9);
    winograd4_transform_input(d.data(), g, tl, 0, 1, v.data(), 1);
    winograd4_transform_output(m.data(), 1, 1, g, tl, 0, 1, y.data());
    winograd4_transform_weights(w.data(), 1, 1, u.data());
    winograd4_transform_output_gradient(dy.data(), 1, g, tl, dm.data(), 1);
    winograd4_weight_gradient(m.data(), 1, 1, dw.data());
    for (std::size_t a = 0; a < 6; ++a)
        for (std::size_t b = 0; b < 6; ++b) {
            double bdb = 0, ggg = 0, ada = 0;  // B^T d B, G g G^T, A dY A^T
            for (std::size_t i = 0; i < 6; ++i)
                for (std::size_t j = 0; j < 6; ++j) bdb += BT[a][i] * d[i * 6 + j] * BT[b][j];
            for (std::size_t i = 0; i < 3; ++i)
                for (std::size_t j = 0; j < 3; ++j) ggg += G[a][i] * w[i * 3 + j] * G[b][j];
            for (std::size_t i = 0; i < 4; ++i)
                for (std::size_t j = 0; j < 4; ++j) ada += AT[i][a] * dy[i * 4 + j] * AT[j][b];
            CHECK(v[a * 6 + b] == doctest::Approx(bdb).epsilon(1e-12));
            CHECK(u[a * 6 + b] == doctest::Approx(ggg).epsilon(1e-12));
            CHECK(dm[a * 6 + b] == doctest::Approx(ada).epsilon(1e-12));
        }
    for (std::size_t i = 0; i < 4; ++i)
        for (std::size_t j = 0; j < 4; ++j) {
            double ama = 0;  // A^T M A
            for (std::size_t a = 0; a < 6; ++a)
                for (std::size_t b = 0; b < 6; ++b) ama += AT[i][a] * m[a * 6 + b] * AT[j][b];
            CHECK(y[i * 4 + j] == doctest::Approx(ama).epsilon(1e-12));
        }
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 3; ++j) {
            double gmg = 0;  // G^T dU G, with m as dU
            for (std::size_t a = 0; a < 6; ++a)
                for (std::size_t b = 0; b < 6; ++b) gmg += G[a][i] * m[a * 6 + b] * G[b][j];
            CHECK(dw[i * 3 + j] == doctest::Approx(gmg).epsilon(1e-12));
        }
}

TEST_CASE("F(4x4, 3x3)'s input transform: every tile of a padded image, any band of tile rows") {
    // Against B^T d B of each 6x6 tile cut from the zero-padded image, in double: several
    // channels, pads 0-2, rows of one to six tiles (the first and last tile of a row, whose
    // outside columns the transform treats apart, and rows of one tile, which are both), and the
    // tile rows transformed all at once or in bands of one or two.
    Rng rng(82);
    for (std::size_t pad : {0, 1, 2})
        for (std::size_t height : {5, 7, 12})
            for (std::size_t width : {4, 6, 9, 13, 24}) {
                ConvGeometry g;
                g.channels = 3, g.height = height, g.width = width, g.kernel_h = 3, g.kernel_w = 3;
                g.pad_h = g.pad_w = pad;
                const WinogradTiling tl = winograd_tiling(g, 4);
                std::vector<double> image(g.image_size());
                for (double& e : image) e = rng.uniform(-1, 1);
                const auto padded = [&](std::size_t c, std::ptrdiff_t r, std::ptrdiff_t s) {
                    r -= std::ptrdiff_t(pad), s -= std::ptrdiff_t(pad);
                    const bool inside =
                        r >= 0 && r < std::ptrdiff_t(height) && s >= 0 && s < std::ptrdiff_t(width);
                    return inside ? image[(c * height + std::size_t(r)) * width + std::size_t(s)]
                                  : 0.0;
                };
                const std::size_t tiles = tl.tiles(), ld = g.channels * tiles;
                for (std::size_t band : {tl.tiles_h, std::size_t(1), std::size_t(2)}) {
                    INFO("pad " << pad << ", " << height << " x " << width << ", bands of "
                                << band);
                    std::vector<double> v(36 * ld, -7.0);
                    for (std::size_t r0 = 0; r0 < tl.tiles_h; r0 += band)
                        winograd4_transform_input(image.data(), g, tl, r0,
                                                  std::min(tl.tiles_h, r0 + band),
                                                  v.data() + r0 * tl.tiles_w, ld, tiles);
                    double worst = 0;
                    for (std::size_t c = 0; c < g.channels; ++c)
                        for (std::size_t t = 0; t < tiles; ++t) {
                            const auto top = std::ptrdiff_t(4 * (t / tl.tiles_w));
                            const auto left = std::ptrdiff_t(4 * (t % tl.tiles_w));
                            for (std::size_t a = 0; a < 6; ++a)
                                for (std::size_t b = 0; b < 6; ++b) {
                                    double bdb = 0;
                                    for (std::size_t i = 0; i < 6; ++i)
                                        for (std::size_t j = 0; j < 6; ++j)
                                            bdb += BT[a][i] * BT[b][j] *
                                                   padded(c, top + std::ptrdiff_t(i),
                                                          left + std::ptrdiff_t(j));
                                    const double got = v[(a * 6 + b) * ld + c * tiles + t];
                                    worst = std::max(worst, std::abs(got - bdb));
                                }
                        }
                    CHECK(worst < 1e-12);
                }
            }
}

TEST_CASE("Winograd workspaces: 16 matrices an odd number of cache lines apart") {
    for (std::size_t n : {1, 15, 16, 17, 32 * 576, 64 * 144, 1000}) {
        const std::size_t f = winograd_stride<float>(n), d = winograd_stride<double>(n);
        CHECK(f >= n);
        CHECK(f % 16 == 0);
        CHECK((f / 16) % 2 == 1);
        CHECK(d >= n);
        CHECK((d / 8) % 2 == 1);
    }
}

TEST_CASE("Conv2d gradients match finite differences") {
    for (const ConvCase& c : conv_cases) {
        Conv2d<double> conv = make_conv<double>(c);
        require_gradients(conv, random_tensor<double>(Shape{2, c.cin, c.h, c.w}, 17));
    }
    SUBCASE("with two threads and a batch split unevenly") {
        set_num_threads(2);
        Conv2d<double> conv = make_conv<double>(conv_cases[0]);
        require_gradients(conv, random_tensor<double>(Shape{3, 3, 7, 6}, 18));
        set_num_threads(0);
    }
}

TEST_CASE("Conv2d backward is reproducible for a thread count and agrees across counts") {
    Conv2d<float> conv = make_conv<float>(conv_cases[2]);
    const auto x = random_tensor<float>(Shape{5, 2, 7, 8}, 3);
    Tensor<float> y, dx1, dx2;
    conv.forward(x, y);
    const auto dy = random_tensor<float>(y.shape(), 4);
    set_num_threads(2);
    conv.backward(x, y, dy, dx1);
    const Tensor<float> dw1 = conv.parameters()[0].grad[0];
    conv.backward(x, y, dy, dx2);
    CHECK(max_abs_diff(dw1, *conv.parameters()[0].grad) == 0);
    set_num_threads(1);
    conv.backward(x, y, dy, dx2);
    CHECK(max_abs_diff(dx1, dx2) == 0);  // dx does not depend on the split
    CHECK(max_abs_diff(dw1, *conv.parameters()[0].grad) < 1e-4);
    set_num_threads(0);
}

TEST_CASE("Conv2d without input gradient: same weight and bias gradients, dx all zeros") {
    for (const ConvCase& c : conv_cases) {
        Conv2d<float> conv = make_conv<float>(c);
        const auto x = random_tensor<float>(Shape{3, c.cin, c.h, c.w}, 21);
        Tensor<float> y, dx_full, dx_skipped;
        conv.forward(x, y);
        const auto dy = random_tensor<float>(y.shape(), 22);
        conv.backward(x, y, dy, dx_full);
        std::vector<Tensor<float>> full;
        for (auto& p : conv.parameters()) full.push_back(*p.grad);
        conv.set_input_gradient(false);
        dx_skipped.resize(x.shape());
        dx_skipped.fill(std::nanf(""));  // must be overwritten, not left as it was
        conv.backward(x, y, dy, dx_skipped);
        const auto params = conv.parameters();
        for (std::size_t i = 0; i < params.size(); ++i)
            CHECK(max_abs_diff(full[i], *params[i].grad) == 0);
        CHECK(dx_skipped.shape() == x.shape());
        std::size_t nonzero = 0;  // counts NaNs too: NaN == 0 is false
        for (std::size_t i = 0; i < dx_skipped.size(); ++i) nonzero += !(dx_skipped[i] == 0.0f);
        CHECK(nonzero == 0);
        CHECK(max_abs_diff(dx_full, dx_skipped) > 0);  // the full pass did compute something
    }
}

TEST_CASE("Dense forward matches a naive loop, and its gradients finite differences") {
    for (bool bias : {true, false}) {
        Dense<double> dense(5, 3, bias, 9);
        Rng rng(1);
        dense.bias().fill_uniform(rng, -1, 1);
        const auto x = random_tensor<double>(Shape{4, 5}, 2);
        Tensor<double> y;
        dense.forward(x, y);
        REQUIRE(y.shape() == Shape{4, 3});
        for (std::size_t n = 0; n < 4; ++n)
            for (std::size_t o = 0; o < 3; ++o) {
                double acc = bias ? dense.bias()[o] : 0.0;
                for (std::size_t i = 0; i < 5; ++i) acc += dense.weight()(o, i) * x(n, i);
                CHECK(y(n, o) == doctest::Approx(acc).epsilon(1e-12));
            }
        require_gradients(dense, x);
        CHECK(dense.parameters().size() == (bias ? 2u : 1u));
    }
}

namespace {
/// Batch normalisation written straight from the definition, in double: per channel the mean and
/// biased variance over (N, S), y = gamma (x - mu) / sqrt(var + eps) + beta.
Tensor<double> batchnorm_reference(const Tensor<double>& x, std::size_t C,
                                   const std::vector<double>& mu, const std::vector<double>& var,
                                   double eps, const Tensor<double>* gamma,
                                   const Tensor<double>* beta) {
    Tensor<double> y(x.shape());
    const std::size_t N = x.dim(0), S = x.size() / (N * C);
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t s = 0; s < S; ++s) {
                const std::size_t i = (n * C + c) * S + s;
                y[i] = (x[i] - mu[c]) / std::sqrt(var[c] + eps) * (gamma ? (*gamma)[c] : 1.0) +
                       (beta ? (*beta)[c] : 0.0);
            }
    return y;
}
void channel_stats(const Tensor<double>& x, std::size_t C, std::vector<double>& mu,
                   std::vector<double>& var) {
    const std::size_t N = x.dim(0), S = x.size() / (N * C);
    mu.assign(C, 0);
    var.assign(C, 0);
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t s = 0; s < S; ++s) mu[c] += x[(n * C + c) * S + s] / double(N * S);
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t c = 0; c < C; ++c)
            for (std::size_t s = 0; s < S; ++s) {
                const double d = x[(n * C + c) * S + s] - mu[c];
                var[c] += d * d / double(N * S);
            }
}
}  // namespace

TEST_CASE("BatchNorm2d: batch statistics in training, running statistics in eval") {
    const std::size_t C = 3;
    BatchNorm2d<double> bn(C, 1e-5, 0.1);
    Rng rng(3);
    bn.gamma().fill_uniform(rng, 0.5, 2);
    bn.beta().fill_uniform(rng, -1, 1);
    const auto x = random_tensor<double>(Shape{4, C, 3, 5}, 8, -2, 3);
    std::vector<double> mu, var;
    channel_stats(x, C, mu, var);

    Tensor<double> y;
    bn.forward(x, y);
    CHECK(max_abs_diff(y, batchnorm_reference(x, C, mu, var, 1e-5, &bn.gamma(), &bn.beta())) <
          1e-12);
    // Running statistics: r = 0.9 r + 0.1 batch, from mean 0 and variance 1, the variance unbiased.
    const double M = 4 * 3 * 5;
    for (std::size_t c = 0; c < C; ++c) {
        CHECK(bn.running_mean()[c] == doctest::Approx(0.1 * mu[c]).epsilon(1e-12));
        CHECK(bn.running_var()[c] ==
              doctest::Approx(0.9 + 0.1 * var[c] * M / (M - 1)).epsilon(1e-12));
    }
    REQUIRE(bn.buffers().size() == 2);
    CHECK(bn.buffers()[0].first == "running_mean");

    // Eval normalises with the running statistics, which differ from the batch's.
    bn.set_mode(Mode::Eval);
    Tensor<double> y_eval;
    const std::vector<double> rm(bn.running_mean().begin(), bn.running_mean().end());
    const std::vector<double> rv(bn.running_var().begin(), bn.running_var().end());
    bn.forward(x, y_eval);
    CHECK(max_abs_diff(y_eval, batchnorm_reference(x, C, rm, rv, 1e-5, &bn.gamma(), &bn.beta())) <
          1e-12);
    CHECK(max_abs_diff(y_eval, y) > 0.1);
    // ... and leaves them alone.
    CHECK(bn.running_mean()[0] == rm[0]);
    CHECK(bn.running_var()[1] == rv[1]);
}

TEST_CASE("BatchNorm2d in float: exact batch statistics of values far from zero") {
    // Values near 1000 with a spread of 1, and one image 40 above the rest, where E[x^2] - E[x]^2
    // in float would keep about two digits (a one-pass variance about a shift of 0 fails here):
    // the mean and variance must match double's to float precision.
    const Shape s{8, 2, 12, 12};
    auto x = random_tensor<float>(s, 41, 999, 1001);
    for (std::size_t i = 0; i < 2 * 144; ++i) x[i] += 40;  // the first image of both channels
    Tensor<double> xd(s);
    for (std::size_t i = 0; i < x.size(); ++i) xd[i] = double(x[i]);
    std::vector<double> mu, var;
    channel_stats(xd, 2, mu, var);
    BatchNorm2d<float> bn(2, 1e-5, 1.0);  // momentum 1: the running statistics are the batch's
    Tensor<float> y;
    bn.forward(x, y);
    const double M = double(s.size() / 2);
    for (std::size_t c = 0; c < 2; ++c) {
        CAPTURE(c);
        CHECK(bn.running_mean()[c] == doctest::Approx(mu[c]).epsilon(1e-6));
        CHECK(bn.running_var()[c] == doctest::Approx(var[c] * M / (M - 1)).epsilon(1e-5));
    }
}

TEST_CASE("BatchNorm running statistics converge to the data's") {
    BatchNorm1d<double> bn(2, 1e-5, 0.5);
    const auto x = random_tensor<double>(Shape{10, 2}, 4, 1, 5);
    std::vector<double> mu, var;
    channel_stats(x, 2, mu, var);
    Tensor<double> y;
    for (int i = 0; i < 60; ++i) bn.forward(x, y);
    CHECK(bn.running_mean()[1] == doctest::Approx(mu[1]).epsilon(1e-9));
    CHECK(bn.running_var()[0] == doctest::Approx(var[0] * 10 / 9).epsilon(1e-9));
}

namespace {
/// Batch normalisation's backward pass in training, written from the formulas in double: with
/// xhat = (x - mu) / sqrt(var + eps) per channel and g the incoming gradient,
/// dx = gamma / sqrt(var + eps) * (g - mean(g) - xhat * mean(g * xhat)), dgamma = sum g * xhat,
/// dbeta = sum g (means and sums over the channel's N * S values).
void batchnorm_backward_reference(const Tensor<double>& x, const Tensor<double>& g, std::size_t C,
                                  const std::vector<double>& mu, const std::vector<double>& var,
                                  double eps, const Tensor<double>& gamma, Tensor<double>& dx,
                                  std::vector<double>& dgamma, std::vector<double>& dbeta) {
    const std::size_t N = x.dim(0), S = x.size() / (N * C);
    const double M = double(N * S);
    auto at = [&](std::size_t n, std::size_t c, std::size_t s) { return (n * C + c) * S + s; };
    dx.resize(x.shape());
    dgamma.assign(C, 0);
    dbeta.assign(C, 0);
    for (std::size_t c = 0; c < C; ++c) {
        const double invstd = 1 / std::sqrt(var[c] + eps);
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t s = 0; s < S; ++s) {
                dbeta[c] += g[at(n, c, s)];
                dgamma[c] += g[at(n, c, s)] * (x[at(n, c, s)] - mu[c]) * invstd;
            }
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t s = 0; s < S; ++s) {
                const double xhat = (x[at(n, c, s)] - mu[c]) * invstd;
                dx[at(n, c, s)] =
                    gamma[c] * invstd * (g[at(n, c, s)] - dbeta[c] / M - xhat * dgamma[c] / M);
            }
    }
}
}  // namespace

TEST_CASE_TEMPLATE(
    "BatchNorm in float matches the formulas for every plane length and for "
    "feature vectors, at 1 and 2 threads",
    Layer2, BatchNorm2d<float>, BatchNorm1d<float>) {
    // The float sums go through 32 lanes, a plane's last partial block included, and feature
    // vectors (one value per channel and sample) take a loop of their own across the features:
    // planes shorter than, longer than and a multiple of 32, against the formulas in double,
    // forward and backward, plain and with the ReLU, and the running statistics.
    constexpr bool planes = std::is_same_v<Layer2, BatchNorm2d<float>>;
    std::vector<Shape> shapes;
    if constexpr (planes)
        shapes = {Shape{6, 2, 3, 5}, Shape{3, 2, 5, 8}, Shape{2, 3, 12, 12}, Shape{2, 2, 48, 48},
                  Shape{70, 3, 1, 1}};
    else
        shapes = {Shape{70, 37}, Shape{3, 5}, Shape{64, 256}};
    const double eps = 1e-5;
    for (const Shape& s : shapes) {
        CAPTURE(s.str());
        const std::size_t C = s[1], M = s.size() / C;
        // Values around 3 with spread 1: the mean must come off before squaring.
        const auto x = random_tensor<float>(s, 31, 1.5, 4.5);
        const auto dy = random_tensor<float>(s, 32);
        Tensor<double> xd(s), dyd(s), gamma(Shape{C}), beta(Shape{C});
        for (std::size_t i = 0; i < x.size(); ++i) xd[i] = double(x[i]), dyd[i] = double(dy[i]);
        Rng rng(5);
        gamma.fill_uniform(rng, 0.5, 2);
        beta.fill_uniform(rng, -0.5, 0.5);
        std::vector<double> mu, var;
        channel_stats(xd, C, mu, var);
        const Tensor<double> y_ref = batchnorm_reference(xd, C, mu, var, eps, &gamma, &beta);
        Tensor<double> z_ref(s), dz_masked(s), dx_ref, dxr_ref;
        for (std::size_t i = 0; i < x.size(); ++i) {
            z_ref[i] = std::max(y_ref[i], 0.0);
            dz_masked[i] = y_ref[i] > 0 ? dyd[i] : 0.0;
        }
        std::vector<double> dgamma, dbeta, dgamma_relu, dbeta_relu;
        batchnorm_backward_reference(xd, dyd, C, mu, var, eps, gamma, dx_ref, dgamma, dbeta);
        batchnorm_backward_reference(xd, dz_masked, C, mu, var, eps, gamma, dxr_ref, dgamma_relu,
                                     dbeta_relu);
        auto close = [](const Tensor<float>& f, const Tensor<double>& d) {
            double worst = 0, size = 0;
            for (std::size_t i = 0; i < f.size(); ++i) {
                worst = std::max(worst, std::abs(double(f[i]) - d[i]));
                size = std::max(size, std::abs(d[i]));
            }
            return worst <= 2e-6 * (1 + size);
        };
        std::vector<Tensor<float>> first;
        for (int threads : {1, 2}) {
            set_num_threads(threads);
            Layer2 bn(C, eps, 0.1);
            for (std::size_t c = 0; c < C; ++c)
                bn.gamma()[c] = float(gamma[c]), bn.beta()[c] = float(beta[c]);
            Tensor<float> y, dx, z, dxr;
            bn.forward(x, y);
            for (std::size_t c = 0; c < C; ++c) {
                CHECK(bn.running_mean()[c] == doctest::Approx(0.1 * mu[c]).epsilon(1e-6));
                CHECK(
                    bn.running_var()[c] ==
                    doctest::Approx(0.9 + 0.1 * var[c] * double(M) / double(M - 1)).epsilon(1e-6));
            }
            bn.backward(x, y, dy, dx);
            for (std::size_t c = 0; c < C; ++c) {
                CHECK((*bn.parameters()[0].grad)[c] ==
                      doctest::Approx(dgamma[c]).epsilon(1e-5).scale(1));
                CHECK((*bn.parameters()[1].grad)[c] ==
                      doctest::Approx(dbeta[c]).epsilon(1e-5).scale(1));
            }
            bn.forward_relu(x, z);
            bn.backward_relu(x, dy, dxr);
            for (std::size_t c = 0; c < C; ++c) {
                CHECK((*bn.parameters()[0].grad)[c] ==
                      doctest::Approx(dgamma_relu[c]).epsilon(1e-5).scale(1));
                CHECK((*bn.parameters()[1].grad)[c] ==
                      doctest::Approx(dbeta_relu[c]).epsilon(1e-5).scale(1));
            }
            CHECK(close(y, y_ref));
            CHECK(close(dx, dx_ref));
            CHECK(close(z, z_ref));
            CHECK(close(dxr, dxr_ref));
            const std::vector<Tensor<float>> outputs{y, dx, z, dxr};
            if (threads == 1)
                first = outputs;
            else
                for (std::size_t k = 0; k < first.size(); ++k)
                    CHECK(max_abs_diff(first[k], outputs[k]) == 0);
        }
        set_num_threads(0);
    }
}

TEST_CASE(
    "the element-wise loops give the same bits compiled for AVX-512 or AVX2 and for the build") {
    if (!avx512_loops_active() && !avx2_loops_active()) {
        MESSAGE(
            "skipped: this CPU has neither AVX-512 nor AVX2, so run_vectorized has one version");
        return;
    }
    const std::string wide_isa = avx512_loops_active() ? "AVX-512" : "AVX2";
    MESSAGE("the wide loops are compiled for " << wide_isa);
    // Every layer whose loops run through run_vectorized, on planes of several widths (the
    // 2x2 pool's fast path and its generic loop, sums with and without a tail), forward and
    // backward, train and eval, with and without the fused ReLU.
    struct Outputs {
        std::vector<Tensor<float>> tensors;
    };
    auto run_all = [](bool wide) {
        set_wide_loops(wide);
        Outputs out;
        auto keep = [&](const Tensor<float>& t) { out.tensors.push_back(t); };
        for (const Shape& s : {Shape{3, 5, 16, 16}, Shape{2, 3, 12, 7}, Shape{4, 2, 48, 48}}) {
            const auto x = random_tensor<float>(s, 21), dy = random_tensor<float>(s, 22);
            BatchNorm2d<float> bn(s[1]);
            Rng rng(3);
            bn.gamma().fill_uniform(rng, 0.5, 1.5);
            for (Mode mode : {Mode::Train, Mode::Eval}) {
                bn.set_mode(mode);
                Tensor<float> y, z, dx, dxr;
                bn.forward(x, y);
                bn.backward(x, y, dy, dx);
                bn.forward_relu(x, z);
                bn.backward_relu(x, dy, dxr);
                for (const auto* t : {&y, &dx, &z, &dxr, &bn.running_mean(), &bn.running_var(),
                                      &*bn.parameters()[0].grad, &*bn.parameters()[1].grad})
                    keep(*t);
            }
            MaxPool2d<float> pool(2);
            Tensor<float> py, pdx;
            pool.forward(x, py);
            pool.backward(x, py, random_tensor<float>(py.shape(), 23), pdx);
            keep(py);
            keep(pdx);
            ChannelAffine<float> affine = bn.inference_affine(true);
            Conv2d<float> conv(s[1], s[1], 3, 1, 1);
            Tensor<float> cy;
            conv.forward_affine(x, cy, &affine);
            keep(cy);
        }
        // The Winograd transforms (both tiles; forward, input and weight gradients).
        for (std::size_t tile : {4, 2}) {
            set_winograd_tile(tile);
            Conv2d<float> conv(32, 32, 3, 1, 1);
            const auto x = random_tensor<float>(Shape{2, 32, 13, 11}, 25);
            Tensor<float> y, dx;
            conv.forward(x, y);
            conv.backward(x, y, random_tensor<float>(y.shape(), 26), dx);
            keep(y);
            keep(dx);
            keep(*conv.parameters()[0].grad);
        }
        set_winograd_tile(4);
        BatchNorm1d<float> bn1(37);
        {  // feature vectors in training (forward_features, backward_features)
            const auto x = random_tensor<float>(Shape{70, 37}, 27),
                       dz = random_tensor<float>(x.shape(), 28);
            Tensor<float> y, dx, z, dxr;
            bn1.forward(x, y);
            bn1.backward(x, y, dz, dx);
            bn1.forward_relu(x, z);
            bn1.backward_relu(x, dz, dxr);
            for (const auto* t :
                 {&y, &dx, &z, &dxr, &bn1.running_var(), &*bn1.parameters()[0].grad})
                keep(*t);
        }
        bn1.set_mode(Mode::Eval);
        Rng rng(4);
        bn1.running_mean().fill_uniform(rng, -1, 1);
        ChannelAffine<float> affine = bn1.inference_affine(true);
        Dense<float> dense(20, 37);
        Tensor<float> dy;
        dense.forward_affine(random_tensor<float>(Shape{5, 20}, 24), dy, &affine);
        keep(dy);
        set_wide_loops(true);
        return out;
    };
    const Outputs wide = run_all(true), plain = run_all(false);
    REQUIRE(wide.tensors.size() == plain.tensors.size());
    for (std::size_t i = 0; i < wide.tensors.size(); ++i) {
        CAPTURE(i);
        const Tensor<float>&a = wide.tensors[i], &b = plain.tensors[i];
        REQUIRE(a.shape() == b.shape());
#if defined(__clang__)
        // Clang fuses a * b + c into FMAs in the AVX-512 version (GCC's fp-contract=off has no
        // per-function equivalent there), so the two agree to rounding, not to the bit. (The
        // AVX2 version is compiled without FMA, so it cannot fuse.)
        CHECK(max_abs_diff(a, b) <= 1e-5 * (1 + max_abs_diff(b, Tensor<float>(b.shape()))));
#else
        CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
#endif
    }
}

TEST_CASE("BatchNorm gradients match finite differences in train and eval, affine on and off") {
    for (bool affine : {true, false}) {
        for (Mode mode : {Mode::Train, Mode::Eval}) {
            BatchNorm2d<double> bn2(3, 1e-5, 0.1, affine);
            BatchNorm1d<double> bn1(4, 1e-5, 0.1, affine);
            Rng rng(6);
            if (affine) {
                bn2.gamma().fill_uniform(rng, 0.5, 2);
                bn2.beta().fill_uniform(rng, -1, 1);
                bn1.gamma().fill_uniform(rng, 0.5, 2);
                bn1.beta().fill_uniform(rng, -1, 1);
            }
            bn2.running_mean().fill_uniform(rng, -0.5, 0.5);
            bn2.running_var().fill_uniform(rng, 0.5, 2);
            bn1.running_mean().fill_uniform(rng, -0.5, 0.5);
            bn1.running_var().fill_uniform(rng, 0.5, 2);
            bn2.set_mode(mode);
            bn1.set_mode(mode);
            require_gradients(bn2, random_tensor<double>(Shape{3, 3, 4, 3}, 21, -2, 2));
            require_gradients(bn1, random_tensor<double>(Shape{5, 4}, 22, -2, 2));
        }
    }
}

TEST_CASE("BatchNorm rejects bad shapes, bad settings and single-value training batches") {
    BatchNorm2d<float> bn(3);
    Tensor<float> y;
    CHECK_THROWS_WITH_AS(bn.forward(Tensor<float>(Shape{2, 4, 3, 3}), y),
                         doctest::Contains("BatchNorm2d(3)"), Error);
    CHECK_THROWS_WITH_AS(bn.forward(Tensor<float>(Shape{1, 3, 1, 1}), y),
                         doctest::Contains("more than one value per channel"), Error);
    bn.set_mode(Mode::Eval);
    CHECK_NOTHROW(bn.forward(Tensor<float>(Shape{1, 3, 1, 1}), y));
    BatchNorm1d<float> bn1(4);
    CHECK_THROWS_AS(bn1.forward(Tensor<float>(Shape{2, 4, 1, 1}), y), Error);
    CHECK_THROWS_WITH_AS(BatchNorm2d<float>(3, -1.0), doctest::Contains("eps"), Error);
    CHECK_THROWS_WITH_AS(BatchNorm1d<float>(3, 1e-5, 1.5), doctest::Contains("momentum"), Error);
}

TEST_CASE("MaxPool2d forward matches a naive loop; gradients go to the first maximum") {
    for (const auto& sizes : std::vector<std::array<std::size_t, 4>>{
             {2, 2, 6, 4},
             {2, 2, 5, 7},
             {3, 2, 7, 6},
             {3, 1, 4, 5},
             {1, 1, 2, 3},
             {2, 2, 4, 17},
             {2, 2, 5, 20}}) {  // the last two: rows of >= 8 outputs, fast path
        // Plain variables, not a structured binding: clang 14 (the ThreadSanitizer pass) cannot
        // capture those in INFO's lambda.
        const std::size_t k = sizes[0], s = sizes[1], h = sizes[2], w = sizes[3];
        MaxPool2d<double> pool(k, s);
        const auto x = random_tensor<double>(Shape{2, 3, h, w}, 30 + k);
        Tensor<double> y;
        pool.forward(x, y);
        const std::size_t OH = (h - k) / s + 1, OW = (w - k) / s + 1;
        REQUIRE(y.shape() == Shape{2, 3, OH, OW});
        for (std::size_t n = 0; n < 2; ++n)
            for (std::size_t c = 0; c < 3; ++c)
                for (std::size_t i = 0; i < OH; ++i)
                    for (std::size_t j = 0; j < OW; ++j) {
                        double m = -1e300;
                        for (std::size_t a = 0; a < k; ++a)
                            for (std::size_t b = 0; b < k; ++b)
                                m = std::max(m, x(n, c, i * s + a, j * s + b));
                        CHECK(y(n, c, i, j) == m);
                    }
        INFO("kernel " << k << " stride " << s);
        require_gradients(pool, x);  // random values: no ties, so the max is differentiable
    }
}

TEST_CASE(
    "MaxPool2d 2x2 fast path routes gradients like the scan-order definition, ties included") {
    // Values from {0, 1, 2}: most windows hold ties. Rows of 10 outputs take the fast path.
    const std::size_t H = 6, W = 20;
    Tensor<float> x(Shape{2, 3, H, W});
    Rng rng(44);
    for (float& v : x) v = float(rng.below(3));
    MaxPool2d<float> pool(2);
    Tensor<float> y, dx;
    pool.forward(x, y);
    Tensor<float> dy(y.shape());
    for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = float(i + 1);
    pool.backward(x, y, dy, dx);
    Tensor<float> expected(x.shape(), 0.0f);
    for (std::size_t n = 0; n < 2; ++n)
        for (std::size_t c = 0; c < 3; ++c)
            for (std::size_t i = 0; i < H / 2; ++i)
                for (std::size_t j = 0; j < W / 2; ++j) {
                    std::size_t bi = 2 * i, bj = 2 * j;  // first maximum in scan order
                    for (std::size_t a = 0; a < 2; ++a)
                        for (std::size_t b = 0; b < 2; ++b)
                            if (x(n, c, 2 * i + a, 2 * j + b) > x(n, c, bi, bj))
                                bi = 2 * i + a, bj = 2 * j + b;
                    CHECK(y(n, c, i, j) == x(n, c, bi, bj));
                    expected(n, c, bi, bj) += dy(n, c, i, j);
                }
    CHECK(max_abs_diff(dx, expected) == 0);
}

TEST_CASE("MaxPool2d routes tied maxima to the first in scan order") {
    MaxPool2d<float> pool(2);
    Tensor<float> x(Shape{1, 1, 2, 4}, 1.0f);  // two windows, each of four equal values
    x(0, 0, 1, 2) = 3.0f;                      // the second window: one clear max, bottom left
    x(0, 0, 1, 3) = 3.0f;                      // tied with its right neighbour
    Tensor<float> y, dx;
    pool.forward(x, y);
    Tensor<float> dy(y.shape());
    dy[0] = 10;
    dy[1] = 20;
    pool.backward(x, y, dy, dx);
    CHECK(dx(0, 0, 0, 0) == 10);  // first of four equal values
    CHECK(dx(0, 0, 0, 1) == 0);
    CHECK(dx(0, 0, 1, 0) == 0);
    CHECK(dx(0, 0, 1, 2) == 20);  // first of the two tied maxima
    CHECK(dx(0, 0, 1, 3) == 0);
    float total = 0;
    for (float v : dx) total += v;
    CHECK(total == 30);

    SUBCASE("overlapping windows sharing a maximum add their gradients") {
        MaxPool2d<float> overlap(2, 1);
        Tensor<float> x2(Shape{1, 1, 2, 3}, 0.0f);
        x2(0, 0, 0, 1) = 5;  // the max of both windows
        Tensor<float> y2, dx2;
        overlap.forward(x2, y2);
        Tensor<float> dy2(y2.shape(), 1.0f);
        overlap.backward(x2, y2, dy2, dx2);
        CHECK(dx2(0, 0, 0, 1) == 2);
    }
}

TEST_CASE("MaxPool2d 2x2 backward: each window's dy at its first maximum, bit for bit") {
    // Rows of 8 and more outputs take the direct (non-scattering) backward: odd sizes leave a
    // last row and column in no window; ties, and dy values of -0, must come out as the scatter
    // dx[argmax] += dy gives them (0 + dy).
    for (const Shape& s : {Shape{2, 3, 17, 19}, Shape{1, 2, 16, 32}, Shape{1, 1, 5, 40}})
        for (bool wide : {false, true}) {
            set_wide_loops(wide);
            Tensor<float> x(s), y, dx;
            Rng rng(31);
            for (auto& v : x) v = float(rng.below(3));  // many ties
            MaxPool2d<float> pool(2);
            pool.forward(x, y);
            Tensor<float> dy(y.shape());
            for (std::size_t i = 0; i < dy.size(); ++i)
                dy[i] = i % 5 == 0 ? -0.0f : float(rng.uniform(-1, 1));
            pool.backward(x, y, dy, dx);
            Tensor<float> expected(s);  // zeros
            const std::size_t H = s[2], W = s[3], OH = y.dim(2), OW = y.dim(3);
            for (std::size_t p = 0; p < s[0] * s[1]; ++p)
                for (std::size_t oh = 0; oh < OH; ++oh)
                    for (std::size_t ow = 0; ow < OW; ++ow) {
                        const float* in = x.data() + p * H * W;
                        std::size_t best = 2 * oh * W + 2 * ow;
                        for (std::size_t at : {best + 1, best + W, best + W + 1})
                            if (in[at] > in[best]) best = at;
                        expected.data()[p * H * W + best] += dy.data()[(p * OH + oh) * OW + ow];
                    }
            INFO(s.str() << ", wide loops " << wide);
            CHECK(std::memcmp(dx.data(), expected.data(), dx.size() * sizeof(float)) == 0);
        }
    set_wide_loops(true);
}

TEST_CASE("Dropout: inverted scaling, mask statistics, eval identity, reproducible masks") {
    const double p = 0.3;
    Dropout<float> drop(p, 123);
    Tensor<float> x(Shape{100, 1000}, 1.0f), y;
    drop.forward(x, y);
    std::size_t zeros = 0;
    double mean = 0;
    for (float v : y) {
        if (v == 0)
            ++zeros;
        else
            CHECK(v == doctest::Approx(1 / (1 - p)));
        mean += v / double(y.size());
    }
    // 1e5 Bernoulli draws: the standard deviation of the fraction is 0.0014; allow 5 sigma.
    CHECK(double(zeros) / double(y.size()) == doctest::Approx(p).epsilon(0.0075 / p));
    CHECK(mean == doctest::Approx(1.0).epsilon(0.01));
    // Draws independent of their neighbours (within a sample, and the same element of the next
    // sample): both of a pair dropped with probability p^2 = 0.09 (sd 0.0009; 5 sigma).
    std::size_t both_next = 0, both_below = 0, pairs_next = 0, pairs_below = 0;
    for (std::size_t n = 0; n < 100; ++n)
        for (std::size_t i = 0; i < 1000; ++i) {
            const bool dropped = y(n, i) == 0;
            if (i + 1 < 1000) ++pairs_next, both_next += dropped && y(n, i + 1) == 0;
            if (n + 1 < 100) ++pairs_below, both_below += dropped && y(n + 1, i) == 0;
        }
    CHECK(double(both_next) / double(pairs_next) == doctest::Approx(p * p).epsilon(0.0045 / p / p));
    CHECK(double(both_below) / double(pairs_below) ==
          doctest::Approx(p * p).epsilon(0.0045 / p / p));

    Tensor<float> dx, dy(y.shape(), 2.0f);
    drop.backward(x, y, dy, dx);
    for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(dx[i] == 2 * y[i]);

    SUBCASE("a new mask every call, the same masks after reseed, whatever the thread count") {
        Tensor<float> y2, y3;
        drop.forward(x, y2);
        CHECK(max_abs_diff(y, y2) > 0);
        for (int threads : {1, 2}) {
            set_num_threads(threads);
            drop.reseed(123);
            drop.forward(x, y3);
            CHECK(max_abs_diff(y, y3) == 0);
        }
        set_num_threads(0);
    }
    SUBCASE("eval is the identity") {
        drop.set_mode(Mode::Eval);
        const auto xr = random_tensor<float>(Shape{4, 7}, 2);
        drop.forward(xr, y);
        CHECK(max_abs_diff(xr, y) == 0);
        drop.backward(xr, y, xr, dx);
        CHECK(max_abs_diff(xr, dx) == 0);
    }
    CHECK_THROWS_WITH_AS(Dropout<float>(1.0), doctest::Contains("[0, 1)"), Error);
    CHECK_THROWS_AS(Dropout<float>(-0.1), Error);
}

TEST_CASE("Dropout gradients hold with the mask fixed by reseed") {
    Dropout<double> drop(0.5, 77);
    require_gradients(drop, random_tensor<double>(Shape{3, 2, 3, 3}, 5));
}

TEST_CASE("Activations match their formulas and finite differences") {
    const auto x = away_from_zero(Shape{3, 2, 4, 5}, 40);
    ReLU<double> relu;
    LeakyReLU<double> leaky(0.1);
    ELU<double> elu(0.7);
    Tensor<double> y;
    relu.forward(x, y);
    for (std::size_t i = 0; i < x.size(); ++i) CHECK(y[i] == std::max(x[i], 0.0));
    leaky.forward(x, y);
    for (std::size_t i = 0; i < x.size(); ++i)
        CHECK(y[i] == doctest::Approx(x[i] > 0 ? x[i] : 0.1 * x[i]));
    elu.forward(x, y);
    for (std::size_t i = 0; i < x.size(); ++i)
        CHECK(y[i] == doctest::Approx(x[i] > 0 ? x[i] : 0.7 * (std::exp(x[i]) - 1)));
    require_gradients(relu, x);
    require_gradients(leaky, x);
    require_gradients(elu, x);
    SUBCASE("a large tensor runs on several threads with the same result") {
        set_num_threads(2);
        const auto big = random_tensor<float>(Shape{8, 16, 32, 32}, 41);
        ReLU<float> r;
        Tensor<float> yb;
        r.forward(big, yb);
        for (std::size_t i = 0; i < big.size(); i += 997) CHECK(yb[i] == std::max(big[i], 0.0f));
        set_num_threads(0);
    }
}

TEST_CASE("Softmax layer: rows sum to one, stable for large logits, real backward") {
    Softmax<double> softmax;
    auto x = random_tensor<double>(Shape{3, 5}, 50, -3, 3);
    Tensor<double> y;
    softmax.forward(x, y);
    for (std::size_t n = 0; n < 3; ++n) {
        double denom = 0;
        for (std::size_t k = 0; k < 5; ++k) denom += std::exp(x(n, k));
        for (std::size_t k = 0; k < 5; ++k)
            CHECK(y(n, k) == doctest::Approx(std::exp(x(n, k)) / denom));
    }
    require_gradients(softmax, x);
    x(0, 0) = 1000;
    x(0, 1) = 999;
    softmax.forward(x, y);
    CHECK(std::isfinite(y(0, 0)));
    CHECK(y(0, 0) == doctest::Approx(1 / (1 + std::exp(-1.0))).epsilon(1e-6));
}

TEST_CASE("Flatten keeps NCHW order and restores the shape in backward") {
    Flatten<double> flatten;
    const auto x = random_tensor<double>(Shape{2, 3, 2, 2}, 60);
    Tensor<double> y;
    flatten.forward(x, y);
    CHECK(y.shape() == Shape{2, 12});
    CHECK(y(1, 5) == x(1, 1, 0, 1));
    CHECK(flatten.output_shape(Shape{3, 2, 2}) == Shape{12});
    require_gradients(flatten, x);
}

TEST_CASE("Initialisers give the variance their scheme promises") {
    Rng rng(9);
    auto stddev = [](const Tensor<float>& t) {
        double s = 0, s2 = 0;
        for (float v : t) {
            s += v;
            s2 += double(v) * v;
        }
        const double n = double(t.size());
        return std::sqrt(s2 / n - (s / n) * (s / n));
    };
    Tensor<float> w(Shape{64, 32, 3, 3});  // fan_in 288, fan_out 576
    he_normal(w, rng);
    CHECK(stddev(w) == doctest::Approx(std::sqrt(2.0 / 288)).epsilon(0.02));
    he_uniform(w, rng);
    CHECK(stddev(w) == doctest::Approx(std::sqrt(2.0 / 288)).epsilon(0.02));
    for (float v : w) REQUIRE(std::abs(v) <= std::sqrt(6.0 / 288));
    glorot_normal(w, rng);
    CHECK(stddev(w) == doctest::Approx(std::sqrt(2.0 / (288 + 576))).epsilon(0.02));
    glorot_uniform(w, rng);
    CHECK(stddev(w) == doctest::Approx(std::sqrt(2.0 / (288 + 576))).epsilon(0.02));
    CHECK(compute_fans(Shape{7, 256}).fan_in == 256);
    CHECK_THROWS_AS(compute_fans(Shape{3}), Error);
    // Same seed, same weights; different seeds, different weights.
    Conv2d<float> a(3, 8, 3, 1, 1, false, 5), b(3, 8, 3, 1, 1, false, 5),
        c(3, 8, 3, 1, 1, false, 6);
    CHECK(max_abs_diff(a.weight(), b.weight()) == 0);
    CHECK(max_abs_diff(a.weight(), c.weight()) > 0);
}

TEST_CASE("config() -> make_layer() rebuilds every layer") {
    std::vector<std::unique_ptr<Layer<double>>> layers;
    layers.push_back(
        std::make_unique<Conv2d<double>>(Conv2dOptions{3, 4, 3, 2, 2, 1, 1, 0, false, 1}));
    layers.push_back(std::make_unique<Conv2d<double>>(2, 3, 3, 1, 1, true));
    layers.push_back(std::make_unique<BatchNorm2d<double>>(3, 1e-3, 0.2, false));
    layers.push_back(std::make_unique<BatchNorm1d<double>>(12, 1e-5, 0.1, true));
    layers.push_back(std::make_unique<MaxPool2d<double>>(3, 2));
    layers.push_back(std::make_unique<Dropout<double>>(0.25, 99));
    layers.push_back(std::make_unique<Dense<double>>(12, 7, false));
    layers.push_back(std::make_unique<Flatten<double>>());
    layers.push_back(std::make_unique<ReLU<double>>());
    layers.push_back(std::make_unique<LeakyReLU<double>>(0.2));
    layers.push_back(std::make_unique<ELU<double>>(0.5));
    layers.push_back(std::make_unique<Softmax<double>>());
    for (auto& layer : layers) {
        const LayerConfig c = layer->config();
        auto rebuilt = make_layer<double>(c);
        INFO(layer->describe());
        CHECK(rebuilt->type() == layer->type());
        CHECK(rebuilt->describe() == layer->describe());
        CHECK(rebuilt->config().values == c.values);
        CHECK(rebuilt->parameter_count() == layer->parameter_count());
    }
    SUBCASE("Linear is Dense; a rebuilt layer with copied parameters computes the same") {
        auto dense = make_layer<double>({"Linear", {{"in_features", 4}, {"out_features", 2}}});
        CHECK(dense->type() == "Dense");
        Conv2d<double> conv(2, 3, 3, 2, 1, true, 4);
        auto copy = make_layer<double>(conv.config());
        auto src = conv.parameters();
        auto dst = copy->parameters();
        for (std::size_t i = 0; i < src.size(); ++i) *dst[i].value = *src[i].value;
        const auto x = random_tensor<double>(Shape{2, 2, 5, 6}, 3);
        Tensor<double> y1, y2;
        conv.forward(x, y1);
        copy->forward(x, y2);
        CHECK(max_abs_diff(y1, y2) == 0);
    }
}

TEST_CASE("make_layer rejects unknown types and bad values with clear errors") {
    CHECK_THROWS_WITH_AS(make_layer<float>({"Conv3d", {}}),
                         doctest::Contains("unknown layer type 'Conv3d'"), Error);
    CHECK_THROWS_WITH_AS(make_layer<float>({"Conv2d", {{"in_channels", 1}, {"out_channels", 2}}}),
                         doctest::Contains("missing value 'kernel'"), Error);
    CHECK_THROWS_WITH_AS(
        make_layer<float>({"Conv2d", {{"in_channels", 1}, {"out_channels", 2}, {"kernel", 2.5}}}),
        doctest::Contains("'kernel' must be a whole number"), Error);
    CHECK_THROWS_WITH_AS(make_layer<float>({"Dense", {{"in_features", 0}, {"out_features", 2}}}),
                         doctest::Contains("in_features"), Error);
    CHECK_THROWS_WITH_AS(make_layer<float>({"Dropout", {{"p", 1.5}}}), doctest::Contains("Dropout"),
                         Error);
    CHECK_THROWS_WITH_AS(make_layer<float>({"BatchNorm2d", {{"channels", 4}, {"affine", 0.5}}}),
                         doctest::Contains("'affine' must be 0 or 1"), Error);
    CHECK_THROWS_AS(make_layer<float>({"MaxPool2d", {{"kernel", -2}}}), Error);
    CHECK_THROWS_AS(make_layer<float>({"LeakyReLU", {{"slope", std::nan("")}}}), Error);
}

TEST_CASE("Layers reject inputs of the wrong shape with errors that name them") {
    Tensor<float> y, dx;
    Conv2d<float> conv(3, 4, 3);
    CHECK_THROWS_WITH_AS(conv.forward(Tensor<float>(Shape{2, 2, 8, 8}), y),
                         doctest::Contains("input has 2 channels, expected 3"), Error);
    CHECK_THROWS_WITH_AS(conv.forward(Tensor<float>(Shape{2, 3, 2, 8}), y),
                         doctest::Contains("larger than padded input"), Error);
    CHECK_THROWS_AS(conv.forward(Tensor<float>(Shape{3, 8, 8}), y), Error);
    const Tensor<float> x(Shape{2, 3, 8, 8});
    conv.forward(x, y);
    CHECK_THROWS_WITH_AS(conv.backward(x, y, Tensor<float>(Shape{2, 4, 5, 6}), dx),
                         doctest::Contains("Conv2d::backward: dy"), Error);
    CHECK_THROWS_WITH_AS(Conv2d<float>(0, 4, 3), doctest::Contains("channels must be positive"),
                         Error);
    CHECK_THROWS_AS(Conv2d<float>(1, 4, 3, 0), Error);

    Dense<float> dense(10, 2);
    CHECK_THROWS_WITH_AS(dense.forward(Tensor<float>(Shape{2, 9}), y),
                         doctest::Contains("Dense(10->2)"), Error);
    CHECK_THROWS_WITH_AS(dense.forward(Tensor<float>(Shape{2, 10, 1, 1}), y),
                         doctest::Contains("Flatten"), Error);
    MaxPool2d<float> pool(3);
    CHECK_THROWS_WITH_AS(pool.forward(Tensor<float>(Shape{1, 1, 2, 5}), y),
                         doctest::Contains("window larger"), Error);
    CHECK_THROWS_AS(MaxPool2d<float>(0), Error);
    Softmax<float> softmax;
    CHECK_THROWS_AS(softmax.forward(Tensor<float>(Shape{2, 3, 4}), y), Error);
    ReLU<float> relu;
    relu.forward(Tensor<float>(Shape{2, 3}), y);
    CHECK_THROWS_WITH_AS(
        relu.backward(Tensor<float>(Shape{2, 3}), y, Tensor<float>(Shape{3, 2}), dx),
        doctest::Contains("ReLU::backward"), Error);
}

TEST_CASE("Layers report their flops and describe themselves") {
    Conv2d<float> conv(1, 32, 3, 1, 1, false);
    CHECK(conv.flops(Shape{1, 48, 48}) == 2u * 32 * 9 * 48 * 48);
    CHECK(conv.describe() == "Conv2d(1->32, 3x3, stride 1, pad 1, no bias)");
    CHECK(Dense<float>(4608, 256).flops(Shape{4608}) == 2u * 4608 * 256 + 256);
    CHECK(MaxPool2d<float>(2).output_shape(Shape{32, 48, 48}) == Shape{32, 24, 24});
}
