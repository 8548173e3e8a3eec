// Tests of facet::gemm_bf16 (kernels/bf16_gemm.hpp): each kernel against the definition written
// out here (operands rounded to bf16, pairs summed odd product first, as vdpbf16ps), bit for bit,
// over shapes around the micro-tiles and the k-slices, all transposes, padded leading dimensions,
// accumulation, 1 and 2 threads; the rounding of the operands; the error against the exact fp32
// product within the bound derived in docs/internals/gemm.md; bad input. The AMX path's tile loop
// in plain C++ is held to the definition in the manual's order for tdpbf16ps, and the AMX kernel
// to it within the error of another summation order. The AVX512-BF16 and AMX cases are ctests of
// their own (test_bf16_gemm_avx512_bf16, test_bf16_gemm_amx), reported as skipped where the CPU
// lacks the instructions.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "facet/core/parallel.hpp"
#include "facet/core/random.hpp"
#include "facet/kernels/bf16_gemm.hpp"

namespace {

using facet::Bf16Isa;
using facet::Trans;

/// A float rounded to bf16 (nearest, ties to even) and back, with subnormals read as zeros.
float to_bf16_operand(float x) {
    std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
    bits = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;  // finite inputs only
    if ((bits & 0x7f800000u) == 0) bits &= 0x80000000u;
    return std::bit_cast<float>(bits);
}

float flush(float x) {
    return std::fabs(x) < 0x1p-126f ? std::copysign(0.0f, x) : x;
}

/// Equal as numbers, or both NaN with the same bits (C's NaN padding must stay as it was). The
/// sign of a zero is left out: vdpbf16ps gives -0 where the sum of its flushed products is a
/// zero whose sign IEEE addition would make +0, and no later step can tell the two apart.
bool same_value(float got, float expected) {
    if (std::isnan(got) || std::isnan(expected))
        return std::memcmp(&got, &expected, sizeof(float)) == 0;
    return got == expected;
}

struct Shape {
    std::size_t M, N, K;
    Trans ta = Trans::No, tb = Trans::No;
    std::size_t pad = 0;  // extra elements at the end of every stored row
};

struct Operands {
    Shape s;
    std::size_t lda, ldb, ldc;
    std::vector<float> A, B, C;

    Operands(const Shape& shape, facet::Rng& rng, bool extreme) : s(shape) {
        const std::size_t a_rows = s.ta == Trans::Yes ? s.K : s.M;
        const std::size_t a_cols = s.ta == Trans::Yes ? s.M : s.K;
        const std::size_t b_rows = s.tb == Trans::Yes ? s.N : s.K;
        const std::size_t b_cols = s.tb == Trans::Yes ? s.K : s.N;
        lda = a_cols + s.pad, ldb = b_cols + s.pad, ldc = s.N + s.pad;
        // Extreme values span exponents from -140 to +40: subnormal operands, products that
        // underflow, sums that cancel. Elsewhere plain values in [-1, 1).
        auto draw = [&] {
            const auto v = static_cast<float>(rng.uniform(-1.0, 1.0));
            return extreme ? std::ldexp(v, static_cast<int>(rng.uniform(-140.0, 40.0))) : v;
        };
        A.assign(a_rows * lda, std::nanf(""));  // padding is NaN: reading it poisons C
        B.assign(b_rows * ldb, std::nanf(""));
        C.assign(s.M * ldc, std::nanf(""));
        for (std::size_t r = 0; r < a_rows; ++r)
            for (std::size_t c = 0; c < a_cols; ++c) A[r * lda + c] = draw();
        for (std::size_t r = 0; r < b_rows; ++r)
            for (std::size_t c = 0; c < b_cols; ++c) B[r * ldb + c] = draw();
        for (std::size_t i = 0; i < s.M; ++i)
            for (std::size_t j = 0; j < s.N; ++j) C[i * ldc + j] = draw();
    }
    float a(std::size_t i, std::size_t k) const {
        return s.ta == Trans::Yes ? A[k * lda + i] : A[i * lda + k];
    }
    float b(std::size_t k, std::size_t j) const {
        return s.tb == Trans::Yes ? B[j * ldb + k] : B[k * ldb + j];
    }

