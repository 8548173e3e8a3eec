// facet/model/sequential.hpp — Sequential<T>: a chain of layers with the input shape given once and
// every other shape inferred, a summary table, forward/backward over a batch, one-call training
// steps and prediction. It owns the activations of the last forward pass (backward needs them)
// and reuses their storage from batch to batch, so a steady training loop allocates nothing.
// Read next: model/serialize.hpp (saving and loading a Sequential).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iomanip>
#include <limits>
#include <memory>
#include <optional>
#include <ostream>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "facet/core/communicator.hpp"
#include "facet/core/context.hpp"
#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/kernels/softmax_rows.hpp"
#include "facet/layers/channel_affine.hpp"
#include "facet/layers/layer.hpp"
#include "facet/metrics/accuracy.hpp"
#include "facet/optim/clip.hpp"
#include "facet/optim/optimizer.hpp"

namespace facet {

/// One row of Sequential::summary().
struct LayerSummary {
    std::size_t index = 0;
    std::string description;  ///< the layer's describe()
    Shape output_shape;       ///< per sample
    std::size_t parameters = 0;
    std::size_t flops = 0;  ///< forward, per sample
};

/// Sequential::summary(): a row per layer and the totals; print it with operator<<.
struct ModelSummary {
    Shape input_shape;
    std::vector<LayerSummary> layers;
    std::size_t total_parameters = 0;
    std::size_t total_flops = 0;

    /// The table as text, one layer per line, with a header and a totals line.
    std::string table() const {
        std::size_t width = 5;
        for (const LayerSummary& row : layers) width = std::max(width, row.description.size());
        std::ostringstream os;
        auto line = [&](const std::string& idx, const std::string& what, const std::string& shape,
                        const std::string& params, const std::string& flops) {
            os << std::left << std::setw(4) << idx << std::setw(static_cast<int>(width) + 2) << what
               << std::setw(16) << shape << std::right << std::setw(12) << params << std::setw(14)
               << flops << '\n';
        };
        auto mflops = [](std::size_t f) {
            std::ostringstream s;
            s << std::fixed << std::setprecision(2) << static_cast<double>(f) / 1e6;
            return s.str();
        };
        line("#", "layer", "output", "params", "MFLOP");
        line("", "input", input_shape.str(), "", "");
        for (const LayerSummary& row : layers)
            line(std::to_string(row.index), row.description, row.output_shape.str(),
                 std::to_string(row.parameters), mflops(row.flops));
        line("", "total", "", std::to_string(total_parameters), mflops(total_flops));
        return os.str();
    }
    friend std::ostream& operator<<(std::ostream& os, const ModelSummary& s) {
        return os << s.table();
    }
};

/// What Sequential::train_step() reports about one batch.
struct StepResult {
    double loss = 0;           ///< mean loss over the batch
    double accuracy = 0;       ///< fraction of samples whose largest logit is the label
    double gradient_norm = 0;  ///< global gradient norm (before clipping, if clipping)
    std::size_t samples = 0;   ///< the samples of the step (of every process, when distributed)
};

/// What Sequential::train_step() throws when a batch gives a NaN or infinite loss or parameter
/// gradient. Nothing has changed when it is thrown (weights, optimiser state and layer buffers
/// such as batch-norm running statistics are as before the step), so a trainer may stop, or skip
/// the batch and go on. what() is one line naming what went bad and where; the fields say the
/// same to a program.
class NonFiniteError : public Error {
  public:
    enum class Kind {
        Loss,     ///< the batch's mean loss is not finite
        Gradient  ///< the loss is finite but a parameter gradient is not
    };
    static constexpr std::size_t no_layer = static_cast<std::size_t>(-1);

    NonFiniteError(Kind kind, double loss, std::size_t layer, std::string layer_description,
                   std::string parameter, bool input_not_finite,
                   std::optional<std::uint64_t> step = std::nullopt, bool other_process = false)
        : Error(message(kind, loss, layer, layer_description, parameter, input_not_finite, step,
                        other_process)),
          kind_(kind),
          loss_(loss),
          layer_(layer),
          layer_description_(std::move(layer_description)),
          parameter_(std::move(parameter)),
          input_not_finite_(input_not_finite),
          step_(step),
          other_process_(other_process) {}

