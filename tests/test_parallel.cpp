// Tests of facet/core/parallel.hpp's schedules: every item is visited exactly once, by the part
// of the schedule it belongs to, whatever the thread count, and the sharing schedule's work
// really moves to a free thread.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

#include "facet/core/parallel.hpp"

namespace {

/// Restores the default thread count when a test case ends.
struct ThreadsGuard {
    ~ThreadsGuard() { facet::set_num_threads(0); }
};

}  // namespace

TEST_CASE(
    "parallel_for_dynamic visits every item once, in pieces of `grain` from multiples of "
    "it, and names workers below the thread count") {
    ThreadsGuard guard;
    for (int threads : {1, 2, 3})
        for (std::size_t n : {0, 1, 5, 64, 1000})
            for (std::size_t grain : {0, 1, 3, 16, 2000}) {
                INFO("threads " << threads << ", n " << n << ", grain " << grain);
                facet::set_num_threads(threads);
                const std::size_t step = grain == 0 ? 1 : grain;  // 0 is taken as 1
                std::vector<std::atomic<int>> visits(n);
                std::atomic<bool> bad_piece{false}, bad_worker{false};
                facet::parallel_for_dynamic(
                    n, grain, [&](std::size_t worker, std::size_t begin, std::size_t end) {
                        if (begin % step != 0 || end != std::min(n, begin + step) || begin >= end)
                            bad_piece = true;
                        if (worker >= static_cast<std::size_t>(threads)) bad_worker = true;
                        for (std::size_t i = begin; i < end; ++i) visits[i]++;
                    });
                CHECK_FALSE(bad_piece.load());
                CHECK_FALSE(bad_worker.load());
                std::size_t once = 0;
                for (const auto& v : visits) once += v.load() == 1;
                CHECK(once == n);
            }
}

TEST_CASE(
    "parallel_for_dynamic_ahead announces a piece to the thread that runs it next, before "
    "it runs") {
    ThreadsGuard guard;
    for (int threads : {1, 2, 3})
        for (std::size_t n : {0, 1, 2, 9, 200}) {
            INFO("threads " << threads << ", n " << n);
            facet::set_num_threads(threads);
            const std::size_t grain = 2, pieces = (n + grain - 1) / grain;
            std::mutex m;
            std::atomic<long> clock{0};
            std::vector<long> announced_at(pieces, -1), run_at(pieces, -1);
            std::vector<std::thread::id> announced_by(pieces), run_by(pieces);
            std::vector<int> runs(pieces, 0), announcements(pieces, 0);
            bool bad_range = false;
            facet::parallel_for_dynamic_ahead(
                n, grain,
                [&](std::size_t, std::size_t b, std::size_t e) {
                    std::lock_guard<std::mutex> lock(m);
                    if (b % grain != 0 || e != std::min(n, b + grain)) bad_range = true;
                    run_at[b / grain] = clock++;
                    run_by[b / grain] = std::this_thread::get_id();
                    runs[b / grain]++;
                },
                [&](std::size_t b, std::size_t e) {
                    std::lock_guard<std::mutex> lock(m);
                    if (b % grain != 0 || e != std::min(n, b + grain)) bad_range = true;
                    announced_at[b / grain] = clock++;
                    announced_by[b / grain] = std::this_thread::get_id();
                    announcements[b / grain]++;
                });
            CHECK_FALSE(bad_range);
            std::size_t announced = 0, in_order = 0;
            for (std::size_t p = 0; p < pieces; ++p) {
                CHECK(runs[p] == 1);
                CHECK(announcements[p] <= 1);
                if (announcements[p] == 1) {
                    ++announced;
                    // Announced by the thread that runs it, which ran its current piece between
                    // the two (the time the announcement buys).
                    bool current_between = false;
                    for (std::size_t q = 0; q < pieces; ++q)
                        current_between |= q != p && run_by[q] == run_by[p] &&
                                           announced_at[p] < run_at[q] && run_at[q] < run_at[p];
                    in_order += announced_by[p] == run_by[p] && current_between;
                }
            }
            CHECK(in_order == announced);
            // Only the first piece each thread takes comes unannounced.
            CHECK(announced + static_cast<std::size_t>(threads) >= pieces);
        }
}

