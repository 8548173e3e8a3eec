// Tests of facet::gemm (kernels/gemm.hpp): every micro-kernel, against Eigen's product computed
// in double, over shapes chosen around every block size, all transposes, padded leading
// dimensions, alpha/beta cases, 1 and 2 threads; plus determinism and bad input.
#include <doctest/doctest.h>

// GCC 12 with -march=native reports false -Wmaybe-uninitialized warnings inside Eigen's AVX-512
// product kernels, which the reference below instantiates.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "facet/core/parallel.hpp"
#include "facet/core/random.hpp"
#include "facet/kernels/gemm.hpp"
#include "facet/kernels/system_summary.hpp"

namespace {

using facet::GemmIsa;
using facet::Trans;

/// Restores the default kernel, backend and thread count when a test ends (even by failure).
struct GemmSettingsGuard {
    ~GemmSettingsGuard() {
        facet::set_gemm_isa(GemmIsa::Auto);
        facet::set_gemm_backend(facet::GemmBackend::Facet);
        facet::set_num_threads(0);
    }
};

struct Case {
    std::size_t M, N, K;
    Trans ta = Trans::No, tb = Trans::No;
    std::size_t pad_a = 0, pad_b = 0, pad_c = 0;  // leading dimensions beyond the minimum
    double alpha = 1, beta = 0;
};

std::string describe(const Case& c) {
    return std::to_string(c.M) + "x" + std::to_string(c.N) + "x" + std::to_string(c.K) +
           (c.ta == Trans::Yes ? " A^T" : "") + (c.tb == Trans::Yes ? " B^T" : "") + " pads " +
           std::to_string(c.pad_a) + "," + std::to_string(c.pad_b) + "," + std::to_string(c.pad_c) +
           " alpha " + std::to_string(c.alpha) + " beta " + std::to_string(c.beta);
}

/// Operands of one case, stored with their leading dimensions; the padding is filled with NaN
/// so that a kernel reading past a row's end poisons the result.
template <typename T>
struct Problem {
    Case c;
    std::size_t lda, ldb, ldc;
    std::vector<T> A, B, C0;

    Problem(const Case& cs, facet::Rng& rng) : c(cs) {
        const std::size_t a_rows = c.ta == Trans::No ? c.M : c.K,
                          a_cols = c.ta == Trans::No ? c.K : c.M;
        const std::size_t b_rows = c.tb == Trans::No ? c.K : c.N,
                          b_cols = c.tb == Trans::No ? c.N : c.K;
        lda = a_cols + c.pad_a;
        ldb = b_cols + c.pad_b;
        ldc = c.N + c.pad_c;
        const T nan = std::numeric_limits<T>::quiet_NaN();
        A.assign(a_rows * lda, nan);
        B.assign(b_rows * ldb, nan);
        C0.assign(c.M * ldc, nan);
        for (std::size_t i = 0; i < a_rows; ++i)
            for (std::size_t j = 0; j < a_cols; ++j)
                A[i * lda + j] = static_cast<T>(rng.uniform(-1, 1));
        for (std::size_t i = 0; i < b_rows; ++i)
            for (std::size_t j = 0; j < b_cols; ++j)
                B[i * ldb + j] = static_cast<T>(rng.uniform(-1, 1));
        if (c.beta != 0)  // with beta == 0, C keeps its NaNs: they must not reach the result
            for (std::size_t i = 0; i < c.M; ++i)
                for (std::size_t j = 0; j < c.N; ++j)
                    C0[i * ldc + j] = static_cast<T>(rng.uniform(-1, 1));
    }

    double a(std::size_t i, std::size_t k) const {
        return c.ta == Trans::No ? A[i * lda + k] : A[k * lda + i];
    }
    double b(std::size_t k, std::size_t j) const {
        return c.tb == Trans::No ? B[k * ldb + j] : B[j * ldb + k];
    }

    std::vector<T> run() const {
        std::vector<T> C = C0;
        facet::gemm<T>(c.ta, c.tb, c.M, c.N, c.K, static_cast<T>(c.alpha), A.data(), lda, B.data(),
                       ldb, static_cast<T>(c.beta), C.data(), ldc);
        return C;
    }

