// Tests of Sequential: shape inference, the summary of the reference model fer-cnn-s, a
// finite-difference gradient check of a whole small CNN, training a small CNN on a synthetic task,
// bit-identical reruns, storage reuse between steps, prediction, bad input, and steps with NaN or
// infinite values (refused, naming the layer, with nothing changed).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "facet/layers/activations.hpp"
#include "facet/layers/batchnorm.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/dropout.hpp"
#include "facet/layers/flatten.hpp"
#include "facet/layers/maxpool2d.hpp"
#include "facet/loss/softmax_cross_entropy.hpp"
#include "facet/model/interpolate.hpp"
#include "facet/model/sequential.hpp"
#include "facet/optim/adam.hpp"
#include "facet/optim/sgd.hpp"
#include "fer/model_zoo.hpp"

using namespace facet;

namespace {

/// A small CNN: conv-BN-ReLU-pool, dense. `seed` draws the initial weights.
template <typename T>
Sequential<T> small_cnn(std::size_t side, std::size_t classes, std::uint64_t seed,
                        bool dropout = false, std::size_t channels = 4) {
    Sequential<T> m(Shape{1, side, side});
    m.template add<Conv2d<T>>(1, channels, 3, 1, 1, false, seed);
    m.template add<BatchNorm2d<T>>(channels);
    m.template add<ReLU<T>>();
    m.template add<MaxPool2d<T>>(2);
    if (dropout) m.template add<Dropout<T>>(0.2, seed);
    m.template add<Flatten<T>>();
    m.template add<Dense<T>>(channels * (side / 2) * (side / 2), classes, true, seed + 1);
    return m;
}

/// Images with one bright bar on noise: label 0 for a horizontal bar, 1 for a vertical one; the
/// bar's position and length vary.
void make_bars(Rng& rng, std::size_t n, std::size_t side, Tensor<float>& images,
               std::vector<int>& labels) {
    images.resize(Shape{n, 1, side, side});
    labels.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        const int label = static_cast<int>(rng.below(2));
        const std::size_t line = rng.below(side), length = side / 2 + rng.below(side / 2 + 1);
        const std::size_t start = rng.below(side - length + 1);
        for (std::size_t y = 0; y < side; ++y)
            for (std::size_t x = 0; x < side; ++x) {
                const bool on_bar = label == 0 ? (y == line && x >= start && x < start + length)
                                               : (x == line && y >= start && y < start + length);
                images(i, 0, y, x) = static_cast<float>((on_bar ? 1.0 : 0.0) + rng.normal(0, 0.3));
            }
        labels[i] = label;
    }
}

/// Trains small_cnn on bars for `epochs` and returns the model.
Sequential<float> train_bars(std::uint64_t seed, std::size_t epochs, double* final_loss = nullptr) {
    constexpr std::size_t side = 12, n = 512, batch = 32;
    Rng rng(seed);
    Tensor<float> images;
    std::vector<int> labels;
    make_bars(rng, n, side, images, labels);
    Sequential<float> model = small_cnn<float>(side, 2, seed, true, 8);
    Adam<float> adam(model.parameters(), {.learning_rate = 0.03});
    SoftmaxCrossEntropy<float> loss;
    for (std::size_t e = 0; e < epochs; ++e)
        for (std::size_t b = 0; b < n; b += batch) {
            const std::vector<int> batch_labels(labels.begin() + static_cast<long>(b),
                                                labels.begin() + static_cast<long>(b + batch));
            const StepResult r =
                model.train_step(images.slice(b, b + batch), batch_labels, loss, adam);
            if (final_loss) *final_loss = r.loss;
        }
    return model;
}

}  // namespace

TEST_CASE("fer-cnn-s: shapes are inferred and the summary counts parameters and FLOPs") {
    // The model the fer program trains, from its model zoo (not a copy that could drift from it).
    Sequential<float> m = fer::build_model("fer-cnn-s", 1);
    CHECK(m.size() == 30);
    CHECK(m.output_shape(0) == Shape{32, 48, 48});
    CHECK(m.output_shape(7) == Shape{32, 24, 24});
    CHECK(m.output_shape(23) == Shape{128, 6, 6});
    CHECK(m.output_shape(24) == Shape{4608});
    CHECK(m.output_shape() == Shape{7});

    const ModelSummary s = m.summary();
    // By hand: convs 288 + 9216 + 18432 + 36864 + 73728 + 147456, BN 2 * (32+32+64+64+128+128+256),
    // dense 4608*256 (no bias: the batch norm after it has beta) and 256*7 + 7.
    CHECK(s.total_parameters == 1468839);
    CHECK(m.parameter_count() == 1468839);
    REQUIRE(s.layers.size() == 30);
    CHECK(s.layers[0].parameters == 288);
    CHECK(s.layers[25].parameters == 4608 * 256);
    // 86.78 M multiply-adds in convolutions and dense layers (2 FLOPs each,
    // plus one per bias value: the last dense layer's).
    std::size_t conv_dense_flops = 0;
    for (const LayerSummary& row : s.layers)
        if (row.description.rfind("Conv2d", 0) == 0 || row.description.rfind("Dense", 0) == 0)
            conv_dense_flops += row.flops;
    CHECK(conv_dense_flops == 2 * 86779648 + 7);
    CHECK(s.total_flops > conv_dense_flops);

    const std::string table = s.table();
    CHECK(table.find("(128, 6, 6)") != std::string::npos);
    CHECK(table.find("1468839") != std::string::npos);

    const auto& params = m.parameters();
    CHECK(params.front().name == "0.weight");
    CHECK(params[1].name == "1.gamma");
    CHECK(params.back().name == "29.bias");
    CHECK(m.buffers().front().first == "1.running_mean");
}

