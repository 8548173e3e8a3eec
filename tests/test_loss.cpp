// Tests of the fused softmax cross-entropy: values against a direct formula and hand-computed
// cases, gradients against central finite differences, PyTorch's weighting convention, bad labels;
// and that the loss, the Softmax layer and Sequential::predict share one softmax (the same bits);
// distillation's mixed targets (a teacher's probabilities) against the formula and gradients.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "facet/core/random.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/softmax_rows.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/softmax.hpp"
#include "facet/loss/softmax_cross_entropy.hpp"
#include "facet/metrics/accuracy.hpp"
#include "facet/model/sequential.hpp"

using namespace facet;

namespace {

/// The loss written out the slow way, in long double: p = exp(z) / sum exp(z) without any shift
/// (fine for the moderate logits used here), then PyTorch's formula for weights and smoothing.
double reference_loss(const Tensor<double>& z, const std::vector<int>& labels, double eps,
                      const std::vector<double>& w) {
    const std::size_t N = z.dim(0), K = z.dim(1);
    auto weight = [&](std::size_t k) { return w.empty() ? 1.0L : (long double)w[k]; };
    long double nll = 0, smooth = 0, denom = 0;
    for (std::size_t n = 0; n < N; ++n) {
        long double sum = 0;
        for (std::size_t k = 0; k < K; ++k) sum += std::exp((long double)z(n, k));
        const auto y = std::size_t(labels[n]);
        nll += weight(y) * -std::log(std::exp((long double)z(n, y)) / sum);
        for (std::size_t k = 0; k < K; ++k)
            smooth += weight(k) * -std::log(std::exp((long double)z(n, k)) / sum);
        denom += weight(y);
    }
    return double(((1 - eps) * nll + eps / K * smooth) / denom);
}

Tensor<double> random_logits(std::size_t N, std::size_t K, std::uint64_t seed) {
    Tensor<double> z(Shape{N, K});
    Rng rng(seed);
    z.fill_uniform(rng, -3, 3);
    return z;
}

/// The largest relative difference between backward()'s gradient at z and central finite
/// differences of forward() (step 1e-5, relative to max(|numeric|, 1e-3)).
double worst_gradient_error(SoftmaxCrossEntropy<double>& loss, Tensor<double> z,
                            const std::vector<int>& labels) {
    loss.forward(z, labels);
    Tensor<double> dz(z.shape(), std::nan(""));
    loss.backward(dz);
    const double h = 1e-5;
    double worst = 0;
    for (std::size_t i = 0; i < z.size(); ++i) {
        const double v = z[i];
        z[i] = v + h;
        const double fp = loss.forward(z, labels);
        z[i] = v - h;
        const double fm = loss.forward(z, labels);
        z[i] = v;
        const double numeric = (fp - fm) / (2 * h);
        worst = std::max(worst, std::abs(numeric - dz[i]) / std::max(std::abs(numeric), 1e-3));
    }
    return worst;
}

}  // namespace

TEST_CASE("Cross-entropy of hand-computed cases") {
    SoftmaxCrossEntropy<double> loss;
    Tensor<double> z(Shape{2, 2});  // all logits 0: p = 1/2 everywhere
    CHECK(loss.forward(z, std::vector<int>{0, 1}) == doctest::Approx(std::log(2.0)));
    CHECK(loss.probabilities()(1, 0) == doctest::Approx(0.5));
    Tensor<double> dz;
    loss.backward(dz);
    CHECK(dz(0, 0) == doctest::Approx(-0.25));  // (p - onehot) / N = (0.5 - 1) / 2
    CHECK(dz(0, 1) == doctest::Approx(0.25));

    // Label smoothing 0.2 over K = 2: target (0.9, 0.1), loss still log 2 for equal logits.
    SoftmaxCrossEntropy<double> smoothed(0.2);
    CHECK(smoothed.forward(z, std::vector<int>{0, 1}) == doctest::Approx(std::log(2.0)));
    smoothed.backward(dz);
    CHECK(dz(0, 0) == doctest::Approx((0.5 - 0.9) / 2));

    // Class weights (1, 3): weighted mean sum_n w_y nll_n / sum_n w_y. With z = (0, log 3) for both
    // samples, nll is log 4 for label 0 and log(4/3) for label 1.
    SoftmaxCrossEntropy<double> weighted(0.0, {1.0, 3.0});
    Tensor<double> z2(Shape{2, 2});
    z2(0, 1) = z2(1, 1) = std::log(3.0);
    const double expected = (1 * std::log(4.0) + 3 * std::log(4.0 / 3.0)) / 4;
    CHECK(weighted.forward(z2, std::vector<int>{0, 1}) == doctest::Approx(expected));
}