    /// The same product through GemmPackedA: A packed first, then multiplied.
    std::vector<T> run_packed() const {
        facet::GemmPackedA<T> packed;
        packed.pack(c.ta, c.M, c.K, A.data(), lda);
        std::vector<T> C = C0;
        packed.multiply(c.tb, c.N, static_cast<T>(c.alpha), B.data(), ldb, static_cast<T>(c.beta),
                        C.data(), ldc);
        return C;
    }

    /// Checks C against Eigen's double-precision product, entry by entry, relative to the
    /// magnitude |alpha| sum_k |a b| + |beta c|: a wrong or missing term shows up as ~1/K of it,
    /// far above the rounding allowance 8 sqrt(K + 2) eps. The padding of C must be untouched.
    /// (The reference is computed on the first call and reused.)
    void verify(const std::vector<T>& C) const {
        if (expected.size() == 0) compute_reference();
        const double tol =
            8.0 * std::sqrt(static_cast<double>(c.K) + 2.0) * std::numeric_limits<T>::epsilon();
        double worst = 0;
        std::size_t bad = 0;
        for (std::size_t i = 0; i < c.M; ++i)
            for (std::size_t j = 0; j < c.N; ++j) {
                const double err =
                    std::abs(static_cast<double>(C[i * ldc + j]) - expected(i, j)) / scale(i, j);
                if (!(err <= tol)) ++bad;  // also counts NaN
                worst = std::max(worst, std::isnan(err) ? INFINITY : err);
            }
        std::size_t padding_changed = 0;
        for (std::size_t i = 0; i < c.M; ++i)
            for (std::size_t j = c.N; j < ldc; ++j) padding_changed += !std::isnan(C[i * ldc + j]);
        INFO(describe(c), ": worst relative error ", worst, " (tolerance ", tol, ")");
        CHECK(bad == 0);
        CHECK(padding_changed == 0);
    }

  private:
    mutable Eigen::MatrixXd expected, scale;

