// Tests of the layers graphs use: Add and Concat (several inputs), AvgPool2d, GlobalAvgPool2d and
// GroupedConv2d. Forward passes against naive loops written here (and the direct convolution of
// kernels/conv_reference.hpp), backward passes against finite differences in double, edge sizes
// (1x1 images, odd sizes, padding), configs rebuilt by make_layer, and bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "facet/core/parallel.hpp"
#include "facet/kernels/conv_reference.hpp"
#include "facet/layers/add.hpp"
#include "facet/layers/avgpool2d.hpp"
#include "facet/layers/concat.hpp"
#include "facet/layers/global_avgpool2d.hpp"
#include "facet/layers/grouped_conv2d.hpp"
#include "facet/layers/registry.hpp"
#include "facet/model/gradient_check.hpp"

using namespace facet;

namespace {

template <typename T>
Tensor<T> random_tensor(const Shape& s, std::uint64_t seed) {
    Tensor<T> t(s);
    Rng rng(seed);
    t.fill_uniform(rng, -1, 1);
    return t;
}

template <typename Net>
void require_gradients(Net& net, const Tensor<double>& x, const std::string& what) {
    GradientCheckOptions opt;
    opt.tolerance = 1e-6;
    const GradientCheckReport r = check_gradients(net, x, opt);
    INFO(what << " at input " << x.shape().str() << "\n" << r.str());
    CHECK(r.passed);
}

/// A merge layer seen as a one-input layer for check_gradients: the input's channels are split
/// into blocks of `channels[k]` (in order), each copied into input k; backward puts each input's
/// gradient back in its block. Checks backward_merge's dx for every input.
class SplitChannels : public Layer<double> {
  public:
    SplitChannels(std::unique_ptr<MergeLayer<double>> merge, std::vector<std::size_t> channels)
        : merge_(std::move(merge)), channels_(std::move(channels)) {}
    std::string type() const override { return "SplitChannels"; }
    Shape output_shape(const Shape&) const override { return Shape{1}; }
    void forward(const Tensor<double>& x, Tensor<double>& y) override {
        split(x);
        merge_->forward_merge(pointers(), y);
    }
    void backward(const Tensor<double>& x, const Tensor<double>& y, const Tensor<double>& dy,
                  Tensor<double>& dx) override {
        split(x);
        std::vector<Tensor<double>*> dxs;
        grads_.resize(parts_.size());
        for (auto& g : grads_) dxs.push_back(&g);
        merge_->backward_merge(pointers(), y, dy, dxs);
        dx.resize(x.shape());
        const std::size_t inner = x.shape().inner_size() / x.dim(1);
        for (std::size_t n = 0; n < x.dim(0); ++n) {
            std::size_t c0 = 0;
            for (std::size_t k = 0; k < parts_.size(); ++k) {
                REQUIRE(grads_[k].shape() == parts_[k].shape());
                const std::size_t block = channels_[k] * inner;
                std::copy_n(grads_[k].data() + n * block, block,
                            dx.data() + (n * x.dim(1) + c0) * inner);
                c0 += channels_[k];
            }
        }
    }
    std::vector<Parameter<double>> parameters() override { return merge_->parameters(); }
    LayerConfig config() const override { return {"SplitChannels", {}}; }

  private:
    void split(const Tensor<double>& x) {
        parts_.resize(channels_.size());
        const std::size_t inner = x.shape().inner_size() / x.dim(1);
        std::size_t c0 = 0;
        for (std::size_t k = 0; k < channels_.size(); ++k) {
            Shape s = x.rank() == 2 ? Shape{x.dim(0), channels_[k]}
                                    : Shape{x.dim(0), channels_[k], x.dim(2), x.dim(3)};
            parts_[k].resize(s);
            for (std::size_t n = 0; n < x.dim(0); ++n)
                std::copy_n(x.data() + (n * x.dim(1) + c0) * inner, channels_[k] * inner,
                            parts_[k].data() + n * channels_[k] * inner);
            c0 += channels_[k];
        }
    }
    std::vector<const Tensor<double>*> pointers() const {
        std::vector<const Tensor<double>*> p;
        for (const auto& t : parts_) p.push_back(&t);
        return p;
    }
    std::unique_ptr<MergeLayer<double>> merge_;
    std::vector<std::size_t> channels_;
    std::vector<Tensor<double>> parts_, grads_;
};

/// make_layer(layer.config()) describes the same layer.
template <typename T>
void require_config_round_trip(const Layer<T>& layer) {
    const std::unique_ptr<Layer<T>> rebuilt = make_layer<T>(layer.config());
    CHECK(rebuilt->describe() == layer.describe());
    CHECK(rebuilt->config() == layer.config());
}

}  // namespace

