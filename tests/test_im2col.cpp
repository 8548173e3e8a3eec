// Tests of im2col / col2im (kernels/im2col.hpp): im2col + GEMM against the direct convolution of
// kernels/conv_reference.hpp, col2im as the exact adjoint of im2col, and geometry validation.
#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

#include "facet/core/random.hpp"
#include "facet/kernels/conv_reference.hpp"
#include "facet/kernels/gemm.hpp"
#include "facet/kernels/im2col.hpp"

namespace {

facet::ConvGeometry geometry(std::size_t c, std::size_t h, std::size_t w, std::size_t kh,
                             std::size_t kw, std::size_t sh, std::size_t sw, std::size_t ph,
                             std::size_t pw, std::size_t dh, std::size_t dw) {
    facet::ConvGeometry g;
    g.channels = c, g.height = h, g.width = w;
    g.kernel_h = kh, g.kernel_w = kw;
    g.stride_h = sh, g.stride_w = sw;
    g.pad_h = ph, g.pad_w = pw;
    g.dilation_h = dh, g.dilation_w = dw;
    return g;
}

std::string describe(const facet::ConvGeometry& g) {
    auto s = [](std::size_t v) { return std::to_string(v); };
    return s(g.channels) + "x" + s(g.height) + "x" + s(g.width) + " kernel " + s(g.kernel_h) + "x" +
           s(g.kernel_w) + " stride " + s(g.stride_h) + "," + s(g.stride_w) + " pad " + s(g.pad_h) +
           "," + s(g.pad_w) + " dilation " + s(g.dilation_h) + "," + s(g.dilation_w);
}

// Square and non-square images and kernels; strides 1-3, padding 0-2 (also wider than the
// kernel reach on one side), dilation 1-2, 1x1 kernels and kernels as large as the image.
const std::vector<facet::ConvGeometry> geometries = {
    geometry(1, 5, 5, 3, 3, 1, 1, 1, 1, 1, 1),  geometry(3, 7, 9, 3, 3, 1, 1, 1, 1, 1, 1),
    geometry(2, 8, 6, 3, 2, 2, 1, 0, 1, 1, 1),  geometry(2, 9, 11, 3, 3, 2, 3, 2, 1, 1, 1),
    geometry(3, 10, 7, 3, 3, 1, 1, 2, 2, 2, 2), geometry(1, 6, 13, 2, 4, 1, 2, 0, 3, 2, 1),
    geometry(4, 5, 4, 1, 1, 1, 1, 0, 0, 1, 1),  geometry(2, 4, 5, 4, 5, 1, 1, 0, 0, 1, 1),
    geometry(2, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1),  geometry(32, 12, 12, 3, 3, 1, 1, 1, 1, 1, 1),
};

template <typename T>
std::vector<T> random_vector(std::size_t n, facet::Rng& rng) {
    std::vector<T> v(n);
    for (T& x : v) x = static_cast<T>(rng.uniform(-1, 1));
    return v;
}

}  // namespace

TEST_CASE_TEMPLATE("im2col_batch + gemm equals the direct convolution", T, float, double) {
    facet::Rng rng(17);
    constexpr std::size_t batch = 3, out_channels = 5;
    for (const facet::ConvGeometry& g : geometries) {
        INFO(describe(g));
        REQUIRE_NOTHROW(g.validate());
        const std::size_t P = g.col_cols(), R = g.col_rows();
        const auto x = random_vector<T>(batch * g.image_size(), rng);
        const auto w = random_vector<T>(out_channels * R, rng);
        const auto bias = random_vector<T>(out_channels, rng);

        std::vector<T> col(R * batch * P,
                           std::numeric_limits<T>::quiet_NaN());  // every entry must be written
        facet::im2col_batch(x.data(), batch, g, col.data());
        // Y (OC x batch*P) = W (OC x R) * col (R x batch*P), then + bias.
        std::vector<T> y(out_channels * batch * P);
        facet::gemm<T>(facet::Trans::No, facet::Trans::No, out_channels, batch * P, R, T(1),
                       w.data(), R, col.data(), batch * P, T(0), y.data(), batch * P);

        std::vector<T> expected(batch * out_channels * P);
        facet::conv2d_direct(x.data(), batch, g, w.data(), out_channels, bias.data(),
                             expected.data());
        const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
        std::size_t bad = 0;
        for (std::size_t n = 0; n < batch; ++n)
            for (std::size_t o = 0; o < out_channels; ++o)
                for (std::size_t p = 0; p < P; ++p) {
                    const double got = static_cast<double>(y[o * batch * P + n * P + p]) + bias[o];
                    const double want = expected[(n * out_channels + o) * P + p];
                    bad += !(std::abs(got - want) <= tol * (1.0 + static_cast<double>(R)));
                }
        CHECK(bad == 0);
    }
}

