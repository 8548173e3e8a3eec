// facet/kernels/vector_loops.hpp — runs the element-wise loops of the layers (batch norm, max
// pooling, dropout, the Winograd transforms, the fused inference epilogue) compiled for the
// widest vector unit the CPU has: AVX-512, else AVX2.
//
// facet is header-only, so it is compiled with the flags of the program that includes it, often
// the x86-64 baseline (SSE2, 4 floats per instruction). The GEMM has a micro-kernel per
// instruction set; the element-wise loops instead are plain C++ that the compiler vectorises.
// run_vectorized(body) calls `body` through a function compiled for AVX-512 or AVX2: `flatten`
// inlines the body into it, and inlined code is compiled for its caller's target, so the same
// loops come out 16 or 8 floats wide. Contraction of a * b + c into one FMA is switched off there
// (GCC; the AVX2 target leaves FMA out altogether), so every version computes the same bits: a
// model gives the same outputs on any of these machines, and fused and unfused passes stay
// bit-equal whichever runs.
// Read next: layers/batchnorm.hpp.
#pragma once

#include "facet/core/context.hpp"
#include "facet/kernels/cpu_features.hpp"

namespace facet {

namespace detail {
#if FACET_GEMM_HAVE_X86_KERNELS
#if defined(__clang__)
// Clang has no optimize attribute; it contracts only within one expression (fp-contract=on).
#define FACET_VECTOR_LOOPS_ATTRIBUTES(isa) __attribute__((target(isa), flatten))
#else
#define FACET_VECTOR_LOOPS_ATTRIBUTES(isa) \
    __attribute__((target(isa), flatten, optimize("fp-contract=off")))
#endif
template <typename Body>
FACET_VECTOR_LOOPS_ATTRIBUTES("avx512f,avx2")
void run_compiled_for_avx512(Body& body) {
    body();
}
template <typename Body>
FACET_VECTOR_LOOPS_ATTRIBUTES("avx2")
void run_compiled_for_avx2(Body& body) {
    body();
}
#undef FACET_VECTOR_LOOPS_ATTRIBUTES
#endif
}  // namespace detail

/// Whether run_vectorized uses the widest vector unit the CPU has (the default), or always the
/// build's own instruction set, in the process default context (Context::wide_loops for one
/// model's). Tests turn it off to check that every version gives the same results. Not
/// synchronised: call it while no layer is running.
inline void set_wide_loops(bool enabled) {
    process_context().wide_loops = enabled;
}

/// True when run_vectorized will run its body compiled for AVX-512 (the current context allows
/// it and the CPU has it).
inline bool avx512_loops_active() {
    return FACET_GEMM_HAVE_X86_KERNELS && current_context().wide_loops && cpu_features().avx512f;
}

/// True when run_vectorized will run its body compiled for AVX2: the current context allows wide
/// loops and the CPU has AVX2 but not AVX-512.
inline bool avx2_loops_active() {
    return FACET_GEMM_HAVE_X86_KERNELS && current_context().wide_loops && cpu_features().avx2_fma &&
           !cpu_features().avx512f;
}

/// Calls body() — a lambda holding an element-wise loop — compiled for AVX-512 when
/// avx512_loops_active(), for AVX2 when avx2_loops_active(), as compiled for the build's target
/// otherwise.
template <typename Body>
void run_vectorized(Body&& body) {
#if FACET_GEMM_HAVE_X86_KERNELS
    if (avx512_loops_active()) {
        detail::run_compiled_for_avx512(body);
        return;
    }
    if (avx2_loops_active()) {
        detail::run_compiled_for_avx2(body);
        return;
    }
#endif
    body();
}

}  // namespace facet