TEST_CASE(
    "fer-cnn-mc: fer-cnn-m's convolutions, a 1x1 squeeze, no more parameters than fer-cnn-s") {
    Sequential<float> m = fer::build_model("fer-cnn-mc", 1);
    Sequential<float> wide = fer::build_model("fer-cnn-m", 1);
    // The first 24 layers (to the last dropout) as fer-cnn-m's, then conv1x1 - BN - ReLU.
    REQUIRE(m.size() == 33);
    for (std::size_t i = 0; i < 24; ++i) {
        CAPTURE(i);
        CHECK(m.output_shape(i) == wide.output_shape(i));
        CHECK(m.layer(i).parameter_count() == wide.layer(i).parameter_count());
    }
    CHECK(m.output_shape(23) == Shape{256, 6, 6});
    CHECK(m.output_shape(24) == Shape{32, 6, 6});
    CHECK(m.output_shape(27) == Shape{1152});
    CHECK(m.output_shape() == Shape{7});
    // By hand: convs 576 + 36864 + 73728 + 147456 + 294912 + 589824, their BN 2 * 896, the
    // squeeze 256*32 and its BN 2*32, dense 1152*256, BN 2*256, dense 256*7 + 7.
    CHECK(m.layer(24).parameter_count() == 256 * 32);
    CHECK(m.layer(28).parameter_count() == 1152 * 256);
    CHECK(m.parameter_count() == 1450631);
    CHECK(m.parameter_count() <= fer::build_model("fer-cnn-s", 1).parameter_count());
    Tensor<float> x(Shape{2, 1, 48, 48});
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(i % 17) / 17.0f - 0.5f;
    m.set_mode(Mode::Eval);
    const Tensor<float> p = m.predict(x);
    REQUIRE(p.shape() == Shape{2, 7});
    for (std::size_t n = 0; n < 2; ++n) {
        double sum = 0;
        for (std::size_t k = 0; k < 7; ++k) sum += p[n * 7 + k];
        CHECK(sum == doctest::Approx(1.0).epsilon(1e-5));
    }
}

TEST_CASE("a layer that does not fit the previous output is refused, naming its position") {
    Sequential<float> m(Shape{1, 8, 8});
    m.add<Conv2d<float>>(1, 2, 3);
    CHECK_THROWS_WITH_AS(m.add<Conv2d<float>>(3, 2, 3), doctest::Contains("layer 1 (Conv2d"),
                         Error);
    CHECK_THROWS_WITH_AS(m.add<Dense<float>>(72, 2),
                         doctest::Contains("cannot take input (2, 6, 6)"), Error);
    CHECK(m.size() == 1);  // the refused layers were not added
    m.add<Flatten<float>>();
    m.add<Dense<float>>(72, 2);
    CHECK(m.output_shape() == Shape{2});

    Tensor<float> wrong(Shape{2, 1, 8, 9});
    CHECK_THROWS_WITH_AS(m.forward(wrong), doctest::Contains("(N, 1, 8, 8)"), Error);
    Tensor<float> right(Shape{2, 1, 8, 8});
    m.forward(right);
    CHECK_THROWS_AS(m.backward(Tensor<float>(Shape{3, 2})), Error);
    CHECK_THROWS_AS(Sequential<float>(Shape{}), Error);
    CHECK_THROWS_AS(Sequential<float>(Shape{1, 0, 4}), Error);
    Sequential<float> empty(Shape{4});
    CHECK_THROWS_AS(empty.forward(Tensor<float>(Shape{1, 4})), Error);
}

TEST_CASE("the gradients of a whole small CNN match central finite differences (double)") {
    Sequential<double> m = small_cnn<double>(6, 3, 11, true);
    Rng rng(5);
    Tensor<double> x(Shape{4, 1, 6, 6});
    x.fill_normal(rng, 0, 1);
    const std::vector<int> labels{0, 2, 1, 2};
    SoftmaxCrossEntropy<double> loss;
    auto objective = [&] {
        m.reseed(99);  // the same dropout masks in every evaluation
        return loss.forward(m.forward(x), labels);
    };
    objective();
    Tensor<double> dlogits;
    loss.backward(dlogits);
    const Tensor<double> dx = m.backward(dlogits);

    constexpr double h = 1e-5;
    auto check_against_differences = [&](Tensor<double>& value, const Tensor<double>& analytic,
                                         const std::string& what) {
        std::size_t bad = 0;
        for (std::size_t i = 0; i < value.size(); ++i) {
            const double saved = value[i];
            value[i] = saved + h;
            const double up = objective();
            value[i] = saved - h;
            const double down = objective();
            value[i] = saved;
            const double numeric = (up - down) / (2 * h);
            if (std::abs(numeric - analytic[i]) > 1e-6 + 1e-5 * std::abs(numeric)) {
                if (bad++ < 3)
                    MESSAGE(what, "[", i, "]: numeric ", numeric, " analytic ", analytic[i]);
            }
        }
        CHECK_MESSAGE(bad == 0, what);
    };
    std::size_t checked = 0;
    for (const Parameter<double>& p : m.parameters()) {
        const Tensor<double> analytic = *p.grad;
        check_against_differences(*p.value, analytic, p.name);
        checked += p.value->size();
    }
    check_against_differences(x, dx, "input");
    CHECK(checked == 4 * 9 + 4 + 4 + 36 * 3 + 3);
    CHECK_FALSE(m.activation_kept(1));  // the batch norm and its ReLU ran fused, as in training
}