    /// The definition: acc = (acc + odd product) + even product over the pairs, every step
    /// rounded to fp32 and flushed as vdpbf16ps does; with even_first, the even product added
    /// first, as Intel's manual defines tdpbf16ps (AMX).
    std::vector<float> definition(bool accumulate, bool even_first = false) const {
        std::vector<float> out = C;
        for (std::size_t i = 0; i < s.M; ++i)
            for (std::size_t j = 0; j < s.N; ++j) {
                float acc = accumulate ? flush(C[i * ldc + j]) : 0.0f;
                for (std::size_t k = 0; k < s.K; k += 2) {
                    const float even = to_bf16_operand(a(i, k)) * to_bf16_operand(b(k, j));
                    const float odd =
                        k + 1 < s.K ? to_bf16_operand(a(i, k + 1)) * to_bf16_operand(b(k + 1, j))
                                    : 0.0f;
                    acc = even_first ? flush(flush(acc + even) + odd)
                                     : flush(flush(acc + odd) + even);
                }
                out[i * ldc + j] = acc;
            }
        return out;
    }

    /// Per element of C: the sum of the magnitudes of the terms the definition adds (NaN where
    /// C is padding).
    std::vector<float> magnitudes(bool accumulate) const {
        std::vector<float> out(C.size(), std::nanf(""));
        for (std::size_t i = 0; i < s.M; ++i)
            for (std::size_t j = 0; j < s.N; ++j) {
                double sum = accumulate ? std::fabs(double(C[i * ldc + j])) : 0.0;
                for (std::size_t k = 0; k < s.K; ++k)
                    sum += std::fabs(double(to_bf16_operand(a(i, k))) *
                                     double(to_bf16_operand(b(k, j))));
                out[i * ldc + j] = static_cast<float>(sum);
            }
        return out;
    }

    std::vector<float> run(bool accumulate) const {
        std::vector<float> out = C;
        facet::gemm_bf16(s.ta, s.tb, s.M, s.N, s.K, A.data(), lda, B.data(), ldb, out.data(), ldc,
                         accumulate);
        return out;
    }
};

/// Within how much of the definition a kernel must be: `exact`, bit for bit (the padding of C
/// keeps its NaN bits either way); else within the error of summing K + 1 terms in another order,
/// 2 gamma_(K+1) times the sum of their magnitudes, plus 2 (K + 1) flushed subnormals.
struct Agreement {
    bool exact = true;
    bool even_first = false;  ///< the definition's order within a pair
};

/// Every shape, transpose, padding and accumulation through `isa` at 1 and 2 threads, compared
/// with the definition.
void check_isa_matches_definition(Bf16Isa isa, Agreement agreement = {}) {
    facet::Context context = facet::current_context();
    context.bf16_isa = isa;
    const facet::ContextScope scope(context);
    facet::Rng rng(7);
    // Around the tiles (4 x 16 portable, 8 x 48 AVX-512, 32 x 32 AMX with k in blocks of 32),
    // odd K (a last half pair), and K over one k-slice (768 for a 48 KiB L1, at least 64 for
    // any): 1601 is three slices or more.
    const std::vector<Shape> shapes = {
        {1, 1, 1},
        {3, 5, 2},
        {8, 48, 64},
        {9, 49, 3},
        {17, 100, 33},
        {4, 16, 1601},
        {33, 97, 801},
        {64, 144, 288},
        {7, 47, 5, Trans::Yes},
        {13, 50, 70, Trans::No, Trans::Yes, 3},
        {20, 96, 131, Trans::Yes, Trans::Yes, 1},
        {100, 3, 40, Trans::No, Trans::No, 2},
        {32, 32, 32},
        {31, 33, 63, Trans::Yes, Trans::No, 1},
        {65, 64, 97, Trans::No, Trans::Yes},
    };
    for (bool extreme : {false, true})
        for (const Shape& s : shapes) {
            const Operands ops(s, rng, extreme);
            for (bool accumulate : {false, true}) {
                const std::vector<float> expected =
                    ops.definition(accumulate, agreement.even_first);
                const std::vector<float> magnitude = ops.magnitudes(accumulate);
                const double v = std::ldexp(1.0, -24), terms = double(s.K + 1);
                const double gamma = terms * v / (1 - terms * v);
                for (int threads : {1, 2}) {
                    facet::set_num_threads(threads);
                    const std::vector<float> got = ops.run(accumulate);
                    const std::string what =
                        std::string(facet::bf16_isa_name(isa)) + " " + std::to_string(s.M) + "x" +
                        std::to_string(s.N) + "x" + std::to_string(s.K) +
                        (s.ta == Trans::Yes ? " A^T" : "") + (s.tb == Trans::Yes ? " B^T" : "") +
                        " pad " + std::to_string(s.pad) + (extreme ? " extreme" : "") +
                        (accumulate ? " accumulate" : "") + " threads " + std::to_string(threads);
                    INFO(what);
                    std::size_t differ = 0;
                    for (std::size_t i = 0; i < got.size(); ++i)
                        if (agreement.exact || std::isnan(expected[i])
                                ? !same_value(got[i], expected[i])
                                : !(std::fabs(double(got[i]) - double(expected[i])) <=
                                    2 * gamma * magnitude[i] + 2 * terms * 0x1p-126)) {
                            if (differ++ == 0)
                                MESSAGE("first at ", i, ": ", got[i], " for ", expected[i]);
                        }
                    CHECK(differ == 0);
                }
            }
        }
    facet::set_num_threads(0);
}

/// The cases of an ISA the CPU lacks end the process with 77, which ctest reports as skipped.
void skip_unless_supported(Bf16Isa isa) {
    if (facet::bf16_isa_supported(isa)) return;
    std::printf("SKIP: this CPU has no %s\n", facet::bf16_isa_name(isa));
    std::fflush(stdout);
    std::exit(77);
}

}  // namespace

