// Tests of Graph: forward against the same layers run by hand, backward against finite differences
// in double (a residual block where x feeds both a conv and the add, a graph nested in a
// Sequential and in another graph, a tensor read three times), the summary, parameter names,
// mode and seed propagation, and clear errors for shapes that do not fit.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "facet/layers/activations.hpp"
#include "facet/layers/add.hpp"
#include "facet/layers/avgpool2d.hpp"
#include "facet/layers/batchnorm.hpp"
#include "facet/layers/concat.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/dropout.hpp"
#include "facet/layers/flatten.hpp"
#include "facet/layers/global_avgpool2d.hpp"
#include "facet/layers/grouped_conv2d.hpp"
#include "facet/loss/softmax_cross_entropy.hpp"
#include "facet/model/gradient_check.hpp"
#include "facet/model/graph.hpp"
#include "facet/model/residual_block.hpp"
#include "facet/model/sequential.hpp"
#include "facet/model/serialize.hpp"
#include "facet/optim/sgd.hpp"

using namespace facet;

namespace {

Tensor<double> random_input(const Shape& s, std::uint64_t seed) {
    Tensor<double> t(s);
    Rng rng(seed);
    t.fill_uniform(rng, -1, 1);
    return t;
}

template <typename Net>
void require_gradients(Net& net, const Tensor<double>& x, double tol = 1e-6) {
    GradientCheckOptions opt;
    opt.tolerance = tol;
    const GradientCheckReport r = check_gradients(net, x, opt);
    INFO(r.str());
    CHECK(r.passed);
}

/// A Sequential with the layer interface check_gradients() probes (forward into y, backward into
/// dx).
struct CheckableSequential {
    Sequential<double>& model;
    void forward(const Tensor<double>& x, Tensor<double>& y) { y = model.forward(x); }
    void backward(const Tensor<double>&, const Tensor<double>&, const Tensor<double>& dy,
                  Tensor<double>& dx) {
        dx = model.backward(dy);
    }
    std::vector<Parameter<double>> parameters() { return model.parameters(); }
    std::vector<std::pair<std::string, Tensor<double>*>> buffers() { return model.buffers(); }
    void reseed(std::uint64_t seed) { model.reseed(seed); }
};

double max_abs_diff(const Tensor<double>& a, const Tensor<double>& b) {
    REQUIRE(a.shape() == b.shape());
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
    return m;
}

}  // namespace

TEST_CASE("Graph: a residual block with an identity shortcut computes relu(F(x) + x)") {
    const Shape in{3, 5, 4};
    Graph<double> g(in);
    const GraphNode x = g.input();
    const GraphNode a = g.add<Conv2d<double>>(x, 3, 3, 3, 1, 1, true, 5);
    const GraphNode r = g.add<ReLU<double>>(a);
    const GraphNode b = g.add<Conv2d<double>>(r, 3, 3, 3, 1, 1, false, 6);
    const GraphNode s = g.add<Add<double>>({b, x});  // x feeds the first conv and the add
    g.output(g.add<ReLU<double>>(s));
    CHECK(g.output_shape(in) == in);

    // The same layers, by hand.
    Conv2d<double> c1(3, 3, 3, 1, 1, true, 5), c2(3, 3, 3, 1, 1, false, 6);
    const Tensor<double> x0 = random_input(Shape{2, 3, 5, 4}, 1);
    Tensor<double> t1, t2, t3, y, ref(Shape{2, 3, 5, 4});
    c1.forward(x0, t1);
    ReLU<double>().forward(t1, t2);
    c2.forward(t2, t3);
    for (std::size_t i = 0; i < ref.size(); ++i) ref[i] = std::max(0.0, t3[i] + x0[i]);
    g.forward(x0, y);
    CHECK(max_abs_diff(y, ref) == 0);

    require_gradients(g, x0);
}

TEST_CASE(
    "Graph: residual_block with identity and projection shortcuts passes the gradient "
    "check") {
    for (const auto& [channels, stride] : {std::pair<std::size_t, std::size_t>{4, 1}, {6, 2}}) {
        Graph<double> block = residual_block<double>(Shape{4, 5, 5}, channels, stride, 3);
        INFO(block.describe());
        const Shape out = block.output_shape(Shape{4, 5, 5});
        CHECK(out == Shape{channels, stride == 1 ? 5u : 3u, stride == 1 ? 5u : 3u});
        CHECK((block.describe().find("projection") != std::string::npos) == (stride != 1));
        require_gradients(block, random_input(Shape{3, 4, 5, 5}, 2));
    }
}