/// small_cnn with a dense hidden layer, batch norm and ReLU (BatchNorm1d before a ReLU, too).
template <typename T>
Sequential<T> cnn_with_dense_bn(std::uint64_t seed) {
    Sequential<T> m(Shape{1, 8, 8});
    m.template add<Conv2d<T>>(1, 5, 3, 1, 1, false, seed);
    m.template add<BatchNorm2d<T>>(5);
    m.template add<ReLU<T>>();
    m.template add<MaxPool2d<T>>(2);
    m.template add<Flatten<T>>();
    m.template add<Dense<T>>(80, 16, false, seed + 1);
    m.template add<BatchNorm1d<T>>(16);
    m.template add<ReLU<T>>();
    m.template add<Dense<T>>(16, 3, true, seed + 2);
    return m;
}

TEST_CASE("batch norm fused with the ReLU after it gives the unfused outputs and gradients") {
    Sequential<float> fused = cnn_with_dense_bn<float>(4), plain = cnn_with_dense_bn<float>(4);
    plain.set_fusion(false);
    REQUIRE(fused.fusion());
    // gamma and beta away from 1 and 0, so the ReLU's mask is not simply the sign of x - mean
    Rng rng(8);
    for (Sequential<float>* m : {&fused, &plain}) {
        Rng same(8);
        for (std::size_t layer : {1, 6}) {
            auto& bn = static_cast<BatchNorm<float>&>(m->layer(layer));
            for (float& g : bn.gamma()) g = float(same.uniform(0.5, 1.5));
            for (float& b : bn.beta()) b = float(same.uniform(-0.5, 0.5));
        }
    }
    Tensor<float> x(Shape{6, 1, 8, 8});
    x.fill_normal(rng, 0, 1);
    const std::vector<int> labels{0, 1, 2, 2, 1, 0};
    auto close = [](const Tensor<float>& a, const Tensor<float>& b, const char* what) {
        REQUIRE(a.shape() == b.shape());
        std::size_t bad = 0;
        for (std::size_t i = 0; i < a.size(); ++i)
            if (std::abs(a[i] - b[i]) > 1e-5f + 1e-5f * std::abs(b[i])) ++bad;
        CHECK_MESSAGE(bad == 0, what);
    };
    for (Mode mode : {Mode::Train, Mode::Eval}) {
        CAPTURE(mode == Mode::Train ? "train" : "eval");
        fused.set_mode(mode);
        plain.set_mode(mode);
        SoftmaxCrossEntropy<float> loss;
        Tensor<float> dlogits;
        close(fused.forward(x), plain.forward(x), "logits");
        loss.forward(plain.activation(plain.size() - 1), labels);
        loss.backward(dlogits);
        const Tensor<float> dx_fused = fused.backward(dlogits), dx_plain = plain.backward(dlogits);
        close(dx_fused, dx_plain, "input gradient");
        for (std::size_t k = 0; k < fused.parameters().size(); ++k)
            close(*fused.parameters()[k].grad, *plain.parameters()[k].grad,
                  fused.parameters()[k].name.c_str());
        // The ReLU outputs are kept either way; the fused batch norms' outputs are not.
        CHECK_FALSE(fused.activation_kept(1));
        CHECK_FALSE(fused.activation_kept(6));
        CHECK(fused.activation_kept(2));
        CHECK(plain.activation_kept(1));
        close(fused.activation(2), plain.activation(2), "ReLU output");
        CHECK_THROWS_WITH_AS(fused.activation(6),
                             doctest::Contains("fused with the layer after it"), Error);
    }
    // Running statistics moved the same way in the training pass.
    for (std::size_t b = 0; b < fused.buffers().size(); ++b)
        close(*fused.buffers()[b].second, *plain.buffers()[b].second, "running statistics");
}

/// Every pattern predict()'s plan fuses: conv (with bias) + BN2d + ReLU, conv + BN2d alone,
/// dropout as the identity, dense + BN1d + ReLU; and layers it leaves alone.
Sequential<float> inference_fusion_model(std::uint64_t seed) {
    Sequential<float> m(Shape{1, 8, 8});
    m.add<Conv2d<float>>(1, 4, 3, 1, 1, true, seed);
    m.add<BatchNorm2d<float>>(4);
    m.add<ReLU<float>>();
    m.add<Conv2d<float>>(4, 6, 3, 1, 1, false, seed + 1);
    m.add<BatchNorm2d<float>>(6);
    m.add<MaxPool2d<float>>(2);
    m.add<Dropout<float>>(0.25, seed + 2);
    m.add<Flatten<float>>();
    m.add<Dense<float>>(96, 10, true, seed + 3);
    m.add<BatchNorm1d<float>>(10);
    m.add<ReLU<float>>();
    m.add<Dropout<float>>(0.5, seed + 4);
    m.add<Dense<float>>(10, 3, true, seed + 5);
    return m;
}

