// facet/core/parallel.hpp — how many threads facet uses, and a portable parallel-for over a range.
// OpenMP is used when the build found it; otherwise everything runs serially with the same results.
// Read next: kernels/gemm.hpp.
#pragma once

#include <algorithm>
#include <cstddef>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace facet {

namespace detail {
inline int& thread_setting() {
    static int n = 0;  // 0: all the hardware threads OpenMP reports
    return n;
}
}  // namespace detail

/// Sets the number of threads facet's kernels use (0 = OpenMP's default). Results are bit-for-bit
/// reproducible for a given thread count.
inline void set_num_threads(int n) {
    detail::thread_setting() = n < 0 ? 0 : n;
#if defined(_OPENMP)
    if (n > 0) omp_set_num_threads(n);
#endif
}

/// The number of threads facet's parallel regions will use.
inline int num_threads() {
#if defined(_OPENMP)
    return detail::thread_setting() > 0 ? detail::thread_setting() : omp_get_max_threads();
#else
    return 1;
#endif
}

/// True when called from inside one of facet's parallel regions (nested regions then run serially).
inline bool in_parallel() {
#if defined(_OPENMP)
    return omp_in_parallel() != 0;
#else
    return false;
#endif
}

/// Calls body(begin, end) on contiguous chunks of [0, n), one chunk per thread, statically split so
/// that the same thread count always gives the same split (and so the same floating-point sums).
template <typename Body>
void parallel_for(std::size_t n, Body&& body, int threads = 0) {
    int t = threads > 0 ? threads : num_threads();
    if (in_parallel()) t = 1;
    t = static_cast<int>(
        std::min<std::size_t>(static_cast<std::size_t>(std::max(t, 1)), n ? n : 1));
    if (t <= 1) {
        if (n) body(std::size_t{0}, n);
        return;
    }
#if defined(_OPENMP)
#pragma omp parallel num_threads(t)
    {
        const auto id = static_cast<std::size_t>(omp_get_thread_num());
        const auto nt = static_cast<std::size_t>(omp_get_num_threads());
        const std::size_t begin = n * id / nt, end = n * (id + 1) / nt;
        if (begin < end) body(begin, end);
    }
#else
    body(std::size_t{0}, n);
#endif
}

}  // namespace facet