TEST_CASE("Graph: a tensor read three times gets the sum of three gradients") {
    // y = x + relu(x) + dense(x) with x read by three nodes, one of them twice (Add(x, x, ...)).
    Graph<double> g(Shape{5});
    const GraphNode x = g.input();
    const GraphNode r = g.add<ReLU<double>>(x);
    const GraphNode d = g.add<Dense<double>>(x, 5, 5, true, 3);
    g.output(g.add<Add<double>>({x, r, d, x}));
    require_gradients(g, random_input(Shape{4, 5}, 3));

    // d(sum)/dx for y = 2x + relu(x) + Wx + b is 2 + [x > 0] + W^T.
    const Tensor<double> x0 = random_input(Shape{1, 5}, 4);
    Tensor<double> y, dx, dy(Shape{1, 5});
    dy.fill(1.0);
    g.forward(x0, y);
    g.backward(x0, y, dy, dx);
    auto& dense = static_cast<Dense<double>&>(g.layer(2));
    for (std::size_t i = 0; i < 5; ++i) {
        double expect = 2 + (x0[i] > 0 ? 1 : 0);
        for (std::size_t o = 0; o < 5; ++o) expect += dense.weight()(o, i);
        CHECK(dx[i] == doctest::Approx(expect).epsilon(1e-12));
    }
}

TEST_CASE("Graph: concatenated branches and a nested graph pass the gradient check") {
    Graph<double> g(Shape{2, 4, 4});
    const GraphNode x = g.input();
    const GraphNode a = g.add<Conv2d<double>>(x, 2, 3, 3, 1, 1, true, 7);
    const GraphNode b = g.add<Conv2d<double>>(x, 2, 1, 1, 1, 0, true, 8);
    const GraphNode c = g.add<Concat<double>>({a, b, x});
    CHECK(g.node_shape(c.index()) == Shape{6, 4, 4});
    const GraphNode inner =
        g.add<Graph<double>>(c, residual_block<double>(Shape{6, 4, 4}, 6, 1, 9));
    g.output(g.add<BatchNorm2d<double>>(inner, 6));
    require_gradients(g, random_input(Shape{3, 2, 4, 4}, 5));
}

TEST_CASE("Graph: a residual block nested in a Sequential passes the gradient check") {
    Sequential<double> model(Shape{2, 6, 6});
    model.add<Conv2d<double>>(2, 4, 3, 1, 1, false, 1);
    model.add<BatchNorm2d<double>>(4);
    model.add<ReLU<double>>();
    model.add(std::make_unique<Graph<double>>(residual_block<double>(Shape{4, 6, 6}, 4, 1, 2)));
    model.add(std::make_unique<Graph<double>>(residual_block<double>(Shape{4, 6, 6}, 5, 2, 3)));
    model.add<Flatten<double>>();
    model.add<Dense<double>>(5 * 3 * 3, 3, true, 4);
    CHECK(model.output_shape() == Shape{3});
    const std::string summary = model.summary().table();
    CHECK(summary.find("ResidualBlock(4->5, stride 2, projection)") != std::string::npos);
    CheckableSequential checkable{model};
    require_gradients(checkable, random_input(Shape{3, 2, 6, 6}, 6));

    // Names are node-prefixed inside the graph, layer-prefixed outside: unique and stable.
    std::vector<std::string> names;
    for (const auto& p : model.parameters()) names.push_back(p.name);
    CHECK(std::find(names.begin(), names.end(), "4.6.weight") != names.end());  // projection conv
    std::sort(names.begin(), names.end());
    CHECK(std::adjacent_find(names.begin(), names.end()) == names.end());
    bool found_running_mean = false;
    for (const auto& [name, t] : model.buffers()) found_running_mean |= name == "3.2.running_mean";
    CHECK(found_running_mean);
}