    void compute_reference() const {
        using Md = Eigen::MatrixXd;
        Md opA(c.M, c.K), opB(c.K, c.N);
        for (std::size_t i = 0; i < c.M; ++i)
            for (std::size_t k = 0; k < c.K; ++k) opA(i, k) = a(i, k);
        for (std::size_t k = 0; k < c.K; ++k)
            for (std::size_t j = 0; j < c.N; ++j) opB(k, j) = b(k, j);
        Md c0 = Md::Zero(c.M, c.N);
        if (c.beta != 0)
            for (std::size_t i = 0; i < c.M; ++i)
                for (std::size_t j = 0; j < c.N; ++j) c0(i, j) = C0[i * ldc + j];
        expected = c.alpha * (opA * opB) + c.beta * c0;
        scale = (std::abs(c.alpha) * (opA.cwiseAbs() * opB.cwiseAbs()) +
                 std::abs(c.beta) * c0.cwiseAbs())
                    .array() +
                1e-30;
    }
};

/// The kernels this CPU can run; the others are reported and skipped.
std::vector<GemmIsa> runnable_isas() {
    std::vector<GemmIsa> isas;
    for (GemmIsa isa : {GemmIsa::Avx512, GemmIsa::Avx2, GemmIsa::Portable}) {
        if (facet::gemm_isa_supported(isa))
            isas.push_back(isa);
        else
            MESSAGE("skipping the ", facet::gemm_isa_name(isa),
                    " kernel: not supported by this CPU/build");
    }
    return isas;
}

/// Shapes around the block sizes of the kernel in use: 1, MR +- 1, NR +- 1, KC +- 1, NC +- 1,
/// MC + 1, plus odd sizes; each with a transpose combination, padding and alpha/beta that
/// rotate so that every combination meets many shapes.
template <typename T, typename Kernel>
std::vector<Case> boundary_cases() {
    const facet::detail::GemmBlockSizes& blocking = facet::detail::gemm_blocking<T>();
    const std::size_t MR = Kernel::MR, NR = Kernel::NR, KC = blocking.kc, NC = blocking.nc,
                      MC = blocking.mc;
    const std::vector<std::size_t> ms = {1, 2, MR - 1, MR, MR + 1, 2 * MR + 3, 37};
    const std::vector<std::size_t> ns = {1, 3, NR - 1, NR, NR + 1, 2 * NR + 5, 61};
    const std::vector<std::size_t> ks = {1, 2, 7, 33};
    std::vector<Case> cases;
    const Trans T_[2] = {Trans::No, Trans::Yes};
    const double alphas[] = {1.0, -0.5, 2.0, 1.0};
    const double betas[] = {0.0, 0.0, 1.0, -1.5};
    std::size_t n = 0;
    auto add = [&](std::size_t M, std::size_t N, std::size_t K) {
        Case c{M, N, K};
        c.ta = T_[n % 2];
        c.tb = T_[(n / 2) % 2];
        c.pad_a = (n % 3 == 0) ? 0 : 5;
        c.pad_b = (n % 5 == 1) ? 0 : 3;
        c.pad_c = (n % 7 < 3) ? 0 : 2;
        c.alpha = alphas[n % 4];
        c.beta = betas[(n / 4) % 4];
        cases.push_back(c);
        ++n;
    };
    for (std::size_t M : ms)
        for (std::size_t N : ns) add(M, N, ks[n % ks.size()]);
    for (std::size_t K : {KC - 1, KC, KC + 1, 2 * KC + 1}) add(MR + 1, NR + 3, K);
    for (std::size_t N : {NC - 1, NC, NC + 1}) add(MR - 1, N, 9);
    add(MC + 1, 5, 3);                      // more rows than one packed A block
    add(2 * MR + 1, 2 * NC + 17, KC + 40);  // several blocks along every dimension at once
    return cases;
}

template <typename T>
void check_all_cases(GemmIsa isa) {
    facet::Rng rng(2024);
    std::vector<Case> cases;
    switch (isa) {
        case GemmIsa::Avx512:
            cases = boundary_cases<T, facet::GemmKernelAvx512<T>>();
            break;
        case GemmIsa::Avx2:
            cases = boundary_cases<T, facet::GemmKernelAvx2<T>>();
            break;
        default:
            cases = boundary_cases<T, facet::GemmKernelPortable<T>>();
    }
    // Random shapes on top of the systematic ones.
    for (int i = 0; i < 12; ++i) {
        Case c{1 + rng.below(50), 1 + rng.below(120), 1 + rng.below(90)};
        c.ta = rng.below(2) ? Trans::Yes : Trans::No;
        c.tb = rng.below(2) ? Trans::Yes : Trans::No;
        c.pad_a = rng.below(4);
        c.pad_b = rng.below(4);
        c.pad_c = rng.below(4);
        c.alpha = rng.uniform(-2, 2);
        c.beta = rng.below(2) ? 0.0 : rng.uniform(-2, 2);
        cases.push_back(c);
    }
    for (const Case& c : cases) {
        const Problem<T> problem(c, rng);
        for (int threads : {1, 2}) {
            CAPTURE(threads);
            facet::set_num_threads(threads);
            const std::vector<T> C = problem.run();
            problem.verify(C);
            // A packed once (GemmPackedA) must give exactly gemm()'s result.
            const std::vector<T> packed = problem.run_packed();
            INFO(describe(c), " through GemmPackedA");
            CHECK(std::memcmp(C.data(), packed.data(), C.size() * sizeof(T)) == 0);
        }
    }
}

/// Every case with every kernel this CPU runs: on 1 thread against Eigen, on 2 threads the same
/// bits, and (with `packed`) through GemmPackedA the same bits too.
template <typename T>
void check_each_kernel_one_and_two_threads(const std::vector<Case>& cases, facet::Rng& rng,
                                           bool packed) {
    for (GemmIsa isa : runnable_isas()) {
        facet::set_gemm_isa(isa);
        CAPTURE(facet::gemm_isa_name(isa));
        for (const Case& c : cases) {
            const Problem<T> problem(c, rng);
            facet::set_num_threads(1);
            const std::vector<T> one = problem.run();
            problem.verify(one);
            facet::set_num_threads(2);
            const std::vector<T> two = problem.run();
            INFO(describe(c));
            CHECK(std::memcmp(one.data(), two.data(), one.size() * sizeof(T)) == 0);
            if (packed) {
                const std::vector<T> by_packed = problem.run_packed();
                CHECK(std::memcmp(one.data(), by_packed.data(), one.size() * sizeof(T)) == 0);
            }
        }
    }
}

}  // namespace

