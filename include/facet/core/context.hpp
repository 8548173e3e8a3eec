// facet/core/context.hpp — the settings facet's kernels run with (threads, GEMM micro-kernel and
// backend, Winograd and its tile, the AVX-512 element-wise loops, numeric precision), gathered in
// one Context. Each thread has a current context that the kernels read: the process default
// unless a ContextScope has installed another, so two models with different settings can run at
// the same time from two threads. facet's parallel loops (core/parallel.hpp) carry the caller's
// context into their worker threads. Read next: core/parallel.hpp.
#pragma once

#include <cstddef>
#include <string>

namespace facet {

/// The micro-kernel family gemm() uses. Auto: the build's FACET_GEMM_ISA if set, else the best
/// the CPU supports.
enum class GemmIsa { Auto, Avx512, Avx2, Portable };

/// The micro-kernel family of the int8 GEMM (kernels/int8_gemm.hpp). Auto: the best the CPU
/// supports (AVX-512 VNNI, then AVX-VNNI, then AVX2, then the portable kernel).
enum class Int8Isa { Auto, Avx512Vnni, AvxVnni, Avx2, Portable };

/// The micro-kernel family of the bf16 GEMM (kernels/bf16_gemm.hpp). Auto: AMX-BF16 tiles when
/// the CPU has them and the AMX kernel agrees with its plain twin at first use, else AVX512-BF16
/// when the CPU has it, else the portable kernel. AmxReference (the AMX kernel's tile loop in
/// plain C++, on any CPU) is only taken when asked for.
enum class Bf16Isa { Auto, Avx512Bf16, Portable, Amx, AmxReference };

/// Who computes gemm(): facet's own kernels, or Eigen's product (for comparison; needs
/// FACET_HAVE_EIGEN).
enum class GemmBackend { Facet, Eigen };

/// The number format a model computes in. Bf16: gemm() of floats (and so the convolutions and
/// dense layers) rounds its operands to bf16 and sums in fp32; weights, optimiser state, batch
/// norm, softmax and the loss stay fp32 (mixed precision). Int8 names what a quantised model
/// computes (layers/quantized_*.hpp); in a float model it changes nothing.
enum class Precision { Fp32, Bf16, Int8 };

/// Lower-case name of a precision ("fp32", "bf16", "int8").
inline const char* precision_name(Precision p) {
    switch (p) {
        case Precision::Bf16:
            return "bf16";
        case Precision::Int8:
            return "int8";
        default:
            return "fp32";
    }
}

/// The precision named `name` ("fp32", "bf16" or "int8"); false for any other name.
inline bool precision_from_name(const std::string& name, Precision& out) {
    for (Precision p : {Precision::Fp32, Precision::Bf16, Precision::Int8})
        if (name == precision_name(p)) {
            out = p;
            return true;
        }
    return false;
}

/// Everything a kernel may be told about how to run. A plain value: copy it, change fields,
/// install it with ContextScope. The readers (num_threads(), gemm_isa(), winograd_tile(), ...)
/// check what they read: an ISA the CPU lacks or a tile other than 2 or 4 is a facet::Error at
/// the first kernel that uses it.
struct Context {
    int threads = 0;                   ///< threads per parallel region (0: OpenMP's default)
    GemmIsa gemm_isa = GemmIsa::Auto;  ///< the GEMM micro-kernel family
    GemmBackend gemm_backend = GemmBackend::Facet;  ///< facet's GEMM or Eigen's
    bool winograd = true;  ///< 3x3 stride-1 convolutions by Winograd (else im2col + GEMM)
    /// Winograd's output tile: 4 for F(4x4, 3x3), 2 for F(2x2, 3x3)
    std::size_t winograd_tile = 4;
    /// element-wise loops compiled for AVX-512 or AVX2 when the CPU has it (run_vectorized)
    bool wide_loops = true;
    Precision precision = Precision::Fp32;  ///< the number format of the float products
    Int8Isa int8_isa = Int8Isa::Auto;       ///< the int8 GEMM's micro-kernel family
    Bf16Isa bf16_isa = Bf16Isa::Auto;       ///< the bf16 GEMM's micro-kernel family

    bool operator==(const Context&) const = default;
};

namespace detail {
/// The installed context of the calling thread, or nullptr for the process default.
inline const Context*& installed_context() {
    thread_local const Context* installed = nullptr;
    return installed;
}
}  // namespace detail

/// The process default context: what every thread runs with until a ContextScope installs
/// another. The global setters (set_num_threads, set_gemm_isa, set_winograd, ...) change it. Not
/// synchronised: change it while no kernel is running.
inline Context& process_context() {
    static Context context;
    return context;
}

/// Sets the precision of the process default context (Context::precision for one model's).
/// Not synchronised: call it while no kernel is running.
inline void set_precision(Precision p) {
    process_context().precision = p;
}

/// The calling thread's current context: the innermost ContextScope's, else the process default.
inline const Context& current_context() {
    const Context* installed = detail::installed_context();
    return installed ? *installed : process_context();
}

/// Installs a context on the calling thread for the scope's lifetime and puts the previous one
/// back when the scope ends, however it ends (return or exception). The context must outlive
/// the scope and must not change while kernels run under it. Scopes nest.
///
///     Context fast = current_context();
///     fast.threads = 2;
///     { ContextScope scope(fast); model.forward(x); }  // two threads here only
class ContextScope {
  public:
    /// Installs `context` on the calling thread.
    explicit ContextScope(const Context& context) : previous_(detail::installed_context()) {
        detail::installed_context() = &context;
    }
    /// Installs `context` when it is non-null; otherwise leaves the current one in place.
    explicit ContextScope(const Context* context) : previous_(detail::installed_context()) {
        if (context) detail::installed_context() = context;
    }
    /// A temporary would be gone before the scope ends.
    ContextScope(const Context&&) = delete;
    ~ContextScope() { detail::installed_context() = previous_; }
    ContextScope(const ContextScope&) = delete;
    ContextScope& operator=(const ContextScope&) = delete;

  private:
    const Context* previous_;
};

}  // namespace facet
