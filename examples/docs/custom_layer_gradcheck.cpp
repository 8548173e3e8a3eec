// custom_layer_gradcheck.cpp — write your own layer and prove its backward pass with
// facet::check_gradients (quoted in docs/internals/gradient-checking.md). Exits non-zero when the
// correct layer fails the check or when the deliberately broken one passes it.
#include <cstdio>
#include <facet/facet.hpp>
#include <string>
#include <vector>

using namespace facet;

/// y[n, f] = scale[f] * x[n, f]: a learnable per-feature gain, x is (N, F).
template <typename T>
class Scale : public Layer<T> {
  public:
    explicit Scale(std::size_t features) {
        scale_.resize(Shape{features});
        scale_grad_.resize(Shape{features});
        scale_.fill(T(1));
    }
    std::string type() const override { return "Scale"; }
    Shape output_shape(const Shape& input) const override {
        check(input.rank() == 1 && input[0] == scale_.size(), "Scale(", scale_.size(),
              "): per-sample input must be (", scale_.size(), "), got ", input.str());
        return input;
    }

    void forward(const Tensor<T>& x, Tensor<T>& y) override {
        output_shape(sample_shape(x.shape()));
        y.resize(x.shape());
        const std::size_t F = scale_.size();
        for (std::size_t i = 0; i < x.size(); ++i) y[i] = scale_[i % F] * x[i];
    }
    // dx[n, f] = scale[f] * dy[n, f];  dscale[f] = sum_n x[n, f] * dy[n, f].
    void backward(const Tensor<T>& x, const Tensor<T>& /*y*/, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        dx.resize(x.shape());
        const std::size_t F = scale_.size();
        scale_grad_.zero();  // the contract: assign parameter gradients, never add to them
        for (std::size_t i = 0; i < x.size(); ++i) {
            dx[i] = scale_[i % F] * dy[i];
            scale_grad_[i % F] += x[i] * dy[i];
        }
    }

    std::vector<Parameter<T>> parameters() override {
        return {{"scale", &scale_, &scale_grad_, false}};
    }
    LayerConfig config() const override { return {"Scale", {{"features", double(scale_.size())}}}; }
    Tensor<T>& scale() { return scale_; }

  protected:
    Tensor<T> scale_, scale_grad_;
};

/// The same layer with a classic bug: it forgets the zero() above, so its gradient adds to
/// whatever the tensor held before (last step's gradient, in a training loop).
template <typename T>
class ScaleForgetsToZero : public Scale<T> {
  public:
    using Scale<T>::Scale;
    void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        const Tensor<T> kept = this->scale_grad_;  // what the tensor held before backward
        Scale<T>::backward(x, y, dy, dx);
        for (std::size_t f = 0; f < kept.size(); ++f) this->scale_grad_[f] += kept[f];
    }
};

int main() {
    Rng rng(3);
    Tensor<double> x(Shape{4, 5});  // a batch of 4 samples with 5 features
    x.fill_normal(rng, 0.0, 1.0);

    Scale<double> good(5);
    good.scale().fill_uniform(rng, 0.5, 2.0);
    const GradientCheckReport good_report = check_gradients(good, x);
    std::printf("Scale:\n%s", good_report.str().c_str());

    ScaleForgetsToZero<double> bad(5);
    const GradientCheckReport bad_report = check_gradients(bad, x);
    std::printf("ScaleForgetsToZero:\n%s", bad_report.str().c_str());

    return good_report.passed && !bad_report.passed ? 0 : 1;
}