TEST_CASE("predict's fused inference pass gives the layer-by-layer eval outputs") {
    using Kind = Sequential<float>::InferenceStep::Kind;
    Sequential<float> fused = inference_fusion_model(9), plain = inference_fusion_model(9);
    plain.set_fusion(false);
    // Running statistics, gamma and beta far from their initial 0, 1, 1, 0, and conv biases
    // not zero, so that a map applied wrongly (or not at all) shows.
    for (Sequential<float>* m : {&fused, &plain}) {
        Rng same(21);
        for (std::size_t layer : {1, 4, 9}) {
            auto& bn = static_cast<BatchNorm<float>&>(m->layer(layer));
            for (float& v : bn.gamma()) v = float(same.uniform(0.5, 1.5));
            for (float& v : bn.beta()) v = float(same.uniform(-0.5, 0.5));
            for (float& v : bn.running_mean()) v = float(same.uniform(-1, 1));
            for (float& v : bn.running_var()) v = float(same.uniform(0.2, 3));
        }
        for (float& v : static_cast<Conv2d<float>&>(m->layer(0)).bias())
            v = float(same.uniform(-1, 1));
    }

    const auto plan = fused.inference_plan();
    const std::vector<std::size_t> firsts{0, 3, 5, 6, 7, 8, 11, 12}, counts{3, 2, 1, 1, 1, 3, 1, 1};
    const std::vector<Kind> kinds{Kind::AffineEpilogue, Kind::AffineEpilogue, Kind::Layer,
                                  Kind::Identity,       Kind::Layer,          Kind::AffineEpilogue,
                                  Kind::Identity,       Kind::Layer};
    REQUIRE(plan.size() == kinds.size());
    for (std::size_t s = 0; s < plan.size(); ++s) {
        CAPTURE(s);
        CHECK(plan[s].first == firsts[s]);
        CHECK(plan[s].count == counts[s]);
        CHECK(plan[s].kind == kinds[s]);
    }
    for (const auto& step : plain.inference_plan()) CHECK(step.kind == Kind::Layer);

    Rng rng(4);
    for (std::size_t batch : {1, 5}) {
        Tensor<float> x(Shape{batch, 1, 8, 8});
        x.fill_normal(rng, 0, 1);
        for (int threads : {1, 2}) {
            CAPTURE(batch);
            CAPTURE(threads);
            set_num_threads(threads);
            const Tensor<float> expected = plain.predict(x);
            const Tensor<float>& got = fused.predict(x);
            REQUIRE(got.shape() == expected.shape());
            std::size_t bad = 0;
            for (std::size_t i = 0; i < got.size(); ++i)
                if (std::abs(got[i] - expected[i]) > 1e-6f + 1e-6f * std::abs(expected[i])) ++bad;
            CHECK(bad == 0);
            // The fused layers' outputs were never formed; each step's last one was.
            CHECK_FALSE(fused.activation_kept(0));
            CHECK_FALSE(fused.activation_kept(1));
            CHECK(fused.activation_kept(2));
            CHECK_FALSE(fused.activation_kept(6));  // dropout, skipped
            CHECK(fused.activation_kept(12));
        }
    }
    set_num_threads(0);
    CHECK(fused.mode() == Mode::Train);  // predict puts the mode back
    Tensor<float> dlogits(Shape{5, 3});
    CHECK_THROWS_WITH_AS(fused.backward(dlogits), doctest::Contains("call forward() first"), Error);

    // The map needs running statistics, and must fit the layer it is applied to.
    auto& bn = static_cast<BatchNorm<float>&>(fused.layer(1));
    bn.set_mode(Mode::Train);
    CHECK_THROWS_WITH_AS(bn.inference_affine(true), doctest::Contains("needs Mode::Eval"), Error);
    bn.set_mode(Mode::Eval);
    const ChannelAffine<float> four = bn.inference_affine(false);
    Tensor<float> x(Shape{2, 4, 8, 8}), y;
    CHECK_THROWS_WITH_AS(static_cast<Conv2d<float>&>(fused.layer(3)).forward_affine(x, y, &four),
                         doctest::Contains("4 channels in the map, the layer has 6"), Error);
}

TEST_CASE("a small CNN learns horizontal vs vertical bars to >= 95 % accuracy") {
    double final_loss = 0;
    Sequential<float> model = train_bars(2024, 6, &final_loss);
    CHECK(final_loss < 0.3);
    Rng test_rng(777);
    Tensor<float> images;
    std::vector<int> labels;
    make_bars(test_rng, 400, 12, images, labels);
    const Tensor<float>& probs = model.predict(images);
    const double accuracy = Sequential<float>::accuracy(probs, labels);
    MESSAGE("held-out accuracy ", accuracy);
    CHECK(accuracy >= 0.95);
    CHECK(model.mode() == Mode::Train);  // predict restores the mode
}

TEST_CASE("training twice with the same seed gives bit-identical weights and buffers") {
    Sequential<float> a = train_bars(31, 1), b = train_bars(31, 1), c = train_bars(32, 1);
    bool same = true, differs_with_other_seed = false;
    for (std::size_t i = 0; i < a.parameters().size(); ++i) {
        const Tensor<float>& wa = *a.parameters()[i].value;
        same = same && std::equal(wa.begin(), wa.end(), b.parameters()[i].value->begin());
        differs_with_other_seed =
            differs_with_other_seed ||
            !std::equal(wa.begin(), wa.end(), c.parameters()[i].value->begin());
    }
    auto ba = a.buffers(), bb = b.buffers();
    for (std::size_t i = 0; i < ba.size(); ++i)
        same =
            same && std::equal(ba[i].second->begin(), ba[i].second->end(), bb[i].second->begin());
    CHECK(same);
    CHECK(differs_with_other_seed);
}

TEST_CASE("activations and gradients keep their storage from step to step") {
    Sequential<float> m = small_cnn<float>(8, 3, 1, true);
    SGD<float> sgd(m.parameters(), {.learning_rate = 0.01, .momentum = 0.9});
    SoftmaxCrossEntropy<float> loss;
    Rng rng(3);
    Tensor<float> big(Shape{16, 1, 8, 8});
    big.fill_normal(rng, 0, 1);
    std::vector<int> labels(16);
    for (int& l : labels) l = static_cast<int>(rng.below(3));
    m.train_step(big, labels, loss, sgd);
    std::vector<const float*> storage;
    for (std::size_t i = 0; i < m.size(); ++i)
        storage.push_back(m.activation_kept(i) ? m.activation(i).data() : nullptr);
    // A smaller last batch, then a full one again: the same buffers serve all of them.
    m.train_step(big.slice(0, 5), std::vector<int>(labels.begin(), labels.begin() + 5), loss, sgd);
    m.train_step(big, labels, loss, sgd);
    for (std::size_t i = 0; i < m.size(); ++i)
        if (m.activation_kept(i)) CHECK(m.activation(i).data() == storage[i]);
}