TEST_CASE_TEMPLATE("gemm matches Eigen for every kernel, shape class, transpose and thread count",
                   T, float, double) {
    GemmSettingsGuard guard;
    for (GemmIsa isa : runnable_isas()) {
        facet::set_gemm_isa(isa);
        CAPTURE(facet::gemm_isa_name(isa));
        REQUIRE(facet::gemm_isa() == isa);
        check_all_cases<T>(isa);
    }
}

TEST_CASE_TEMPLATE("one-row products (a dense layer at batch 1) match Eigen for every kernel", T,
                   float, double) {
    // M == 1 with B transposed takes gemm_single_row's dot products; K covers each kernel's
    // vector loop, its tail and its masked remainder, N enough columns for two threads.
    GemmSettingsGuard guard;
    facet::Rng rng(77);
    std::vector<Case> cases;
    std::size_t n = 0;
    for (std::size_t K : {1, 3, 8, 15, 16, 17, 63, 64, 65, 100, 4608})
        for (std::size_t N : {1, 7, 256}) {
            Case c{1, N, K, n % 2 ? Trans::Yes : Trans::No, Trans::Yes};
            c.pad_a = n % 3 == 0 ? 0 : 4;  // with A^T, a padded column is strided
            c.pad_b = n % 2 ? 5 : 0;
            c.pad_c = n % 4 == 1 ? 3 : 0;
            c.alpha = n % 4 == 2 ? -0.5 : 1.0;
            c.beta = n % 5 == 3 ? 0.75 : 0.0;
            cases.push_back(c);
            ++n;
        }
    check_each_kernel_one_and_two_threads<T>(cases, rng, false);
}

TEST_CASE_TEMPLATE("thin products with long rows (dot products of rows) match Eigen", T, float,
                   double) {
    // A * B^T with M, N <= 64 and K >= 128 goes by dot products of rows where the kernel has them
    // (AVX-512 and AVX2, float; see gemm_dot_rows_applies): partial 4 x 4 tiles on both sides, K
    // with and without a masked remainder (the rows' NaN padding must not be read), alpha and beta,
    // and shapes just outside the rule. Every kernel; 1 and 2 threads give the same bits, and so
    // does GemmPackedA.
    GemmSettingsGuard guard;
    facet::Rng rng(88);
    std::vector<Case> cases;
    std::size_t n = 0;
    for (std::size_t M : {1, 3, 4, 5, 32, 63, 64, 65})
        for (std::size_t N : {1, 2, 4, 9, 32, 64, 66}) {
            const std::size_t ks[] = {128, 129, 143, 576, 2304, 127};
            Case c{M, N, ks[n % 6], Trans::No, Trans::Yes};
            c.pad_a = n % 3 ? 5 : 0;
            c.pad_b = n % 2 ? 0 : 3;
            c.pad_c = n % 4 == 1 ? 2 : 0;
            c.alpha = n % 4 == 2 ? -0.5 : 1.0;
            c.beta = n % 5 == 3 ? 0.75 : 0.0;
            cases.push_back(c);
            ++n;
        }
    std::size_t dot_cases = 0, avx2_dot_cases = 0;  // the AVX-512 and AVX2 kernels' bounds
    for (const Case& c : cases) {
        dot_cases += facet::detail::gemm_dot_rows_applies<T>(c.ta, c.tb, c.M, c.N, c.K, 32);
        avx2_dot_cases += facet::detail::gemm_dot_rows_applies<T>(c.ta, c.tb, c.M, c.N, c.K, 24);
    }
    CHECK(dot_cases > 20);
    CHECK(avx2_dot_cases > 15);
    check_each_kernel_one_and_two_threads<T>(cases, rng, true);
}

TEST_CASE_TEMPLATE("gemm is deterministic: repeated calls and 1 vs 2 threads agree bit for bit", T,
                   float, double) {
    GemmSettingsGuard guard;
    facet::Rng rng(5);
    // Wide and tall shapes (each split a different way over threads), and one with k-slices.
    for (const Case& c : {Case{16, 1000, 50}, Case{300, 20, 40, Trans::Yes},
                          Case{40, 100, 900, Trans::No, Trans::Yes}}) {
        const Problem<T> problem(c, rng);
        for (GemmIsa isa : runnable_isas()) {
            facet::set_gemm_isa(isa);
            facet::set_num_threads(1);
            const std::vector<T> one = problem.run();
            facet::set_num_threads(2);
            const std::vector<T> two = problem.run(), again = problem.run();
            CAPTURE(facet::gemm_isa_name(isa));
            INFO(describe(c));
            CHECK(std::memcmp(one.data(), two.data(), one.size() * sizeof(T)) == 0);
            CHECK(std::memcmp(two.data(), again.data(), two.size() * sizeof(T)) == 0);
        }
    }
}