TEST_CASE("bf16 gemm: the portable kernel equals the definition") {
    check_isa_matches_definition(Bf16Isa::Portable);
}

TEST_CASE("bf16 gemm: the AMX path's tile loop in plain C++ equals the definition") {
    // Its own packing of A (blocks of 16 pairs per row), B padded to whole tiles, 32 x 32 tiles,
    // and each pair summed even product first, as the manual defines tdpbf16ps.
    check_isa_matches_definition(Bf16Isa::AmxReference, {.exact = true, .even_first = true});
}

/// A kernel that is wrong the way a misread layout is: the portable kernel's tile with its
/// first two rows exchanged.
struct SwappedRowsKernel : facet::Bf16KernelPortable {
    static void run(std::size_t pairs, const std::uint16_t* a, const std::uint16_t* b, float* c,
                    std::size_t ldc, bool accumulate) {
        facet::Bf16KernelPortable::run(pairs, a, b, c, ldc, accumulate);
        std::swap_ranges(c, c + NR, c + ldc);
    }
};

TEST_CASE("bf16 gemm: the first-use check tells a kernel that agrees from one that does not") {
    // The AMX twin sums each pair in the other order: within the check's bound.
    CHECK(facet::detail::bf16_kernels_agree<facet::Bf16KernelAmxReference,
                                            facet::Bf16KernelPortable>());
    CHECK_FALSE(facet::detail::bf16_kernels_agree<SwappedRowsKernel, facet::Bf16KernelPortable>());
    // Auto never takes AMX on a CPU without it; on one with it, the AMX suite below checks.
    if (!facet::bf16_isa_supported(Bf16Isa::Amx)) {
        CHECK_FALSE(facet::detail::amx_passes_check());
        CHECK(facet::bf16_isa() != Bf16Isa::Amx);
    }
}