TEST_CASE("Graph: summary shows every node, its inputs, layer, shape and parameters") {
    Graph<float> block = residual_block<float>(Shape{8, 6, 6}, 16, 2, 1);
    const GraphSummary s = block.summary();
    REQUIRE(s.nodes.size() == 9);
    CHECK(s.nodes[7].description == "Add");
    CHECK(s.nodes[7].inputs == std::vector<std::size_t>{5, 7});
    CHECK(s.output == 9);
    CHECK(s.nodes[0].parameters == 16 * 8 * 9);
    CHECK(s.total_parameters == block.parameter_count());
    CHECK(s.total_flops == block.flops(Shape{8, 6, 6}));
    const std::string text = s.table();
    INFO(text);
    CHECK(text.find("ResidualBlock(8->16, stride 2, projection)") != std::string::npos);
    CHECK(text.find("5,7") != std::string::npos);
    CHECK(text.find("(16, 3, 3)") != std::string::npos);
    CHECK(text.find("output: node 9") != std::string::npos);
}

TEST_CASE("Graph: mode and seeds reach every node") {
    Graph<double> g(Shape{6});
    const GraphNode x = g.input();
    const GraphNode d1 = g.add<Dropout<double>>(x, 0.5, 1);
    const GraphNode d2 = g.add<Dropout<double>>(x, 0.5, 1);
    g.output(g.add<Concat<double>>({d1, d2}));
    const Tensor<double> x0 = random_input(Shape{2, 6}, 7);
    Tensor<double> y;
    g.reseed(11);
    g.forward(x0, y);
    // node 1 and node 2 got different seeds, so their masks differ.
    bool differ = false;
    for (std::size_t n = 0; n < 2; ++n)
        for (std::size_t i = 0; i < 6; ++i) differ |= (y(n, i) == 0) != (y(n, 6 + i) == 0);
    CHECK(differ);
    g.set_mode(Mode::Eval);
    CHECK(g.layer(1).mode() == Mode::Eval);
    g.forward(x0, y);
    for (std::size_t i = 0; i < 6; ++i) CHECK(y(1, 6 + i) == x0(1, i));
}

TEST_CASE("Graph: shapes that do not fit give errors naming the node") {
    Graph<float> g(Shape{4, 8, 8});
    const GraphNode x = g.input();
    const GraphNode a = g.add<Conv2d<float>>(x, 4, 8, 3, 2, 1);
    CHECK_THROWS_WITH_AS(g.add<Add<float>>({a, x}),
                         doctest::Contains("node 2 (Add) cannot take its input (node 1 (8, 4, 4), "
                                           "node 0 (4, 8, 8))"),
                         Error);
    CHECK_THROWS_WITH_AS(g.add<Conv2d<float>>(a, 3, 8, 3), doctest::Contains("node 2 (Conv2d"),
                         Error);
    CHECK_THROWS_WITH_AS(g.add<Concat<float>>({a, x}), doctest::Contains("Concat: input 1"), Error);
    CHECK_THROWS_WITH_AS(g.add(std::vector<GraphNode>{a, x}, std::make_unique<ReLU<float>>()),
                         doctest::Contains("takes one input, given 2"), Error);
    Graph<float> other(Shape{4, 8, 8});
    CHECK_THROWS_WITH_AS(g.add<ReLU<float>>(other.input()), doctest::Contains("another graph"),
                         Error);
    Tensor<float> y;
    CHECK_THROWS_WITH_AS(g.forward(Tensor<float>(Shape{1, 4, 8, 8}), y),
                         doctest::Contains("call output() first"), Error);
    const GraphNode unused = g.add<ReLU<float>>(x);
    CHECK_THROWS_WITH_AS(g.output(a),
                         doctest::Contains("node 2 (ReLU) does not lead to the output"), Error);
    g.output(g.add<Add<float>>(
        {g.add<ReLU<float>>(a), g.add<ReLU<float>>(g.add<Conv2d<float>>(unused, 4, 8, 3, 2, 1))}));
    CHECK_THROWS_WITH_AS(g.forward(Tensor<float>(Shape{1, 4, 8, 7}), y),
                         doctest::Contains("does not match the graph's input (N, 4, 8, 8)"), Error);
    CHECK_THROWS_WITH_AS(g.output_shape(Shape{4, 8, 7}), doctest::Contains("built for input"),
                         Error);
    Sequential<float> model(Shape{3, 8, 8});
    CHECK_THROWS_WITH_AS(model.add(std::make_unique<Graph<float>>(std::move(g))),
                         doctest::Contains("built for input (4, 8, 8), given (3, 8, 8)"), Error);
}

TEST_CASE("Graph: a graph without layers is the identity") {
    Graph<double> g(Shape{3});
    g.output(g.input());
    require_gradients(g, random_input(Shape{2, 3}, 8));
}

