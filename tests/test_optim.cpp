// Tests of the optimisers, learning-rate schedules and gradient clipping against values computed by
// hand from the update rules (see the comments in optim/*.hpp).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "facet/core/parallel.hpp"
#include "facet/core/random.hpp"
#include "facet/optim/adam.hpp"
#include "facet/optim/clip.hpp"
#include "facet/optim/schedule.hpp"
#include "facet/optim/sgd.hpp"

using namespace facet;

namespace {

/// Two one-element parameters: "w" decays, "b" does not; the tests set values and gradients.
struct TwoParameters {
    Tensor<double> w{Shape{1}}, w_grad{Shape{1}}, b{Shape{1}}, b_grad{Shape{1}};
    std::vector<Parameter<double>> list() {
        return {{"w", &w, &w_grad, true}, {"b", &b, &b_grad, false}};
    }
    void set(double w_value, double b_value) {
        w[0] = w_value;
        b[0] = b_value;
    }
    void grads(double gw, double gb) {
        w_grad[0] = gw;
        b_grad[0] = gb;
    }
};

}  // namespace

TEST_CASE(
    "SGD without momentum: w -= lr * (g + wd * w), decay only where the parameter asks for it") {
    TwoParameters p;
    p.set(2.0, 2.0);
    SGD<double> sgd(p.list(), {.learning_rate = 0.1, .weight_decay = 0.1});
    p.grads(1.0, 1.0);
    sgd.step();
    CHECK(p.w[0] == doctest::Approx(2.0 - 0.1 * (1.0 + 0.1 * 2.0)).epsilon(1e-15));  // 1.88
    CHECK(p.b[0] == doctest::Approx(1.9).epsilon(1e-15));
    CHECK(sgd.steps() == 1);
}

TEST_CASE("SGD with classical and Nesterov momentum") {
    TwoParameters p;
    p.set(1.0, 1.0);
    SGD<double> classical(std::vector<Parameter<double>>{{"w", &p.w, &p.w_grad, true}},
                          {.learning_rate = 0.1, .momentum = 0.9});
    SGD<double> nesterov(std::vector<Parameter<double>>{{"b", &p.b, &p.b_grad, true}},
                         {.learning_rate = 0.1, .momentum = 0.9, .nesterov = true});
    p.grads(1.0, 1.0);
    classical.step();
    nesterov.step();
    CHECK(p.w[0] == doctest::Approx(0.9).epsilon(1e-15));   // v = 1, d = v
    CHECK(p.b[0] == doctest::Approx(0.81).epsilon(1e-15));  // v = 1, d = 1 + 0.9 * 1
    p.grads(0.5, 0.5);
    classical.step();
    nesterov.step();
    CHECK(p.w[0] == doctest::Approx(0.9 - 0.14).epsilon(1e-15));    // v = 0.9 + 0.5
    CHECK(p.b[0] == doctest::Approx(0.81 - 0.176).epsilon(1e-15));  // d = 0.5 + 0.9 * 1.4
}

TEST_CASE("Adam follows the bias-corrected update") {
    TwoParameters p;
    p.set(1.0, 1.0);
    Adam<double> adam(std::vector<Parameter<double>>{{"w", &p.w, &p.w_grad, true}},
                      {.learning_rate = 0.1});
    const double grads[] = {0.5, -0.25, 0.125};
    const double expected[] = {0.900000002, 0.8733662987078463,
                               0.8393233849166541};  // by hand (Python)
    for (int t = 0; t < 3; ++t) {
        p.grads(grads[t], 0);
        adam.step();
        CHECK(p.w[0] == doctest::Approx(expected[t]).epsilon(1e-13));
    }
}

