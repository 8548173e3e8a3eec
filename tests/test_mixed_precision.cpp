// Tests of mixed precision (Context::precision = Precision::Bf16): gemm() of floats becomes the
// bf16 product of kernels/bf16_gemm.hpp on every path (thin shapes, packed weights, any alpha and
// beta) while doubles stay fp64; convolutions by im2col and pointwise GEMM, and dense layers,
// compute forward and backward from bf16-rounded operands with fp32 sums (against double
// references of the rounded operands); Winograd's products round the transformed tiles, within
// a bound measured against the exact convolution.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "facet/core/context.hpp"
#include "facet/core/dtype.hpp"
#include "facet/core/random.hpp"
#include "facet/kernels/bf16_gemm.hpp"
#include "facet/kernels/conv_reference.hpp"
#include "facet/kernels/gemm.hpp"
#include "facet/kernels/winograd_tiles.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/layers/dense.hpp"

using namespace facet;

namespace {

float round_bf16(float x) {
    return static_cast<float>(bf16(x));
}

std::vector<float> uniform(std::size_t n, std::uint64_t seed) {
    Rng rng(seed);
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(rng.uniform(-1.0, 1.0));
    return v;
}

/// A context computing in bf16 (the rest as the current one).
Context bf16_context() {
    Context c = current_context();
    c.precision = Precision::Bf16;
    return c;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](float x, float y) {
               return std::bit_cast<std::uint32_t>(x) == std::bit_cast<std::uint32_t>(y);
           });
}

/// Direct references in double of a convolution's gradients: dx = W^T * dy scattered back, and
/// dW = dy * x^T gathered (x: batch x C x H x W, w: OC x C x kh x kw, dy: batch x OC x OH x OW).
void conv_gradients_direct(const std::vector<double>& x, const std::vector<double>& w,
                           const std::vector<double>& dy, std::size_t batch, const ConvGeometry& g,
                           std::size_t OC, std::vector<double>& dx, std::vector<double>& dw) {
    const std::size_t OH = g.out_h(), OW = g.out_w(), C = g.channels, H = g.height, W = g.width;
    dx.assign(batch * C * H * W, 0.0), dw.assign(OC * C * g.kernel_h * g.kernel_w, 0.0);
    for (std::size_t n = 0; n < batch; ++n)
        for (std::size_t o = 0; o < OC; ++o)
            for (std::size_t oh = 0; oh < OH; ++oh)
                for (std::size_t ow = 0; ow < OW; ++ow) {
                    const double d = dy[((n * OC + o) * OH + oh) * OW + ow];
                    for (std::size_t c = 0; c < C; ++c)
                        for (std::size_t ki = 0; ki < g.kernel_h; ++ki)
                            for (std::size_t kj = 0; kj < g.kernel_w; ++kj) {
                                const auto ih =
                                    std::ptrdiff_t(oh * g.stride_h + ki) - std::ptrdiff_t(g.pad_h);
                                const auto iw =
                                    std::ptrdiff_t(ow * g.stride_w + kj) - std::ptrdiff_t(g.pad_w);
                                if (ih < 0 || iw < 0 || ih >= std::ptrdiff_t(H) ||
                                    iw >= std::ptrdiff_t(W))
                                    continue;
                                const std::size_t xi =
                                    ((n * C + c) * H + std::size_t(ih)) * W + std::size_t(iw);
                                const std::size_t wi =
                                    ((o * C + c) * g.kernel_h + ki) * g.kernel_w + kj;
                                dx[xi] += w[wi] * d;
                                dw[wi] += x[xi] * d;
                            }
                }
}

std::vector<double> widen(const float* p, std::size_t n, bool to_bf16) {
    std::vector<double> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = to_bf16 ? round_bf16(p[i]) : p[i];
    return v;
}

std::vector<double> absolute(const std::vector<double>& v) {
    std::vector<double> a(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) a[i] = std::fabs(v[i]);
    return a;
}

/// The largest |got - want| / (magnitude + 1e-30) over the elements: errors in units of the
/// sum of absolute products each element is made of.
double relative_error(const float* got, const std::vector<double>& want,
                      const std::vector<double>& magnitude) {
    double worst = 0;
    for (std::size_t i = 0; i < want.size(); ++i)
        worst = std::max(worst, std::fabs(double(got[i]) - want[i]) / (magnitude[i] + 1e-30));
    return worst;
}

