// bench_peak.cpp — the machine's FMA limit, measured in the same run as everything else:
// BM_FmaPeak/<isa>/<threads> runs independent chains of packed single-precision FMAs that never
// touch memory, on every thread at once. GFLOPS counts 2 per lane and FMA. A shared host's clock
// drifts, so "percent of peak" should use the peak of the same run.
// BM_FmaPeak/avx512bf16 does the same with vdpbf16ps (two bf16 products per fp32 lane, 4 flops):
// the bf16 limit of a CPU with AVX512-BF16, which is not always twice the fp32 one.
#include <benchmark/benchmark.h>

#include <immintrin.h>

#include <cstddef>
#include <string>
#include <utility>

#include <facet/core/parallel.hpp>
#include <facet/kernels/cpu_features.hpp>

namespace {

constexpr int chains = 12;  // enough independent FMAs to cover 2 pipes x 4 cycles of latency
constexpr long rounds = 1 << 20;

// Each function returns a value derived from every chain, so the compiler cannot drop any.
/// Every lane of every AVX-512 chain, summed.
__attribute__((target("avx512f"))) float sum_chains(const __m512 (&acc)[chains]) {
    __m512 sum = acc[0];
    for (int c = 1; c < chains; ++c) sum = _mm512_add_ps(sum, acc[c]);
    alignas(64) float lanes[16];  // not _mm512_reduce_add_ps: GCC 12 warns inside it
    _mm512_store_ps(lanes, sum);
    float total = 0;
    for (float v : lanes) total += v;
    return total;
}

__attribute__((target("avx512f"))) float fma_chains_avx512() {
    __m512 acc[chains];
    for (int c = 0; c < chains; ++c) acc[c] = _mm512_set1_ps(float(c) * 1e-3f);
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (long r = 0; r < rounds; ++r)
        for (int c = 0; c < chains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    return sum_chains(acc);
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

__attribute__((target("avx512f,avx512bf16"))) float dot_chains_avx512_bf16() {
    __m512 acc[chains];
    for (int c = 0; c < chains; ++c) acc[c] = _mm512_set1_ps(float(c) * 1e-3f);
    // Pairs of bf16 1e-3 (0x3a83): each step adds 2e-6 to every lane, never overflowing.
    const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3a833a83);
    const __m512bh b = (__m512bh)_mm512_set1_epi32(0x3a833a83);
    for (long r = 0; r < rounds; ++r)
        for (int c = 0; c < chains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
    return sum_chains(acc);
}

enum class PeakKind { Avx512, Avx2, Avx512Bf16 };

float run_chains(PeakKind kind) {
    switch (kind) {
        case PeakKind::Avx512:
            return fma_chains_avx512();
        case PeakKind::Avx2:
            return fma_chains_avx2();
        default:
            return dot_chains_avx512_bf16();
    }
}

void BM_FmaPeak(benchmark::State& state, PeakKind kind) {
    const auto& cpu = facet::cpu_features();
    const bool supported = kind == PeakKind::Avx512 ? cpu.avx512f
                           : kind == PeakKind::Avx2 ? cpu.avx2_fma
                                                    : cpu.avx512_bf16;
    if (!supported) {
        state.SkipWithError("the CPU lacks this instruction set");
        return;
    }
    const int threads = int(state.range(0));
    facet::set_num_threads(threads);
    for (auto _ : state) {
        float sink = 0;
        facet::parallel_for(std::size_t(threads), [&](std::size_t b, std::size_t e) {
            float local = 0;
            for (std::size_t i = b; i < e; ++i) local += run_chains(kind);
#pragma omp atomic
            sink += local;
        });
        benchmark::DoNotOptimize(sink);
    }
    // Flops per instruction: 2 per fp32 lane for an FMA, 4 for a bf16 pair product.
    const double flops = kind == PeakKind::Avx2 ? 16 : kind == PeakKind::Avx512 ? 32 : 64;
    state.counters["GFLOPS"] = benchmark::Counter(flops * chains * double(rounds) * threads * 1e-9,
                                                  benchmark::Counter::kIsIterationInvariantRate);
}

const int peak_registered = [] {
    const std::pair<PeakKind, const char*> kinds[] = {{PeakKind::Avx512, "avx512"},
                                                      {PeakKind::Avx2, "avx2"},
                                                      {PeakKind::Avx512Bf16, "avx512bf16"}};
    for (const auto& [kind, name] : kinds)
        benchmark::RegisterBenchmark((std::string("BM_FmaPeak/") + name).c_str(),
                                     [kind = kind](benchmark::State& s) { BM_FmaPeak(s, kind); })
            ->Arg(1)
            ->Arg(2)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
    return 0;
}();

}  // namespace