TEST_CASE("B read in place (few rows of A, whole tiles) gives the packed path's bits") {
    GemmSettingsGuard guard;
    if (!facet::cpu_features().avx512f) {
        MESSAGE("skipped: only the AVX-512 kernel reads B in place (run_strided)");
        return;
    }
    facet::set_gemm_isa(GemmIsa::Avx512);
    // gemm_blocked reads B in place when op(B) is B itself, M <= 128 is a multiple of MR = 8 and
    // N of NR = 48 (and B is small for M > 32; all of these are); with one column more, the same
    // product packs B. Each element is the same
    // k-ordered sum either way, so the first N columns must agree bit for bit: through gemm()
    // and GemmPackedA, at 1 and 2 threads, K in one slice and in two (K > KC, 384 for a 48 KiB L1),
    // beta 0 and not. The NaN padding of B's rows must not be read.
    facet::Rng rng(31);
    for (Case c : {Case{32, 145, 32}, Case{8, 49, 9}, Case{128, 97, 128}, Case{64, 49, 500},
                   Case{128, 289, 64}}) {
        c.pad_b = 3;
        c.pad_c = 2;
        c.alpha = c.M == 64 ? -0.5 : 1.0;
        c.beta = c.M == 128 ? 0.75 : 0.0;
        const Problem<float> wide(c, rng);  // N = 48 k + 1: packed
        const std::size_t N = c.N - 1;      // in place
        for (int threads : {1, 2}) {
            facet::set_num_threads(threads);
            const std::vector<float> packed = wide.run();
            std::vector<float> in_place = wide.C0, in_place_a = wide.C0;
            facet::gemm<float>(Trans::No, Trans::No, c.M, N, c.K, float(c.alpha), wide.A.data(),
                               wide.lda, wide.B.data(), wide.ldb, float(c.beta), in_place.data(),
                               wide.ldc);
            facet::GemmPackedA<float> a;
            a.pack(Trans::No, c.M, c.K, wide.A.data(), wide.lda);
            a.multiply(Trans::No, N, float(c.alpha), wide.B.data(), wide.ldb, float(c.beta),
                       in_place_a.data(), wide.ldc);
            CAPTURE(threads);
            INFO(describe(c));
            std::size_t differ = 0;
            for (std::size_t i = 0; i < c.M; ++i)
                for (std::size_t j = 0; j < N; ++j) {
                    const std::size_t at = i * wide.ldc + j;
                    differ += std::memcmp(&packed[at], &in_place[at], sizeof(float)) != 0;
                    differ += std::memcmp(&packed[at], &in_place_a[at], sizeof(float)) != 0;
                }
            CHECK(differ == 0);
            wide.verify(packed);  // and the packed product itself is right
        }
    }
}

TEST_CASE("B is read in place for up to 32 rows at any width, up to 128 while B fits half of L2") {
    using facet::detail::gemm_reads_b_in_place;
    const std::size_t l2 = 2 * 1024 * 1024;
    // im2col's whole-batch product of the first layer: 32 rows, B of 170 MB.
    CHECK(gemm_reads_b_in_place<float, 8, 48>(32, 147456, 288, l2));
    // 64 and 128 rows with a wide B: packed (a k-slice of B is 42 MB and 14 MB).
    CHECK_FALSE(gemm_reads_b_in_place<float, 8, 48>(64, 36864, 288, l2));
    CHECK_FALSE(gemm_reads_b_in_place<float, 8, 48>(128, 9216, 384, l2));
    // Winograd's products (C x 144 tiles): in place up to 128 rows, not beyond.
    CHECK(gemm_reads_b_in_place<float, 8, 48>(128, 144, 128, l2));
    CHECK_FALSE(gemm_reads_b_in_place<float, 8, 48>(136, 144, 128, l2));
    // The same B slice is packed when L2 is too small to hold it twice.
    CHECK_FALSE(gemm_reads_b_in_place<float, 8, 48>(128, 144, 128, 128 * 1024));
    // Partial tiles are never read in place.
    CHECK_FALSE(gemm_reads_b_in_place<float, 8, 48>(32, 145, 32, l2));
    CHECK_FALSE(gemm_reads_b_in_place<float, 8, 48>(30, 144, 32, l2));
}