struct ConvCase {
    std::size_t cin, cout, kernel, stride, pad, h, w;
};

}  // namespace

TEST_CASE("gemm of floats in a bf16 context is gemm_bf16's product, doubles stay fp64") {
    struct Shape3 {
        std::size_t M, N, K;
    };
    const Context bf16_ctx = bf16_context();
    for (const Shape3 s : {Shape3{1, 40, 70}, Shape3{3, 1, 33}, Shape3{17, 29, 300},
                           Shape3{64, 200, 64}, Shape3{2, 9000, 5}})
        for (Trans ta : {Trans::No, Trans::Yes})
            for (Trans tb : {Trans::No, Trans::Yes}) {
                INFO(s.M, " x ", s.N, " x ", s.K, (ta == Trans::Yes ? " A^T" : ""),
                     (tb == Trans::Yes ? " B^T" : ""));
                const std::vector<float> A = uniform(s.M * s.K, 1), B = uniform(s.K * s.N, 2),
                                         C0 = uniform(s.M * s.N, 3);
                const std::size_t lda = ta == Trans::Yes ? s.M : s.K;
                const std::size_t ldb = tb == Trans::Yes ? s.K : s.N;
                std::vector<float> want = C0, got = C0;
                gemm_bf16(ta, tb, s.M, s.N, s.K, A.data(), lda, B.data(), ldb, want.data(), s.N);
                {
                    const ContextScope scope(bf16_ctx);
                    gemm(ta, tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f,
                         got.data(), s.N);
                }
                CHECK(same_bits(got, want));
                // beta = 1 adds to C; any other alpha and beta scale the bf16 product in fp32.
                std::vector<float> sum = C0, scaled = C0, sum_want = C0;
                gemm_bf16(ta, tb, s.M, s.N, s.K, A.data(), lda, B.data(), ldb, sum_want.data(), s.N,
                          true);
                {
                    const ContextScope scope(bf16_ctx);
                    gemm(ta, tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 1.0f,
                         sum.data(), s.N);
                    gemm(ta, tb, s.M, s.N, s.K, 0.5f, A.data(), lda, B.data(), ldb, -2.0f,
                         scaled.data(), s.N);
                }
                CHECK(same_bits(sum, sum_want));
                std::vector<float> scaled_want(C0.size());
                for (std::size_t i = 0; i < C0.size(); ++i)
                    scaled_want[i] = 0.5f * want[i] + -2.0f * C0[i];
                CHECK(same_bits(scaled, scaled_want));
                // The fp32 product differs (the operands were not rounded there).
                std::vector<float> fp32 = C0;
                gemm(ta, tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, fp32.data(),
                     s.N);
                CHECK_FALSE(same_bits(fp32, want));
            }
    // Doubles ignore the precision: the same bits as in an fp32 context.
    const std::size_t M = 13, N = 21, K = 40;
    std::vector<double> A(M * K), B(K * N), c1(M * N), c2(M * N);
    Rng rng(4);
    for (double& v : A) v = rng.uniform(-1.0, 1.0);
    for (double& v : B) v = rng.uniform(-1.0, 1.0);
    gemm(Trans::No, Trans::No, M, N, K, 1.0, A.data(), K, B.data(), N, 0.0, c1.data(), N);
    {
        const ContextScope scope(bf16_ctx);
        gemm(Trans::No, Trans::No, M, N, K, 1.0, A.data(), K, B.data(), N, 0.0, c2.data(), N);
    }
    CHECK(c1 == c2);
}

