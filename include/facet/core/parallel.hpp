// facet/core/parallel.hpp — how many threads facet uses, and portable parallel loops over a range:
// fixed halves for work whose sums must split the same way every time (parallel_for), pieces to
// whichever thread is free for independent items (parallel_for_dynamic), and both at once for a
// convolution's backward pass (parallel_for_sharing). OpenMP is used when the build found it;
// otherwise everything runs serially with the same results. Every worker thread runs with the
// caller's context (core/context.hpp): OpenMP's threads do not inherit thread_local variables.
// Read next: kernels/gemm.hpp.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <memory>

#include "facet/core/context.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace facet {

/// Sets the number of threads of the process default context (0 = OpenMP's default); see
/// Context::threads for one model's or one scope's. Results are bit-for-bit reproducible for a
/// given thread count. Not synchronised: call it while no kernel is running.
inline void set_num_threads(int n) {
    process_context().threads = n < 0 ? 0 : n;
#if defined(_OPENMP)
    if (n > 0) omp_set_num_threads(n);  // for code that asks OpenMP (Eigen)
#endif
}

/// The number of threads facet's parallel regions will use: the current context's.
inline int num_threads() {
#if defined(_OPENMP)
    const int n = current_context().threads;
    return n > 0 ? n : omp_get_max_threads();
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
    const Context& context = current_context();
#pragma omp parallel num_threads(t)
    {
        const ContextScope scope(context);  // the caller's settings on every worker
        const auto id = static_cast<std::size_t>(omp_get_thread_num());
        const auto nt = static_cast<std::size_t>(omp_get_num_threads());
        const std::size_t begin = n * id / nt, end = n * (id + 1) / nt;
        if (begin < end) body(begin, end);
    }
#else
    body(std::size_t{0}, n);
#endif
}

/// Calls body(worker, begin, end) on pieces of [0, n), `grain` items each (the last may be
/// shorter); `worker` (below the thread count) names the calling thread, for per-thread
/// workspaces. For work whose items do not depend on each other or on who computes them (each
/// image of a batch, each channel): then the results are the same bits whatever the split, and
/// a thread that the host slows down (these machines are shared) no longer holds the other one
/// up at the end of the region, as with parallel_for's fixed halves. Anything summed across
/// items belongs in parallel_for.
///
/// Each thread walks a stripe of its own (parallel_for's part) forward, then takes the other
/// stripes' pieces from their far ends, as long as their owners have not come that far. Handing
/// out the pieces in one increasing sequence instead put the two threads on neighbouring images,
/// where a core's prefetcher, running past the end of its image, keeps taking lines the other
/// core is writing (docs/benchmarks.md gives the cost).
///
/// Each thread claims its next piece before it runs the current one and first calls
/// ahead(begin, end) on that next piece: the place to prefetch its data while this one computes.
template <typename Body, typename Ahead>
void parallel_for_dynamic_ahead(std::size_t n, std::size_t grain, Body&& body, Ahead&& ahead,
                                int threads = 0) {
    grain = std::max<std::size_t>(grain, 1);
    const std::size_t pieces = (n + grain - 1) / grain;
    int t = threads > 0 ? threads : num_threads();
    if (in_parallel()) t = 1;
    t = static_cast<int>(
        std::min<std::size_t>(static_cast<std::size_t>(std::max(t, 1)), pieces ? pieces : 1));
    // taken[p]: piece p has been claimed.
    const std::unique_ptr<std::atomic<bool>[]> taken(new std::atomic<bool>[pieces]());
    auto work = [&](std::size_t worker, std::size_t stripes) {
        // The next piece for this worker (pieces when none is left): its own stripe forward,
        // then the other stripes backward from their ends, each until a claimed piece shows
        // that its owner (or another helper) has come that far.
        std::size_t own = pieces * worker / stripes, other = 1, from_end = 0;
        const std::size_t own_end = pieces * (worker + 1) / stripes;
        auto claim = [&]() -> std::size_t {
            if (own < own_end && !taken[own].exchange(true, std::memory_order_relaxed))
                return own++;
            own = own_end;
            for (; other < stripes; ++other, from_end = 0) {
                const std::size_t c = (worker + other) % stripes;
                const std::size_t begin = pieces * c / stripes, end = pieces * (c + 1) / stripes;
                if (from_end < end - begin) {
                    const std::size_t p = end - 1 - from_end++;
                    if (!taken[p].exchange(true, std::memory_order_relaxed)) return p;
                }
            }
            return pieces;
        };
        std::size_t piece = claim();
        while (piece < pieces) {
            const std::size_t following = claim();
            if (following < pieces) ahead(following * grain, std::min(n, (following + 1) * grain));
            body(worker, piece * grain, std::min(n, (piece + 1) * grain));
            piece = following;
        }
    };
    if (t <= 1) {
        work(0, 1);
        return;
    }
#if defined(_OPENMP)
    const Context& context = current_context();
#pragma omp parallel num_threads(t)
    {
        const ContextScope scope(context);  // the caller's settings on every worker
        work(static_cast<std::size_t>(omp_get_thread_num()),
             static_cast<std::size_t>(omp_get_num_threads()));  // OpenMP may give fewer than t
    }
#else
    work(0, 1);
#endif
}