TEST_CASE("Cross-entropy matches the direct formula for every option") {
    const auto z = random_logits(6, 5, 1);
    const std::vector<int> labels{0, 4, 2, 2, 1, 3};
    for (double eps : {0.0, 0.1, 1.0})
        for (const std::vector<double>& w :
             {std::vector<double>{}, std::vector<double>{0.5, 2, 1, 0, 3}}) {
            SoftmaxCrossEntropy<double> loss(eps, w);
            INFO("eps " << eps << ", weighted " << !w.empty());
            CHECK(loss.forward(z, labels) ==
                  doctest::Approx(reference_loss(z, labels, eps, w)).epsilon(1e-12));
            for (std::size_t n = 0; n < 6; ++n) {
                double s = 0;
                for (std::size_t k = 0; k < 5; ++k) s += loss.probabilities()(n, k);
                CHECK(s == doctest::Approx(1.0).epsilon(1e-14));
            }
        }
}

TEST_CASE("Cross-entropy gradients match central finite differences") {
    const std::vector<int> labels{1, 0, 3, 3};
    for (double eps : {0.0, 0.15})
        for (const std::vector<double>& w :
             {std::vector<double>{}, std::vector<double>{2, 0.5, 1, 4}}) {
            SoftmaxCrossEntropy<double> loss(eps, w);
            auto z = random_logits(4, 4, 2);
            INFO("eps " << eps << ", weighted " << !w.empty());
            CHECK(worst_gradient_error(loss, z, labels) < 1e-7);
        }
}

/// Random probability rows (N, K), each summing to 1.
Tensor<double> random_probabilities(std::size_t N, std::size_t K, std::uint64_t seed) {
    Tensor<double> t = random_logits(N, K, seed), p;
    softmax_rows(t, p);
    return p;
}

TEST_CASE("Cross-entropy with a teacher: the mixed target, its gradient, and clearing it") {
    const std::vector<int> labels{1, 0, 3, 3, 2};
    const std::vector<double> shares{0.0, 0.5, 1.0, 0.25, 0.8};
    const Tensor<double> teacher = random_probabilities(5, 4, 7);
    for (double eps : {0.0, 0.1}) {
        INFO("eps " << eps);
        SoftmaxCrossEntropy<double> loss(eps);
        loss.set_teacher(teacher, shares);
        auto z = random_logits(5, 4, 3);
        // The direct formula, in long double: the mean over n of -sum_k target_nk log p_nk with
        // target = (1 - a) smoothed one-hot + a teacher.
        long double expected = 0;
        for (std::size_t n = 0; n < 5; ++n) {
            long double sum = 0;
            for (std::size_t k = 0; k < 4; ++k) sum += std::exp((long double)z(n, k));
            for (std::size_t k = 0; k < 4; ++k) {
                const long double q = (1 - eps) * (k == std::size_t(labels[n])) + eps / 4;
                const long double target = (1 - shares[n]) * q + shares[n] * teacher(n, k);
                expected -= target * std::log(std::exp((long double)z(n, k)) / sum);
            }
        }
        CHECK(loss.forward(z, labels) == doctest::Approx(double(expected / 5)).epsilon(1e-12));

        CHECK(worst_gradient_error(loss, z, labels) < 1e-7);
        // Sample 2 learns from the teacher alone: its gradient is (p - t) / N.
        Tensor<double> dz;
        loss.forward(z, labels);
        loss.backward(dz);
        for (std::size_t k = 0; k < 4; ++k)
            CHECK(dz(2, k) ==
                  doctest::Approx((loss.probabilities()(2, k) - teacher(2, k)) / 5).epsilon(1e-12));

        // Without the teacher (cleared, or every share 0) the loss is the labels' alone.
        SoftmaxCrossEntropy<double> plain(eps);
        const double labels_only = plain.forward(z, labels);
        loss.clear_teacher();
        CHECK(loss.forward(z, labels) == labels_only);
        loss.set_teacher(teacher, std::vector<double>(5, 0.0));
        CHECK(loss.forward(z, labels) == doctest::Approx(labels_only).epsilon(1e-15));
    }
}

TEST_CASE("Cross-entropy refuses a teacher that does not fit") {
    const Tensor<double> teacher = random_probabilities(2, 3, 1);
    SoftmaxCrossEntropy<double> loss;
    CHECK_THROWS_WITH_AS(loss.set_teacher(teacher, {0.5}), doctest::Contains("1 shares"), Error);
    CHECK_THROWS_WITH_AS(loss.set_teacher(teacher, {0.5, 1.5}),
                         doctest::Contains("share 1.5 of sample 1"), Error);
    CHECK_THROWS_WITH_AS(loss.set_teacher(teacher, {-0.1, 0}),
                         doctest::Contains("share -0.1 of sample 0"), Error);
    Tensor<double> unnormalised = teacher;
    unnormalised(1, 0) *= 0.5;
    CHECK_THROWS_WITH_AS(loss.set_teacher(unnormalised, {0.5, 0.5}),
                         doctest::Contains("row 1 sums to"), Error);
    Tensor<double> negative(Shape{2, 3}, 0.5);
    negative(0, 2) = -0.0001, negative(0, 0) = 0.5001, negative(1, 2) = 0;
    CHECK_THROWS_WITH_AS(loss.set_teacher(negative, {0.5, 0.5}),
                         doctest::Contains("outside [0, 1]"), Error);
    CHECK_THROWS_WITH_AS(SoftmaxCrossEntropy<double>(0, {1, 1, 1}).set_teacher(teacher, {1, 1}),
                         doctest::Contains("not with class weights"), Error);
    loss.set_teacher(teacher, {1, 1});
    CHECK_THROWS_WITH_AS(loss.forward(random_logits(3, 3, 2), std::vector<int>{0, 1, 2}),
                         doctest::Contains("teacher's probabilities are (2, 3)"), Error);
}