TEST_CASE("bf16 gemm: operands are rounded to nearest bf16, ties to even") {
    // 1 + 2^-8 lies halfway between bf16's 1 and 1 + 2^-7 (even: 1); 1 + 3 * 2^-8 halfway
    // between 1 + 2^-7 and 1 + 2^-6 (even: 1 + 2^-6); 1 + 2^-8 + 2^-20 is past the half.
    const float a[3] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-20f};
    const float expected[3] = {1.0f, 1.0f + 0x1p-6f, 1.0f + 0x1p-7f};
    const float one = 1.0f;
    for (int t = 0; t < 3; ++t) {
        float c = -5.0f;
        facet::gemm_bf16(Trans::No, Trans::No, 1, 1, 1, &a[t], 1, &one, 1, &c, 1);
        CHECK(c == expected[t]);
    }
    // A subnormal operand counts as zero: 2^-130 * 2^100 would be 2^-30.
    const float subnormal = 0x1p-130f, huge = 0x1p100f;
    float c = -5.0f;
    facet::gemm_bf16(Trans::No, Trans::No, 1, 1, 1, &subnormal, 1, &huge, 1, &c, 1);
    CHECK(c == 0.0f);
    // A pair adds its odd product first: after the first pair the sum is 1, then
    // (1 + -1) + 2^-24 = 2^-24, where the even product first would give (1 + 2^-24) - 1 = 0.
    const float a4[4] = {1.0f, 0.0f, 0x1p-24f, -1.0f}, ones[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    facet::gemm_bf16(Trans::No, Trans::No, 1, 1, 4, a4, 4, ones, 1, &c, 1);
    CHECK(c == 0x1p-24f);
}

TEST_CASE("bf16 gemm: the error against the fp32 product stays within bf16's bound") {
    // Each operand's rounding is at most u = 2^-8 of it, so a product is off by at most
    // (2u + u^2) |a b|; K fp32 additions add at most gamma_K = K v / (1 - K v), v = 2^-24, of
    // the sum of |products|: |C - sum a b| <= ((2u + u^2) + gamma_K (1 + u)^2) sum |a b|.
    facet::Rng rng(3);
    const double u = std::ldexp(1.0, -8), v = std::ldexp(1.0, -24);
    for (const Shape& s : {Shape{16, 96, 288}, Shape{8, 50, 1153, Trans::Yes, Trans::Yes}}) {
        const Operands ops(s, rng, false);
        const std::vector<float> got = ops.run(false);
        const double gamma = double(s.K) * v / (1.0 - double(s.K) * v);
        const double bound_factor = 2 * u + u * u + gamma * (1 + u) * (1 + u);
        double worst = 0;  // the largest error as a share of its bound
        for (std::size_t i = 0; i < s.M; ++i)
            for (std::size_t j = 0; j < s.N; ++j) {
                double exact = 0, magnitude = 0;
                for (std::size_t k = 0; k < s.K; ++k) {
                    exact += double(ops.a(i, k)) * double(ops.b(k, j));
                    magnitude += std::fabs(double(ops.a(i, k)) * double(ops.b(k, j)));
                }
                const double error = std::fabs(double(got[i * ops.ldc + j]) - exact);
                worst = std::max(worst, error / (bound_factor * magnitude));
            }
        INFO(s.M, "x", s.N, "x", s.K, ": worst error ", worst, " of the bound");
        CHECK(worst <= 1.0);
        // And bf16 it is: an fp32 product would be some hundred times more accurate.
        CHECK(worst > 1e-3);
    }
}

TEST_CASE("bf16 gemm: empty products and bad input") {
    std::vector<float> A(6, 1.0f), B(6, 1.0f), C(4, 3.0f);
    facet::gemm_bf16(Trans::No, Trans::No, 2, 2, 0, A.data(), 1, B.data(), 2, C.data(), 2, true);
    CHECK(C == std::vector<float>(4, 3.0f));  // K = 0, accumulate: C unchanged
    facet::gemm_bf16(Trans::No, Trans::No, 2, 2, 0, A.data(), 1, B.data(), 2, C.data(), 2);
    CHECK(C == std::vector<float>(4, 0.0f));  // K = 0: C = 0
    CHECK_THROWS_WITH_AS(
        facet::gemm_bf16(Trans::No, Trans::No, 2, 2, 3, A.data(), 2, B.data(), 2, C.data(), 2),
        doctest::Contains("lda = 2 is smaller than the 3 columns"), facet::Error);
    CHECK_THROWS_WITH_AS(
        facet::gemm_bf16(Trans::No, Trans::No, 2, 2, 3, A.data(), 3, nullptr, 2, C.data(), 2),
        doctest::Contains("B is a null pointer"), facet::Error);
    for (Bf16Isa isa : {Bf16Isa::Avx512Bf16, Bf16Isa::Amx})
        if (!facet::bf16_isa_supported(isa)) {
            facet::Context c = facet::current_context();
            c.bf16_isa = isa;
            const facet::ContextScope scope(c);
            CHECK_THROWS_WITH_AS(facet::bf16_isa(), doctest::Contains(facet::bf16_isa_name(isa)),
                                 facet::Error);  // an error, not a fallback
        }
    CHECK(facet::bf16_isa_supported(facet::bf16_isa()));
}

