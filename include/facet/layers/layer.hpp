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
//    rebuild it from a model file; a static from_config() does the rebuilding.
//  * quantized_tensors() exposes int8 tensors with one float scale per outer index (a quantised
//    layer's weights), saved with the model as they are; check_loaded() refuses what a model file
//    may hold but the layer cannot use (a zero scale), after the loader has filled the layer in.
//  * The fusion hooks (applies_affine_epilogue, affine_in_eval, is_relu, identity_in_eval,
//    fuses_relu) declare what Sequential may run as one pass with a neighbouring layer; the
//    folding hooks (absorbs_output_affine, fold_batch_norms) what batch-norm folding
//    (model/fold_batchnorm.hpp) may rewrite.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "facet/core/convert.hpp"
#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/layers/channel_affine.hpp"
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
    /// int8 tensors with their scales (a quantised layer's weights), saved as they are: int8
    /// values and one float32 scale per outer index.
    virtual std::vector<std::pair<std::string, QuantizedTensor*>> quantized_tensors() { return {}; }
    /// Called by the model loader once every tensor of the layer is read: throws facet::Error
    /// (naming the tensor) for values the file format allows but the layer cannot use.
    virtual void check_loaded() const {}
    /// Floating-point operations of one forward pass for one sample (a multiply-add counts 2).
    virtual std::size_t flops(const Shape& /*input*/) const { return 0; }
    virtual LayerConfig config() const = 0;
    /// A lower bound on the float values a model file stores for a layer of config `c` (its
    /// weights); the loader checks it against the bytes left before building the layer. A layer
    /// with weights hides this with its own (layers/registry.hpp, register_layer).
    static double stored_values_lower_bound(const LayerConfig& /*c*/) { return 0; }

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

    // ---- Fusion hooks. Sequential runs some neighbouring layers as one pass (predict's plan,
    // a batch norm with the ReLU after it in training), deciding only by what the layers declare
    // here, never by their class. A subclass inherits its parent's declarations: one whose
    // forward() or backward() no longer fits a declaration must override it to return false.

    /// Whether forward_affine() can apply a per-channel map (ChannelAffine, channel = extent 1
    /// of the output batch) to this layer's output while computing it (Conv2d, Dense).
    virtual bool applies_affine_epilogue() const { return false; }
    /// forward(), then `affine` (when not null) on each channel of the output. Layers that do
    /// not declare applies_affine_epilogue() only take a null map.
    virtual void forward_affine(const Tensor<T>& x, Tensor<T>& y, const ChannelAffine<T>* affine) {
        check(affine == nullptr, type(), " cannot apply a per-channel map to its output");
        forward(x, y);
    }
    /// Whether, in Mode::Eval, this layer is the per-channel map inference_affine() returns
    /// (channel = extent 1 of the input batch): an eval-mode batch norm.
    virtual bool affine_in_eval() const { return false; }
    /// The eval-mode map of this layer, with a ReLU after it when `relu`; only for layers that
    /// declare affine_in_eval().
    virtual ChannelAffine<T> inference_affine(bool /*relu*/) const {
        throw Error(detail::concat(type(), " is not a per-channel map in eval mode"));
    }
    /// Whether this layer is y = max(0, x) going forward and dx = dy where y > 0, 0 elsewhere,
    /// going back (ReLU), in both modes.
    virtual bool is_relu() const { return false; }
    /// Whether this layer passes its input through unchanged in Mode::Eval (dropout).
    virtual bool identity_in_eval() const { return false; }
    /// Whether forward_relu() and backward_relu() run this layer and a ReLU after it as one pass
    /// (batch norm).
    virtual bool fuses_relu() const { return false; }
    /// forward() and a ReLU after it in one pass: z = max(forward(x), 0).
    virtual void forward_relu(const Tensor<T>& /*x*/, Tensor<T>& /*z*/) {
        throw Error(detail::concat(type(), " has no pass fused with a ReLU"));
    }
    /// backward() of z = max(forward(x), 0) from dz = dL/dz, after forward_relu on the same x.
    virtual void backward_relu(const Tensor<T>& /*x*/, const Tensor<T>& /*dz*/, Tensor<T>& /*dx*/) {
        throw Error(detail::concat(type(), " has no pass fused with a ReLU"));
    }

    // ---- Folding hooks (model/fold_batchnorm.hpp): batch-norm folding rewrites a model by what
    // the layers declare here, never by their class.

    /// Whether absorb_output_affine() can fold a per-output-channel map into this layer's
    /// weights and bias, so that forward() alone gives what forward() and the map gave (Conv2d,
    /// GroupedConv2d, Dense).
    virtual bool absorbs_output_affine() const { return false; }
    /// Rewrites the weights and bias (adding a bias when the layer has none) so that forward()
    /// gives `affine` (which must have no ReLU) applied to the old output.
    virtual void absorb_output_affine(const ChannelAffine<T>& /*affine*/) {
        throw Error(detail::concat(type(), " cannot absorb a per-channel map into its weights"));
    }
    /// For a layer that holds other layers (Graph): folds every batch norm inside it into the
    /// layer before it where that is exact (see fold_batchnorm) and returns how many it folded.
    /// Needs Mode::Eval. Other layers hold none: 0.
    virtual std::size_t fold_batch_norms() { return 0; }

    /// For a layer that keeps running statistics of its inputs in training (batch norm): calls
    /// `visit` with the share each training batch takes in them (its momentum), which `visit` may
    /// change; train/running_statistics.hpp re-estimates them this way. A layer that holds other
    /// layers (Graph) visits theirs; other layers keep no statistics and never call it.
    virtual void visit_statistics_momentum(const std::function<void(double&)>& /*visit*/) {}

    virtual void set_mode(Mode m) { mode_ = m; }
    Mode mode() const { return mode_; }
    bool training() const { return mode_ == Mode::Train; }

  protected:
    Mode mode_ = Mode::Train;
    bool input_gradient_ = true;
};

/// Whether `next`, reading only `producer`'s output, can be folded into `producer`: an
/// eval-mode per-channel map (a batch norm) after a layer that absorbs_output_affine().
template <typename T>
bool foldable_pair(const Layer<T>& producer, const Layer<T>& next) {
    return producer.absorbs_output_affine() && next.affine_in_eval();
}

/// Folds `next` (an eval-mode per-channel map, foldable_pair) into `producer`'s weights; the
/// caller then removes `next` from the model.
template <typename T>
void fold_pair(Layer<T>& producer, const Layer<T>& next) {
    check(foldable_pair(producer, next), "fold_pair: ", next.describe(), " cannot be folded into ",
          producer.describe());
    producer.absorb_output_affine(next.inference_affine(false));
}

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

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class Layer<float>;
extern template class Layer<double>;
#endif

}  // namespace facet