TEST_CASE("Cross-entropy is stable for huge logits, in float too") {
    SoftmaxCrossEntropy<float> loss;
    Tensor<float> z(Shape{2, 3});
    z(0, 0) = 1000;
    z(0, 1) = -1000;
    z(1, 2) = -1e4f;  // sample 1: label 2 is very unlikely, loss about 1e4
    const float l = loss.forward(z, std::vector<int>{0, 2});
    CHECK(std::isfinite(l));
    CHECK(l == doctest::Approx((0 + (1e4 + std::log(2.0))) / 2).epsilon(1e-5));
    Tensor<float> dz;
    loss.backward(dz);
    for (float v : dz) CHECK(std::isfinite(v));
    CHECK(dz(1, 2) == doctest::Approx(-0.5));
}

TEST_CASE("Cross-entropy rejects bad labels, weights and shapes with clear errors") {
    SoftmaxCrossEntropy<float> loss;
    const Tensor<float> z(Shape{2, 3});
    CHECK_THROWS_WITH_AS(loss.forward(z, std::vector<int>{0, 3}),
                         doctest::Contains("label 3 of sample 1 is outside [0, 3)"), Error);
    CHECK_THROWS_WITH_AS(loss.forward(z, std::vector<int>{-1, 0}), doctest::Contains("label -1"),
                         Error);
    CHECK_THROWS_WITH_AS(loss.forward(z, std::vector<int>{0}),
                         doctest::Contains("1 labels for a batch of 2"), Error);
    CHECK_THROWS_AS(loss.forward(Tensor<float>(Shape{2, 3, 1}), std::vector<int>{0, 0}), Error);
    Tensor<float> dz;
    CHECK_THROWS_WITH_AS(SoftmaxCrossEntropy<float>().backward(dz),
                         doctest::Contains("before forward"), Error);
    CHECK_THROWS_WITH_AS(SoftmaxCrossEntropy<float>(1.5), doctest::Contains("label_smoothing"),
                         Error);
    CHECK_THROWS_WITH_AS(SoftmaxCrossEntropy<float>(0, {1, -1}),
                         doctest::Contains("weight of class 1"), Error);
    SoftmaxCrossEntropy<float> two_weights(0, {1, 1});
    CHECK_THROWS_WITH_AS(two_weights.forward(z, std::vector<int>{0, 1}),
                         doctest::Contains("2 class weights for 3 classes"), Error);
    SoftmaxCrossEntropy<float> zero_weight(0, {0, 1, 1});
    CHECK_THROWS_WITH_AS(zero_weight.forward(z, std::vector<int>{0, 0}),
                         doctest::Contains("weight 0"), Error);
}

TEST_CASE("one softmax: the loss, the Softmax layer and Sequential::predict give the same bits") {
    Sequential<float> model(Shape{6});
    model.add<Dense<float>>(6, 5, true, /*seed=*/3);
    Rng rng(8);
    Tensor<float> x(Shape{9, 6});
    x.fill_normal(rng, 0, 4);
    const Tensor<float> logits = model.forward(x);
    const std::vector<int> labels = {0, 1, 2, 3, 4, 0, 1, 2, 3};

    SoftmaxCrossEntropy<float> loss;
    loss.forward(logits, labels);
    Softmax<float> layer;
    Tensor<float> from_layer, from_rows;
    layer.forward(logits, from_layer);
    softmax_rows(logits, from_rows);
    const Tensor<float>& from_predict = model.predict(x);
    for (std::size_t i = 0; i < logits.size(); ++i) {
        CHECK(loss.probabilities()[i] == from_layer[i]);
        CHECK(from_layer[i] == from_predict[i]);
        CHECK(from_rows[i] == from_predict[i]);
    }
    // Against the slow formula in long double, each row summing to one.
    for (std::size_t n = 0; n < 9; ++n) {
        long double sum = 0;
        for (std::size_t k = 0; k < 5; ++k) sum += std::exp((long double)logits(n, k));
        for (std::size_t k = 0; k < 5; ++k)
            CHECK(from_predict(n, k) ==
                  doctest::Approx(double(std::exp((long double)logits(n, k)) / sum)).epsilon(1e-6));
    }
    // The one accuracy: from logits or from probabilities alike, and from predicted classes.
    const double from_logits = Sequential<float>::accuracy(logits, labels);
    CHECK(from_logits == accuracy_of_scores(from_predict, labels));
    CHECK(from_logits == accuracy(labels, predicted_classes(logits)));
    std::size_t correct = 0;
    for (std::size_t n = 0; n < 9; ++n) {
        int best = 0;
        for (int k = 1; k < 5; ++k)
            if (logits(n, std::size_t(k)) > logits(n, std::size_t(best))) best = k;
        correct += best == labels[n];
    }
    CHECK(from_logits == double(correct) / 9.0);
}