TEST_SUITE("bf16_isa_avx512_bf16") {
    TEST_CASE("bf16 packing: the AVX-512 paths give the plain loop's bits") {
        if (!facet::cpu_features().avx512f) {
            std::printf("SKIP: this CPU has no AVX-512F\n");
            std::fflush(stdout);
            std::exit(77);
        }
        // Random values, and the ones rounding treats apart: ties both ways, a NaN whose payload
        // lies in the dropped bits, infinities, the largest float (rounds to infinity), a
        // subnormal that rounds up to the smallest normal, signed zeros.
        const float specials[] = {1.0f + 0x1p-8f,
                                  1.0f + 3 * 0x1p-8f,
                                  std::bit_cast<float>(0x7f800001u),
                                  std::bit_cast<float>(0xffc12345u),
                                  INFINITY,
                                  -INFINITY,
                                  3.4028235e38f,
                                  std::bit_cast<float>(0x007fffffu),
                                  -0.0f,
                                  0.0f};
        facet::Rng rng(5);
        std::vector<float> src(200 * 203);
        for (std::size_t i = 0; i < src.size(); ++i)
            src[i] =
                i % 7 == 0 ? specials[(i / 7) % 10] : static_cast<float>(rng.uniform(-3.0, 3.0));
        facet::Context plain = facet::current_context();
        plain.wide_loops = false;  // the packers take the plain loop
        const std::size_t ld = 203;
        for (Trans t : {Trans::No, Trans::Yes})
            for (const auto& shape : {std::pair<std::size_t, std::size_t>{8, 1},
                                      {8, 2},
                                      {5, 17},
                                      {16, 33},
                                      {13, 100},
                                      {50, 31},
                                      {96, 200}}) {
                const std::size_t rows = shape.first, depth = shape.second;
                INFO((t == Trans::Yes ? "transposed " : ""), rows, " x ", depth);
                std::vector<std::uint16_t> fast(2 * 96 * 100 + 2 * 48 * 100), slow(fast.size());
                facet::pack_bf16_a<8>(t, rows, depth, src.data(), ld, fast.data());
                {
                    const facet::ContextScope scope(plain);
                    facet::pack_bf16_a<8>(t, rows, depth, src.data(), ld, slow.data());
                }
                CHECK(fast == slow);
                std::fill(fast.begin(), fast.end(), 1), std::fill(slow.begin(), slow.end(), 1);
                facet::pack_bf16_b<48>(t, depth, rows, src.data(), ld, fast.data());
                {
                    const facet::ContextScope scope(plain);
                    facet::pack_bf16_b<48>(t, depth, rows, src.data(), ld, slow.data());
                }
                CHECK(fast == slow);
            }
    }

    TEST_CASE("bf16 gemm: the AVX512-BF16 kernel equals the definition") {
        skip_unless_supported(Bf16Isa::Avx512Bf16);
        check_isa_matches_definition(Bf16Isa::Avx512Bf16);
    }
}

TEST_SUITE("bf16_isa_amx") {
    TEST_CASE("bf16 gemm: the AMX-BF16 kernel agrees with the definition") {
        skip_unless_supported(Bf16Isa::Amx);
        // Within reordering's error of the manual's order: the hardware may add a tile's
        // products in an order of its own.
        check_isa_matches_definition(Bf16Isa::Amx, {.exact = false, .even_first = true});
    }

    TEST_CASE("bf16 gemm: the AMX-BF16 kernel passes its first-use check, and Auto takes it") {
        skip_unless_supported(Bf16Isa::Amx);
        CHECK(facet::detail::amx_passes_check());
        CHECK(facet::bf16_isa() == Bf16Isa::Amx);
    }
}