TEST_CASE("Adam and AdamW in float: the AVX-512 update gives the scalar loop's bits") {
    if (!cpu_features().avx512f) {
        MESSAGE("skipped: this CPU has no AVX-512, so the update has one version only");
        return;
    }
    // Sizes with a partial last vector, one below and one above for_elements' parallel
    // threshold (2 threads then split the range at an arbitrary element), L2 and decoupled
    // decay, a parameter without decay, three steps with fresh gradients.
    auto run = [](bool avx512, bool decoupled) {
        set_wide_loops(avx512);
        set_num_threads(2);
        Rng rng(8);
        std::vector<Tensor<float>> values, grads;
        for (std::size_t n : {37, 1000, 40001}) {
            values.emplace_back(Shape{n});
            grads.emplace_back(Shape{n});
            values.back().fill_uniform(rng, -1, 1);
        }
        std::vector<Parameter<float>> params;
        for (std::size_t i = 0; i < values.size(); ++i)
            params.push_back({std::string(1, char('a' + i)), &values[i], &grads[i], i != 1});
        const AdamOptions options{.learning_rate = 0.01, .weight_decay = 0.1};
        Adam<float> adam(params, options);
        AdamW<float> adamw(params, options);
        for (int step = 0; step < 3; ++step) {
            for (auto& g : grads) g.fill_uniform(rng, -1, 1);
            decoupled ? adamw.step() : adam.step();
        }
        set_wide_loops(true);
        set_num_threads(0);
        return values;
    };
    for (bool decoupled : {false, true}) {
        CAPTURE(decoupled);
        const auto wide = run(true, decoupled), plain = run(false, decoupled);
        for (std::size_t i = 0; i < wide.size(); ++i) {
            CAPTURE(i);
            CHECK(std::memcmp(wide[i].data(), plain[i].data(), wide[i].size() * sizeof(float)) ==
                  0);
        }
    }
}

TEST_CASE("Adam's L2 decay enters the moments; AdamW's decoupled decay shrinks the weight") {
    // Zero gradient: only weight decay moves a weight.
    TwoParameters a, aw;
    a.set(2.0, 2.0);
    aw.set(2.0, 2.0);
    Adam<double> adam(a.list(), {.learning_rate = 0.1, .weight_decay = 0.1});
    AdamW<double> adamw(aw.list(), {.learning_rate = 0.1, .weight_decay = 0.1});
    CHECK(adam.type() == "Adam");
    CHECK(adamw.type() == "AdamW");
    a.grads(0, 0);
    aw.grads(0, 0);
    adam.step();
    adamw.step();
    // Adam: g = 0.2, m_hat = 0.2, sqrt(v_hat) = 0.2, so the step is lr * 0.2 / (0.2 + 1e-8).
    CHECK(a.w[0] == doctest::Approx(2.0 - 0.1 * 0.2 / (0.2 + 1e-8)).epsilon(1e-14));
    CHECK(a.b[0] == 2.0);
    // AdamW: w * (1 - lr * wd), and no Adam step since m = 0.
    CHECK(aw.w[0] == doctest::Approx(1.98).epsilon(1e-15));
    CHECK(aw.b[0] == 2.0);
}

TEST_CASE("optimiser state round-trips: a restored optimiser continues bit for bit") {
    Rng rng(7);
    Tensor<float> w1(Shape{3, 5}), g1(Shape{3, 5}), w2(Shape{3, 5}), g2(Shape{3, 5});
    w1.fill_normal(rng, 0, 1);
    auto run_grads = [&](Tensor<float>& g, int step) {
        Rng r(100 + static_cast<std::uint64_t>(step));
        g.fill_normal(r, 0, 1);
    };
    SUBCASE("Adam") {
        Adam<float> first(std::vector<Parameter<float>>{{"w", &w1, &g1, true}},
                          {.weight_decay = 0.01});
        for (int s = 0; s < 3; ++s) run_grads(g1, s), first.step();
        w2 = w1;
        Adam<float> second(std::vector<Parameter<float>>{{"w", &w2, &g2, true}},
                           {.learning_rate = 5});
        second.load_state(first.state());
        CHECK(second.learning_rate() == first.learning_rate());
        CHECK(second.steps() == 3);
        for (int s = 3; s < 6; ++s) run_grads(g1, s), run_grads(g2, s), first.step(), second.step();
        CHECK(std::equal(w1.begin(), w1.end(), w2.begin()));
    }
    SUBCASE("SGD with momentum") {
        SGD<float> first(std::vector<Parameter<float>>{{"w", &w1, &g1, true}},
                         {.learning_rate = 0.1, .momentum = 0.9});
        for (int s = 0; s < 3; ++s) run_grads(g1, s), first.step();
        w2 = w1;
        SGD<float> second(std::vector<Parameter<float>>{{"w", &w2, &g2, true}});
        second.load_state(first.state());
        for (int s = 3; s < 6; ++s) run_grads(g1, s), run_grads(g2, s), first.step(), second.step();
        CHECK(std::equal(w1.begin(), w1.end(), w2.begin()));
    }
}