TEST_CASE("GemmPackedA: one packing, many right-hand sides; a changed ISA or backend falls back") {
    GemmSettingsGuard guard;
    facet::Rng rng(8);
    // 130 rows (a partial micro-panel) and K = 800: several k-slices of the packed A.
    const Case c{130, 70, 800, Trans::Yes, Trans::No, 3, 1, 2, 1.0, 0.0};
    const Problem<float> first(c, rng), second(c, rng);
    facet::GemmPackedA<float> packed;
    packed.pack(c.ta, c.M, c.K, first.A.data(), first.lda);
    CHECK(packed.rows() == 130);
    CHECK(packed.depth() == 800);
    for (int threads : {1, 2}) {
        facet::set_num_threads(threads);
        for (const auto* rhs : {&first, &second}) {  // A of `first` times each B
            std::vector<float> C = rhs->C0;
            packed.multiply(Trans::No, c.N, 1.0f, rhs->B.data(), rhs->ldb, 0.0f, C.data(), c.N + 2);
            Problem<float> expected = *rhs;
            expected.A = first.A;
            expected.verify(C);
        }
    }
    // Packed for one kernel, used after another was selected: the product is still right.
    for (GemmIsa isa : runnable_isas()) {
        facet::set_gemm_isa(isa);
        std::vector<float> C = first.C0;
        packed.multiply(Trans::No, c.N, 1.0f, first.B.data(), first.ldb, 0.0f, C.data(), c.N + 2);
        CAPTURE(facet::gemm_isa_name(isa));
        first.verify(C);
    }
    facet::set_gemm_isa(GemmIsa::Auto);
#if defined(FACET_HAVE_EIGEN)
    facet::set_gemm_backend(facet::GemmBackend::Eigen);
    std::vector<float> C = first.C0;
    packed.multiply(Trans::No, c.N, 1.0f, first.B.data(), first.ldb, 0.0f, C.data(), c.N + 2);
    first.verify(C);
    facet::set_gemm_backend(facet::GemmBackend::Facet);
#endif
    // Bad operands are named, as by gemm().
    std::vector<float> out(130 * 70);
    CHECK_THROWS_WITH_AS(
        packed.multiply(Trans::No, 70, 1.0f, first.B.data(), 60, 0.0f, out.data(), 70),
        doctest::Contains("ldb"), facet::Error);
    CHECK_THROWS_WITH_AS(packed.pack(Trans::No, 10, 20, first.A.data(), 5),
                         doctest::Contains("lda"), facet::Error);
    CHECK_THROWS_AS(packed.pack(Trans::No, 10, 20, nullptr, 20), facet::Error);
}

TEST_CASE_TEMPLATE("gemm degenerate sizes and alpha == 0", T, float, double) {
    GemmSettingsGuard guard;
    const T nan = std::numeric_limits<T>::quiet_NaN();
    std::vector<T> C(6, T(2));
    SUBCASE("M or N == 0 touches nothing, null pointers allowed") {
        facet::gemm<T>(Trans::No, Trans::No, 0, 3, 4, T(1), nullptr, 4, nullptr, 3, T(0), nullptr,
                       3);
        facet::gemm<T>(Trans::No, Trans::No, 2, 0, 4, T(1), nullptr, 4, nullptr, 0, T(0), C.data(),
                       3);
        CHECK(C == std::vector<T>(6, T(2)));
    }
    SUBCASE("K == 0 gives C = beta * C, without reading A or B") {
        facet::gemm<T>(Trans::No, Trans::No, 2, 3, 0, T(1), nullptr, 0, nullptr, 3, T(-0.5),
                       C.data(), 3);
        CHECK(C == std::vector<T>(6, T(-1)));
        std::fill(C.begin(), C.end(), nan);
        facet::gemm<T>(Trans::No, Trans::No, 2, 3, 0, T(1), nullptr, 0, nullptr, 3, T(0), C.data(),
                       3);
        CHECK(C == std::vector<T>(6, T(0)));
    }
    SUBCASE("alpha == 0 does not read A or B (BLAS convention): NaNs there do not propagate") {
        const std::vector<T> A(8, nan), B(12, nan);
        facet::gemm<T>(Trans::No, Trans::No, 2, 3, 4, T(0), A.data(), 4, B.data(), 3, T(3),
                       C.data(), 3);
        CHECK(C == std::vector<T>(6, T(6)));
    }
}