TEST_CASE("im2col_rows writes exactly im2col's columns for those output rows") {
    facet::Rng rng(29);
    for (const facet::ConvGeometry& g : geometries) {
        INFO(describe(g));
        const std::size_t R = g.col_rows(), P = g.col_cols(), OH = g.out_h(), OW = g.out_w();
        const auto x = random_vector<float>(g.image_size(), rng);
        std::vector<float> full(R * P);
        facet::im2col(x.data(), g, full.data(), P);
        for (std::size_t r0 = 0; r0 <= OH; ++r0)
            for (std::size_t r1 = r0; r1 <= OH; ++r1) {
                const std::size_t cols = (r1 - r0) * OW, ld = cols + 3;  // a padded row stride
                std::vector<float> part(R * ld + 1, std::numeric_limits<float>::quiet_NaN());
                facet::im2col_rows(x.data(), g, r0, r1, part.data(), ld);
                std::size_t bad = 0, touched = 0;
                for (std::size_t k = 0; k < R; ++k) {
                    for (std::size_t p = 0; p < cols; ++p)
                        bad += !(part[k * ld + p] == full[k * P + r0 * OW + p]);
                    for (std::size_t p = cols; p < ld; ++p)
                        touched += !std::isnan(part[k * ld + p]);
                }
                CAPTURE(r0);
                CAPTURE(r1);
                CHECK(bad == 0);
                CHECK(touched == 0);  // nothing is written past the rows asked for
            }
        std::vector<float> any(R * P);
        CHECK_THROWS_WITH_AS(facet::im2col_rows(x.data(), g, 0, OH + 1, any.data(), P),
                             doctest::Contains("outside the"), facet::Error);
        if (OH > 1)
            CHECK_THROWS_AS(facet::im2col_rows(x.data(), g, 1, 0, any.data(), P), facet::Error);
    }
}

TEST_CASE("col2im is the adjoint of im2col: <im2col(x), y> == <x, col2im(y)>") {
    facet::Rng rng(23);
    for (const facet::ConvGeometry& g : geometries) {
        INFO(describe(g));
        const std::size_t R = g.col_rows(), P = g.col_cols();
        for (std::size_t batch : {1u, 3u}) {
            const auto x = random_vector<double>(batch * g.image_size(), rng);
            const auto y = random_vector<double>(R * batch * P, rng);
            std::vector<double> col(R * batch * P), back(batch * g.image_size(), std::nan(""));
            facet::im2col_batch(x.data(), batch, g, col.data());
            facet::col2im_batch(y.data(), batch, g, back.data());  // overwrites: the NaNs must go
            double lhs = 0, rhs = 0, scale = 0;
            for (std::size_t i = 0; i < col.size(); ++i)
                lhs += col[i] * y[i], scale += std::abs(col[i] * y[i]);
            for (std::size_t i = 0; i < x.size(); ++i) rhs += x[i] * back[i];
            CHECK(std::isfinite(rhs));
            CHECK(std::abs(lhs - rhs) <= 1e-12 * (1.0 + scale));
        }
    }
}

TEST_CASE("im2col places each pixel where the definition says (hand-checked 1x3x3, pad 1)") {
    const std::vector<float> image = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const auto g = geometry(1, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1);
    std::vector<float> col(9 * 9);
    facet::im2col(image.data(), g, col.data(), 9);
    // Row (ki=0, kj=0) reads the pixel up-left of each output: padding on the top row and left
    // column.
    const std::vector<float> up_left = {0, 0, 0, 0, 1, 2, 0, 4, 5};
    // Row (ki=1, kj=1), the kernel centre, reads the image itself.
    const std::vector<float> centre = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    for (std::size_t p = 0; p < 9; ++p) {
        CHECK(col[0 * 9 + p] == up_left[p]);
        CHECK(col[4 * 9 + p] == centre[p]);
    }
}

TEST_CASE("ConvGeometry::validate rejects impossible geometry") {
    const auto ok = geometry(2, 5, 5, 3, 3, 1, 1, 0, 0, 1, 1);
    CHECK_NOTHROW(ok.validate());
    auto g = ok;
    g.channels = 0;
    CHECK_THROWS_WITH_AS(g.validate(), doctest::Contains("empty input"), facet::Error);
    g = ok, g.width = 0;
    CHECK_THROWS_AS(g.validate(), facet::Error);
    g = ok, g.kernel_h = 0;
    CHECK_THROWS_WITH_AS(g.validate(), doctest::Contains("kernel size"), facet::Error);
    g = ok, g.stride_w = 0;
    CHECK_THROWS_WITH_AS(g.validate(), doctest::Contains("stride"), facet::Error);
    g = ok, g.dilation_h = 0;
    CHECK_THROWS_WITH_AS(g.validate(), doctest::Contains("dilation"), facet::Error);
    g = ok, g.kernel_w = 6;
    CHECK_THROWS_WITH_AS(g.validate(), doctest::Contains("larger than padded input"), facet::Error);
    g.pad_w = 1;  // 5 + 2 * 1 = 7 >= 6: fits now
    CHECK_NOTHROW(g.validate());
    g = ok, g.dilation_w = 3;  // extent 7 > 5
    CHECK_THROWS_AS(g.validate(), facet::Error);
    // Sizes that would wrap around size_t and then look valid.
    const std::size_t half = std::numeric_limits<std::size_t>::max() / 2 + 1;
    g = ok, g.dilation_h = half;  // 2 * half wraps to 0: extent 1
    CHECK_THROWS_WITH_AS(g.validate(), doctest::Contains("overflows"), facet::Error);
    g = ok, g.pad_w = half;
    CHECK_THROWS_WITH_AS(g.validate(), doctest::Contains("overflows"), facet::Error);
    g = ok, g.channels = std::numeric_limits<std::size_t>::max() / 4;
    CHECK_THROWS_WITH_AS(g.validate(), doctest::Contains("overflows"), facet::Error);
}