TEST_CASE("Add sums its inputs in order and gives each the output gradient") {
    Add<float> add;
    const auto a = random_tensor<float>(Shape{2, 3, 4, 5}, 1);
    const auto b = random_tensor<float>(Shape{2, 3, 4, 5}, 2);
    const auto c = random_tensor<float>(Shape{2, 3, 4, 5}, 3);
    Tensor<float> y;
    add.forward_merge({&a, &b, &c}, y);
    REQUIRE(y.shape() == a.shape());
    for (std::size_t i = 0; i < y.size(); ++i) CHECK(y[i] == (a[i] + b[i]) + c[i]);
    CHECK(add.merge_flops({Shape{3, 4, 5}, Shape{3, 4, 5}, Shape{3, 4, 5}}) == 2 * 60);

    SplitChannels three(std::make_unique<Add<double>>(), {2, 2, 2});
    require_gradients(three, random_tensor<double>(Shape{3, 6, 3, 5}, 4), "Add of 3");
    SplitChannels vectors(std::make_unique<Add<double>>(), {4, 4});
    require_gradients(vectors, random_tensor<double>(Shape{2, 8}, 5), "Add of 2 vectors");
    SplitChannels one(std::make_unique<Add<double>>(), {1});
    require_gradients(one, random_tensor<double>(Shape{1, 1, 1, 1}, 6), "Add of a 1x1 image");
    require_config_round_trip(add);

    CHECK_THROWS_WITH_AS(add.merged_shape({Shape{3, 4, 5}, Shape{3, 4, 4}}),
                         doctest::Contains("input 1 has shape (3, 4, 4), input 0 has (3, 4, 5)"),
                         Error);
    CHECK_THROWS_WITH_AS(add.merged_shape({}), doctest::Contains("at least one input"), Error);
    const auto short_batch = random_tensor<float>(Shape{1, 3, 4, 5}, 7);
    CHECK_THROWS_WITH_AS(add.forward_merge({&a, &short_batch}, y), doctest::Contains("input 1"),
                         Error);
}

TEST_CASE("Concat joins channels in input order and splits the gradient back") {
    Concat<float> cat;
    const auto a = random_tensor<float>(Shape{2, 1, 3, 3}, 1);
    const auto b = random_tensor<float>(Shape{2, 3, 3, 3}, 2);
    Tensor<float> y;
    cat.forward_merge({&a, &b}, y);
    REQUIRE(y.shape() == Shape{2, 4, 3, 3});
    for (std::size_t n = 0; n < 2; ++n)
        for (std::size_t c = 0; c < 4; ++c)
            for (std::size_t h = 0; h < 3; ++h)
                for (std::size_t w = 0; w < 3; ++w)
                    CHECK(y(n, c, h, w) == (c < 1 ? a(n, c, h, w) : b(n, c - 1, h, w)));

    SplitChannels images(std::make_unique<Concat<double>>(), {1, 3, 2});
    require_gradients(images, random_tensor<double>(Shape{2, 6, 3, 5}, 3), "Concat of images");
    SplitChannels vectors(std::make_unique<Concat<double>>(), {3, 1});
    require_gradients(vectors, random_tensor<double>(Shape{3, 4}, 4), "Concat of vectors");
    SplitChannels tiny(std::make_unique<Concat<double>>(), {1, 1});
    require_gradients(tiny, random_tensor<double>(Shape{1, 2, 1, 1}, 5), "Concat of 1x1 images");
    require_config_round_trip(cat);

    CHECK(cat.merged_shape({Shape{2}, Shape{5}}) == Shape{7});
    CHECK_THROWS_WITH_AS(cat.merged_shape({Shape{2, 3, 3}, Shape{2, 3, 4}}),
                         doctest::Contains("input 1 has shape (2, 3, 4), input 0 has (2, 3, 3)"),
                         Error);
    CHECK_THROWS_WITH_AS(cat.merged_shape({Shape{2, 3, 3}, Shape{6}}), doctest::Contains("input 1"),
                         Error);
}

