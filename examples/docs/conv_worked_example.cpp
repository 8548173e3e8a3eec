// conv_worked_example.cpp — the worked example of docs/internals/convolution.md: a 1 x 4 x 4
// image, a 3 x 3 kernel, padding 1. Prints the unrolled matrix, the convolution computed as one
// GEMM, and col2im of a matrix of ones; exits non-zero if the GEMM result differs from the
// direct convolution.
#include <cstdio>
#include <facet/facet.hpp>
#include <vector>

using namespace facet;

void print(const char* title, const float* m, std::size_t rows, std::size_t cols) {
    std::printf("%s (%zu x %zu)\n", title, rows, cols);
    for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t c = 0; c < cols; ++c) std::printf("%4g", m[r * cols + c]);
        std::printf("\n");
    }
}

int main() {
    ConvGeometry g;  // C = 1, H = W = 4, 3 x 3 kernel, stride 1, padding 1
    g.channels = 1, g.height = 4, g.width = 4, g.kernel_h = 3, g.kernel_w = 3, g.pad_h = 1,
    g.pad_w = 1;
    g.validate();
    std::vector<float> image(16);
    for (std::size_t i = 0; i < 16; ++i) image[i] = float(i + 1);  // 1 .. 16, row by row
    print("image", image.data(), 4, 4);

    const std::size_t K = g.col_rows(), P = g.col_cols();  // 9 rows, 16 columns
    std::vector<float> col(K * P);
    im2col(image.data(), g, col.data(), P);
    print("col = im2col(image)", col.data(), K, P);

    const std::vector<float> kernel = {0, 1, 0, 1, -4, 1, 0, 1, 0};  // (OC = 1) x 9
    std::vector<float> y(P), y_direct(P);
    gemm(Trans::No, Trans::No, 1, P, K, 1.0f, kernel.data(), K, col.data(), P, 0.0f, y.data(), P);
    print("y = kernel * col", y.data(), 4, 4);
    conv2d_direct(image.data(), 1, g, kernel.data(), 1, static_cast<const float*>(nullptr),
                  y_direct.data());

    std::vector<float> ones(K * P, 1.0f), count(16);
    col2im(ones.data(), P, g, count.data());
    print("col2im(ones): how many windows read each pixel", count.data(), 4, 4);
    return y == y_direct ? 0 : 1;
}