    Kind kind() const { return kind_; }
    /// The batch's mean loss (NaN or infinite when kind() is Loss).
    double loss() const { return loss_; }
    /// The layer where the values went bad, or no_layer. For a Gradient: the first layer, going
    /// backward from the output, with a non-finite parameter gradient (every layer below it
    /// inherits the bad values, so the first one met is where they started). For a Loss: the
    /// first layer, going forward, whose output is not finite (no_layer when the input already is,
    /// or when every output is finite and the loss itself overflowed).
    std::size_t layer() const { return layer_; }
    /// That layer's describe(), e.g. "Conv2d(64->64, 3x3, stride 1, pad 1, no bias)".
    const std::string& layer_description() const { return layer_description_; }
    /// For a Gradient: the parameter, named as in Sequential::parameters() (e.g. "11.weight").
    const std::string& parameter() const { return parameter_; }
    /// True when the input batch itself holds NaN or infinite values (either kind).
    bool input_not_finite() const { return input_not_finite_; }
    /// The trainer's step number, when it added one with at_step() (Sequential counts no steps).
    std::optional<std::uint64_t> step() const { return step_; }
    /// Data-parallel training: the non-finite loss came from another process's shard of the
    /// batch (that process's error names the layer).
    bool other_process() const { return other_process_; }
    /// The same error with the trainer's step number in the fields and in the message.
    NonFiniteError at_step(std::uint64_t step) const {
        return NonFiniteError(kind_, loss_, layer_, layer_description_, parameter_,
                              input_not_finite_, step, other_process_);
    }

  private:
    static std::string message(Kind kind, double loss, std::size_t layer,
                               const std::string& description, const std::string& parameter,
                               bool input_not_finite, std::optional<std::uint64_t> step,
                               bool other_process) {
        std::ostringstream os;
        os << "non-finite " << (kind == Kind::Loss ? "loss" : "gradient");
        if (kind == Kind::Loss) os << " (" << loss << ")";
        if (step) os << " at step " << *step;
        os << ": ";
        if (other_process)
            os << "in another process's shard of the batch (its message names the layer)";
        else if (kind == Kind::Gradient) {
            os << "layer " << layer << " " << description << ", parameter '" << parameter
               << "' (the first layer from the output back whose gradient holds NaN or infinity)";
            if (input_not_finite) os << "; the input batch holds NaN or infinite values";
        } else if (input_not_finite)
            os << "the input batch holds NaN or infinite values";
        else if (layer != no_layer)
            os << "layer " << layer << " " << description
               << " is the first whose output holds NaN or infinity";
        else
            os << "every layer's output is finite; the loss itself overflowed";
        os << "; the weights were not changed (diverging? lower the learning rate or clip the "
              "gradient norm)";
        return os.str();
    }

    Kind kind_;
    double loss_;
    std::size_t layer_;
    std::string layer_description_, parameter_;
    bool input_not_finite_;
    std::optional<std::uint64_t> step_;
    bool other_process_ = false;
};

/// A chain of layers, each fed by the previous one.
///
///     Sequential<float> model(Shape{1, 48, 48});
///     model.add<Conv2d<float>>(1, 32, 3, 1, 1, false);
///     model.add<BatchNorm2d<float>>(32);
///     std::cout << model.summary();
template <typename T>
class Sequential {
  public:
    /// An empty model whose samples have `input_shape` (without the batch extent), e.g. (1, 48,
    /// 48).
    explicit Sequential(const Shape& input_shape) : input_shape_(input_shape) {
        check(input_shape.rank() >= 1 && input_shape.rank() <= 3,
              "Sequential: per-sample input shape ", input_shape.str(),
              " must have 1 to 3 extents");
        check(input_shape.size() > 0, "Sequential: input shape ", input_shape.str(), " is empty");
        shapes_.push_back(input_shape);
    }
    Sequential(Sequential&&) noexcept = default;
    Sequential& operator=(Sequential&&) noexcept = default;

    /// The settings this model runs with (threads, GEMM, Winograd, ...; core/context.hpp),
    /// installed on the calling thread for each forward, backward, train_step, predict and
    /// inference step. Until the first call the model follows the caller's current context;
    /// the first call copies that context, and from then on the model keeps its own.
    Context& context() {
        if (!context_) context_ = current_context();
        return *context_;
    }
    /// The context the next call would run with: the model's own, or else the caller's current
    /// one (unlike context(), this does not make the model keep a copy).
    const Context& running_context() const { return context_ ? *context_ : current_context(); }

    /// Appends a layer built in place from `args`; returns it for further set-up.
    template <typename L, typename... Args>
    L& add(Args&&... args) {
        auto layer = std::make_unique<L>(std::forward<Args>(args)...);
        L& ref = *layer;
        add(std::move(layer));
        return ref;
    }

