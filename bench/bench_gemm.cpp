// bench_gemm.cpp — GEMM throughput of facet against Eigen and OpenBLAS on the shapes of the
// reference model fer-cnn-s (examples/fer/model_zoo.hpp), at 1 and 2 threads. Tables and the
// commands that print them: docs/benchmarks.md (scripts/bench_tables.sh gemm).
//
// Names: BM_Sgemm/<library>/t<threads>/<M>x<N>x<K>_<op(A)><op(B)>, e.g.
// BM_Sgemm/facet/t1/32x147456x288_NN. Counters: GFLOPS (2*M*N*K per second) and max_err, the
// largest relative error of sampled entries of C against a double-precision dot product (as in
// BLIS's test driver: a fast but wrong kernel must never look good).
// BM_Bf16gemm/facet/t<threads>/<shape>: facet::gemm_bf16 on the same operands (bf16 operands, fp32
// sums; its max_err is bf16's, about 1e-3), skipped on a CPU without AVX512-BF16;
// BM_Bf16gemm/facet-amx/...: the same through the AMX-BF16 kernel, skipped on a CPU without AMX.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

#include <facet/facet.hpp>

#if defined(FACET_HAVE_EIGEN)
#include <Eigen/Core>
#endif
#if defined(FACET_HAVE_OPENBLAS)
#include <cblas.h>
#endif

namespace {

using facet::Trans;

struct GemmShape {
    std::size_t M, N, K;
    Trans ta, tb;
};

// (M, N, K) of fer-cnn-s's convolutions as im2col + GEMM, with the transposes the convolution layer
// uses: forward Y = W * col; backward weights dW = dY * col^T; backward data dcol = W^T * dY.
const std::vector<GemmShape> reference_shapes = {
    // per image, forward
    {32, 2304, 288, Trans::No, Trans::No},
    {64, 576, 288, Trans::No, Trans::No},
    {64, 576, 576, Trans::No, Trans::No},
    {128, 144, 576, Trans::No, Trans::No},
    {128, 144, 1152, Trans::No, Trans::No},
    // whole batch of 64, forward
    {32, 147456, 288, Trans::No, Trans::No},
    {64, 36864, 576, Trans::No, Trans::No},
    {128, 9216, 1152, Trans::No, Trans::No},
    // backward weights (batch 64)
    {32, 288, 147456, Trans::No, Trans::Yes},
    {64, 576, 36864, Trans::No, Trans::Yes},
    {128, 1152, 9216, Trans::No, Trans::Yes},
    // backward data (per image)
    {288, 2304, 32, Trans::Yes, Trans::No},
    {576, 576, 64, Trans::Yes, Trans::No},
    {1152, 144, 128, Trans::Yes, Trans::No},
    // square
    {512, 512, 512, Trans::No, Trans::No},
    {1024, 1024, 1024, Trans::No, Trans::No},
    {2048, 2048, 2048, Trans::No, Trans::No},
};

// FacetBf16: facet::gemm_bf16, the operands rounded to bf16 and summed in fp32 (float only);
// FacetAmx: the same with the AMX-BF16 kernel asked for.
enum class Library { Facet, Eigen, OpenBlas, FacetBf16, FacetAmx };

/// Random operands stored as the transposes require, with minimal leading dimensions.
template <typename T>
struct Operands {
    GemmShape s;
    std::vector<T> A, B, C;
    std::size_t lda, ldb, ldc;

    explicit Operands(const GemmShape& shape) : s(shape) {
        lda = s.ta == Trans::No ? s.K : s.M;
        ldb = s.tb == Trans::No ? s.N : s.K;
        ldc = s.N;
        A.resize(s.M * s.K);
        B.resize(s.K * s.N);
        C.assign(s.M * s.N, T(0));
        facet::Rng rng(7);
        for (T& x : A) x = static_cast<T>(rng.uniform(-1, 1));
        for (T& x : B) x = static_cast<T>(rng.uniform(-1, 1));
    }
    T a(std::size_t i, std::size_t k) const {
        return s.ta == Trans::No ? A[i * lda + k] : A[k * lda + i];
    }
    T b(std::size_t k, std::size_t j) const {
        return s.tb == Trans::No ? B[k * ldb + j] : B[j * ldb + k];
    }

    /// Largest |C - exact| / (sum_k |a*b|) over ~1000 sampled entries (C = A*B, alpha 1, beta 0).
    double max_error() const {
        double worst = 0;
        facet::Rng rng(11);
        for (int n = 0; n < 1000; ++n) {
            const std::size_t i = rng.below(s.M), j = rng.below(s.N);
            double exact = 0, magnitude = 0;
            for (std::size_t k = 0; k < s.K; ++k) {
                const double p = static_cast<double>(a(i, k)) * static_cast<double>(b(k, j));
                exact += p;
                magnitude += std::fabs(p);
            }
            const double err = std::fabs(static_cast<double>(C[i * ldc + j]) - exact) /
                               std::max(magnitude, 1e-300);
            worst = std::max(worst, std::isnan(err) ? INFINITY : err);
        }
        return worst;
    }
};

template <typename T>
void run_gemm(Library lib, Operands<T>& o) {
    const GemmShape& s = o.s;
    if (lib == Library::OpenBlas) {
#if defined(FACET_HAVE_OPENBLAS)
        const auto ta = s.ta == Trans::No ? CblasNoTrans : CblasTrans;
        const auto tb = s.tb == Trans::No ? CblasNoTrans : CblasTrans;
        const auto M = static_cast<int>(s.M), N = static_cast<int>(s.N), K = static_cast<int>(s.K);
        if constexpr (std::is_same_v<T, float>)
            cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, o.A.data(), static_cast<int>(o.lda),
                        o.B.data(), static_cast<int>(o.ldb), 0.0f, o.C.data(),
                        static_cast<int>(o.ldc));
        else
            cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, 1.0, o.A.data(), static_cast<int>(o.lda),
                        o.B.data(), static_cast<int>(o.ldb), 0.0, o.C.data(),
                        static_cast<int>(o.ldc));
#endif
        return;
    }
    if constexpr (std::is_same_v<T, float>)
        if (lib == Library::FacetBf16 || lib == Library::FacetAmx) {
            facet::Context context = facet::current_context();
            if (lib == Library::FacetAmx) context.bf16_isa = facet::Bf16Isa::Amx;
            const facet::ContextScope scope(context);
            facet::gemm_bf16(s.ta, s.tb, s.M, s.N, s.K, o.A.data(), o.lda, o.B.data(), o.ldb,
                             o.C.data(), o.ldc);
            return;
        }
    facet::gemm<T>(s.ta, s.tb, s.M, s.N, s.K, T(1), o.A.data(), o.lda, o.B.data(), o.ldb, T(0),
                   o.C.data(), o.ldc);
}