TEST_CASE("Graph: config() lists the nodes with their inputs and make_layer rebuilds the graph") {
    Graph<double> g(Shape{2, 4, 4}, "Branches");
    const GraphNode x = g.input();
    const GraphNode a = g.add<Conv2d<double>>(x, 2, 3, 3, 1, 1, true, 7);
    const GraphNode b = g.add<GroupedConv2d<double>>(x, 2, 2, 3, 1, 1, 2, false, 8);
    const GraphNode c = g.add<Concat<double>>({a, b, x});
    const GraphNode d = g.add<Graph<double>>(c, residual_block<double>(Shape{7, 4, 4}, 8, 2, 9));
    g.output(g.add<AvgPool2d<double>>(d, 2, 1, 1, false));
    const LayerConfig config = g.config();
    CHECK(config.type == "Graph");
    CHECK(config.children("nodes").size() == 5);
    CHECK(config.children("nodes")[3].type == "Graph");
    CHECK(config.list("inputs")[2] == ConfigValue(ConfigValue::List{1, 2, 0}));
    CHECK(config.integer("output") == 5);

    const std::unique_ptr<Layer<double>> rebuilt = make_layer<double>(config);
    CHECK(rebuilt->config() == config);
    CHECK(rebuilt->describe() == "Branches");
    auto& copy = static_cast<Graph<double>&>(*rebuilt);
    CHECK(copy.summary().table() == g.summary().table());
    auto from = g.parameters();
    auto to = copy.parameters();
    REQUIRE(from.size() == to.size());
    for (std::size_t i = 0; i < from.size(); ++i) {
        CHECK(from[i].name == to[i].name);
        *to[i].value = *from[i].value;
    }
    const Tensor<double> x0 = random_input(Shape{2, 2, 4, 4}, 9);
    Tensor<double> y1, y2;
    g.forward(x0, y1);
    copy.forward(x0, y2);
    CHECK(max_abs_diff(y1, y2) == 0);

    LayerConfig bad = config;
    bad.set("inputs", ConfigValue::List{ConfigValue::List{0}, ConfigValue::List{5}});
    CHECK_THROWS_WITH_AS(make_layer<double>(bad), doctest::Contains("5 nodes but 2 input lists"),
                         Error);
    ConfigValue::List inputs = config.list("inputs");
    inputs[1] = ConfigValue::List{3};
    bad.set("inputs", inputs);
    CHECK_THROWS_WITH_AS(make_layer<double>(bad),
                         doctest::Contains("node 2 reads node 3, which is not an earlier node"),
                         Error);
}

TEST_CASE("Graph: a model with residual blocks saves, loads and predicts the same") {
    Sequential<float> model(Shape{1, 12, 12});
    model.add<Conv2d<float>>(1, 4, 3, 1, 1, false, 1);
    model.add<BatchNorm2d<float>>(4);
    model.add<ReLU<float>>();
    model.add(std::make_unique<Graph<float>>(residual_block<float>(Shape{4, 12, 12}, 4, 1, 2)));
    model.add(std::make_unique<Graph<float>>(residual_block<float>(Shape{4, 12, 12}, 8, 2, 3)));
    model.add<GlobalAvgPool2d<float>>();
    model.add<Dense<float>>(8, 3, true, 4);
    // Train a few steps so the running statistics and weights are not their initial values.
    Tensor<float> x(Shape{8, 1, 12, 12});
    Rng rng(5);
    x.fill_uniform(rng, -1, 1);
    const std::vector<int> labels{0, 1, 2, 0, 1, 2, 0, 1};
    SoftmaxCrossEntropy<float> loss;
    SGD<float> sgd(model.parameters(), {});
    for (int step = 0; step < 3; ++step) model.train_step(x, labels, loss, sgd);
    const Tensor<float> before = model.predict(x);

    const std::string path = "test_graph_model.facet";
    save(model, path);
    Sequential<float> loaded = load<float>(path);
    std::remove(path.c_str());
    CHECK(loaded.summary().table() == model.summary().table());
    const Tensor<float>& after = loaded.predict(x);
    REQUIRE(after.shape() == before.shape());
    CHECK(std::equal(after.begin(), after.end(), before.begin()));
    CHECK(loaded.layer(4).describe() == "ResidualBlock(4->8, stride 2, projection)");
}