/// parallel_for_dynamic_ahead with nothing to do ahead.
template <typename Body>
void parallel_for_dynamic(std::size_t n, std::size_t grain, Body&& body, int threads = 0) {
    parallel_for_dynamic_ahead(
        n, grain, body, [](std::size_t, std::size_t) {}, threads);
}

/// A schedule for work with a summed part and an independent part, as a convolution's backward
/// pass (the weight gradient summed over the images, and each image's input gradient). Chunk c
/// owns items [n*c/chunks, n*(c+1)/chunks) and calls summed(c, i0, i1) on consecutive groups of
/// at most `group` of them, in increasing order, on one thread: the sums are split the same way
/// for a given chunk count, so they give the same bits. A group's shared(c, i0, i1) depends on
/// nothing else, so whoever claims the group first runs it: its owner right after the group's
/// summed part (the group's data still in cache), or a thread done with its own chunks, which
/// takes the other chunks' groups from their ends, passing its own last chunk as c (its
/// workspaces are free by then). A thread the shared host slows down then hands work over
/// instead of holding the other one up at the end of the region.
template <typename Summed, typename Shared>
void parallel_for_sharing(std::size_t n, std::size_t chunks, std::size_t group, Summed&& summed,
                          Shared&& shared) {
    group = std::max<std::size_t>(group, 1);
    chunks = std::max<std::size_t>(chunks, 1);
    // claimed[i0]: the group starting at item i0 has been taken.
    const std::unique_ptr<std::atomic<bool>[]> claimed(new std::atomic<bool>[n]());
    auto claim = [&](std::size_t i0) {
        return !claimed[i0].exchange(true, std::memory_order_relaxed);
    };
    parallel_for(chunks, [&](std::size_t cb, std::size_t ce) {
        for (std::size_t c = cb; c < ce; ++c) {
            const std::size_t end = n * (c + 1) / chunks;
            for (std::size_t i = n * c / chunks; i < end; i += group) {
                summed(c, i, std::min(end, i + group));
                if (claim(i)) shared(c, i, std::min(end, i + group));
            }
        }
        const std::size_t helper = ce - 1;
        for (std::size_t k = 1; k < chunks; ++k) {
            const std::size_t c = (helper + k) % chunks;
            const std::size_t begin = n * c / chunks, end = n * (c + 1) / chunks;
            for (std::size_t j = (end - begin + group - 1) / group; j-- > 0;) {
                const std::size_t i = begin + j * group;
                if (!claim(i)) break;  // its owner (or another helper) has come this far
                shared(helper, i, std::min(end, i + group));
            }
        }
    });
}

}  // namespace facet
