// Tests of the public gradient checker: it passes correct layers and catches wrong derivatives,
// gradient entries backward never writes, accumulation instead of assignment; it holds dropout
// masks fixed and leaves batch norm's running statistics as they were.
#include <doctest/doctest.h>

#include <string>

#include "facet/layers/batchnorm.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/dropout.hpp"
#include "facet/layers/layer.hpp"
#include "facet/model/gradient_check.hpp"

using namespace facet;

namespace {

/// y = scale * x^2 elementwise, times a one-element parameter a: y = a * x^2. Its backward can be
/// broken on purpose in the ways the checker must notice.
class Square : public Layer<double> {
  public:
    enum class Bug { None, WrongFactor, ForgetsParameter, Accumulates, SkipsLastInput };
    explicit Square(Bug bug = Bug::None) : bug_(bug) {
        a_.resize(Shape{1});
        a_[0] = 1.5;
        da_.resize(Shape{1});
    }
    std::string type() const override { return "Square"; }
    Shape output_shape(const Shape& s) const override { return s; }
    void forward(const Tensor<double>& x, Tensor<double>& y) override {
        y.resize(x.shape());
        for (std::size_t i = 0; i < x.size(); ++i) y[i] = a_[0] * x[i] * x[i];
    }
    // dy/dx = 2 a x, dy/da = x^2.
    void backward(const Tensor<double>& x, const Tensor<double>&, const Tensor<double>& dy,
                  Tensor<double>& dx) override {
        dx.resize(x.shape());
        const std::size_t n = bug_ == Bug::SkipsLastInput ? x.size() - 1 : x.size();
        for (std::size_t i = 0; i < n; ++i)
            dx[i] = (bug_ == Bug::WrongFactor ? 1.9 : 2.0) * a_[0] * x[i] * dy[i];
        if (bug_ == Bug::ForgetsParameter) return;
        if (bug_ != Bug::Accumulates) da_[0] = 0;
        for (std::size_t i = 0; i < x.size(); ++i) da_[0] += x[i] * x[i] * dy[i];
    }
    std::vector<Parameter<double>> parameters() override { return {{"a", &a_, &da_, true}}; }
    LayerConfig config() const override { return {"Square", {}}; }

  private:
    Bug bug_;
    Tensor<double> a_, da_;
};

Tensor<double> input(std::uint64_t seed) {
    Tensor<double> x(Shape{3, 4});
    Rng rng(seed);
    x.fill_uniform(rng, -1, 1);
    return x;
}

}  // namespace

TEST_CASE("check_gradients passes a correct layer and reports every tensor") {
    Square layer;
    const GradientCheckReport r = check_gradients(layer, input(1));
    INFO(r.str());
    CHECK(r.passed);
    REQUIRE(r.tensors.size() == 2);
    CHECK(r.tensors[0].name == "input");
    CHECK(r.tensors[0].entries_checked == 12);
    CHECK(r.tensors[1].name == "a");
    CHECK(r.tensors[1].max_rel_error < 1e-8);
    CHECK(r.str().find("passed") != std::string::npos);
}

TEST_CASE("check_gradients catches wrong, missing and accumulated gradients") {
    using Bug = Square::Bug;
    for (Bug bug :
         {Bug::WrongFactor, Bug::ForgetsParameter, Bug::Accumulates, Bug::SkipsLastInput}) {
        Square layer(bug);
        const GradientCheckReport r = check_gradients(layer, input(2));
        INFO("bug " << int(bug) << "\n" << r.str());
        CHECK_FALSE(r.passed);
        CHECK(r.str().find("FAILED") != std::string::npos);
        if (bug == Bug::WrongFactor) {
            CHECK_FALSE(r.tensors[0].passed);
            CHECK(r.tensors[0].max_rel_error == doctest::Approx(0.05).epsilon(0.01));
            CHECK(r.tensors[1].passed);
        }
        if (bug == Bug::ForgetsParameter || bug == Bug::Accumulates)
            CHECK(r.tensors[1].unwritten == 1);
        if (bug == Bug::SkipsLastInput) {
            CHECK(r.tensors[0].unwritten == 1);
            CHECK(r.tensors[0].worst_index == 11);
        }
    }
}

TEST_CASE("check_gradients holds dropout masks fixed and checks the sampled entries only") {
    Dropout<double> drop(0.5, 3);
    GradientCheckOptions opt;
    opt.max_entries = 5;
    const GradientCheckReport r = check_gradients(drop, input(3), opt);
    INFO(r.str());
    CHECK(r.passed);
    CHECK(r.tensors[0].entries_checked == 5);
}

TEST_CASE("check_gradients checks batch norm through its batch statistics and restores buffers") {
    BatchNorm1d<double> bn(4);
    bn.running_mean().fill(0.25);
    const GradientCheckReport r = check_gradients(bn, input(4));
    INFO(r.str());
    CHECK(r.passed);
    CHECK(r.tensors.size() == 3);
    CHECK(bn.running_mean()[2] == 0.25);  // dozens of training forwards, yet unchanged
    CHECK(bn.running_var()[1] == 1.0);
}

TEST_CASE("check_gradients rejects a bad step") {
    Dense<double> dense(4, 2);
    GradientCheckOptions opt;
    opt.step = 0;
    CHECK_THROWS_WITH_AS(check_gradients(dense, input(5), opt), doctest::Contains("step"), Error);
}
