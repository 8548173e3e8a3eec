// The ONNX files facet writes, run by an independent runtime: OpenCV's DNN module reads the
// exported fer-cnn-s and fer-resnet-s (random weights, batch-norm statistics far from their
// initial values, folded before export) and gives facet's probabilities and logits within 1e-4,
// for batches of 1 and 3 raw 0-255 images normalised inside the graph. Built only where OpenCV's
// DNN module is found (tests/CMakeLists.txt).
#include <doctest/doctest.h>

#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "facet/export/onnx.hpp"
#include "facet/layers/avgpool2d.hpp"
#include "facet/layers/grouped_conv2d.hpp"
#include "facet/model/fold_batchnorm.hpp"
#include "fer/model_zoo.hpp"
#include "temp_dir.hpp"

using namespace facet;

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

/// Running statistics, gamma, beta and biases far from their initial values.
void randomise_statistics(Sequential<float>& model, std::uint64_t seed) {
    Rng rng(seed);
    auto fill = [&](Tensor<float>& t, double lo, double hi) {
        for (float& v : t) v = float(lo + (hi - lo) * rng.uniform());
    };
    for (const Parameter<float>& p : model.parameters()) {
        if (ends_with(p.name, "gamma")) fill(*p.value, 0.5, 1.5);
        if (ends_with(p.name, "beta") || ends_with(p.name, "bias")) fill(*p.value, -0.5, 0.5);
    }
    for (auto& [name, tensor] : model.buffers()) {
        if (ends_with(name, "running_mean")) fill(*tensor, -0.5, 0.5);
        if (ends_with(name, "running_var")) fill(*tensor, 0.5, 3.0);
    }
}

/// OpenCV DNN's output for the raw images `pixels` (n x 1 x 48 x 48).
std::vector<float> run_opencv(const std::string& path, const std::vector<float>& pixels, int n) {
    cv::dnn::Net net = cv::dnn::readNetFromONNX(path);
    REQUIRE_FALSE(net.empty());
    const int dims[4] = {n, 1, 48, 48};
    cv::Mat blob(4, dims, CV_32F, const_cast<float*>(pixels.data()));
    net.setInput(blob, "image");
    cv::Mat out = net.forward();
    REQUIRE(out.isContinuous());
    return std::vector<float>(out.ptr<float>(), out.ptr<float>() + out.total());
}

double max_abs(const std::vector<float>& v) {
    double m = 0;
    for (float x : v) m = std::max(m, double(std::abs(x)));
    return m;
}

void check_model(const std::string& name) {
    const float mean = 0.5f, stddev = 0.25f;
    Sequential<float> model = fer::build_model(name, 3);
    randomise_statistics(model, 17);
    model.set_mode(Mode::Eval);
    facet_test::TempDir dir;
    for (int n : {1, 3}) {
        CAPTURE(name);
        CAPTURE(n);
        std::vector<float> pixels(static_cast<std::size_t>(n) * 48 * 48);
        Rng rng(static_cast<std::uint64_t>(n));
        for (float& p : pixels) p = float(rng.next_u64() % 256);
        // facet's own answer, from the unfolded model, normalised as Normalization does.
        Tensor<float> x(Shape{std::size_t(n), 1, 48, 48});
        const float inverse = 1.0f / stddev;
        for (std::size_t i = 0; i < pixels.size(); ++i)
            x[i] = (pixels[i] / 255.0f - mean) * inverse;
        Sequential<float> reference = fer::build_model(name, 3);
        randomise_statistics(reference, 17);
        reference.set_mode(Mode::Eval);
        const Tensor<float> logits = reference.forward(x);
        const Tensor<float> probabilities = reference.predict(x);

        Sequential<float> folded = fer::build_model(name, 3);
        randomise_statistics(folded, 17);
        CHECK(fold_batchnorm(folded) > 0);
        OnnxExportOptions options;
        options.normalize_input = true;
        options.mean = mean;
        options.stddev = stddev;
        options.metadata = {{"classes", "a,b,c,d,e,f,g"}};
        const std::string path = (dir.path / "model.onnx").string();
        export_onnx(folded, path, options);
        const std::vector<float> p = run_opencv(path, pixels, n);
        REQUIRE(p.size() == probabilities.size());
        double worst = 0;
        for (std::size_t i = 0; i < p.size(); ++i)
            worst = std::max(worst, double(std::abs(p[i] - probabilities[i])));
        CHECK(worst < 1e-4);

        options.softmax = false;  // the logits themselves, relative to their size
        export_onnx(folded, path, options);
        const std::vector<float> l = run_opencv(path, pixels, n);
        REQUIRE(l.size() == logits.size());
        const std::vector<float> expected(logits.begin(), logits.end());
        double worst_logit = 0;
        for (std::size_t i = 0; i < l.size(); ++i)
            worst_logit = std::max(worst_logit, double(std::abs(l[i] - expected[i])));
        CHECK(worst_logit / max_abs(expected) < 1e-4);
    }
}

}  // namespace

TEST_CASE("OpenCV DNN runs the exported fer-cnn-s as facet does (batch 1 and 3)") {
    check_model("fer-cnn-s");
}

TEST_CASE("OpenCV DNN runs the exported fer-cnn-mc (a folded 1x1 convolution) as facet does") {
    check_model("fer-cnn-mc");
}

TEST_CASE("OpenCV DNN runs the exported fer-resnet-s (residual Graph blocks) as facet does") {
    check_model("fer-resnet-s");
}

TEST_CASE("OpenCV DNN runs an unfolded export too (BatchNormalization, grouped conv, pooling)") {
    Sequential<float> model(Shape{1, 48, 48});
    model.add<BatchNorm2d<float>>(1);  // cannot be folded: exported as BatchNormalization
    model.add<Conv2d<float>>(1, 4, 3, 1, 1, true, 1);
    model.add<ReLU<float>>();
    model.add<GroupedConv2d<float>>(4, 8, 3, 2, 1, 2, false, 2);
    // Padding left out of the average: OpenCV 4.6 ignores ONNX's count_include_pad and counts the
    // padding only in files whose producer is PyTorch (docs/deployment.md).
    model.add<AvgPool2d<float>>(3, 2, 1, false);
    model.add<MaxPool2d<float>>(2);
    model.add<Flatten<float>>();
    model.add<Dense<float>>(8 * 6 * 6, 5, true, 3);
    randomise_statistics(model, 5);
    model.set_mode(Mode::Eval);
    std::vector<float> pixels(2 * 48 * 48);
    Rng rng(9);
    for (float& p : pixels) p = float(rng.next_u64() % 256);
    Tensor<float> x(Shape{2, 1, 48, 48});
    std::copy(pixels.begin(), pixels.end(), x.begin());
    const Tensor<float> expected = model.forward(x);
    facet_test::TempDir dir;
    const std::string path = (dir.path / "plain.onnx").string();
    OnnxExportOptions options;
    options.softmax = false;
    export_onnx(model, path, options);
    const std::vector<float> got = run_opencv(path, pixels, 2);
    REQUIRE(got.size() == expected.size());
    const std::vector<float> want(expected.begin(), expected.end());
    double worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
        worst = std::max(worst, double(std::abs(got[i] - want[i])));
    CHECK(worst / max_abs(want) < 1e-4);
}
