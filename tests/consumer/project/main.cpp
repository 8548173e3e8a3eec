// A program outside the facet tree: multiplies two small matrices through facet's GEMM and
// checks the result, proving the installed package's headers and target work.
#include <cstdio>
#include <facet/facet.hpp>

int main() {
    facet::Tensor<float> a({2, 3}), b({3, 2}), c({2, 2});
    for (std::size_t i = 0; i < 6; ++i)
        a[i] = static_cast<float>(i + 1), b[i] = static_cast<float>(6 - i);
    facet::gemm(facet::Trans::No, facet::Trans::No, 2, 2, 3, 1.0f, a.data(), 3, b.data(), 2, 0.0f,
                c.data(), 2);
    // [1 2 3; 4 5 6] * [6 5; 4 3; 2 1] = [20 14; 56 41]
    const bool ok = c[0] == 20 && c[1] == 14 && c[2] == 56 && c[3] == 41;
    std::printf("consumer: %s\n", ok ? "ok" : "WRONG");
    return ok ? 0 : 1;
}
