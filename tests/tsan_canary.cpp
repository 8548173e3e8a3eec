// A check of the ThreadSanitizer set-up itself (built and run only in a FACET_SANITIZE=thread
// tree): a parallel_for whose chunks all add to one unguarded counter must give exactly one race
// report, and the reads after the loop (ordered by OpenMP's join, which TSan only understands with
// libomp's archer tool) must give none. ctest passes it when the output says "reported 1
// warnings"; a set-up that misses races, or reports OpenMP's own synchronisation, fails it.
#include <cstdio>
#include <vector>

#include "facet/core/parallel.hpp"

int main() {
    facet::set_num_threads(2);
    std::vector<double> values(4096);
    long unguarded = 0;
    facet::parallel_for(values.size(), [&](std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) values[i] = static_cast<double>(i);
        unguarded += static_cast<long>(end - begin);  // the planted race
    });
    double sum = 0;
    for (const double v : values) sum += v;  // after the join: not a race
    std::printf("threads %d, counted %ld, sum %.0f\n", facet::num_threads(), unguarded, sum);
    return 0;
}
