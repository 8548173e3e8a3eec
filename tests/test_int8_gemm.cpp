// Tests of the int8 GEMM (kernels/int8_gemm.hpp): each micro-kernel against the one-multiply-add-
// at-a-time definition, bit for bit, on edge sizes (1, odd, around the register tiles and the
// k-slice, K not a multiple of 4), on the extreme operands (activations 127, weights +-127), with
// 1 and 2 threads; and bad input. The cases of an instruction set run as a ctest of their own
// (test_int8_gemm_<isa>), which reports "Skipped" on a CPU without it (exit code 77).
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "facet/core/parallel.hpp"
#include "facet/core/random.hpp"
#include "facet/kernels/int8_gemm.hpp"

namespace {

using facet::Int8Isa;

struct Shape3 {
    std::size_t M, N, K;
};

/// Sizes around every kernel's MR (4, 6, 8), NR (8, 16, 32), the 512-deep k-slice and the
/// 16-panel row block, with K of every remainder modulo 4.
const std::vector<Shape3>& shapes() {
    static const std::vector<Shape3> s = {
        {1, 1, 1},     {1, 7, 3},      {2, 1, 5},    {3, 5, 2},      {4, 8, 4},   {5, 17, 9},
        {6, 16, 13},   {7, 33, 31},    {8, 32, 64},  {9, 15, 6},     {13, 47, 7}, {17, 3, 513},
        {33, 31, 517}, {1, 256, 1030}, {130, 9, 27}, {150, 40, 100}, {65, 64, 1}};
    return s;
}

/// Runs every shape with `isa`, with random operands and with the extreme ones, padded row
/// strides, and 1 and 2 threads; every element must equal the definition's.
void check_isa_matches_reference(Int8Isa isa) {
    facet::Rng rng(7);
    for (const Shape3& s : shapes())
        for (int extreme = 0; extreme < 2; ++extreme) {
            const std::size_t lda = s.K + 3, ldw = s.K + 1, ldc = s.N + 2;
            std::vector<std::uint8_t> A(s.M * lda, 200);  // padding beyond 127: must not be read
            std::vector<std::int8_t> W(s.N * ldw, -128);
            for (std::size_t i = 0; i < s.M; ++i)
                for (std::size_t k = 0; k < s.K; ++k)
                    A[i * lda + k] = extreme ? 127 : static_cast<std::uint8_t>(rng.below(128));
            for (std::size_t j = 0; j < s.N; ++j)
                for (std::size_t k = 0; k < s.K; ++k)
                    W[j * ldw + k] = static_cast<std::int8_t>(extreme ? ((j + k) % 2 ? 127 : -127)
                                                                      : int(rng.below(255)) - 127);
            if (extreme)  // one all-positive row: the largest sum, 127 * 127 * K
                for (std::size_t k = 0; k < s.K; ++k) W[k] = 127;
            std::vector<std::int32_t> expected(s.M * ldc, -1);
            facet::int8_gemm_reference(s.M, s.N, s.K, A.data(), lda, W.data(), ldw, expected.data(),
                                       ldc);
            for (int threads : {1, 2}) {
                facet::set_num_threads(threads);
                std::vector<std::int32_t> C(s.M * ldc, -1);
                facet::int8_gemm(s.M, s.N, s.K, A.data(), lda, W.data(), ldw, C.data(), ldc, isa);
                INFO(facet::int8_isa_name(isa), " ", s.M, "x", s.N, "x", s.K,
                     extreme ? " extreme" : " random", " threads ", threads);
                CHECK(C == expected);  // padding columns of C stay -1 in both
            }
            facet::set_num_threads(0);
        }
}

/// The cases of an ISA the CPU lacks end the process with 77, which ctest reports as skipped.
void skip_unless_supported(Int8Isa isa) {
    if (facet::int8_isa_supported(isa)) return;
    std::printf("SKIP: this CPU has no %s\n", facet::int8_isa_name(isa));
    std::fflush(stdout);
    std::exit(77);
}

}  // namespace

TEST_CASE("int8 gemm: the portable kernel equals the definition") {
    check_isa_matches_reference(Int8Isa::Portable);
}

TEST_CASE("int8 gemm: Auto picks a supported kernel and gives the definition's bits") {
    CHECK(facet::int8_isa_supported(facet::int8_isa()));
    const std::vector<std::uint8_t> A = {1, 2, 3, 127, 0};
    const std::vector<std::int8_t> W = {-127, 5, 7, 1, 2, 3, 4, 5, 6, 127};
    std::vector<std::int32_t> C(2), expected(2);
    facet::int8_gemm(1, 2, 5, A.data(), 5, W.data(), 5, C.data(), 2);
    facet::int8_gemm_reference(1, 2, 5, A.data(), 5, W.data(), 5, expected.data(), 2);
    CHECK(C == expected);
    CHECK(expected[0] == -127 + 10 + 21 + 127 + 0);
}

TEST_CASE("int8 gemm: bad input is refused") {
    std::vector<std::uint8_t> A(8, 1);
    std::vector<std::int8_t> W(8, 1);
    std::vector<std::int32_t> C(4);
    A[3] = 128;  // an activation above 127
    CHECK_THROWS_WITH_AS(facet::int8_gemm(2, 2, 4, A.data(), 4, W.data(), 4, C.data(), 2),
                         doctest::Contains("above 127"), facet::Error);
    A[3] = 1;
    W[5] = -128;  // outside the symmetric weight range
    CHECK_THROWS_WITH_AS(facet::int8_gemm(2, 2, 4, A.data(), 4, W.data(), 4, C.data(), 2),
                         doctest::Contains("-128"), facet::Error);
    W[5] = 1;
    const facet::Int8PackedWeights packed = facet::pack_int8_weights(2, 4, W.data(), 4);
    CHECK_THROWS_WITH_AS(facet::int8_gemm(2, 3, 4, A.data(), 4, packed, C.data(), 3),
                         doctest::Contains("packed as 2 x 4"), facet::Error);
    CHECK_THROWS_AS(facet::pack_int8_weights(1, facet::int8_gemm_max_k + 1, W.data(),
                                             facet::int8_gemm_max_k + 1),
                    facet::Error);
}

TEST_CASE("int8 gemm: a context asking for a missing ISA is an error, not a fallback") {
    for (Int8Isa isa : {Int8Isa::Avx512Vnni, Int8Isa::AvxVnni, Int8Isa::Avx2}) {
        if (facet::int8_isa_supported(isa)) continue;
        facet::Context c = facet::current_context();
        c.int8_isa = isa;
        const facet::ContextScope scope(c);
        CHECK_THROWS_AS(facet::int8_isa(), facet::Error);
    }
}

TEST_SUITE("int8_isa_avx2") {
    TEST_CASE("int8 gemm: the AVX2 kernel equals the definition") {
        skip_unless_supported(Int8Isa::Avx2);
        check_isa_matches_reference(Int8Isa::Avx2);
    }
}
TEST_SUITE("int8_isa_avx_vnni") {
    TEST_CASE("int8 gemm: the AVX-VNNI kernel equals the definition") {
        skip_unless_supported(Int8Isa::AvxVnni);
        check_isa_matches_reference(Int8Isa::AvxVnni);
    }
}
TEST_SUITE("int8_isa_avx512_vnni") {
    TEST_CASE("int8 gemm: the AVX-512 VNNI kernel equals the definition") {
        skip_unless_supported(Int8Isa::Avx512Vnni);
        check_isa_matches_reference(Int8Isa::Avx512Vnni);
    }
}
