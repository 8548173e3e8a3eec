// bench_peak.cpp — the machine's FMA limit, measured in the same run as everything else:
// BM_FmaPeak/<isa>/<threads> runs independent chains of packed single-precision FMAs that never
// touch memory, on every thread at once. GFLOPS counts 2 per lane and FMA. A shared host's clock
// drifts, so "percent of peak" should use the peak of the same run.
#include <benchmark/benchmark.h>

#include <immintrin.h>

#include <cstddef>
#include <string>

#include <facet/core/parallel.hpp>
#include <facet/kernels/cpu_features.hpp>

namespace {

constexpr int chains = 12;  // enough independent FMAs to cover 2 pipes x 4 cycles of latency
constexpr long rounds = 1 << 20;

// Each function returns a value derived from every chain, so the compiler cannot drop any.
__attribute__((target("avx512f"))) float fma_chains_avx512() {
    __m512 acc[chains];
    for (int c = 0; c < chains; ++c) acc[c] = _mm512_set1_ps(float(c) * 1e-3f);
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (long r = 0; r < rounds; ++r)
        for (int c = 0; c < chains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    __m512 sum = acc[0];
    for (int c = 1; c < chains; ++c) sum = _mm512_add_ps(sum, acc[c]);
    alignas(64) float lanes[16];  // not _mm512_reduce_add_ps: GCC 12 warns inside it
    _mm512_store_ps(lanes, sum);
    float total = 0;
    for (float v : lanes) total += v;
    return total;
}

__attribute__((target("avx2,fma"))) float fma_chains_avx2() {
    __m256 acc[chains];
    for (int c = 0; c < chains; ++c) acc[c] = _mm256_set1_ps(float(c) * 1e-3f);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long r = 0; r < rounds; ++r)
        for (int c = 0; c < chains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    __m256 sum = acc[0];
    for (int c = 1; c < chains; ++c) sum = _mm256_add_ps(sum, acc[c]);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, sum);
    float total = 0;
    for (float v : lanes) total += v;
    return total;
}

void BM_FmaPeak(benchmark::State& state, bool avx512) {
    const auto& cpu = facet::cpu_features();
    if (avx512 ? !cpu.avx512f : !cpu.avx2_fma) {
        state.SkipWithError("the CPU lacks this instruction set");
        return;
    }
    const int threads = int(state.range(0));
    facet::set_num_threads(threads);
    for (auto _ : state) {
        float sink = 0;
        facet::parallel_for(std::size_t(threads), [&](std::size_t b, std::size_t e) {
            float local = 0;
            for (std::size_t i = b; i < e; ++i)
                local += avx512 ? fma_chains_avx512() : fma_chains_avx2();
#pragma omp atomic
            sink += local;
        });
        benchmark::DoNotOptimize(sink);
    }
    const double lanes = avx512 ? 16 : 8;
    state.counters["GFLOPS"] =
        benchmark::Counter(2.0 * lanes * chains * double(rounds) * threads * 1e-9,
                           benchmark::Counter::kIsIterationInvariantRate);
}

const int peak_registered = [] {
    for (bool avx512 : {true, false})
        benchmark::RegisterBenchmark(
            (std::string("BM_FmaPeak/") + (avx512 ? "avx512" : "avx2")).c_str(),
            [avx512](benchmark::State& s) { BM_FmaPeak(s, avx512); })
            ->Arg(1)
            ->Arg(2)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
    return 0;
}();

}  // namespace