TEST_CASE(
    "parallel_for_dynamic gives each thread a stripe of its own, walked forward, and a free "
    "thread takes a slow one's pieces from the far end") {
    // Threads working on neighbouring images slow each other down (a core's prefetcher runs
    // past the end of its image into the one the other core is writing), so each thread walks
    // its own part of the range, and helps with another's only from the far end.
    ThreadsGuard guard;
    facet::set_num_threads(2);
    const std::size_t n = 40, half = n / 2;
    std::mutex m;
    std::vector<std::vector<std::size_t>> order(2);
    std::vector<int> visits(n, 0);
    facet::parallel_for_dynamic(n, 1, [&](std::size_t worker, std::size_t b, std::size_t) {
        {
            std::lock_guard<std::mutex> lock(m);
            order[worker].push_back(b);
            visits[b]++;
        }
        if (b >= half) std::this_thread::sleep_for(std::chrono::milliseconds(2));  // slow part
    });
    CHECK(std::count(visits.begin(), visits.end(), 1) == static_cast<long>(n));
    std::size_t taken_over = 0;
    for (std::size_t w = 0; w < 2; ++w) {
        INFO("worker " << w);
        const std::size_t own_begin = w * half, own_end = own_begin + half;
        const auto& seq = order[w];
        std::size_t i = 0;
        for (; i < seq.size() && seq[i] >= own_begin && seq[i] < own_end; ++i)
            CHECK(seq[i] == own_begin + i);  // its own stripe, from its start, forward
        const std::size_t other_end = w == 0 ? n : half;
        for (std::size_t j = 0; i < seq.size(); ++i, ++j) {
            CHECK(seq[i] == other_end - 1 - j);  // then the other stripe, from its end, backward
            ++taken_over;
        }
    }
    // The thread on the fast half finishes first and takes over part of the slow half.
    CHECK(taken_over > 0);
}

TEST_CASE("parallel_for_dynamic inside a parallel region runs on the calling thread") {
    ThreadsGuard guard;
    facet::set_num_threads(2);
    std::vector<std::size_t> workers(2, 99);
    std::vector<int> total(2, 0);
    facet::parallel_for(2, [&](std::size_t begin, std::size_t end) {
        for (std::size_t r = begin; r < end; ++r)
            facet::parallel_for_dynamic(10, 1,
                                        [&](std::size_t worker, std::size_t b, std::size_t e) {
                                            workers[r] = worker;  // only ever worker 0 here
                                            total[r] += static_cast<int>(e - b);
                                        });
    });
    CHECK(workers == std::vector<std::size_t>{0, 0});
    CHECK(total == std::vector<int>{10, 10});
}

namespace {

/// What parallel_for_sharing did: per item, which chunk ran summed and shared on it and how often,
/// and per chunk the order of its summed groups.
struct SharingLog {
    explicit SharingLog(std::size_t n, std::size_t chunks)
        : summed_by(n, -1),
          shared_by(n, -1),
          summed_count(n, 0),
          shared_count(n, 0),
          order(chunks) {}
    std::mutex m;
    std::vector<long> summed_by, shared_by;
    std::vector<int> summed_count, shared_count;
    std::vector<std::vector<std::size_t>> order;  // group starts of summed, per chunk
    bool bad_group = false;

    void summed(std::size_t c, std::size_t b, std::size_t e, std::size_t n, std::size_t chunks,
                std::size_t group) {
        std::lock_guard<std::mutex> lock(m);
        const std::size_t begin = n * c / chunks, end = n * (c + 1) / chunks;
        // A group of chunk c: starts at begin + k * group, ends at the next start or the end.
        if (b < begin || (b - begin) % group != 0 || e != std::min(end, b + group))
            bad_group = true;
        order[c].push_back(b);
        for (std::size_t i = b; i < e; ++i) {
            summed_by[i] = static_cast<long>(c);
            summed_count[i]++;
        }
    }
    void shared(std::size_t c, std::size_t b, std::size_t e) {
        std::lock_guard<std::mutex> lock(m);
        for (std::size_t i = b; i < e; ++i) {
            shared_by[i] = static_cast<long>(c);
            shared_count[i]++;
        }
    }
};

void check_sharing_log(SharingLog& log, std::size_t n, std::size_t chunks) {
    CHECK_FALSE(log.bad_group);
    std::size_t summed_once = 0, shared_once = 0, summed_by_owner = 0;
    for (std::size_t i = 0; i < n; ++i) {
        summed_once += log.summed_count[i] == 1;
        shared_once += log.shared_count[i] == 1;
        // The owner of item i is the chunk whose range holds it.
        for (std::size_t c = 0; c < chunks; ++c)
            if (i >= n * c / chunks && i < n * (c + 1) / chunks)
                summed_by_owner += log.summed_by[i] == static_cast<long>(c);
    }
    CHECK(summed_once == n);
    CHECK(shared_once == n);
    CHECK(summed_by_owner == n);
    for (const auto& starts : log.order) CHECK(std::is_sorted(starts.begin(), starts.end()));
}

}  // namespace