    /// Appends a layer. Its output shape is inferred from the previous layer's; an Error naming the
    /// layer's position and description when that input does not fit it.
    Layer<T>& add(std::unique_ptr<Layer<T>> layer) {
        check(layer != nullptr, "Sequential::add: null layer");
        Shape out;
        try {
            out = layer->output_shape(shapes_.back());
        } catch (const Error& e) {
            throw Error(detail::concat("Sequential::add: layer ", layers_.size(), " (",
                                       layer->describe(), ") cannot take input ",
                                       shapes_.back().str(), ": ", e.what()));
        }
        check(out.size() > 0, "Sequential::add: layer ", layers_.size(), " (", layer->describe(),
              ") produces an empty output ", out.str());
        layer->set_mode(mode_);
        layers_.push_back(std::move(layer));
        shapes_.push_back(out);
        activations_.emplace_back();
        has_forward_ = false;  // the kept activations no longer describe the whole model
        parameters_.clear();   // rebuilt, with the new layer's, on the next parameters()
        buffer_backup_.clear();
        return *layers_.back();
    }

    /// Removes layer i and returns it. Only a layer whose output shape equals its input's (a batch
    /// norm, dropout, an activation) may go, so every other shape stays as it was; an Error
    /// otherwise. The kept activations and the parameters() vector are dropped with it.
    std::unique_ptr<Layer<T>> remove(std::size_t i) {
        check(i < layers_.size(), "Sequential::remove: layer ", i, " out of range (",
              layers_.size(), " layers)");
        check(shapes_[i] == shapes_[i + 1], "Sequential::remove: layer ", i, " (",
              layers_[i]->describe(), ") changes the shape ", shapes_[i].str(), " to ",
              shapes_[i + 1].str(), "; only a shape-preserving layer can be removed");
        std::unique_ptr<Layer<T>> removed = std::move(layers_[i]);
        layers_.erase(layers_.begin() + static_cast<std::ptrdiff_t>(i));
        shapes_.erase(shapes_.begin() + static_cast<std::ptrdiff_t>(i) + 1);
        activations_.erase(activations_.begin() + static_cast<std::ptrdiff_t>(i));
        has_forward_ = false;
        fused_.clear();
        parameters_.clear();
        buffer_backup_.clear();
        return removed;
    }

    /// The per-sample input shape given at construction.
    const Shape& input_shape() const { return input_shape_; }
    /// The per-sample output shape of the last layer (the input shape for an empty model).
    const Shape& output_shape() const { return shapes_.back(); }
    /// The per-sample output shape of layer i.
    const Shape& output_shape(std::size_t i) const {
        check(i < layers_.size(), "Sequential: layer ", i, " out of range (", layers_.size(),
              " layers)");
        return shapes_[i + 1];
    }
    std::size_t size() const { return layers_.size(); }
    /// Layer i, checked.
    Layer<T>& layer(std::size_t i) {
        check(i < layers_.size(), "Sequential: layer ", i, " out of range (", layers_.size(),
              " layers)");
        return *layers_[i];
    }
    /// All layers in order.
    const std::vector<std::unique_ptr<Layer<T>>>& layers() const { return layers_; }

    /// Every layer's parameters, named "<layer index>.<name>" (e.g. "3.weight"), in layer order.
    /// The vector is built once and kept, so calling this in a loop costs nothing.
    const std::vector<Parameter<T>>& parameters() {
        if (parameters_.empty()) {
            parameter_layers_.clear();
            for (std::size_t i = 0; i < layers_.size(); ++i)
                for (Parameter<T> p : layers_[i]->parameters()) {
                    p.name = std::to_string(i) + "." + p.name;
                    parameters_.push_back(std::move(p));
                    parameter_layers_.push_back(i);
                }
        }
        return parameters_;
    }
    /// Every layer's buffers (saved, not trained), named like parameters.
    std::vector<std::pair<std::string, Tensor<T>*>> buffers() {
        std::vector<std::pair<std::string, Tensor<T>*>> all;
        for (std::size_t i = 0; i < layers_.size(); ++i)
            for (auto& [name, tensor] : layers_[i]->buffers())
                all.emplace_back(std::to_string(i) + "." + name, tensor);
        return all;
    }
    /// Every layer's int8 tensors (layer.hpp, quantized_tensors), named like parameters.
    std::vector<std::pair<std::string, QuantizedTensor*>> quantized_tensors() {
        std::vector<std::pair<std::string, QuantizedTensor*>> all;
        for (std::size_t i = 0; i < layers_.size(); ++i)
            for (auto& [name, tensor] : layers_[i]->quantized_tensors())
                all.emplace_back(std::to_string(i) + "." + name, tensor);
        return all;
    }
    /// Total number of trainable values.
    std::size_t parameter_count() {
        std::size_t n = 0;
        for (const Parameter<T>& p : parameters()) n += p.value->size();
        return n;
    }

