// facet/kernels/cpu_features.hpp — which vector instruction sets this CPU (and its OS) supports,
// asked once at run time, so that a program built without -march flags still uses AVX-512.
// Read next: kernels/gemm_pack.hpp.
#pragma once

namespace facet {

/// facet's GEMM compiles the AVX kernels with per-function target attributes; they exist only
/// on x86 with GCC or Clang. Elsewhere only the portable kernel is built.
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FACET_GEMM_HAVE_X86_KERNELS 1
#else
#define FACET_GEMM_HAVE_X86_KERNELS 0
#endif

/// The instruction sets facet's kernels care about.
struct CpuFeatures {
    bool avx2_fma = false;  ///< AVX2 and FMA3 (Haswell, Zen 1 and later)
    bool avx512f = false;   ///< AVX-512 Foundation, with the OS saving the zmm registers
};

/// The features of the running CPU, detected on the first call. (GCC's __builtin_cpu_supports
/// also checks, through XGETBV, that the OS preserves the wide registers.)
inline const CpuFeatures& cpu_features() {
    static const CpuFeatures features = [] {
        CpuFeatures f;
#if FACET_GEMM_HAVE_X86_KERNELS
        __builtin_cpu_init();
        f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        f.avx512f = f.avx2_fma && __builtin_cpu_supports("avx512f");
#endif
        return f;
    }();
    return features;
}

}  // namespace facet