TEST_CASE("gemm inside a parallel region runs single-threaded and stays correct") {
    GemmSettingsGuard guard;
    facet::set_num_threads(2);
    facet::Rng rng(9);
    const Problem<float> p0(Case{33, 200, 70}, rng),
        p1(Case{20, 150, 90, Trans::Yes, Trans::Yes}, rng);
    std::vector<float> r0, r1;
    facet::parallel_for(2, [&](std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) (i == 0 ? r0 : r1) = (i == 0 ? p0 : p1).run();
    });
    p0.verify(r0);
    p1.verify(r1);
}

TEST_CASE("the Eigen backend computes the same product through the same call") {
    GemmSettingsGuard guard;
    facet::Rng rng(13);
    facet::set_gemm_backend(facet::GemmBackend::Eigen);
    CHECK(facet::gemm_backend() == facet::GemmBackend::Eigen);
    for (const Case& c : {Case{17, 29, 31, Trans::Yes, Trans::No, 1, 2, 3, 0.5, 0.0},
                          Case{8, 5, 13, Trans::No, Trans::Yes, 0, 0, 1, -1.0, 2.0}}) {
        const Problem<double> p(c, rng);
        p.verify(p.run());
    }
}

TEST_CASE("set_gemm_isa reports what it selects and rejects what the CPU lacks") {
    GemmSettingsGuard guard;
    facet::set_gemm_isa(GemmIsa::Portable);
    CHECK(facet::gemm_isa() == GemmIsa::Portable);
    facet::set_gemm_isa(GemmIsa::Auto);
    CHECK(facet::gemm_isa() != GemmIsa::Auto);
    CHECK(facet::gemm_isa_supported(facet::gemm_isa()));
    for (GemmIsa isa : {GemmIsa::Avx512, GemmIsa::Avx2})
        if (!facet::gemm_isa_supported(isa))
            CHECK_THROWS_AS(facet::set_gemm_isa(isa), facet::Error);
}