    /// Each layer's output shape, parameter count and forward FLOPs per sample, and the totals.
    ModelSummary summary() {
        ModelSummary s;
        s.input_shape = input_shape_;
        for (std::size_t i = 0; i < layers_.size(); ++i) {
            LayerSummary row;
            row.index = i;
            row.description = layers_[i]->describe();
            row.output_shape = shapes_[i + 1];
            row.parameters = layers_[i]->parameter_count();
            row.flops = layers_[i]->flops(shapes_[i]);
            s.total_parameters += row.parameters;
            s.total_flops += row.flops;
            s.layers.push_back(std::move(row));
        }
        return s;
    }

    /// Switches every layer between training and inference behaviour.
    void set_mode(Mode m) {
        mode_ = m;
        for (auto& layer : layers_) layer->set_mode(m);
    }
    Mode mode() const { return mode_; }

    /// Restarts every layer's random stream (dropout masks) from `seed`; layer i gets seed + i so
    /// that two dropout layers do not draw the same mask.
    void reseed(std::uint64_t seed) {
        for (std::size_t i = 0; i < layers_.size(); ++i) layers_[i]->reseed(seed + i);
    }

    /// Runs the batch x, shape (N, input shape...), through every layer and returns the last output
    /// (the logits). Keeps every activation, and a view of x, for backward().
    const Tensor<T>& forward(const Tensor<T>& x) {
        const ContextScope scope(context_ ? &*context_ : nullptr);
        check_input(x, "forward");
        input_ = x.view();
        fused_.assign(layers_.size(), 0);
        const Tensor<T>* in = &x;
        for (std::size_t i = 0; i < layers_.size(); ++i) {
            if (fused_with_next(i)) {
                layers_[i]->forward_relu(*in, activations_[i + 1]);
                activations_[i] = Tensor<T>();  // the batch norm's own output is never formed
                fused_[i] = 1;
                in = &activations_[++i];
                continue;
            }
            layers_[i]->forward(*in, activations_[i]);
            in = &activations_[i];
        }
        has_forward_ = true;
        return activations_.back();
    }

    /// Whether forward() runs a layer that fuses_relu() (a batch norm) directly followed by one
    /// that is_relu() as one pass (Layer::forward_relu, and backward_relu going back), and
    /// predict() runs inference_plan()'s steps: on by default. The result is the same; the first
    /// layer's own output is then not kept (see activation_kept()).
    void set_fusion(bool on) { fuse_ = on; }
    bool fusion() const { return fuse_; }
    /// Whether forward() runs layer i (a batch norm) and layer i + 1 (a ReLU) as one.
    bool fused_with_next(std::size_t i) const { return fuse_ && fuses_with_relu_after(i); }

    /// Whether the last forward pass kept layer i's output: false for a batch norm fused with the
    /// ReLU after it, whose output was never formed (the ReLU's output is kept).
    bool activation_kept(std::size_t i) const {
        check(i < layers_.size(), "Sequential: layer ", i, " out of range (", layers_.size(),
              " layers)");
        return i >= fused_.size() || !fused_[i];
    }

    /// Layer i's output of the last forward pass (its storage is reused by the next one).
    const Tensor<T>& activation(std::size_t i) const {
        check(activation_kept(i), "Sequential: layer ", i, " (", layers_[i]->describe(),
              ") ran fused with the layer after it (or, in predict(), as the identity), so its "
              "output was not kept; call set_fusion(false) first to keep every layer's output");
        return activations_[i];
    }

    /// Back-propagates dL/dlogits (shape of forward's result) through every layer: assigns every
    /// parameter's gradient and returns dL/dx. Must follow forward() on the same batch. With
    /// input_gradient false the first layer may skip computing dL/dx (training never reads it)
    /// and the returned tensor is then all zeros.
    const Tensor<T>& backward(const Tensor<T>& dlogits, bool input_gradient = true) {
        const ContextScope scope(context_ ? &*context_ : nullptr);
        check(has_forward_, "Sequential::backward: call forward() first");
        check(dlogits.shape() == activations_.back().shape(),
              "Sequential::backward: gradient has shape ", dlogits.shape().str(),
              ", the output of forward() has ", activations_.back().shape().str());
        // Two gradient buffers used in turn: layer i reads dL/d(its output) from one and writes
        // dL/d(its input) into the other, so memory does not grow with depth.
        const Tensor<T>* dy = &dlogits;
        layers_.front()->set_input_gradient(input_gradient);
        std::size_t next = 0;  // gradients_[next] takes the next dx; dy is always in the other
        for (std::size_t i = layers_.size(); i-- > 0;) {
            Tensor<T>& dx = gradients_[next];
            next ^= 1;
            if (i > 0 && fused_[i - 1]) {  // layer i is the ReLU of a fused pair: both at once
                --i;
                const Tensor<T>& x = i == 0 ? input_ : activations_[i - 1];
                layers_[i]->backward_relu(x, *dy, dx);
            } else {
                const Tensor<T>& x = i == 0 ? input_ : activations_[i - 1];
                layers_[i]->backward(x, activations_[i], *dy, dx);
            }
            dy = &dx;
        }
        return *dy;
    }