TEST_CASE("optimiser state that does not fit is rejected and leaves the optimiser unchanged") {
    Tensor<float> w(Shape{2, 2}), g(Shape{2, 2}), other(Shape{4}), other_grad(Shape{4});
    Adam<float> adam(std::vector<Parameter<float>>{{"w", &w, &g, true}});
    OptimizerState<float> state = adam.state();

    Adam<float> wrong_shape(std::vector<Parameter<float>>{{"w", &other, &other_grad, true}},
                            {.learning_rate = 0.5});
    CHECK_THROWS_WITH_AS(wrong_shape.load_state(state), doctest::Contains("'w.m' has shape (2, 2)"),
                         Error);
    CHECK(wrong_shape.learning_rate() == 0.5);

    Adam<float> wrong_name(std::vector<Parameter<float>>{{"x", &w, &g, true}});
    CHECK_THROWS_WITH_AS(wrong_name.load_state(state), doctest::Contains("missing buffer 'x.m'"),
                         Error);

    AdamW<float> wrong_type(std::vector<Parameter<float>>{{"w", &w, &g, true}});
    CHECK_THROWS_WITH_AS(wrong_type.load_state(state),
                         doctest::Contains("state of a Adam optimizer into AdamW"), Error);
    SGD<float> sgd(std::vector<Parameter<float>>{{"w", &w, &g, true}});
    CHECK_THROWS_AS(sgd.load_state(state), Error);
}

TEST_CASE("optimisers reject bad options and bad parameters") {
    Tensor<float> w(Shape{2}), g(Shape{2}), g3(Shape{3});
    std::vector<Parameter<float>> params{{"w", &w, &g, true}};
    CHECK_THROWS_AS(SGD<float>(params, {.momentum = 1.0}), Error);
    CHECK_THROWS_AS(SGD<float>(params, {.nesterov = true}), Error);
    CHECK_THROWS_AS(SGD<float>(params, {.learning_rate = -1}), Error);
    CHECK_THROWS_AS(Adam<float>(params, {.beta2 = 1.0}), Error);
    CHECK_THROWS_AS(Adam<float>(params, {.epsilon = 0}), Error);
    CHECK_THROWS_WITH_AS(SGD<float>({{"w", &w, &g, true}, {"w", &w, &g, true}}),
                         doctest::Contains("two parameters"), Error);
    SGD<float> sgd(std::vector<Parameter<float>>{{"w", &w, &g3, true}});
    CHECK_THROWS_WITH_AS(sgd.step(), doctest::Contains("gradient of 'w' has shape (3)"), Error);
    CHECK_THROWS_AS(sgd.set_learning_rate(std::nan("")), Error);
}

TEST_CASE("global gradient-norm clipping") {
    TwoParameters p;
    p.grads(3.0, 4.0);  // norm 5
    SUBCASE("above the limit every gradient is scaled by the same factor") {
        CHECK(clip_gradient_norm(p.list(), 1.0) == doctest::Approx(5.0));
        CHECK(p.w_grad[0] == doctest::Approx(0.6));
        CHECK(p.b_grad[0] == doctest::Approx(0.8));
        CHECK(gradient_norm(p.list()) == doctest::Approx(1.0));
    }
    SUBCASE("below the limit nothing changes") {
        CHECK(clip_gradient_norm(p.list(), 10.0) == doctest::Approx(5.0));
        CHECK(p.w_grad[0] == 3.0);
        CHECK(p.b_grad[0] == 4.0);
    }
    SUBCASE("a NaN gradient is reported by name") {
        p.b_grad[0] = std::numeric_limits<double>::quiet_NaN();
        CHECK_THROWS_WITH_AS(clip_gradient_norm(p.list(), 1.0),
                             doctest::Contains("gradient of 'b'"), Error);
    }
    CHECK_THROWS_AS(clip_gradient_norm(p.list(), 0.0), Error);
}