TEST_CASE("gemm rejects bad input with a clear facet::Error") {
    std::vector<float> A(64, 1.0f), B(64, 1.0f), C(64, 0.0f);
    const auto call = [&](std::size_t M, std::size_t N, std::size_t K, const float* a,
                          std::size_t lda, const float* b, std::size_t ldb, float* c,
                          std::size_t ldc, Trans ta = Trans::No, Trans tb = Trans::No) {
        facet::gemm<float>(ta, tb, M, N, K, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
    };
    CHECK_NOTHROW(call(4, 4, 4, A.data(), 4, B.data(), 4, C.data(), 4));
    CHECK_THROWS_WITH_AS(call(4, 4, 4, nullptr, 4, B.data(), 4, C.data(), 4),
                         doctest::Contains("A is a null pointer"), facet::Error);
    CHECK_THROWS_WITH_AS(call(4, 4, 4, A.data(), 4, nullptr, 4, C.data(), 4),
                         doctest::Contains("B is a null pointer"), facet::Error);
    CHECK_THROWS_WITH_AS(call(4, 4, 4, A.data(), 4, B.data(), 4, nullptr, 4),
                         doctest::Contains("C is a null pointer"), facet::Error);
    CHECK_THROWS_WITH_AS(call(4, 4, 5, A.data(), 4, B.data(), 4, C.data(), 4),
                         doctest::Contains("lda = 4"), facet::Error);
    // Transposed A is stored K x M, so lda must cover M (here 6), not K.
    CHECK_NOTHROW(call(3, 4, 5, A.data(), 3, B.data(), 4, C.data(), 4, Trans::Yes));
    CHECK_THROWS_WITH_AS(call(6, 4, 2, A.data(), 5, B.data(), 4, C.data(), 4, Trans::Yes),
                         doctest::Contains("lda = 5"), facet::Error);
    CHECK_THROWS_WITH_AS(call(4, 4, 4, A.data(), 4, B.data(), 3, C.data(), 4),
                         doctest::Contains("ldb = 3"), facet::Error);
    CHECK_THROWS_WITH_AS(call(4, 4, 4, A.data(), 4, B.data(), 4, C.data(), 3),
                         doctest::Contains("ldc = 3"), facet::Error);
    // Sizes whose extent (rows - 1) * ld + cols overflows size_t, caught before any access.
    const std::size_t huge = std::numeric_limits<std::size_t>::max() / 2;
    CHECK_THROWS_WITH_AS(call(4, 4, 4, A.data(), huge, B.data(), 4, C.data(), 4),
                         doctest::Contains("overflows"), facet::Error);
    CHECK_THROWS_WITH_AS(call(huge, 4, 4, A.data(), 4, B.data(), 4, C.data(), 4),
                         doctest::Contains("overflows"), facet::Error);
    CHECK_THROWS_WITH_AS(call(4, 4, huge, A.data(), huge, B.data(), 4, C.data(), 4),
                         doctest::Contains("overflows"), facet::Error);
}

TEST_CASE("the blocking follows the caches: today's sizes for 48 KiB / 1 MiB, larger for 2 MiB") {
    using facet::detail::gemm_block_sizes;
    const auto zen5 = gemm_block_sizes(48 * 1024, 1024 * 1024, sizeof(float));
    CHECK(zen5.kc == 384);
    CHECK(zen5.nc == 384);
    CHECK(zen5.mc == 1536);
    const auto zen5_double = gemm_block_sizes(48 * 1024, 1024 * 1024, sizeof(double));
    CHECK(zen5_double.kc == 192);
    CHECK(zen5_double.nc == 384);
    const auto big_l2 = gemm_block_sizes(48 * 1024, 2048 * 1024, sizeof(float));
    CHECK(big_l2.kc == 384);
    CHECK(big_l2.nc == 768);
    const auto small = gemm_block_sizes(32 * 1024, 256 * 1024, sizeof(float));
    CHECK(small.kc == 256);
    for (const auto& b : {zen5, zen5_double, big_l2, small,
                          gemm_block_sizes(1, 1, sizeof(float)),  // nothing answered
                          gemm_block_sizes(1u << 30, 1u << 30, sizeof(float))}) {  // absurd
        CHECK(b.kc >= 64);
        CHECK(b.kc <= 2048);
        CHECK(b.nc % 48 == 0);  // every kernel's NR divides it
        CHECK(b.nc >= 48);
        CHECK(b.mc % 24 == 0);  // every kernel's MR divides it
    }
    // The packed B block fits in the L2 it was sized for.
    CHECK(big_l2.kc * big_l2.nc * sizeof(float) <= 2048u * 1024u);
    CHECK(zen5.kc * zen5.nc * sizeof(float) <= 1024u * 1024u);
}

TEST_CASE("detected CPU features and caches are consistent") {
    const facet::CpuFeatures& f = facet::cpu_features();
    // Every AVX-512 extension needs AVX-512 Foundation, which needs AVX2; AMX's kinds need tiles.
    CHECK((!f.avx512f || f.avx2_fma));
    CHECK((!f.avx512_bf16 || f.avx512f));
    CHECK((!f.avx512_vnni || f.avx512f));
    CHECK((!f.avx512_fp16 || f.avx512f));
    CHECK((!f.avx_vnni || f.avx2_fma));
    CHECK((!f.amx_bf16 || f.amx_tile));
    CHECK((!f.amx_int8 || f.amx_tile));
    const facet::CacheSizes& c = facet::cpu_caches();
    CHECK(c.l1d >= 4096);
    CHECK(c.l2 >= c.l1d);
    CHECK(c.l3 > 0);
    CHECK(!facet::cpu_model().empty());
    const auto& blocking = facet::detail::gemm_blocking<float>();
    CHECK(blocking.kc > 0);
    CHECK(blocking.nc > 0);
    const std::string summary = facet::system_summary();
    CHECK(summary.find("cpu: " + facet::cpu_model() + "\n") != std::string::npos);
    CHECK(summary.find("gemm blocking (float): KC " + std::to_string(blocking.kc)) !=
          std::string::npos);
    CHECK(summary.find(std::string("gemm kernel: ") + facet::gemm_isa_name(facet::gemm_isa())) !=
          std::string::npos);
    CHECK(summary.find(std::string("bf16 kernel: ") + facet::bf16_isa_name(facet::bf16_isa())) !=
          std::string::npos);
}