    /// One training step on a batch: forward in training mode, loss, backward, optional gradient
    /// clipping (max_gradient_norm > 0), optimiser step. `loss` is e.g. SoftmaxCrossEntropy<T>
    /// (forward(logits, labels) -> mean loss; backward(dlogits)); labels[i] is sample i's class.
    /// A NonFiniteError naming the layer when the loss or a parameter gradient is NaN or infinite;
    /// the step then changes nothing (weights, optimiser state and buffers are as before).
    template <typename Loss, typename Labels>
    StepResult train_step(const Tensor<T>& batch, const Labels& labels, Loss& loss,
                          Optimizer<T>& optimizer, double max_gradient_norm = 0) {
        check(max_gradient_norm >= 0 && std::isfinite(max_gradient_norm),
              "train_step: max_gradient_norm must be >= 0, got ", max_gradient_norm);
        const ContextScope scope(context_ ? &*context_ : nullptr);  // the loss and optimiser too
        if (mode_ != Mode::Train) set_mode(Mode::Train);
        save_buffers();
        const Tensor<T>& logits = forward(batch);
        StepResult result;
        result.loss = static_cast<double>(loss.forward(logits, labels));
        if (!std::isfinite(result.loss)) {
            restore_buffers();
            throw non_finite_loss(result.loss);
        }
        result.accuracy = accuracy(logits, labels);
        loss.backward(dlogits_);
        backward(dlogits_, /*input_gradient=*/false);
        // The norm is cheap next to a backward pass, and it catches NaN gradients (which a ReLU
        // can hide from the loss) before they reach the weights.
        result.gradient_norm = checked_gradient_norm(result.loss);
        if (max_gradient_norm > 0)
            scale_to_max_norm(parameters_, result.gradient_norm, max_gradient_norm);
        optimizer.step();
        return result;
    }