TEST_CASE("train_step with a gradient-norm limit takes the step of clip_gradient_norm") {
    // Model a steps with train_step's limit; model b computes the same gradients, clips them
    // with clip_gradient_norm and steps by hand. Same weights after, bit for bit.
    Sequential<float> a = small_cnn<float>(8, 3, 4), b = small_cnn<float>(8, 3, 4);
    SGD<float> sgd_a(a.parameters(), {.learning_rate = 0.1}),
        sgd_b(b.parameters(), {.learning_rate = 0.1});
    SoftmaxCrossEntropy<float> loss_a, loss_b;
    Rng rng(12);
    Tensor<float> x(Shape{6, 1, 8, 8});
    x.fill_normal(rng, 0, 1);
    const std::vector<int> labels{0, 1, 2, 0, 1, 2};
    const double limit = 1e-3;  // far below the gradient norm: the clip must act
    const StepResult r = a.train_step(x, labels, loss_a, sgd_a, limit);
    b.set_mode(Mode::Train);
    loss_b.forward(b.forward(x), labels);
    Tensor<float> dlogits;
    loss_b.backward(dlogits);
    b.backward(dlogits);
    const double norm = clip_gradient_norm(b.parameters(), limit);
    sgd_b.step();
    CHECK(norm > 10 * limit);
    CHECK(r.gradient_norm == norm);
    const auto pa = a.parameters(), pb = b.parameters();
    for (std::size_t i = 0; i < pa.size(); ++i)
        for (std::size_t j = 0; j < pa[i].value->size(); ++j)
            REQUIRE((*pa[i].value)[j] == (*pb[i].value)[j]);
}

TEST_CASE("predict gives probabilities in eval mode; a NaN loss stops training before any update") {
    Sequential<float> m = small_cnn<float>(8, 3, 1, true);
    Rng rng(4);
    Tensor<float> x(Shape{5, 1, 8, 8});
    x.fill_normal(rng, 0, 1);
    const Tensor<float> p1 = m.predict(x);
    const Tensor<float> p2 = m.predict(x);  // no dropout, running statistics: deterministic
    REQUIRE(p1.shape() == Shape{5, 3});
    CHECK(std::equal(p1.begin(), p1.end(), p2.begin()));
    for (std::size_t i = 0; i < 5; ++i)
        CHECK(p1(i, 0) + p1(i, 1) + p1(i, 2) == doctest::Approx(1.0f));

    SGD<float> sgd(m.parameters());
    SoftmaxCrossEntropy<float> loss;
    const Tensor<float> before = *m.parameters()[0].value;
    x[7] = std::nanf("");
    CHECK_THROWS_WITH_AS(m.train_step(x, std::vector<int>{0, 1, 2, 0, 1}, loss, sgd),
                         doctest::Contains("NaN"), Error);
    CHECK(std::equal(before.begin(), before.end(), m.parameters()[0].value->begin()));
}