TEST_CASE("GemmPackedA follows the precision of the context it multiplies in") {
    const std::size_t M = 48, N = 300, K = 150;
    const std::vector<float> A = uniform(M * K, 5), B = uniform(K * N, 6);
    std::vector<float> want(M * N), got(M * N, 7.0f), fp32(M * N);
    gemm_bf16(Trans::No, Trans::No, M, N, K, A.data(), K, B.data(), N, want.data(), N);
    gemm(Trans::No, Trans::No, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, fp32.data(), N);
    const Context bf16_ctx = bf16_context();
    GemmPackedA<float> packed;
    packed.pack(Trans::No, M, K, A.data(), K);  // packed for fp32 ...
    {
        const ContextScope scope(bf16_ctx);  // ... multiplied in bf16
        packed.multiply(Trans::No, N, 1.0f, B.data(), N, 0.0f, got.data(), N);
    }
    CHECK(same_bits(got, want));
    {
        const ContextScope scope(bf16_ctx);
        packed.pack(Trans::No, M, K, A.data(), K);  // packed in bf16 ...
        packed.multiply(Trans::No, N, 1.0f, B.data(), N, 0.0f, got.data(), N);
        CHECK(same_bits(got, want));
    }
    packed.multiply(Trans::No, N, 1.0f, B.data(), N, 0.0f, got.data(), N);  // ... used in fp32
    CHECK(same_bits(got, fp32));
}

TEST_CASE("Conv2d in bf16: im2col and pointwise passes are the rounded operands' fp32 sums") {
    // Winograd off: every pass is a GEMM of the layer's own operands (weights, im2col's columns,
    // dy), so each result is a sum of products of bf16-rounded values, with fp32 error only.
    const std::vector<ConvCase> cases = {
        {3, 8, 3, 1, 1, 9, 7},    // padded 3x3
        {6, 5, 3, 2, 0, 11, 10},  // strided
        {16, 12, 1, 1, 0, 6, 5},  // pointwise: the GEMM reads the image itself
        {2, 4, 5, 1, 2, 8, 8},    // 5x5
    };
    const std::size_t batch = 3;
    Context ctx = bf16_context();
    ctx.winograd = false;
    for (const ConvCase& c : cases) {
        Conv2d<float> conv(c.cin, c.cout, c.kernel, c.stride, c.pad, true, 11);
        const std::vector<float> xv = uniform(batch * c.cin * c.h * c.w, 12);
        Tensor<float> x(Shape{batch, c.cin, c.h, c.w});
        std::copy(xv.begin(), xv.end(), x.begin());
        Rng rng(13);
        conv.bias().fill_uniform(rng, -0.5, 0.5);
        Tensor<float> y, dx;
        {
            const ContextScope scope(ctx);
            conv.forward(x, y);
        }
        const std::vector<float> dyv = uniform(y.size(), 14);
        Tensor<float> dy(y.shape());
        std::copy(dyv.begin(), dyv.end(), dy.begin());
        {
            const ContextScope scope(ctx);
            conv.backward(x, y, dy, dx);
        }
        const ConvGeometry g = conv.geometry(Shape{c.cin, c.h, c.w});
        const std::size_t K = g.col_rows();
        INFO(conv.describe(), " on ", x.shape().str());

        // Forward: against the direct convolution of the rounded operands, and of the exact ones.
        const std::vector<double> xr = widen(x.data(), x.size(), true),
                                  wr = widen(conv.weight().data(), conv.weight().size(), true),
                                  xe = widen(x.data(), x.size(), false),
                                  we = widen(conv.weight().data(), conv.weight().size(), false),
                                  bias = widen(conv.bias().data(), c.cout, false),
                                  dyr = widen(dy.data(), dy.size(), true);
        std::vector<double> ref_r(y.size()), ref_e(y.size()), mag(y.size());
        conv2d_direct(xr.data(), batch, g, wr.data(), c.cout, bias.data(), ref_r.data());
        conv2d_direct(xe.data(), batch, g, we.data(), c.cout, bias.data(), ref_e.data());
        const std::vector<double> zero_bias(c.cout, 0.0);
        conv2d_direct(absolute(xr).data(), batch, g, absolute(wr).data(), c.cout, zero_bias.data(),
                      mag.data());
        for (std::size_t i = 0; i < mag.size(); ++i) mag[i] += std::fabs(ref_r[i]);
        // fp32 sums of K products (and the bias): gamma_(K+1) = (K + 1) u / (1 - (K + 1) u).
        const double fp32_bound = double(K + 2) * 0x1p-24;
        CHECK(relative_error(y.data(), ref_r, mag) <= fp32_bound);
        // bf16 rounding was applied: against the exact operands the error is bf16-sized.
        CHECK(relative_error(y.data(), ref_e, mag) > 16 * fp32_bound);
        CHECK(relative_error(y.data(), ref_e, mag) <= 2 * 0x1p-8 + fp32_bound);

        // Backward: dx = W^T dy and dW = dy x^T of the rounded operands; db is summed in fp32
        // from dy itself (not a product).
        std::vector<double> dx_ref, dw_ref, dx_mag, dw_mag;
        conv_gradients_direct(xr, wr, dyr, batch, g, c.cout, dx_ref, dw_ref);
        conv_gradients_direct(absolute(xr), absolute(wr), absolute(dyr), batch, g, c.cout, dx_mag,
                              dw_mag);
        const double dw_terms = double(batch * g.col_cols());
        CHECK(relative_error(dx.data(), dx_ref, dx_mag) <=
              double(c.cout * c.kernel * c.kernel) * 0x1p-23);
        CHECK(relative_error(conv.parameters()[0].grad->data(), dw_ref, dw_mag) <=
              (dw_terms + 2) * 0x1p-23);
        double db_err = 0;
        const std::size_t P = g.col_cols();
        for (std::size_t o = 0; o < c.cout; ++o) {
            double sum = 0, sum_abs = 0;
            for (std::size_t n = 0; n < batch; ++n)
                for (std::size_t p = 0; p < P; ++p) {
                    sum += dy[(n * c.cout + o) * P + p];
                    sum_abs += std::fabs(dy[(n * c.cout + o) * P + p]);
                }
            db_err = std::max(db_err, std::fabs((*conv.parameters()[1].grad)[o] - sum) / sum_abs);
        }
        CHECK(db_err <= dw_terms * 0x1p-23);
    }
}