    /// train_step() for data-parallel training: this process's `batch` is its shard of the
    /// global batch (it may be empty). Forward and backward run on the shard; then one buffer
    /// holding every parameter gradient (weighted by the shard's size), every buffer (batch-norm
    /// running statistics, as `buffer_sync` says), the loss and accuracy totals, a non-finite
    /// flag and `shared_sums` is summed over the processes in rank order (Communicator::sum).
    /// Every process then holds the same bits: the mean gradient of the global batch, and so
    /// the same norm, clipping, non-finite decision and optimiser step. `shared_sums` comes
    /// back summed (the Trainer agrees on a stop signal with it), also when the step throws.
    /// result.samples, loss and accuracy are those of the global batch.
    template <typename Loss, typename Labels>
    StepResult train_step(const Tensor<T>& batch, const Labels& labels, Loss& loss,
                          Optimizer<T>& optimizer, double max_gradient_norm,
                          Communicator& communicator, BufferSync buffer_sync = BufferSync::Average,
                          std::span<T> shared_sums = {}) {
        check(max_gradient_norm >= 0 && std::isfinite(max_gradient_norm),
              "train_step: max_gradient_norm must be >= 0, got ", max_gradient_norm);
        const ContextScope scope(context_ ? &*context_ : nullptr);
        if (mode_ != Mode::Train) set_mode(Mode::Train);
        save_buffers();
        const std::vector<Parameter<T>>& params = parameters();
        const std::vector<std::pair<std::string, Tensor<T>*>> buffer_list = buffers();
        const std::size_t n = labels.size();
        double local_loss = 0, local_correct = 0;
        bool loss_finite = true;
        if (n > 0) {
            const Tensor<T>& logits = forward(batch);
            local_loss = static_cast<double>(loss.forward(logits, labels));
            loss_finite = std::isfinite(local_loss);
            if (loss_finite) {
                local_correct = accuracy(logits, labels) * static_cast<double>(n);
                loss.backward(dlogits_);
                backward(dlogits_, /*input_gradient=*/false);
            }
        }
        // The packed buffer: gradients, buffers, then [loss total, correct, samples, bad loss]
        // and the caller's sums.
        std::size_t length = 0;
        for (const auto& p : params) length += p.grad->size();
        const std::size_t gradient_length = length;
        for (const auto& b : buffer_list) length += b.second->size();
        const std::size_t tail = length;
        length += 4 + shared_sums.size();
        exchange_.assign(length, T(0));
        T* out = exchange_.data();
        const bool contributes = n > 0 && loss_finite;
        for (const auto& p : params) {  // the shard's gradient sum: mean times shard size
            if (contributes)
                for (std::size_t i = 0; i < p.grad->size(); ++i)
                    out[i] = (*p.grad)[i] * static_cast<T>(n);
            out += p.grad->size();
        }
        const bool own_buffers = buffer_sync == BufferSync::Average || communicator.is_root();
        for (const auto& b : buffer_list) {
            if (own_buffers) std::copy(b.second->begin(), b.second->end(), out);
            out += b.second->size();
        }
        out[0] = contributes ? static_cast<T>(local_loss * static_cast<double>(n)) : T(0);
        out[1] = static_cast<T>(local_correct), out[2] = static_cast<T>(n);
        out[3] = loss_finite ? T(0) : T(1);
        std::copy(shared_sums.begin(), shared_sums.end(), out + 4);
        communicator.sum(std::span<T>(exchange_));
        const T* in = exchange_.data() + tail;
        std::copy(in + 4, in + 4 + shared_sums.size(), shared_sums.begin());
        StepResult result;
        result.samples = static_cast<std::size_t>(in[2]);
        check(result.samples > 0, "train_step: the global batch is empty");
        const double samples = static_cast<double>(in[2]);
        result.loss = static_cast<double>(in[0]) / samples;
        result.accuracy = static_cast<double>(in[1]) / samples;
        if (in[3] > 0) {  // some process's loss is not finite: every process skips or stops
            restore_buffers();
            if (!loss_finite) throw non_finite_loss(local_loss);
            throw NonFiniteError(NonFiniteError::Kind::Loss,
                                 std::numeric_limits<double>::quiet_NaN(), NonFiniteError::no_layer,
                                 "", "", false, std::nullopt, true);
        }
        const T* sum = exchange_.data();
        for (const auto& p : params) {
            for (std::size_t i = 0; i < p.grad->size(); ++i)
                (*p.grad)[i] = static_cast<T>(static_cast<double>(sum[i]) / samples);
            sum += p.grad->size();
        }
        // Identical on every process, so a non-finite gradient stops or skips all of them.
        result.gradient_norm = checked_gradient_norm(result.loss);
        const T processes = static_cast<T>(communicator.size());
        sum = exchange_.data() + gradient_length;
        for (const auto& b : buffer_list) {
            for (std::size_t i = 0; i < b.second->size(); ++i)
                (*b.second)[i] = buffer_sync == BufferSync::Average ? sum[i] / processes : sum[i];
            sum += b.second->size();
        }
        if (max_gradient_norm > 0)
            scale_to_max_norm(parameters_, result.gradient_norm, max_gradient_norm);
        optimizer.step();
        return result;
    }

    /// Class probabilities (softmax of the logits) for the batch x, computed in inference mode; the
    /// model's mode is restored afterwards. The result lives until the next predict().
    ///
    /// With fusion on (the default) it runs inference_plan()'s steps: a convolution or dense
    /// layer applies the eval-mode batch norm (and ReLU) after it to its own output, and dropout,
    /// the identity in inference, is skipped. Each value goes through the same float expressions
    /// as in forward() in Mode::Eval (the test finds the same bits in a default build).
    const Tensor<T>& predict(const Tensor<T>& x) {
        const ContextScope scope(context_ ? &*context_ : nullptr);
        const Mode previous = mode_;
        set_mode(Mode::Eval);
        const Tensor<T>* out = nullptr;
        try {
            out = &forward_inference(x);
        } catch (...) {
            set_mode(previous);
            throw;
        }
        const Tensor<T>& logits = *out;
        set_mode(previous);
        check(logits.rank() == 2, "Sequential::predict: the last layer gives ",
              logits.shape().str(), " per batch; predict needs (N, classes)");
        softmax_rows(logits, probabilities_);
        input_ = Tensor<T>();  // no backward follows; do not keep the caller's batch alive
        has_forward_ = false;
        return probabilities_;
    }

    /// One step of predict()'s pass: layers [first, first + count) run as one.
    struct InferenceStep {
        enum class Kind {
            Layer,           ///< one layer's own forward()
            AffineEpilogue,  ///< a producer (Conv2d, Dense) applying the eval-mode map after it
                             ///< (a batch norm's, and the ReLU's after that) to its own output
            BatchNormRelu,   ///< Layer::forward_relu: a batch norm and the ReLU after it
            Identity,        ///< eval-mode dropout: the input passes through, nothing is written
        };
        std::size_t first = 0, count = 1;
        Kind kind = Kind::Layer;
    };