namespace {

/// Every parameter and buffer value of a model, in order.
std::vector<float> all_values(Sequential<float>& m) {
    std::vector<float> v;
    for (const Parameter<float>& p : m.parameters())
        v.insert(v.end(), p.value->begin(), p.value->end());
    for (const auto& [name, t] : m.buffers()) v.insert(v.end(), t->begin(), t->end());
    return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// Cross-entropy whose gradient is poisoned with infinity: the loss stays finite, the gradients
/// of every layer (from the last one down) do not.
struct InfiniteGradientLoss {
    SoftmaxCrossEntropy<float> inner;
    float forward(const Tensor<float>& logits, const std::vector<int>& labels) {
        return inner.forward(logits, labels);
    }
    void backward(Tensor<float>& dlogits) const {
        inner.backward(dlogits);
        dlogits[0] = std::numeric_limits<float>::infinity();
    }
};

Tensor<float> random_batch(std::uint64_t seed, std::size_t n, std::vector<int>& labels) {
    Rng rng(seed);
    Tensor<float> x(Shape{n, 1, 8, 8});
    x.fill_normal(rng, 0, 1);
    labels.resize(n);
    for (int& l : labels) l = static_cast<int>(rng.below(3));
    return x;
}

}  // namespace

TEST_CASE(
    "a non-finite step names the layer, changes nothing, and skipping it is as if it never came") {
    // Two models trained on the same good batches; `a` also meets bad ones in between, which it
    // refuses. Skipping them must leave `a` bit-identical to `b`: weights, batch-norm running
    // statistics and Adam's moments and step count.
    Sequential<float> a = small_cnn<float>(8, 3, 9), b = small_cnn<float>(8, 3, 9);
    Adam<float> adam_a(a.parameters(), {.learning_rate = 0.01}),
        adam_b(b.parameters(), {.learning_rate = 0.01});
    SoftmaxCrossEntropy<float> loss;
    std::vector<int> labels1, labels2;
    const Tensor<float> good1 = random_batch(1, 6, labels1), good2 = random_batch(2, 6, labels2);
    a.train_step(good1, labels1, loss, adam_a);
    b.train_step(good1, labels1, loss, adam_b);
    const std::vector<float> before = all_values(a);

    SUBCASE("a NaN in the input: the error says so") {
        // Whether the loss sees it depends on the layers (ReLU and max-pool can drop a NaN on the
        // way forward, the gradients then carry it), so either kind is right; the input is named.
        Tensor<float> bad = good2;
        bad[3] = std::nanf("");
        try {
            a.train_step(bad, labels2, loss, adam_a);
            FAIL("no error");
        } catch (const NonFiniteError& e) {
            CHECK(e.input_not_finite());
            CHECK(std::string(e.what()).find("the input batch holds NaN") != std::string::npos);
        }
    }
    SUBCASE("an infinite batch-norm scale: the first non-finite output is that layer's") {
        Tensor<float>& gamma = *a.parameters()[1].value;  // layer 1 is BatchNorm2d
        REQUIRE(a.parameters()[1].name == "1.gamma");
        const float kept = gamma[0];
        gamma[0] = std::numeric_limits<float>::infinity();
        try {
            a.train_step(good2, labels2, loss, adam_a);
            FAIL("no error");
        } catch (const NonFiniteError& e) {
            CHECK(e.kind() == NonFiniteError::Kind::Loss);
            CHECK(!e.input_not_finite());
            CHECK(e.layer() == 1);
            CHECK(e.layer_description().rfind("BatchNorm2d(", 0) == 0);
            CHECK(std::string(e.what()).find("layer 1 BatchNorm2d(") != std::string::npos);
        }
        gamma[0] = kept;  // the running statistics must still be the ones from before
    }
    SUBCASE("a finite loss with infinite gradients: the layer nearest the output is named") {
        InfiniteGradientLoss poisoned;
        try {
            a.train_step(good2, labels2, poisoned, adam_a);
            FAIL("no error");
        } catch (const NonFiniteError& e) {
            CHECK(e.kind() == NonFiniteError::Kind::Gradient);
            CHECK(std::isfinite(e.loss()));
            CHECK(e.layer() == a.size() - 1);  // the Dense layer; the conv below is bad too
            CHECK(e.parameter() == std::to_string(a.size() - 1) + ".bias");
            CHECK(!e.step());
            const NonFiniteError numbered = e.at_step(42);
            CHECK(numbered.step() == std::uint64_t{42});
            CHECK(std::string(numbered.what())
                      .find("non-finite gradient at step 42: layer 5 Dense(") == 0);
        }
    }
    CHECK(same_bits(all_values(a), before));
    CHECK(adam_a.state().scalar("steps") == 1);

    a.train_step(good2, labels2, loss, adam_a);
    b.train_step(good2, labels2, loss, adam_b);
    CHECK(same_bits(all_values(a), all_values(b)));
    CHECK(adam_a.state().scalar("steps") == adam_b.state().scalar("steps"));
    const auto ma = adam_a.state().tensors, mb = adam_b.state().tensors;
    for (std::size_t i = 0; i < ma.size(); ++i)
        CHECK(std::memcmp(ma[i].second.data(), mb[i].second.data(),
                          ma[i].second.size() * sizeof(float)) == 0);
}

// ---- Fusion by declared capabilities: layers defined only here take part (or not) through the
// fusion hooks of layer.hpp, with no change to Sequential.

namespace {

/// A producer defined only here: y[n, c, ...] = gain[c] * x[n, c, ...]. It declares an affine
/// epilogue, so predict() folds the batch norm (and ReLU) after it into its forward pass.
template <typename T>
class ChannelGain : public Layer<T> {
  public:
    explicit ChannelGain(std::size_t channels) {
        gain_.resize(Shape{channels});
        gain_grad_.resize(Shape{channels});
        for (std::size_t c = 0; c < channels; ++c) gain_[c] = T(0.5) + T(0.25) * T(c);
    }
    std::string type() const override { return "ChannelGain"; }
    Shape output_shape(const Shape& input) const override {
        check(input[0] == gain_.size(), "ChannelGain: wrong channel count");
        return input;
    }
    void forward(const Tensor<T>& x, Tensor<T>& y) override { forward_affine(x, y, nullptr); }
    bool applies_affine_epilogue() const override { return true; }
    void forward_affine(const Tensor<T>& x, Tensor<T>& y, const ChannelAffine<T>* affine) override {
        y.resize(x.shape());
        const std::size_t C = gain_.size(), S = x.size() / (x.dim(0) * C);
        for (std::size_t n = 0; n < x.dim(0); ++n)
            for (std::size_t c = 0; c < C; ++c) {
                const std::size_t at = (n * C + c) * S;
                for (std::size_t s = 0; s < S; ++s) y[at + s] = gain_[c] * x[at + s];
                if (affine) affine->apply_plane(c, y.data() + at, S);
            }
    }
    // dx = gain[c] * dy; dgain[c] = sum over n and the plane of x * dy.
    void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        dx.resize(x.shape());
        gain_grad_.zero();
        const std::size_t C = gain_.size(), S = x.size() / (x.dim(0) * C);
        for (std::size_t i = 0; i < x.size(); ++i) {
            const std::size_t c = (i / S) % C;
            dx[i] = gain_[c] * dy[i];
            gain_grad_[c] += x[i] * dy[i];
        }
    }
    std::vector<Parameter<T>> parameters() override {
        return {{"gain", &gain_, &gain_grad_, false}};
    }
    LayerConfig config() const override { return {"ChannelGain", {{"channels", gain_.size()}}}; }

  private:
    Tensor<T> gain_, gain_grad_;
};

/// An activation defined only here that is max(0, x) and says so.
template <typename T>
class Rectifier : public Layer<T> {
  public:
    std::string type() const override { return "Rectifier"; }
    Shape output_shape(const Shape& input) const override { return input; }
    void forward(const Tensor<T>& x, Tensor<T>& y) override {
        y.resize(x.shape());
        for (std::size_t i = 0; i < x.size(); ++i) y[i] = std::max(x[i], T(0));
    }
    // dx = dy where x > 0, else 0.
    void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        dx.resize(x.shape());
        for (std::size_t i = 0; i < x.size(); ++i) dx[i] = x[i] > T(0) ? dy[i] : T(0);
    }
    bool is_relu() const override { return true; }
    LayerConfig config() const override { return {"Rectifier", {}}; }
};