namespace {

/// The definition: the mean of the window's pixels, padding read as zeros, divided by k * k or by
/// the count of real pixels.
Tensor<double> avgpool_reference(const Tensor<double>& x, std::size_t k, std::size_t s,
                                 std::size_t p, bool include_pad) {
    const std::size_t H = x.dim(2), W = x.dim(3);
    const std::size_t OH = (H + 2 * p - k) / s + 1, OW = (W + 2 * p - k) / s + 1;
    Tensor<double> y(Shape{x.dim(0), x.dim(1), OH, OW});
    for (std::size_t n = 0; n < x.dim(0); ++n)
        for (std::size_t c = 0; c < x.dim(1); ++c)
            for (std::size_t oh = 0; oh < OH; ++oh)
                for (std::size_t ow = 0; ow < OW; ++ow) {
                    double sum = 0;
                    std::size_t real = 0;
                    for (std::size_t i = 0; i < k; ++i)
                        for (std::size_t j = 0; j < k; ++j) {
                            const long h = long(oh * s + i) - long(p),
                                       w = long(ow * s + j) - long(p);
                            if (h < 0 || w < 0 || h >= long(H) || w >= long(W)) continue;
                            sum += x(n, c, std::size_t(h), std::size_t(w));
                            ++real;
                        }
                    y(n, c, oh, ow) = sum / double(include_pad ? k * k : real);
                }
    return y;
}

struct PoolCase {
    std::size_t k, s, p, h, w;
};

}  // namespace

TEST_CASE("AvgPool2d matches the definition, with and without counting the padding") {
    const std::vector<PoolCase> cases = {
        {2, 2, 0, 4, 4},  // the usual halving
        {2, 2, 0, 5, 7},  // odd sizes: the last row and column dropped
        {3, 1, 1, 5, 4},  // "same" 3x3 with padding
        {3, 2, 1, 7, 6},  // stride 2 with padding, odd height
        {3, 3, 1, 4, 4},  // windows of two, one or no padded rows
        {1, 1, 0, 1, 1},  // 1x1 image and kernel
        {2, 1, 1, 1, 1},  // 1x1 image, padding all round: four windows of one real pixel
        {4, 2, 2, 3, 5},  // pad of half the kernel
    };
    for (const PoolCase& c : cases)
        for (bool include_pad : {true, false}) {
            AvgPool2d<double> pool(c.k, c.s, c.p, include_pad);
            INFO(pool.describe() << " on " << c.h << "x" << c.w);
            const auto x = random_tensor<double>(Shape{2, 3, c.h, c.w}, c.k * 100 + c.h);
            Tensor<double> y;
            pool.forward(x, y);
            const Tensor<double> ref = avgpool_reference(x, c.k, c.s, c.p, include_pad);
            REQUIRE(y.shape() == ref.shape());
            CHECK(pool.output_shape(Shape{3, c.h, c.w}) == sample_shape(ref.shape()));
            for (std::size_t i = 0; i < y.size(); ++i)
                CHECK(y[i] == doctest::Approx(ref[i]).epsilon(1e-14));
            require_gradients(pool, x, pool.describe());
            require_config_round_trip(pool);
        }
    // At the border, counting the padding pulls the mean towards 0.
    AvgPool2d<float> with(3, 1, 1, true), without(3, 1, 1, false);
    Tensor<float> ones(Shape{1, 1, 3, 3}, 1.0f), a, b;
    with.forward(ones, a);
    without.forward(ones, b);
    CHECK(a(0, 0, 0, 0) == doctest::Approx(4.0 / 9));
    CHECK(a(0, 0, 1, 1) == 1.0f);
    CHECK(b(0, 0, 0, 0) == 1.0f);
}

TEST_CASE("AvgPool2d rejects bad settings and inputs") {
    CHECK_THROWS_WITH_AS(AvgPool2d<float>(0), doctest::Contains("kernel must be positive"), Error);
    CHECK_THROWS_WITH_AS(AvgPool2d<float>(3, 1, 2), doctest::Contains("more than half the kernel"),
                         Error);
    AvgPool2d<float> pool(3);
    CHECK_THROWS_WITH_AS(pool.output_shape(Shape{1, 2, 5}), doctest::Contains("window larger"),
                         Error);
    CHECK_THROWS_WITH_AS(pool.output_shape(Shape{5, 5}), doctest::Contains("(C, H, W)"), Error);
    Tensor<float> y;
    CHECK_THROWS_WITH_AS(pool.forward(Tensor<float>(Shape{4, 5}), y),
                         doctest::Contains("(N, C, H, W)"), Error);
    LayerConfig bad{"AvgPool2d", {{"kernel", 0}}};
    CHECK_THROWS_WITH_AS(make_layer<float>(bad), doctest::Contains("'kernel'"), Error);
}