TEST_CASE("step and constant schedules") {
    StepSchedule step(1.0, 10, 0.5);
    CHECK(step.rate(0) == 1.0);
    CHECK(step.rate(9) == 1.0);
    CHECK(step.rate(10) == 0.5);
    CHECK(step.rate(25) == 0.25);
    CHECK(ConstantSchedule(0.3).rate(12345) == 0.3);
    CHECK_THROWS_AS(StepSchedule(1.0, 0, 0.5), Error);
    CHECK_THROWS_AS(StepSchedule(1.0, 10, 1.5), Error);
}

TEST_CASE("cosine schedule with linear warm-up") {
    CosineSchedule cosine(1.0, 10, 110, 0.0);
    CHECK(cosine.rate(0) == doctest::Approx(0.1));
    CHECK(cosine.rate(4) == doctest::Approx(0.5));
    CHECK(cosine.rate(9) == doctest::Approx(1.0));
    CHECK(cosine.rate(10) == doctest::Approx(1.0));
    CHECK(cosine.rate(35) == doctest::Approx(0.8535533905932737));  // (1 + cos(pi / 4)) / 2
    CHECK(cosine.rate(60) == doctest::Approx(0.5));
    CHECK(cosine.rate(110) == 0.0);
    CHECK(cosine.rate(100000) == 0.0);
    CosineSchedule floor(1.0, 0, 100, 0.1);
    CHECK(floor.rate(0) == doctest::Approx(1.0));
    CHECK(floor.rate(50) == doctest::Approx(0.55));
    CHECK(floor.rate(100) == doctest::Approx(0.1));
    CHECK_THROWS_AS(CosineSchedule(1.0, 10, 10), Error);
    CHECK_THROWS_AS(CosineSchedule(1.0, 0, 10, 2.0), Error);
}

TEST_CASE(
    "reduce-on-plateau waits `patience` epochs, then multiplies by `factor`, not below min_lr") {
    ReduceOnPlateau plateau(1.0, {.factor = 0.5, .patience = 2, .min_lr = 0.2});
    const double losses[] = {1.0, 0.9, 0.95, 0.9, 0.89995, 0.8, 0.8,
                             0.8, 0.8, 0.8,  0.8, 0.8,     0.8, 0.8};
    const double rates[] = {1.0, 1.0,  1.0,  1.0,  0.5, 0.5, 0.5,
                            0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2};
    // Epoch 4 (0.89995) is within the threshold of the best (0.9), so it is the third bad epoch.
    for (int e = 0; e < 14; ++e) {
        plateau.end_epoch(losses[e]);
        CHECK(plateau.rate(0) == doctest::Approx(rates[e]));
    }

    ReduceOnPlateau accuracy(1.0, {.factor = 0.1, .patience = 0, .goal = MetricGoal::Maximize});
    accuracy.end_epoch(0.5);
    accuracy.end_epoch(0.6);
    CHECK(accuracy.rate(0) == 1.0);
    accuracy.end_epoch(0.55);
    CHECK(accuracy.rate(0) == doctest::Approx(0.1));
    CHECK_THROWS_AS(ReduceOnPlateau(1.0, {.factor = 1.0}), Error);
}

TEST_CASE("schedule state round-trips and is checked") {
    ReduceOnPlateau first(1.0, {.factor = 0.5, .patience = 1});
    first.end_epoch(1.0);
    first.end_epoch(1.0);
    ReduceOnPlateau second(7.0);
    second.load_state(first.state());
    CHECK(second.best() == 1.0);
    CHECK(second.bad_epochs() == 1);
    first.end_epoch(1.0);
    second.end_epoch(1.0);
    CHECK(first.rate(0) == 0.5);
    CHECK(second.rate(0) == 0.5);

    CosineSchedule cosine(0.1, 5, 50, 0.01);
    CosineSchedule restored(1.0, 0, 1);
    restored.load_state(cosine.state());
    for (std::size_t s : {0u, 3u, 20u, 49u, 60u}) CHECK(restored.rate(s) == cosine.rate(s));

    CHECK_THROWS_WITH_AS(restored.load_state(first.state()),
                         doctest::Contains("ReduceOnPlateau schedule into Cosine"), Error);
    ScheduleState missing{"Step", {{"lr", 1.0}}};
    StepSchedule step(1.0, 1, 0.5);
    CHECK_THROWS_WITH_AS(step.load_state(missing), doctest::Contains("missing value 'step_size'"),
                         Error);
}
