// scale_layer.hpp — Scale, a layer written outside facet: a learnable per-feature gain, registered
// with facet's layer registry so that load() can rebuild it. Used by
// custom_layer_gradcheck.cpp (docs/internals/gradient-checking.md) and custom_layer_save_load.cpp
// (docs/embedding.md).
#pragma once

#include <algorithm>
#include <cstdint>
#include <facet/facet.hpp>
#include <memory>
#include <string>
#include <vector>

namespace facet_docs {

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
    LayerConfig config() const override { return {"Scale", {{"features", scale_.size()}}}; }
    /// The layer a config describes: what make_layer() (and so load()) calls for "Scale".
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& c) {
        const std::int64_t features = c.integer("features");
        check(features >= 1, "Scale: 'features' must be positive, got ", features);
        return std::make_unique<Scale<T>>(static_cast<std::size_t>(features));
    }
    /// The values a model file holds for this config (the gains), which the loader checks
    /// against the file's size before it allocates the layer.
    static double stored_values_lower_bound(const LayerConfig& c) {
        return c.has("features") ? std::max(0.0, c.real("features")) : 0.0;
    }
    Tensor<T>& scale() { return scale_; }

  protected:
    Tensor<T> scale_, scale_grad_;
};

// One line joins the registry: make_layer<T>() and load() now build Scale like facet's own layers.
inline const bool scale_registered = register_layer<Scale>("Scale");

}  // namespace facet_docs