TEST_CASE("GlobalAvgPool2d averages each plane and spreads the gradient evenly") {
    GlobalAvgPool2d<double> gap;
    for (const Shape& s : {Shape{2, 3, 4, 5}, Shape{1, 2, 1, 1}, Shape{3, 1, 7, 3}}) {
        const auto x = random_tensor<double>(s, s[2] * 10 + s[3]);
        Tensor<double> y;
        gap.forward(x, y);
        REQUIRE(y.shape() == Shape{s[0], s[1]});
        for (std::size_t n = 0; n < s[0]; ++n)
            for (std::size_t c = 0; c < s[1]; ++c) {
                double sum = 0;
                for (std::size_t h = 0; h < s[2]; ++h)
                    for (std::size_t w = 0; w < s[3]; ++w) sum += x(n, c, h, w);
                CHECK(y(n, c) == doctest::Approx(sum / double(s[2] * s[3])).epsilon(1e-14));
            }
        require_gradients(gap, x, "GlobalAvgPool2d");
    }
    require_config_round_trip(gap);
    CHECK(gap.output_shape(Shape{8, 6, 6}) == Shape{8});
    CHECK_THROWS_WITH_AS(gap.output_shape(Shape{8}), doctest::Contains("(C, H, W)"), Error);
    Tensor<double> y;
    CHECK_THROWS_WITH_AS(gap.forward(Tensor<double>(Shape{2, 8}), y),
                         doctest::Contains("(N, C, H, W)"), Error);
}

namespace {

struct GroupCase {
    std::size_t cin, cout, k, s, p, groups, h, w;
    bool bias;
};

const std::vector<GroupCase> group_cases = {
    {4, 6, 3, 1, 1, 2, 5, 4, true},   // two groups of 2 -> 3
    {6, 6, 3, 2, 1, 3, 7, 6, false},  // three groups, stride 2, odd height
    {3, 3, 3, 1, 1, 3, 5, 5, true},   // depthwise
    {3, 6, 3, 2, 0, 3, 7, 5, false},  // depthwise with two filters per channel, stride 2
    {4, 4, 3, 1, 1, 4, 1, 1, true},   // depthwise on a 1x1 image: only the centre tap
    {4, 8, 1, 1, 0, 4, 3, 2, true},   // depthwise 1x1
    {2, 4, 3, 1, 1, 1, 4, 3, true},   // one group: an ordinary convolution
    {4, 2, 2, 1, 0, 2, 3, 3, false},  // even kernel
};

/// The direct convolution of each group (kernels/conv_reference.hpp) on the group's channels.
Tensor<double> grouped_reference(const Tensor<double>& x, GroupedConv2d<double>& conv,
                                 const GroupCase& c) {
    const ConvGeometry g = conv.group_geometry(Shape{c.cin, c.h, c.w});
    const std::size_t cg = c.cin / c.groups, og = c.cout / c.groups, N = x.dim(0);
    Tensor<double> y(Shape{N, c.cout, g.out_h(), g.out_w()});
    const std::size_t P = g.out_h() * g.out_w();
    for (std::size_t n = 0; n < N; ++n)
        for (std::size_t grp = 0; grp < c.groups; ++grp) {
            Tensor<double> out(Shape{1, og, g.out_h(), g.out_w()});
            conv2d_direct(x.data() + (n * c.cin + grp * cg) * c.h * c.w, 1, g,
                          conv.weight().data() + grp * og * cg * c.k * c.k, og,
                          c.bias ? conv.bias().data() + grp * og : nullptr, out.data());
            std::copy_n(out.data(), og * P, y.data() + (n * c.cout + grp * og) * P);
        }
    return y;
}

}  // namespace

TEST_CASE(
    "GroupedConv2d matches the direct convolution of each group and passes the gradient "
    "check") {
    for (const GroupCase& c : group_cases) {
        GroupedConv2d<double> conv(c.cin, c.cout, c.k, c.s, c.p, c.groups, c.bias, 3);
        Rng rng(4);
        conv.bias().fill_uniform(rng, -1, 1);
        INFO(conv.describe() << " on " << c.h << "x" << c.w);
        CHECK(conv.depthwise() == (c.groups == c.cin));
        const auto x = random_tensor<double>(Shape{3, c.cin, c.h, c.w}, c.h * 7 + c.groups);
        Tensor<double> y;
        conv.forward(x, y);
        const Tensor<double> ref = grouped_reference(x, conv, c);
        REQUIRE(y.shape() == ref.shape());
        for (std::size_t i = 0; i < y.size(); ++i)
            CHECK(y[i] == doctest::Approx(ref[i]).epsilon(1e-12));
        require_gradients(conv, x, conv.describe());
        require_config_round_trip(conv);
        CHECK(conv.flops(Shape{c.cin, c.h, c.w}) ==
              ref.size() / 3 * (2 * c.cin / c.groups * c.k * c.k + (c.bias ? 1 : 0)));
    }
}

