// Tests of the execution context (core/context.hpp): scopes install and restore settings however
// they end, facet's parallel loops carry the caller's context into their worker threads, the
// global setters change only the process default, and two models with different settings run at
// the same time from two threads, each giving the bits it gives alone.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "facet/core/context.hpp"
#include "facet/core/parallel.hpp"
#include "facet/kernels/gemm.hpp"
#include "facet/kernels/vector_loops.hpp"
#include "facet/kernels/winograd_tiles.hpp"
#include "facet/layers/activations.hpp"
#include "facet/layers/batchnorm.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/flatten.hpp"
#include "facet/layers/maxpool2d.hpp"
#include "facet/loss/softmax_cross_entropy.hpp"
#include "facet/model/sequential.hpp"
#include "facet/optim/sgd.hpp"

using namespace facet;

namespace {

/// Puts the process default context back as it was, however the test ends.
class ProcessContextGuard {
  public:
    ProcessContextGuard() : saved_(process_context()) {}
    ~ProcessContextGuard() { process_context() = saved_; }
    ProcessContextGuard(const ProcessContextGuard&) = delete;
    ProcessContextGuard& operator=(const ProcessContextGuard&) = delete;

  private:
    Context saved_;
};

/// The best GEMM micro-kernel this CPU runs (AVX-512 where it can).
GemmIsa best_isa() {
    for (GemmIsa isa : {GemmIsa::Avx512, GemmIsa::Avx2})
        if (gemm_isa_supported(isa)) return isa;
    return GemmIsa::Portable;
}

/// A small CNN that exercises every convolution algorithm: 1 -> 16 by im2col, 16 -> 32 and
/// 32 -> 32 by Winograd (the second also for its weight gradient), 32 -> 8 pointwise.
Sequential<float> make_model() {
    Sequential<float> m(Shape{1, 12, 12});
    m.add<Conv2d<float>>(1, 16, 3, 1, 1, true, 11);
    m.add<BatchNorm2d<float>>(16);
    m.add<ReLU<float>>();
    m.add<Conv2d<float>>(16, 32, 3, 1, 1, false, 12);
    m.add<ReLU<float>>();
    m.add<Conv2d<float>>(32, 32, 3, 1, 1, true, 13);
    m.add<MaxPool2d<float>>(2);
    m.add<Conv2d<float>>(32, 8, 1, 1, 0, true, 14);
    m.add<Flatten<float>>();
    m.add<Dense<float>>(8 * 6 * 6, 3, true, 15);
    return m;
}

/// What one model computes: a few training steps, then predictions; every weight and output.
std::vector<float> train_and_predict(Sequential<float>& m) {
    Rng rng(7);
    Tensor<float> x(Shape{6, 1, 12, 12});
    x.fill_normal(rng, 0, 1);
    std::vector<int> labels(6);
    for (int& l : labels) l = static_cast<int>(rng.below(3));
    SGD<float> sgd(m.parameters(), {.learning_rate = 0.05, .momentum = 0.9});
    SoftmaxCrossEntropy<float> loss;
    for (int step = 0; step < 3; ++step) m.train_step(x, labels, loss, sgd);
    std::vector<float> bits;
    const Tensor<float>& p = m.predict(x);
    bits.insert(bits.end(), p.begin(), p.end());
    for (const auto& param : m.parameters())
        bits.insert(bits.end(), param.value->begin(), param.value->end());
    return bits;
}

Context settings_a() {
    Context c;
    c.threads = 1;
    c.gemm_isa = GemmIsa::Portable;
    c.winograd_tile = 2;
    c.wide_loops = false;
    return c;
}

Context settings_b() {
    Context c;
    c.threads = 2;
    c.gemm_isa = best_isa();
    c.winograd_tile = 4;
    c.wide_loops = true;
    return c;
}

}  // namespace

TEST_CASE("a scope installs a context and puts the previous one back, also on an exception") {
    const ProcessContextGuard guard;
    const Context before = current_context();
    Context outer;
    outer.winograd_tile = 2;
    outer.threads = 1;
    Context inner = outer;
    inner.winograd = false;
    {
        const ContextScope a(outer);
        CHECK(winograd_tile() == 2);
        CHECK(num_threads() == 1);
        {
            const ContextScope b(inner);
            CHECK_FALSE(winograd_enabled());
            CHECK(winograd_tile() == 2);
        }
        CHECK(winograd_enabled());
        try {
            const ContextScope b(inner);
            throw std::runtime_error("leaving the scope by an exception");
        } catch (const std::runtime_error&) {
        }
        CHECK(winograd_enabled());
        CHECK(&current_context() == &outer);
    }
    CHECK(current_context() == before);
    CHECK(&current_context() == &process_context());
    // A null context leaves the current one in place (a model without its own context).
    {
        const ContextScope a(outer);
        const ContextScope none(static_cast<const Context*>(nullptr));
        CHECK(&current_context() == &outer);
    }
}

