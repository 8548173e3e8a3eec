// Tests of batch-norm folding (model/fold_batchnorm.hpp): a folded model computes what the
// unfolded one computes in eval mode, within 1e-5 of the largest output, in float and double, for
// a chain like fer-cnn-s (Conv2d, GroupedConv2d and Dense, each followed by a batch norm) and for
// residual blocks (Graph), with running statistics, gamma and beta far from their initial values;
// batch norms that cannot be folded stay; the folded model saves and loads.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "facet/layers/activations.hpp"
#include "facet/layers/add.hpp"
#include "facet/layers/batchnorm.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/dropout.hpp"
#include "facet/layers/flatten.hpp"
#include "facet/layers/global_avgpool2d.hpp"
#include "facet/layers/grouped_conv2d.hpp"
#include "facet/layers/maxpool2d.hpp"
#include "facet/model/fold_batchnorm.hpp"
#include "facet/model/residual_block.hpp"
#include "facet/model/serialize.hpp"
#include "temp_dir.hpp"

using namespace facet;

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

/// Gives every batch norm of `model` running statistics, gamma and beta far from 0 and 1, and
/// every bias a non-zero value, so that each term of the folding formula matters.
template <typename T>
void randomise_statistics(Sequential<T>& model, std::uint64_t seed) {
    Rng rng(seed);
    auto fill = [&](Tensor<T>& t, double lo, double hi) {
        for (T& v : t) v = T(lo + (hi - lo) * rng.uniform());
    };
    for (const Parameter<T>& p : model.parameters()) {
        if (ends_with(p.name, "gamma")) fill(*p.value, 0.5, 1.5);
        if (ends_with(p.name, "beta") || ends_with(p.name, "bias")) fill(*p.value, -0.5, 0.5);
    }
    for (auto& [name, tensor] : model.buffers()) {
        if (ends_with(name, "running_mean")) fill(*tensor, -0.5, 0.5);
        if (ends_with(name, "running_var")) fill(*tensor, 0.2, 3.0);
    }
}

/// A chain shaped like fer-cnn-s (blocks of conv - BN - ReLU, pooling, dropout, then dense - BN -
/// ReLU - dropout - dense), small, with a grouped convolution in it.
template <typename T>
Sequential<T> cnn_like() {
    Sequential<T> m(Shape{1, 12, 12});
    m.template add<Conv2d<T>>(1, 8, 3, 1, 1, false, 1);
    m.template add<BatchNorm2d<T>>(8);
    m.template add<ReLU<T>>();
    m.template add<Conv2d<T>>(8, 8, 3, 1, 1, false, 2);
    m.template add<BatchNorm2d<T>>(8);
    m.template add<ReLU<T>>();
    m.template add<MaxPool2d<T>>(2);
    m.template add<Dropout<T>>(0.25, 3);
    m.template add<GroupedConv2d<T>>(8, 16, 3, 1, 1, 2, false, 4);
    m.template add<BatchNorm2d<T>>(16);
    m.template add<ReLU<T>>();
    m.template add<MaxPool2d<T>>(2);
    m.template add<Flatten<T>>();
    m.template add<Dense<T>>(16 * 3 * 3, 32, false, 5);
    m.template add<BatchNorm1d<T>>(32);
    m.template add<ReLU<T>>();
    m.template add<Dropout<T>>(0.5, 6);
    m.template add<Dense<T>>(32, 7, true, 7);
    return m;
}

/// A small residual network as fer-resnet-s builds it: a stem, a block with an identity shortcut,
/// one with a projection, global pooling and a dense layer.
template <typename T>
Sequential<T> resnet_like() {
    Sequential<T> m(Shape{1, 12, 12});
    m.template add<Conv2d<T>>(1, 8, 3, 1, 1, false, 1);
    m.template add<BatchNorm2d<T>>(8);
    m.template add<ReLU<T>>();
    m.add(std::make_unique<Graph<T>>(residual_block<T>(Shape{8, 12, 12}, 8, 1, 10)));
    m.add(std::make_unique<Graph<T>>(residual_block<T>(Shape{8, 12, 12}, 16, 2, 20)));
    m.template add<GlobalAvgPool2d<T>>();
    m.template add<Dense<T>>(16, 7, true, 2);
    return m;
}

template <typename T>
Tensor<T> random_batch(std::size_t n, std::uint64_t seed) {
    Tensor<T> x(Shape{n, 1, 12, 12});
    Rng rng(seed);
    x.fill_uniform(rng, -1, 1);
    return x;
}

/// max |a - b| over max |b|: the error relative to the size of the outputs.
template <typename T>
double relative_difference(const Tensor<T>& a, const Tensor<T>& b) {
    REQUIRE(a.shape() == b.shape());
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
        scale = std::max(scale, std::abs(double(b[i])));
    }
    REQUIRE(scale > 0);
    return diff / scale;
}

std::size_t count_type(Sequential<float>& m, const std::string& prefix) {
    std::size_t n = 0;
    for (const auto& layer : m.layers()) n += layer->type().rfind(prefix, 0) == 0;
    return n;
}

