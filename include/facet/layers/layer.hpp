// facet/layers/layer.hpp — the contract every layer keeps. Read this first, then any layer
// (layers/dense.hpp is the simplest), then model/sequential.hpp which chains them.
//
// The contract (written down, as in dlib, so a new layer can be checked against it):
//  * Tensors are batches: x has shape (N, ...) with the per-sample shape after the batch extent,
//    NCHW for images, (N, F) for feature vectors.
//  * forward(x, y) resizes y to (N, output_shape(per-sample shape of x)) and *assigns* it. It may
//    cache what backward needs (argmax indices, batch statistics, the dropout mask).
//  * backward(x, y, dy, dx) is called after forward on the same x with y its output and dy = dL/dy.
//    It *assigns* dx = dL/dx (resizing dx like x) and *assigns* the gradient of every parameter
//    (not +=): the optimiser reads them after each step, and nothing has to zero them first.
//  * A tensor used twice (read by two nodes of a Graph, or twice by one merge layer) gets the sum
//    of its readers' gradients: each reader still assigns its own dx, and the graph adds them
//    (model/graph.hpp). Layers of several inputs derive from MergeLayer (layers/merge_layer.hpp).
//  * In Mode::Eval layers are deterministic and use no batch statistics (dropout is the identity,
//    batch norm uses running statistics).
//  * parameters() exposes (value, gradient) pairs for optimisers; buffers() exposes state that is
//    saved with the model but not trained (batch norm's running mean and variance).
//  * config() describes the layer's hyper-parameters so make_layer() (layers/registry.hpp) can
//    rebuild it from a model file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/layers/layer_config.hpp"

namespace facet {

/// Training or inference behaviour.
enum class Mode { Train, Eval };

/// A trainable tensor and its gradient, as optimisers see it.
template <typename T>
struct Parameter {
    std::string name;  ///< e.g. "weight", "bias", "gamma", "beta"
    Tensor<T>* value = nullptr;
    Tensor<T>* grad = nullptr;
    bool decay = true;  ///< whether weight decay applies (not to biases or BN's gamma/beta)
};

/// The base of all layers. Scalar type T is float for training, double for gradient checks.
template <typename T>
class Layer {
  public:
    virtual ~Layer() = default;

    /// The registry name, e.g. "Conv2d".
    virtual std::string type() const = 0;
    /// A one-line human description, e.g. "Conv2d(1->32, 3x3, stride 1, pad 1, no bias)".
    virtual std::string describe() const { return type(); }
    /// Per-sample output shape for a per-sample input shape (without the batch extent); throws
    /// facet::Error when the input shape does not fit the layer.
    virtual Shape output_shape(const Shape& input) const = 0;

    virtual void forward(const Tensor<T>& x, Tensor<T>& y) = 0;
    virtual void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy,
                          Tensor<T>& dx) = 0;

    virtual std::vector<Parameter<T>> parameters() { return {}; }
    virtual std::vector<std::pair<std::string, Tensor<T>*>> buffers() { return {}; }
    /// Floating-point operations of one forward pass for one sample (a multiply-add counts 2).
    virtual std::size_t flops(const Shape& /*input*/) const { return 0; }
    virtual LayerConfig config() const = 0;

    std::size_t parameter_count() {
        std::size_t n = 0;
        for (auto& p : parameters()) n += p.value->size();
        return n;
    }

    /// Restarts the layer's random stream (dropout masks) from `seed`, so that the next forward
    /// draws the same random numbers again; the gradient checker relies on it. Layers without
    /// randomness ignore it.
    virtual void reseed(std::uint64_t /*seed*/) {}

    /// Whether backward() must compute dx. Sequential turns it off for its first layer when the
    /// caller does not want the input gradient: for the first convolution of a CNN that saves a
    /// whole GEMM and col2im per image. Layers that ignore the hint still assign dx; those that
    /// follow it leave dx zero-filled.
    void set_input_gradient(bool needed) { input_gradient_ = needed; }
    bool input_gradient() const { return input_gradient_; }

    virtual void set_mode(Mode m) { mode_ = m; }
    Mode mode() const { return mode_; }
    bool training() const { return mode_ == Mode::Train; }

  protected:
    Mode mode_ = Mode::Train;
    bool input_gradient_ = true;
};

/// The per-sample shape of a batch tensor: its shape without the outermost (batch) extent.
inline Shape sample_shape(const Shape& batch) {
    check(batch.rank() >= 1, "sample_shape: a batch needs a batch extent");
    switch (batch.rank()) {
        case 1:
            return Shape{1};
        case 2:
            return Shape{batch[1]};
        case 3:
            return Shape{batch[1], batch[2]};
        default:
            return Shape{batch[1], batch[2], batch[3]};
    }
}

/// A batch shape: N followed by the per-sample extents.
inline Shape batch_shape(std::size_t n, const Shape& sample) {
    switch (sample.rank()) {
        case 0:
            return Shape{n};
        case 1:
            return Shape{n, sample[0]};
        case 2:
            return Shape{n, sample[0], sample[1]};
        default:
            check(sample.rank() == 3, "batch_shape: per-sample rank ", sample.rank(), " > 3");
            return Shape{n, sample[0], sample[1], sample[2]};
    }
}

}  // namespace facet