TEST_CASE("Conv2d in bf16 by Winograd: F(2x2, 3x3), the transformed tiles rounded, within bound") {
    // Winograd multiplies transformed tiles U = G w G^T and V = B^T x B; bf16 rounds those, and
    // the inverse transform adds the rounding errors of several products. With F(4x4, 3x3)
    // (coefficients up to 8) the forward error reached 0.03 sum |w||x| on this case, sixteen
    // times F(2x2, 3x3)'s 0.0018, so a bf16 context takes F(2x2) whatever its tile says. Each
    // pass is held to bf16's bound for a direct product, 2 * 2^-8 of the sum of absolute
    // products, which an fp32 product (errors below 1e-6) meets by far and a wrong one does not.
    const std::size_t batch = 2, C = 32, OC = 32, H = 12, W = 10;
    Conv2d<float> conv(C, OC, 3, 1, 1, false, 21);
    Tensor<float> x(Shape{batch, C, H, W}), dy(Shape{batch, OC, H, W});
    const std::vector<float> xv = uniform(x.size(), 22), dyv = uniform(dy.size(), 23);
    std::copy(xv.begin(), xv.end(), x.begin());
    std::copy(dyv.begin(), dyv.end(), dy.begin());
    const ConvGeometry g = conv.geometry(Shape{C, H, W});
    const std::vector<double> xe = widen(x.data(), x.size(), false),
                              we = widen(conv.weight().data(), conv.weight().size(), false),
                              dye = widen(dy.data(), dy.size(), false);
    std::vector<double> ref(dy.size()), mag(dy.size()), dx_ref, dw_ref, dx_mag, dw_mag;
    conv2d_direct(xe.data(), batch, g, we.data(), OC, static_cast<const double*>(nullptr),
                  ref.data());
    conv2d_direct(absolute(xe).data(), batch, g, absolute(we).data(), OC,
                  static_cast<const double*>(nullptr), mag.data());
    conv_gradients_direct(xe, we, dye, batch, g, OC, dx_ref, dw_ref);
    conv_gradients_direct(absolute(xe), absolute(we), absolute(dye), batch, g, OC, dx_mag, dw_mag);
    Context ctx = bf16_context();
    ctx.winograd = true, ctx.winograd_tile = 4;
    Context fp32 = ctx;
    fp32.precision = Precision::Fp32;
    Tensor<float> y, y32, dx;
    {
        const ContextScope scope(ctx);
        CHECK(winograd_tile() == 2);
        REQUIRE(conv.plan().forward_algorithm(g) == ConvAlgorithm::Winograd);
        REQUIRE(conv.plan().input_gradient_algorithm(g, OC) == ConvAlgorithm::Winograd);
        REQUIRE(conv.plan().weight_gradient_algorithm(g, OC) == ConvAlgorithm::Winograd);
        conv.forward(x, y);
        conv.backward(x, y, dy, dx);
    }
    {
        const ContextScope scope(fp32);
        CHECK(winograd_tile() == 4);
        conv.forward(x, y32);
    }
    const double bound = 2 * 0x1p-8;
    const double y_err = relative_error(y.data(), ref, mag);
    const double dx_err = relative_error(dx.data(), dx_ref, dx_mag);
    const double dw_err = relative_error(conv.parameters()[0].grad->data(), dw_ref, dw_mag);
    CHECK(y_err <= bound);
    CHECK(dx_err <= bound);
    CHECK(dw_err <= bound);
    CHECK(y_err > 100 * relative_error(y32.data(), ref, mag));  // the products were bf16
}

