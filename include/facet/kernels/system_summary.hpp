// facet/kernels/system_summary.hpp — a few lines telling what facet found on this machine and
// what it chose from it: the CPU, its instruction sets and caches, the GEMM's blocking and
// micro-kernel. Benchmarks print it first, so that their figures say where they come from.
// Read next: kernels/im2col.hpp.
#pragma once

#include <string>

#include "facet/core/context.hpp"
#include "facet/core/parallel.hpp"
#include "facet/kernels/bf16_gemm.hpp"
#include "facet/kernels/cpu_features.hpp"
#include "facet/kernels/gemm.hpp"

namespace facet {

/// One line per item ("cpu: ...", "features: ...", "caches: ...", "gemm blocking: ...",
/// "gemm kernel: ...", "bf16 kernel: ...", "threads: ..."), each ending in a newline: the running
/// CPU and the choices the current context leads to.
inline std::string system_summary() {
    const CpuFeatures& f = cpu_features();
    const CacheSizes& c = cpu_caches();
    std::string features;
    auto add = [&](bool has, const char* name) {
        if (!has) return;
        if (!features.empty()) features += ' ';
        features += name;
    };
    add(f.avx2_fma, "avx2+fma");
    add(f.avx512f, "avx512f");
    add(f.avx512_vnni, "avx512-vnni");
    add(f.avx512_bf16, "avx512-bf16");
    add(f.avx512_fp16, "avx512-fp16");
    add(f.avx_vnni, "avx-vnni");
    add(f.amx_tile, "amx-tile");
    add(f.amx_bf16, "amx-bf16");
    add(f.amx_int8, "amx-int8");
    if (features.empty()) features = "none beyond the build's baseline";
    auto kib = [](std::size_t bytes) { return std::to_string(bytes / 1024) + " KiB"; };
    const detail::GemmBlockSizes& b = detail::gemm_blocking<float>();
    const bool eigen = gemm_backend() == GemmBackend::Eigen;
    return "cpu: " + cpu_model() + "\n" + "features: " + features + "\n" + "caches: L1d " +
           kib(c.l1d) + ", L2 " + kib(c.l2) + ", L3 " + kib(c.l3) + "\n" +
           "gemm blocking (float): KC " + std::to_string(b.kc) + ", NC " + std::to_string(b.nc) +
           ", MC " + std::to_string(b.mc) + "\n" + "gemm kernel: " +
           (eigen ? std::string("Eigen") : std::string(gemm_isa_name(gemm_isa()))) + "\n" +
           "bf16 kernel: " + bf16_isa_name(bf16_isa()) +
           (bf16_isa_supported(Bf16Isa::Amx) && !detail::amx_passes_check()
                ? " (amx-bf16 disagreed with its reference at first use)"
                : "") +
           "\n" + "threads: " + std::to_string(num_threads()) + "\n";
}

}  // namespace facet