    /// How predict() runs the layers in Mode::Eval, decided by the layers' fusion hooks
    /// (layer.hpp). With fusion on, a layer that applies_affine_epilogue() (Conv2d, Dense)
    /// followed by one that is affine_in_eval() (a batch norm) is one step, with the layer after
    /// them if it is_relu(); a layer that fuses_relu() followed by one that is_relu() another; a
    /// layer that is identity_in_eval() (Dropout) an identity; every other layer (and, with
    /// fusion off, every layer) a step of its own.
    std::vector<InferenceStep> inference_plan() const {
        using Kind = typename InferenceStep::Kind;
        std::vector<InferenceStep> plan;
        const std::size_t n = layers_.size();
        for (std::size_t i = 0; i < n;) {
            InferenceStep step{i, 1, Kind::Layer};
            if (fuse_) {
                const Layer<T>& layer = *layers_[i];
                if (layer.applies_affine_epilogue() && i + 1 < n &&
                    layers_[i + 1]->affine_in_eval()) {
                    step.kind = Kind::AffineEpilogue;
                    step.count = i + 2 < n && layers_[i + 2]->is_relu() ? 3 : 2;
                } else if (fuses_with_relu_after(i)) {
                    step.kind = Kind::BatchNormRelu;
                    step.count = 2;
                } else if (layer.identity_in_eval()) {
                    step.kind = Kind::Identity;
                }
            }
            plan.push_back(step);
            i += step.count;
        }
        return plan;
    }

    /// Runs one step of inference_plan() on `in` (the output of the step before it), writing
    /// into `out`, and returns the step's result: `out`, or `in` itself for an identity step.
    /// The model must be in Mode::Eval (predict() sets it; fer bench times the steps this way).
    const Tensor<T>& run_inference_step(const InferenceStep& step, const Tensor<T>& in,
                                        Tensor<T>& out) {
        using Kind = typename InferenceStep::Kind;
        const ContextScope scope(context_ ? &*context_ : nullptr);
        check(mode_ == Mode::Eval, "Sequential::run_inference_step: set_mode(Mode::Eval) first");
        check(step.first < layers_.size() && step.count >= 1 &&
                  step.count <= layers_.size() - step.first,
              "Sequential::run_inference_step: step [", step.first, ", +", step.count,
              ") outside the ", layers_.size(), " layers");
        Layer<T>& layer = *layers_[step.first];
        switch (step.kind) {
            case Kind::Identity:
                return in;
            case Kind::BatchNormRelu:
                layer.forward_relu(in, out);
                return out;
            case Kind::AffineEpilogue: {
                check(step.count >= 2,
                      "Sequential::run_inference_step: an affine epilogue step "
                      "needs the layer that gives the map");
                const ChannelAffine<T> affine =
                    layers_[step.first + 1]->inference_affine(step.count == 3);
                layer.forward_affine(in, out, &affine);
                return out;
            }
            default:
                layer.forward(in, out);
                return out;
        }
    }

    /// The fraction of rows of `logits` (N, classes) whose largest entry is at labels[i]
    /// (metrics/accuracy.hpp's accuracy_of_scores).
    template <typename Labels>
    static double accuracy(const Tensor<T>& logits, const Labels& labels) {
        return accuracy_of_scores(logits, labels);
    }

  private:
    /// Throws unless x is a non-empty batch of the model's input shape; `who` names the caller.
    void check_input(const Tensor<T>& x, const char* who) const {
        check(!layers_.empty(), "Sequential::", who, ": the model has no layers");
        check(x.rank() == input_shape_.rank() + 1 && x.dim(0) > 0 &&
                  sample_shape(x.shape()) == input_shape_,
              "Sequential::", who, ": input ", x.shape().str(),
              " does not match the model's input (N, ", input_shape_.str().substr(1));
    }

    /// predict()'s pass: the steps of inference_plan(), each step's result kept in the
    /// activation of its last layer; the outputs of the layers inside a step are never formed.
    const Tensor<T>& forward_inference(const Tensor<T>& x) {
        check_input(x, "predict");
        has_forward_ = false;  // no backward() may follow: not every activation is formed
        fused_.assign(layers_.size(), 0);
        const Tensor<T>* in = &x;
        for (const InferenceStep& step : inference_plan()) {
            const std::size_t last = step.first + step.count - 1;
            for (std::size_t i = step.first; i < last; ++i) {
                activations_[i] = Tensor<T>();
                fused_[i] = 1;
            }
            const Tensor<T>& result = run_inference_step(step, *in, activations_[last]);
            if (&result != &activations_[last]) {  // an identity: this layer's output not formed
                activations_[last] = Tensor<T>();
                fused_[last] = 1;
            }
            in = &result;
        }
        return *in;
    }