TEST_CASE("Dense in bf16: forward and backward are the rounded operands' fp32 sums") {
    const std::size_t batch = 5, in = 70, out = 9;
    Dense<float> dense(in, out, true, 31);
    Rng rng(32);
    dense.bias().fill_uniform(rng, -0.5, 0.5);
    Tensor<float> x(Shape{batch, in}), y, dy, dx;
    const std::vector<float> xv = uniform(batch * in, 33);
    std::copy(xv.begin(), xv.end(), x.begin());
    const Context ctx = bf16_context();
    {
        const ContextScope scope(ctx);
        dense.forward(x, y);
    }
    dy.resize(y.shape());
    const std::vector<float> dyv = uniform(y.size(), 34);
    std::copy(dyv.begin(), dyv.end(), dy.begin());
    {
        const ContextScope scope(ctx);
        dense.backward(x, y, dy, dx);
    }
    const float* w = dense.weight().data();
    const float* dw = dense.parameters()[0].grad->data();
    double y_err = 0, dx_err = 0, dw_err = 0, y_exact_err = 0;
    for (std::size_t n = 0; n < batch; ++n)
        for (std::size_t o = 0; o < out; ++o) {
            double sum = dense.bias()[o], exact = dense.bias()[o], mag = std::fabs(sum);
            for (std::size_t i = 0; i < in; ++i) {
                sum += double(round_bf16(x[n * in + i])) * round_bf16(w[o * in + i]);
                exact += double(x[n * in + i]) * w[o * in + i];
                mag += std::fabs(double(round_bf16(x[n * in + i])) * round_bf16(w[o * in + i]));
            }
            y_err = std::max(y_err, std::fabs(y[n * out + o] - sum) / mag);
            y_exact_err = std::max(y_exact_err, std::fabs(y[n * out + o] - exact) / mag);
        }
    for (std::size_t n = 0; n < batch; ++n)
        for (std::size_t i = 0; i < in; ++i) {
            double sum = 0, mag = 0;
            for (std::size_t o = 0; o < out; ++o) {
                const double p = double(round_bf16(dy[n * out + o])) * round_bf16(w[o * in + i]);
                sum += p, mag += std::fabs(p);
            }
            dx_err = std::max(dx_err, std::fabs(dx[n * in + i] - sum) / mag);
        }
    for (std::size_t o = 0; o < out; ++o)
        for (std::size_t i = 0; i < in; ++i) {
            double sum = 0, mag = 0;
            for (std::size_t n = 0; n < batch; ++n) {
                const double p = double(round_bf16(dy[n * out + o])) * round_bf16(x[n * in + i]);
                sum += p, mag += std::fabs(p);
            }
            dw_err = std::max(dw_err, std::fabs(dw[o * in + i] - sum) / mag);
        }
    CHECK(y_err <= double(in + 2) * 0x1p-24);
    CHECK(y_exact_err > 16 * double(in + 2) * 0x1p-24);  // the operands were rounded
    CHECK(dx_err <= double(out + 1) * 0x1p-24);
    CHECK(dw_err <= double(batch + 1) * 0x1p-24);
}