/// Folds a copy of `build()`'s model with randomised statistics and checks the outputs.
template <typename T, typename Build>
void check_folding_keeps_outputs(Build build, std::size_t expected_folds) {
    Sequential<T> reference = build();
    Sequential<T> folded = build();
    randomise_statistics(reference, 11);
    randomise_statistics(folded, 11);
    reference.set_mode(Mode::Eval);
    const Tensor<T> x = random_batch<T>(3, 5);
    const Tensor<T> expected = reference.forward(x);
    const std::size_t params_before = folded.parameter_count();

    CHECK(fold_batchnorm(folded) == expected_folds);
    CHECK(folded.mode() == Mode::Eval);
    CHECK(folded.parameter_count() < params_before);  // gamma and beta are gone
    const Tensor<T> got = folded.forward(x);
    CHECK(relative_difference(got, expected) < 1e-5);
    // predict() (the fused inference plan) gives the same probabilities as the unfolded model's.
    const Tensor<T> expected_p = reference.predict(x);
    CHECK(relative_difference(folded.predict(x), expected_p) < 1e-5);
    CHECK(fold_batchnorm(folded) == 0);  // nothing left to fold
}

}  // namespace

TEST_CASE("fold_batchnorm: a fer-cnn-s-like chain gives the same outputs, float and double") {
    // Four pairs: two Conv2d, the GroupedConv2d, the first Dense.
    check_folding_keeps_outputs<float>([] { return cnn_like<float>(); }, 4);
    check_folding_keeps_outputs<double>([] { return cnn_like<double>(); }, 4);
    Sequential<float> m = cnn_like<float>();
    fold_batchnorm(m);
    CHECK(count_type(m, "BatchNorm") == 0);
    CHECK(m.size() == 14);
    // The convolutions had no bias; now each has one, as its config says.
    CHECK(m.layer(0).describe() == "Conv2d(1->8, 3x3, stride 1, pad 1)");
    CHECK(m.layer(0).config().find("bias")->as_flag() == true);
}

TEST_CASE("fold_batchnorm: residual blocks (Graph) fold inside, the shortcut's too") {
    // The stem, two in the identity block, three in the projection block.
    check_folding_keeps_outputs<float>([] { return resnet_like<float>(); }, 6);
    check_folding_keeps_outputs<double>([] { return resnet_like<double>(); }, 6);
    Sequential<float> m = resnet_like<float>();
    fold_batchnorm(m);
    auto& projection = static_cast<Graph<float>&>(m.layer(3));
    // conv, ReLU, conv, conv (shortcut), Add, ReLU: the Add reads the two folded convolutions.
    CHECK(projection.node_count() == 7);
    CHECK(projection.layer(4).type() == "Conv2d");
    CHECK(projection.inputs(5) == std::vector<std::size_t>{3, 4});
}

TEST_CASE("fold_batchnorm: batch norms that do not follow a foldable layer stay") {
    Sequential<double> m(Shape{2, 8, 8});
    m.add<BatchNorm2d<double>>(2);  // the first layer: nothing before it to fold into
    m.add<Conv2d<double>>(2, 4, 3, 1, 1, true, 1);
    m.add<MaxPool2d<double>>(2);
    m.add<BatchNorm2d<double>>(4);  // after pooling: max does not commute with a negative scale
    m.add<Flatten<double>>();
    m.add<Dense<double>>(64, 3, true, 2);
    randomise_statistics(m, 3);
    Tensor<double> x(Shape{2, 2, 8, 8});
    Rng rng(4);
    x.fill_uniform(rng, -1, 1);
    m.set_mode(Mode::Eval);
    const Tensor<double> expected = m.forward(x);
    CHECK(fold_batchnorm(m) == 0);
    CHECK(m.size() == 6);
    CHECK(m.layer(0).type() == "BatchNorm2d");
    CHECK(m.layer(3).type() == "BatchNorm2d");
    CHECK(relative_difference(m.forward(x), expected) == 0);
}

TEST_CASE("fold_batchnorm: in a Graph, a conv read by two nodes or the output is not folded") {
    Graph<double> g(Shape{2, 6, 6});
    const GraphNode x = g.input();
    const GraphNode conv = g.add<Conv2d<double>>(x, 2, 2, 3, 1, 1, false, 1);
    const GraphNode bn = g.add<BatchNorm2d<double>>(conv, 2);
    g.output(g.add<Add<double>>({bn, conv}));  // the conv's output is also read by the Add
    g.set_mode(Mode::Eval);
    CHECK(fold_batchnorm(g) == 0);
    CHECK(g.node_count() == 4);

    Graph<double> h(Shape{2, 6, 6});
    const GraphNode c = h.add<Conv2d<double>>(h.input(), 2, 2, 3, 1, 1, false, 1);
    h.output(h.add<BatchNorm2d<double>>(c, 2));  // a batch norm as the output node folds
    CHECK(fold_batchnorm(h) == 1);
    CHECK(h.node_count() == 2);
    CHECK(h.output_node() == 1);
}

TEST_CASE("fold_batchnorm: the folded model saves and loads, and predicts the same") {
    facet_test::TempDir dir;
    for (auto build : {cnn_like<float>, resnet_like<float>}) {
        Sequential<float> m = build();
        randomise_statistics(m, 8);
        fold_batchnorm(m);
        const std::string path = (dir.path / "folded.facet").string();
        save(m, path);
        Sequential<float> loaded = load<float>(path);
        CHECK(loaded.summary().table() == m.summary().table());
        const Tensor<float> x = random_batch<float>(2, 9);
        const Tensor<float> expected = m.predict(x);
        const Tensor<float>& got = loaded.predict(x);
        CHECK(std::equal(got.begin(), got.end(), expected.begin()));
    }
}