    /// Whether layer i fuses_relu() and layer i + 1 is_relu(), so that they may run as one.
    bool fuses_with_relu_after(std::size_t i) const {
        return i + 1 < layers_.size() && layers_[i]->fuses_relu() && layers_[i + 1]->is_relu();
    }

    /// Copies every buffer aside (reusing the copies' storage from the previous step).
    void save_buffers() {
        if (buffer_backup_.empty())
            for (auto& [name, tensor] : buffers()) buffer_backup_.emplace_back(tensor, Tensor<T>());
        for (auto& [tensor, copy] : buffer_backup_) copy = *tensor;
    }
    void restore_buffers() {
        for (auto& [tensor, copy] : buffer_backup_) *tensor = copy;
    }

    static bool all_finite(const Tensor<T>& t) {
        return std::all_of(t.begin(), t.end(), [](T v) { return std::isfinite(v); });
    }

    /// The error for a non-finite loss, naming the first layer whose output is not finite. Only
    /// runs on failure, so the scan of every activation costs nothing in a healthy run.
    NonFiniteError non_finite_loss(double value) const {
        if (!all_finite(input_))
            return NonFiniteError(NonFiniteError::Kind::Loss, value, NonFiniteError::no_layer, "",
                                  "", true);
        for (std::size_t i = 0; i < layers_.size(); ++i) {
            // A fused batch norm's output was not kept; the ReLU's is, and a ReLU makes nothing
            // non-finite of finite input, so a bad value there started in the batch norm.
            const Tensor<T>& out = fused_[i] ? activations_[i + 1] : activations_[i];
            if (!all_finite(out))
                return NonFiniteError(NonFiniteError::Kind::Loss, value, i, layers_[i]->describe(),
                                      "", false);
        }
        return NonFiniteError(NonFiniteError::Kind::Loss, value, NonFiniteError::no_layer, "", "",
                              false);
    }

    /// The global L2 norm of every parameter gradient, summed in double in parameter order (the
    /// same number as gradient_norm() in optim/clip.hpp). When a gradient is not finite, puts the
    /// buffers back and throws a NonFiniteError naming the layer nearest the output that holds one.
    double checked_gradient_norm(double loss_value) {
        const std::vector<Parameter<T>>& params = parameters();
        double sum = 0;
        std::size_t bad = params.size();
        for (std::size_t k = 0; k < params.size(); ++k) {
            const double part = squared_norm(*params[k].grad);
            if (!std::isfinite(part)) bad = k;  // keep the last: the one nearest the output
            sum += part;
        }
        if (bad == params.size()) return std::sqrt(sum);
        restore_buffers();
        const std::size_t layer = parameter_layers_[bad];
        // A NaN in the input can reach the gradients without the loss (a ReLU or a max-pool may
        // drop it on the way forward), so say so here as well.
        throw NonFiniteError(NonFiniteError::Kind::Gradient, loss_value, layer,
                             layers_[layer]->describe(), params[bad].name, !all_finite(input_));
    }

    Shape input_shape_;
    std::vector<Shape> shapes_;  // shapes_[0] is the input, shapes_[i + 1] layer i's output
    std::vector<std::unique_ptr<Layer<T>>> layers_;
    std::vector<Tensor<T>> activations_;  // activations_[i] is layer i's output of the last forward
    Tensor<T> input_;                     // a view of the last forward's input
    Tensor<T> gradients_[2];
    Tensor<T> dlogits_, probabilities_;
    std::vector<Parameter<T>> parameters_;
    std::vector<std::size_t>
        parameter_layers_;  // parameter_layers_[k]: the layer of parameters_[k]
    // train_step's copy of every buffer (and where it came from) from before the forward pass,
    // put back when the step fails: the forward pass already moved batch-norm running statistics.
    std::vector<std::pair<Tensor<T>*, Tensor<T>>> buffer_backup_;
    std::vector<T> exchange_;  // the distributed train_step's packed buffer, kept between steps
    Mode mode_ = Mode::Train;
    bool has_forward_ = false;
    bool fuse_ = true;
    std::vector<char> fused_;         // fused_[i]: the last forward ran layers i and i + 1 as one
    std::optional<Context> context_;  // none: the caller's current context
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class Sequential<float>;
extern template class Sequential<double>;
#endif

}  // namespace facet