TEST_CASE("the global setters change the process default, not an installed context") {
    const ProcessContextGuard guard;
    Context mine;
    mine.winograd_tile = 2;
    mine.gemm_isa = GemmIsa::Portable;
    const ContextScope scope(mine);
    set_winograd_tile(4);
    set_winograd(false);
    set_wide_loops(false);
    set_num_threads(1);
    if (gemm_isa_supported(GemmIsa::Avx2)) set_gemm_isa(GemmIsa::Avx2);
    CHECK(winograd_tile() == 2);
    CHECK(winograd_enabled());
    CHECK(gemm_isa() == GemmIsa::Portable);
    CHECK(avx512_loops_active() == (FACET_GEMM_HAVE_X86_KERNELS && cpu_features().avx512f));
    CHECK(avx2_loops_active() ==
          (FACET_GEMM_HAVE_X86_KERNELS && cpu_features().avx2_fma && !cpu_features().avx512f));
    CHECK(process_context().winograd_tile == 4);
    CHECK_FALSE(process_context().winograd);
    CHECK_FALSE(process_context().wide_loops);
    CHECK(process_context().threads == 1);
    CHECK(std::string(precision_name(mine.precision)) == "fp32");
}

TEST_CASE("a context with a bad tile or an ISA the CPU lacks is an error at the first kernel") {
    Context bad;
    bad.winograd_tile = 3;
    {
        const ContextScope scope(bad);
        CHECK_THROWS_WITH_AS(winograd_tile(), doctest::Contains("got 3"), Error);
    }
    CHECK(winograd_tile() == 4);
    // A model whose context is bad throws from forward, and the caller's context is back.
    Sequential<float> m = make_model();
    m.context().winograd_tile = 3;
    Tensor<float> x(Shape{2, 1, 12, 12});
    x.fill(0.5f);
    CHECK_THROWS_AS(m.forward(x), Error);
    CHECK(&current_context() == &process_context());
    for (GemmIsa isa : {GemmIsa::Avx512, GemmIsa::Avx2}) {
        if (gemm_isa_supported(isa)) continue;
        Context lacking;
        lacking.gemm_isa = isa;
        const ContextScope scope(lacking);
        CHECK_THROWS_AS(gemm_isa(), Error);
    }
}

TEST_CASE("parallel loops run their workers with the caller's context") {
    Context ctx;
    ctx.threads = 2;
    ctx.winograd_tile = 2;
    ctx.winograd = false;
    ctx.gemm_isa = GemmIsa::Portable;
    ctx.precision = Precision::Bf16;
    std::mutex m;
    std::vector<Context> seen;
    std::set<std::thread::id> threads;
    auto record = [&] {
        const std::lock_guard<std::mutex> lock(m);
        seen.push_back(current_context());
        threads.insert(std::this_thread::get_id());
    };
    {
        const ContextScope scope(ctx);
        parallel_for(64, [&](std::size_t, std::size_t) { record(); });
        parallel_for_dynamic(64, 1, [&](std::size_t, std::size_t, std::size_t) { record(); });
        parallel_for_sharing(
            16, 2, 1, [&](std::size_t, std::size_t, std::size_t) { record(); },
            [&](std::size_t, std::size_t, std::size_t) { record(); });
    }
    REQUIRE(!seen.empty());
    for (const Context& c : seen) CHECK(c == ctx);
#if defined(_OPENMP)
    CHECK(threads.size() == 2);  // the workers, not only the calling thread, saw it
#endif
    // Back on the process default, on this thread and in the workers.
    seen.clear();
    parallel_for(8, [&](std::size_t, std::size_t) { record(); });
    for (const Context& c : seen) CHECK(c == process_context());
}

TEST_CASE("a thread starts on the process default, whatever another thread has installed") {
    Context ctx;
    ctx.winograd_tile = 2;
    const ContextScope scope(ctx);
    std::size_t other = 0;
    std::thread t([&] { other = winograd_tile(); });
    t.join();
    CHECK(other == 4);
    CHECK(winograd_tile() == 2);
}

TEST_CASE("a model's context: the caller's until asked for, then its own") {
    const ProcessContextGuard guard;
    Sequential<float> m = make_model();
    set_winograd_tile(2);
    Context& own = m.context();  // a copy of the current (process default) context
    CHECK(own.winograd_tile == 2);
    set_winograd_tile(4);
    CHECK(m.context().winograd_tile == 2);  // the model keeps its own
    own.threads = 1;
    CHECK(&current_context() == &process_context());
}

TEST_CASE("two models with different settings at the same time: each gives its bits alone") {
    const ProcessContextGuard guard;
    // Alone, one after the other.
    Sequential<float> alone_a = make_model(), alone_b = make_model();
    alone_a.context() = settings_a();
    alone_b.context() = settings_b();
    const std::vector<float> expected_a = train_and_predict(alone_a);
    const std::vector<float> expected_b = train_and_predict(alone_b);
    // The settings matter: tile 2 and 4 (and the kernels) give other roundings.
    REQUIRE(expected_a.size() == expected_b.size());
    CHECK_FALSE(std::equal(expected_a.begin(), expected_a.end(), expected_b.begin()));
    // The process default is something else again: nothing of it may reach the models.
    set_winograd(false);
    set_num_threads(1);
    set_wide_loops(false);
    for (int round = 0; round < 3; ++round) {
        Sequential<float> a = make_model(), b = make_model();
        a.context() = settings_a();
        b.context() = settings_b();
        std::vector<float> got_a, got_b;
        std::thread ta([&] { got_a = train_and_predict(a); });
        std::thread tb([&] { got_b = train_and_predict(b); });
        ta.join();
        tb.join();
        CAPTURE(round);
        CHECK(got_a == expected_a);
        CHECK(got_b == expected_b);
    }
    CHECK_FALSE(winograd_enabled());  // this thread's settings are untouched
}
