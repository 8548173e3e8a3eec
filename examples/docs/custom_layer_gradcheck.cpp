// custom_layer_gradcheck.cpp — write your own layer and prove its backward pass with
// facet::check_gradients (quoted in docs/internals/gradient-checking.md). Exits non-zero when the
// correct layer fails the check or when the deliberately broken one passes it.
#include <cstdio>
#include <facet/facet.hpp>
#include <string>
#include <vector>

#include "scale_layer.hpp"

using namespace facet;
using facet_docs::Scale;

/// The same layer with a classic bug: it forgets the zero() in Scale::backward, so its gradient
/// adds to whatever the tensor held before (last step's gradient, in a training loop).
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