TEST_CASE(
    "parallel_for_sharing sums every group once on its owner, in order, and runs every "
    "group's shared part once") {
    ThreadsGuard guard;
    for (int threads : {1, 2, 3})
        for (std::size_t n : {0, 1, 7, 64})
            for (std::size_t group : {1, 3, 16})
                for (std::size_t chunks : {1, 2, 3}) {
                    if (chunks > static_cast<std::size_t>(threads)) continue;
                    INFO("threads " << threads << ", n " << n << ", group " << group << ", chunks "
                                    << chunks);
                    facet::set_num_threads(threads);
                    SharingLog log(n, chunks);
                    facet::parallel_for_sharing(
                        n, chunks, group,
                        [&](std::size_t c, std::size_t b, std::size_t e) {
                            log.summed(c, b, e, n, chunks, group);
                        },
                        [&](std::size_t c, std::size_t b, std::size_t e) { log.shared(c, b, e); });
                    check_sharing_log(log, n, chunks);
                }
}

TEST_CASE("parallel_for_sharing hands a slow chunk's shared parts to the thread that is free") {
    ThreadsGuard guard;
    facet::set_num_threads(2);
    const std::size_t n = 12, chunks = 2, group = 2;
    SharingLog log(n, chunks);
    std::atomic<bool> helped{false};
    facet::parallel_for_sharing(
        n, chunks, group,
        [&](std::size_t c, std::size_t b, std::size_t e) {
            // Chunk 0 stalls on its first group until chunk 1's thread has taken one of its
            // groups (a deadline instead of a hang, should the schedule never hand one over).
            if (c == 0 && b == 0) {
                const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
                while (!helped && std::chrono::steady_clock::now() < deadline)
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
            log.summed(c, b, e, n, chunks, group);
        },
        [&](std::size_t c, std::size_t b, std::size_t e) {
            log.shared(c, b, e);
            if (c == 1 && b < n / 2) helped = true;
        });
    CHECK(helped.load());
    check_sharing_log(log, n, chunks);
    // Chunk 1's thread took chunk 0's groups from the end; chunk 0 kept the first (it claims a
    // group only after summing it, and stalled before its first claim, so it may have none).
    CHECK(log.shared_by[n / 2 - 1] == 1);
    for (std::size_t i = n / 2; i < n; ++i) CHECK(log.shared_by[i] == 1);
}

TEST_CASE("parallel_for_sharing inside a parallel region runs every chunk on the calling thread") {
    ThreadsGuard guard;
    facet::set_num_threads(2);
    std::vector<int> ok(2, 0);
    facet::parallel_for(2, [&](std::size_t begin, std::size_t end) {
        for (std::size_t r = begin; r < end; ++r) {
            SharingLog log(9, 2);
            facet::parallel_for_sharing(
                9, 2, 2,
                [&](std::size_t c, std::size_t b, std::size_t e) { log.summed(c, b, e, 9, 2, 2); },
                [&](std::size_t c, std::size_t b, std::size_t e) { log.shared(c, b, e); });
            std::size_t shared_by_owner = 0;
            for (std::size_t i = 0; i < 9; ++i)
                shared_by_owner += log.shared_by[i] == (i < 4 ? 0 : 1);
            ok[r] = log.summed_count == std::vector<int>(9, 1) && shared_by_owner == 9;
        }
    });
    CHECK(ok == std::vector<int>{1, 1});
}
