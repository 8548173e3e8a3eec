// small_cnn.cpp — define, train, save and reload a small CNN (quoted in docs/embedding.md).
// The task, made up here: in an 8 x 8 noisy image, which quadrant holds the bright 3 x 3 square?
#include <cmath>
#include <cstdio>
#include <facet/facet.hpp>
#include <string>
#include <vector>

using namespace facet;

// A batch of n images (n, 1, 8, 8) with their labels 0..3, drawn from `rng`.
Tensor<float> make_batch(std::size_t n, Rng& rng, std::vector<int>& labels) {
    Tensor<float> x(Shape{n, 1, 8, 8});
    labels.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        const int q = static_cast<int>(rng.below(4));
        labels[i] = q;
        for (std::size_t p = 0; p < 64; ++p) x[i * 64 + p] = static_cast<float>(rng.normal(0, 0.3));
        const std::size_t top = (q / 2) * 4 + rng.below(2), left = (q % 2) * 4 + rng.below(2);
        for (std::size_t r = top; r < top + 3; ++r)
            for (std::size_t c = left; c < left + 3; ++c) x(i, 0, r, c) += 1.0f;
    }
    return x;
}

int main(int argc, char** argv) {
    const std::string path = argc > 1 ? argv[1] : "small_cnn.facet";
    Sequential<float> model(Shape{1, 8, 8});  // per-sample shape; the rest is inferred
    model.add<Conv2d<float>>(1, 8, 3, 1, 1);  // 1 -> 8 channels, 3x3, stride 1, pad 1
    model.add<BatchNorm2d<float>>(8);
    model.add<ReLU<float>>();
    model.add<MaxPool2d<float>>(2);  // (8, 4, 4)
    model.add<Flatten<float>>();
    model.add<Dense<float>>(8 * 4 * 4, 4);
    std::printf("%s", model.summary().table().c_str());

    SoftmaxCrossEntropy<float> loss;
    AdamW<float> optimizer(model.parameters(), AdamOptions{.learning_rate = 0.01});
    Rng rng(1);
    std::vector<int> labels;
    for (int step = 0; step < 60; ++step) {
        const Tensor<float> x = make_batch(32, rng, labels);
        const StepResult r = model.train_step(x, labels, loss, optimizer);
        if (step % 20 == 0) std::printf("step %2d  loss %.3f\n", step, r.loss);
    }

    const Tensor<float> test = make_batch(200, rng, labels);
    const Tensor<float> before = model.predict(test);  // a copy: predict() reuses its buffer
    const double acc = Sequential<float>::accuracy(before, labels);
    save(model, path);
    Sequential<float> reloaded = load<float>(path);
    const Tensor<float>& after = reloaded.predict(test);
    double max_diff = 0;
    for (std::size_t i = 0; i < after.size(); ++i)
        max_diff = std::fmax(max_diff, std::fabs(after[i] - before[i]));
    std::printf("test accuracy %.3f, reloaded model differs by %g\n", acc, max_diff);
    return acc > 0.9 && max_diff == 0 ? 0 : 1;
}
