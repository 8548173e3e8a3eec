// facet/kernels/prefetch.hpp — asks the CPU to bring data into its L2 cache ahead of use.
//
// The convolutions work an image (or a group of small images) at a time, and the images of a
// batch come from memory: the first block's activations are 18.9 MB at batch 64, more than the
// L3 holds beside everything else. The hardware prefetchers follow each stream of a transform
// only once it has started, so every image began with a wait on memory. Asking for the next
// image's data while the current one computes hides most of that wait (docs/internals/
// convolution.md, "Threads and determinism"). Read next: kernels/gemm.hpp.
#pragma once

#include <algorithm>
#include <cstddef>

#include "facet/kernels/cpu_features.hpp"

namespace facet {

/// What the prefetches ahead of one image may bring in, in all: half the L2 of the running CPU
/// (detected), so that the prefetched data push out neither the current work nor each other.
inline std::size_t prefetch_budget() {
    return cpu_caches().l2 / 2;
}

/// Prefetches [p, p + bytes) (at most `limit` bytes of it) into L2, one request per cache
/// line. A hint only: it changes no result, and compilers without the builtin skip it.
inline void prefetch_to_l2(const void* p, std::size_t bytes,
                           std::size_t limit = prefetch_budget()) {
#if defined(__GNUC__) || defined(__clang__)
    const char* c = static_cast<const char*>(p);
    const std::size_t n = std::min(bytes, limit);
    for (std::size_t i = 0; i < n; i += 64) __builtin_prefetch(c + i, 0, 2);  // 2: prefetcht1
#else
    (void)p;
    (void)bytes;
    (void)limit;
#endif
}

}  // namespace facet