/// A subclass of ReLU that changes forward and backward (a leaky ReLU, slope 0.5) and so turns
/// the capability it inherited off: it must not be fused.
template <typename T>
class HalfLeakyReLU : public ReLU<T> {
  public:
    std::string type() const override { return "HalfLeakyReLU"; }
    void forward(const Tensor<T>& x, Tensor<T>& y) override {
        y.resize(x.shape());
        for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] > T(0) ? x[i] : T(0.5) * x[i];
    }
    // dx = dy where x > 0, else dy / 2.
    void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        dx.resize(x.shape());
        for (std::size_t i = 0; i < x.size(); ++i) dx[i] = x[i] > T(0) ? dy[i] : T(0.5) * dy[i];
    }
    bool is_relu() const override { return false; }
};

/// How many values of a and b differ by more than 1e-5 (absolute plus relative).
std::size_t count_far(const Tensor<float>& a, const Tensor<float>& b) {
    REQUIRE(a.shape() == b.shape());
    std::size_t far = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::abs(a[i] - b[i]) > 1e-5f + 1e-5f * std::abs(b[i])) ++far;
    return far;
}

/// conv -> BN2d -> activation A -> ChannelGain -> BN2d -> Rectifier -> flatten -> dense, with
/// batch-norm statistics and affine parameters away from their initial values.
template <template <typename> class A>
Sequential<float> capability_model() {
    Sequential<float> m(Shape{2, 6, 6});
    m.add<Conv2d<float>>(2, 3, 3, 1, 1, true, 5);
    m.add<BatchNorm2d<float>>(3);
    m.add<A<float>>();
    m.add<ChannelGain<float>>(3);
    m.add<BatchNorm2d<float>>(3);
    m.add<Rectifier<float>>();
    m.add<Flatten<float>>();
    m.add<Dense<float>>(108, 4, true, 6);
    Rng same(12);
    for (std::size_t layer : {1, 4}) {
        auto& bn = static_cast<BatchNorm<float>&>(m.layer(layer));
        for (float& v : bn.gamma()) v = float(same.uniform(0.5, 1.5));
        for (float& v : bn.beta()) v = float(same.uniform(-0.5, 0.5));
        for (float& v : bn.running_mean()) v = float(same.uniform(-1, 1));
        for (float& v : bn.running_var()) v = float(same.uniform(0.2, 3));
    }
    return m;
}

/// Predicts, then trains three steps, with fusion on and off, and checks both agree.
void check_fused_equals_unfused(Sequential<float>& fused, Sequential<float>& plain) {
    plain.set_fusion(false);
    Rng rng(3);
    Tensor<float> x(Shape{5, 2, 6, 6});
    x.fill_normal(rng, 0, 1);
    CHECK(count_far(fused.predict(x), plain.predict(x)) == 0);
    const std::vector<int> labels{0, 1, 2, 3, 1};
    SoftmaxCrossEntropy<float> loss_a, loss_b;
    SGD<float> opt_a(fused.parameters(), {.learning_rate = 0.05}),
        opt_b(plain.parameters(), {.learning_rate = 0.05});
    for (int step = 0; step < 3; ++step) {
        CAPTURE(step);
        const StepResult a = fused.train_step(x, labels, loss_a, opt_a);
        const StepResult b = plain.train_step(x, labels, loss_b, opt_b);
        CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-5));
        for (std::size_t k = 0; k < fused.parameters().size(); ++k)
            CHECK(count_far(*fused.parameters()[k].value, *plain.parameters()[k].value) == 0);
    }
    CHECK(count_far(fused.predict(x), plain.predict(x)) == 0);
}

}  // namespace

TEST_CASE("layers defined outside the library take part in fusion through their declarations") {
    using Kind = Sequential<float>::InferenceStep::Kind;
    Sequential<float> fused = capability_model<ReLU>(), plain = capability_model<ReLU>();
    // The test-only producer takes the batch norm and the test-only rectifier as its epilogue.
    const auto plan = fused.inference_plan();
    REQUIRE(plan.size() == 4);
    CHECK((plan[0].kind == Kind::AffineEpilogue && plan[0].count == 3));
    CHECK((plan[1].kind == Kind::AffineEpilogue && plan[1].first == 3 && plan[1].count == 3));
    CHECK((plan[2].kind == Kind::Layer && plan[3].kind == Kind::Layer));
    // In training, a batch norm fuses with the rectifier after it as with a ReLU.
    CHECK(fused.fused_with_next(1));
    CHECK(fused.fused_with_next(4));
    check_fused_equals_unfused(fused, plain);
    CHECK_FALSE(fused.activation_kept(4));  // the training pass did not form the BN's output
}

TEST_CASE("a subclass that changes forward and turns its capability off is not fused") {
    using Kind = Sequential<float>::InferenceStep::Kind;
    Sequential<float> fused = capability_model<HalfLeakyReLU>(),
                      plain = capability_model<HalfLeakyReLU>();
    CHECK_FALSE(fused.fused_with_next(1));  // a ReLU's subclass, but no longer a ReLU
    const auto plan = fused.inference_plan();
    REQUIRE(plan.size() == 5);
    CHECK((plan[0].kind == Kind::AffineEpilogue && plan[0].count == 2));  // conv + BN only
    CHECK((plan[1].kind == Kind::Layer && plan[1].first == 2));
    check_fused_equals_unfused(fused, plain);
    // Fusing it would have been wrong: its output has the negative values a ReLU's cannot.
    fused.set_mode(Mode::Eval);
    Tensor<float> x(Shape{2, 2, 6, 6});
    Rng rng(5);
    x.fill_normal(rng, 0, 1);
    fused.forward(x);
    const Tensor<float>& leaky = fused.activation(2);
    CHECK(std::any_of(leaky.begin(), leaky.end(), [](float v) { return v < 0; }));

    // A layer without the hooks refuses the fused calls instead of computing something else.
    Rectifier<float> r;
    Tensor<float> y, dx;
    CHECK_THROWS_WITH_AS(r.forward_relu(x, y), doctest::Contains("no pass fused"), Error);
    CHECK_THROWS_WITH_AS(r.inference_affine(true), doctest::Contains("not a per-channel map"),
                         Error);
    ChannelAffine<float> none;
    CHECK_THROWS_WITH_AS(r.forward_affine(x, y, &none), doctest::Contains("cannot apply"), Error);
}