template <typename T>
void BM_Gemm(benchmark::State& state, Library lib, int threads, GemmShape shape) {
    if (lib == Library::FacetBf16 && !facet::bf16_isa_supported(facet::Bf16Isa::Avx512Bf16)) {
        state.SkipWithError(
            "this CPU has no AVX512-BF16 (the bf16 GEMM would run its portable "
            "reference kernel)");
        return;
    }
    if (lib == Library::FacetAmx && !facet::bf16_isa_supported(facet::Bf16Isa::Amx)) {
        state.SkipWithError("this CPU (or its kernel) gives no AMX-BF16 tiles");
        return;
    }
    facet::set_num_threads(threads);
    facet::set_gemm_backend(lib == Library::Eigen ? facet::GemmBackend::Eigen
                                                  : facet::GemmBackend::Facet);
#if defined(FACET_HAVE_EIGEN)
    Eigen::setNbThreads(threads);
#endif
#if defined(FACET_HAVE_OPENBLAS)
    openblas_set_num_threads(threads);
#endif
    Operands<T> o(shape);
    run_gemm(lib, o);  // warm-up: packing buffers, thread pools, page faults of C
    for (auto _ : state) {
        run_gemm(lib, o);
        benchmark::ClobberMemory();
    }
    const double flop = 2.0 * static_cast<double>(shape.M) * static_cast<double>(shape.N) *
                        static_cast<double>(shape.K);
    state.counters["GFLOPS"] =
        benchmark::Counter(flop * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["max_err"] = o.max_error();
    facet::set_gemm_backend(facet::GemmBackend::Facet);
}

std::string shape_name(const GemmShape& s) {
    return std::to_string(s.M) + "x" + std::to_string(s.N) + "x" + std::to_string(s.K) + "_" +
           (s.ta == Trans::No ? "N" : "T") + (s.tb == Trans::No ? "N" : "T");
}

/// facet's view of the machine (CPU, features, caches, blocking, kernel) in the report's context
/// header, one "facet <item>" key per line of system_summary().
void add_system_summary() {
    const std::string summary = facet::system_summary();
    std::size_t begin = 0;
    while (begin < summary.size()) {
        const std::size_t end = summary.find('\n', begin);
        const std::string line = summary.substr(begin, end - begin);
        const std::size_t colon = line.find(": ");
        if (colon != std::string::npos)
            benchmark::AddCustomContext("facet " + line.substr(0, colon), line.substr(colon + 2));
        begin = end == std::string::npos ? summary.size() : end + 1;
    }
}

int register_gemm_benchmarks() {
    add_system_summary();
    std::vector<std::pair<Library, const char*>> libraries = {{Library::Facet, "facet"}};
#if defined(FACET_HAVE_EIGEN)
    libraries.push_back({Library::Eigen, "eigen"});
#endif
#if defined(FACET_HAVE_OPENBLAS)
    libraries.push_back({Library::OpenBlas, "openblas"});
#endif
    for (const GemmShape& shape : reference_shapes)
        for (int threads : {1, 2})
            for (const auto& [lib, lib_name] : libraries) {
                const std::string suffix = std::string("/") + lib_name + "/t" +
                                           std::to_string(threads) + "/" + shape_name(shape);
                benchmark::RegisterBenchmark(("BM_Sgemm" + suffix).c_str(), BM_Gemm<float>, lib,
                                             threads, shape)
                    ->Unit(benchmark::kMillisecond)
                    ->UseRealTime();
                if (lib == Library::Facet)  // the bf16 product beside facet's fp32 one
                    benchmark::RegisterBenchmark(
                        ("BM_Bf16gemm/facet/t" + std::to_string(threads) + "/" + shape_name(shape))
                            .c_str(),
                        BM_Gemm<float>, Library::FacetBf16, threads, shape)
                        ->Unit(benchmark::kMillisecond)
                        ->UseRealTime();
                if (lib == Library::Facet)
                    benchmark::RegisterBenchmark(("BM_Bf16gemm/facet-amx/t" +
                                                  std::to_string(threads) + "/" + shape_name(shape))
                                                     .c_str(),
                                                 BM_Gemm<float>, Library::FacetAmx, threads, shape)
                        ->Unit(benchmark::kMillisecond)
                        ->UseRealTime();
                if (shape.M * shape.N * shape.K <= 1024ull * 1024 * 1024)
                    benchmark::RegisterBenchmark(("BM_Dgemm" + suffix).c_str(), BM_Gemm<double>,
                                                 lib, threads, shape)
                        ->Unit(benchmark::kMillisecond)
                        ->UseRealTime();
            }
    return 0;
}

const int gemm_benchmarks_registered = register_gemm_benchmarks();

}  // namespace
