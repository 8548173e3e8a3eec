// facet/kernels/vector_loops.hpp — runs the element-wise loops of the layers (batch norm, max
// pooling, dropout, the fused inference epilogue) compiled for AVX-512 when the CPU has it.
//
// facet is header-only, so it is compiled with the flags of the program that includes it, often
// the x86-64 baseline (SSE2, 4 floats per instruction). The GEMM has a micro-kernel per
// instruction set; the element-wise loops instead are plain C++ that the compiler vectorises.
// run_vectorized(body) calls `body` through a function compiled for AVX-512: `flatten` inlines the
// body into it, and inlined code is compiled for its caller's target, so the same loops come out
// 16 floats wide. Contraction of a * b + c into one FMA is switched off there (GCC), so both
// versions compute the same bits: a model gives the same outputs on a machine with AVX-512 and one
// without, and fused and unfused passes stay bit-equal whichever runs.
// Read next: layers/batchnorm.hpp.
#pragma once

#include "facet/core/context.hpp"
#include "facet/kernels/cpu_features.hpp"

namespace facet {

namespace detail {
#if FACET_GEMM_HAVE_X86_KERNELS
#if defined(__clang__)
// Clang has no optimize attribute; it contracts only within one expression (fp-contract=on).
#define FACET_VECTOR_LOOPS_ATTRIBUTES __attribute__((target("avx512f,avx2"), flatten))
#else
#define FACET_VECTOR_LOOPS_ATTRIBUTES \
    __attribute__((target("avx512f,avx2"), flatten, optimize("fp-contract=off")))
#endif
template <typename Body>
FACET_VECTOR_LOOPS_ATTRIBUTES void run_compiled_for_avx512(Body& body) {
    body();
}
#undef FACET_VECTOR_LOOPS_ATTRIBUTES
#endif
}  // namespace detail

/// Whether run_vectorized uses AVX-512 when the CPU has it (the default), or always the build's
/// own instruction set, in the process default context (Context::avx512_loops for one model's).
/// Tests turn it off to check that both give the same results. Not synchronised: call it while
/// no layer is running.
inline void set_avx512_loops(bool enabled) {
    process_context().avx512_loops = enabled;
}

/// True when run_vectorized will run its body compiled for AVX-512 (the current context allows
/// it and the CPU has it).
inline bool avx512_loops_active() {
    return FACET_GEMM_HAVE_X86_KERNELS && current_context().avx512_loops && cpu_features().avx512f;
}

/// Calls body() — a lambda holding an element-wise loop — compiled for AVX-512 when
/// avx512_loops_active(), as compiled for the build's target otherwise.
template <typename Body>
void run_vectorized(Body&& body) {
#if FACET_GEMM_HAVE_X86_KERNELS
    if (avx512_loops_active()) {
        detail::run_compiled_for_avx512(body);
        return;
    }
#endif
    body();
}

}  // namespace facet