namespace {

/// Every parameter and buffer value of `m`, in order.
template <typename T>
std::vector<T> all_values(Sequential<T>& m) {
    std::vector<T> v;
    for (const auto& p : m.parameters()) v.insert(v.end(), p.value->begin(), p.value->end());
    for (const auto& [name, t] : m.buffers()) v.insert(v.end(), t->begin(), t->end());
    return v;
}

/// Gives every buffer (batch norms' running statistics) values of its own, positive.
template <typename T>
void scramble_buffers(Sequential<T>& m, std::uint64_t seed) {
    Rng rng(seed);
    for (auto& [name, t] : m.buffers())
        for (T& x : *t) x = static_cast<T>(0.2 + rng.uniform());
}

}  // namespace

TEST_CASE("interpolate_weights: each parameter and buffer is (1 - t) a + t b; 0 and 1 copy") {
    Sequential<float> a = small_cnn<float>(8, 3, 1), b = small_cnn<float>(8, 3, 7),
                      out = small_cnn<float>(8, 3, 13);
    scramble_buffers(a, 2);
    scramble_buffers(b, 3);
    const std::vector<float> va = all_values(a), vb = all_values(b);
    REQUIRE(va.size() == vb.size());
    REQUIRE(va != vb);
    for (const double t : {0.0, 0.3, 0.75, 1.0}) {
        CAPTURE(t);
        interpolate_weights(out, a, b, t);
        const std::vector<float> v = all_values(out);
        REQUIRE(v.size() == va.size());
        if (t == 0) CHECK(v == va);
        if (t == 1) CHECK(v == vb);
        std::size_t off = 0;
        for (std::size_t k = 0; k < v.size(); ++k) {
            const long double want = (1 - (long double)t) * va[k] + (long double)t * vb[k];
            off += std::fabs((long double)v[k] - want) > 1.2e-7L * std::fabs(want) + 1e-30L;
        }
        CHECK(off == 0);
    }
    // In place: a becomes the blend.
    Sequential<float> c = small_cnn<float>(8, 3, 1);
    scramble_buffers(c, 2);
    interpolate_weights(out, a, b, 0.4);
    interpolate_weights(c, c, b, 0.4);
    CHECK(all_values(c) == all_values(out));
}

TEST_CASE("interpolate_weights: a dense model's logits blend linearly; residual blocks blend") {
    // One affine layer: y = W x + b is linear in (W, b), so the blend's output is the blend of
    // the outputs (the independent reference).
    auto dense = [](std::uint64_t seed) {
        Sequential<double> m(Shape{1, 4, 4});
        m.add<Flatten<double>>();
        m.add<Dense<double>>(16, 5, true, seed);
        return m;
    };
    Sequential<double> a = dense(1), b = dense(2), mix = dense(3);
    for (auto& p : b.parameters())  // a bias far from a's zeros
        for (double& x : *p.value) x += 0.5;
    Rng rng(4);
    Tensor<double> x(Shape{3, 1, 4, 4});
    for (double& v : x) v = rng.normal(0, 1);
    Tensor<double> ya = a.forward(x), yb = b.forward(x);
    interpolate_weights(mix, a, b, 0.35);
    const Tensor<double> y = mix.forward(x);
    double worst = 0;
    for (std::size_t k = 0; k < y.size(); ++k)
        worst =
            std::max(worst, std::fabs(y.data()[k] - (0.65 * ya.data()[k] + 0.35 * yb.data()[k])));
    CHECK(worst < 1e-12);

    // Residual blocks (Graph layers): their parameters and batch-norm statistics blend too.
    Sequential<float> ra = fer::build_resnet(4, 1, 1), rb = fer::build_resnet(4, 1, 9),
                      rm = fer::build_resnet(4, 1, 17);
    scramble_buffers(ra, 5);
    scramble_buffers(rb, 6);
    REQUIRE(rm.buffers().size() > 2);
    interpolate_weights(rm, ra, rb, 0.5);
    const std::vector<float> va = all_values(ra), vb = all_values(rb), vm = all_values(rm);
    std::size_t off = 0;
    for (std::size_t k = 0; k < vm.size(); ++k)
        off += std::fabs(double(vm[k]) - 0.5 * (double(va[k]) + double(vb[k]))) >
               1e-7 * std::fabs(double(vm[k])) + 1e-30;
    CHECK(off == 0);
}

TEST_CASE("interpolate_weights refuses other architectures and shares outside [0, 1]") {
    Sequential<float> a = small_cnn<float>(8, 3, 1), out = small_cnn<float>(8, 3, 2);
    const std::vector<float> before = all_values(out);
    Sequential<float> wider = small_cnn<float>(8, 3, 3, false, 6);
    CHECK_THROWS_WITH_AS(interpolate_weights(out, a, wider, 0.5), doctest::Contains("shapes"),
                         Error);
    Sequential<float> more_classes = small_cnn<float>(8, 4, 3);
    CHECK_THROWS_WITH_AS(interpolate_weights(out, a, more_classes, 0.5),
                         doctest::Contains("5.weight"), Error);
    Sequential<float> with_dropout = small_cnn<float>(8, 3, 3, true);
    CHECK_THROWS_WITH_AS(interpolate_weights(out, a, with_dropout, 0.5),
                         doctest::Contains("layers"), Error);
    for (const double t : {-0.1, 1.5, std::nan("")})
        CHECK_THROWS_WITH_AS(interpolate_weights(out, a, a, t), doctest::Contains("[0, 1]"), Error);
    CHECK(all_values(out) == before);  // nothing written by a refused call
}