TEST_CASE("GroupedConv2d gives the same bits at every run and the same output at 1 and 2 threads") {
    for (std::size_t groups : {std::size_t{2}, std::size_t{8}}) {
        GroupedConv2d<float> conv(8, 8, 3, 1, 1, groups, true, 5);
        const auto x = random_tensor<float>(Shape{5, 8, 9, 9}, 6);
        const auto dy = random_tensor<float>(Shape{5, 8, 9, 9}, 7);
        Tensor<float> y1, y2, dx1, dx2, dx3;
        set_num_threads(1);
        conv.forward(x, y1);
        conv.backward(x, y1, dy, dx1);
        const Tensor<float> dw1 = conv.parameters()[0].grad[0];
        set_num_threads(2);
        conv.forward(x, y2);
        conv.backward(x, y2, dy, dx2);
        const Tensor<float> dw2 = conv.parameters()[0].grad[0];
        conv.backward(x, y2, dy, dx3);
        const Tensor<float> dw3 = conv.parameters()[0].grad[0];
        set_num_threads(0);
        CHECK(std::equal(y1.begin(), y1.end(), y2.begin()));
        CHECK(std::equal(dx1.begin(), dx1.end(), dx2.begin()));  // each image's own
        CHECK(std::equal(dw2.begin(), dw2.end(), dw3.begin()));
        for (std::size_t i = 0; i < dw1.size(); ++i)
            CHECK(dw1[i] == doctest::Approx(dw2[i]).epsilon(1e-5));
    }
}

TEST_CASE("GroupedConv2d skips the input gradient when asked and leaves it zero") {
    for (std::size_t groups : {std::size_t{1}, std::size_t{4}}) {
        GroupedConv2d<float> conv(4, 4, 3, 1, 1, groups);
        conv.set_input_gradient(false);
        const auto x = random_tensor<float>(Shape{2, 4, 5, 5}, 8);
        Tensor<float> y, dx(Shape{2, 4, 5, 5}, 3.0f);
        conv.forward(x, y);
        conv.backward(x, y, random_tensor<float>(y.shape(), 9), dx);
        CHECK(std::all_of(dx.begin(), dx.end(), [](float v) { return v == 0; }));
    }
}

TEST_CASE("GroupedConv2d rejects channels that do not split into the groups, and bad input") {
    CHECK_THROWS_WITH_AS(GroupedConv2d<float>(6, 4, 3, 1, 1, 4),
                         doctest::Contains("multiples of the 4 groups"), Error);
    CHECK_THROWS_WITH_AS(GroupedConv2d<float>(4, 4, 3, 1, 1, 0),
                         doctest::Contains("groups must be positive"), Error);
    GroupedConv2d<float> conv(4, 4, 3, 1, 0, 2);
    CHECK_THROWS_WITH_AS(conv.output_shape(Shape{3, 5, 5}),
                         doctest::Contains("must be (4, H, W), got (3, 5, 5)"), Error);
    CHECK_THROWS_WITH_AS(conv.output_shape(Shape{4, 2, 5}), doctest::Contains("larger than padded"),
                         Error);
    Tensor<float> y, dx;
    CHECK_THROWS_WITH_AS(conv.forward(Tensor<float>(Shape{4, 5}), y),
                         doctest::Contains("(N, C, H, W)"), Error);
    conv.forward(Tensor<float>(Shape{1, 4, 5, 5}), y);
    CHECK_THROWS_WITH_AS(
        conv.backward(Tensor<float>(Shape{1, 4, 5, 5}), y, Tensor<float>(Shape{1, 4, 2, 2}), dx),
        doctest::Contains("dy is (1, 4, 2, 2), expected (1, 4, 3, 3)"), Error);
    LayerConfig bad = conv.config();
    bad.set("groups", 3);
    CHECK_THROWS_WITH_AS(make_layer<float>(bad), doctest::Contains("groups"), Error);
}
