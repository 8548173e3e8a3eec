// facet/model/graph.hpp — Graph<T>: a directed acyclic graph of layers with one input and one
// output (residual blocks, branches joined by Add or Concat), itself a Layer<T>, so a block built
// as a graph nests in a Sequential or in another Graph. Shapes are inferred as nodes are added.
// Read layers/layer.hpp and layers/merge_layer.hpp first; read next: model/residual_block.hpp.
//
//     Graph<float> g(Shape{16, 12, 12});
//     GraphNode x = g.input();
//     GraphNode a = g.add<Conv2d<float>>(x, 16, 16, 3, 1, 1, false);
//     GraphNode s = g.add<Add<float>>({a, x});  // x feeds both the conv and the add
//     g.output(g.add<ReLU<float>>(s));
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iomanip>
#include <memory>
#include <ostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/layers/activations.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/merge_layer.hpp"
#include "facet/layers/registry.hpp"

namespace facet {

template <typename T>
class Graph;

/// A node of a Graph as its builder sees it: the input (index 0) or a layer's output. Only the
/// graph that made it accepts it.
class GraphNode {
  public:
    GraphNode() = default;
    /// The node's index in its graph: 0 is the input, layers count from 1 in the order added.
    std::size_t index() const { return index_; }

  private:
    template <typename T>
    friend class Graph;
    GraphNode(std::size_t index, std::uint64_t graph) : index_(index), graph_(graph) {}
    std::size_t index_ = 0;
    std::uint64_t graph_ = 0;  // 0: made by no graph
};

/// One row of Graph::summary().
struct GraphNodeSummary {
    std::size_t index = 0;
    std::vector<std::size_t> inputs;  ///< the nodes it reads, in order
    std::string description;          ///< the layer's describe()
    Shape output_shape;               ///< per sample
    std::size_t parameters = 0;
    std::size_t flops = 0;  ///< forward, per sample
};

/// Graph::summary(): a row per node and the totals; print it with operator<<.
struct GraphSummary {
    std::string description;  ///< the graph's describe()
    Shape input_shape;
    std::vector<GraphNodeSummary> nodes;
    std::size_t output = 0;  ///< the output node
    std::size_t total_parameters = 0;
    std::size_t total_flops = 0;

    /// The table as text: a header, the input, one line per node with the nodes it reads, the
    /// output node and the totals.
    std::string table() const {
        std::size_t width = 5;
        for (const GraphNodeSummary& row : nodes) width = std::max(width, row.description.size());
        std::ostringstream os;
        auto line = [&](const std::string& idx, const std::string& inputs, const std::string& what,
                        const std::string& shape, const std::string& params,
                        const std::string& flops) {
            os << std::left << std::setw(6) << idx << std::setw(10) << inputs
               << std::setw(static_cast<int>(width) + 2) << what << std::setw(16) << shape
               << std::right << std::setw(12) << params << std::setw(12) << flops << '\n';
        };
        auto mflops = [](std::size_t f) {
            std::ostringstream s;
            s << std::fixed << std::setprecision(2) << static_cast<double>(f) / 1e6;
            return s.str();
        };
        os << description << '\n';
        line("node", "inputs", "layer", "output", "params", "MFLOP");
        line("0", "", "input", input_shape.str(), "", "");
        for (const GraphNodeSummary& row : nodes) {
            std::string inputs;
            for (std::size_t k = 0; k < row.inputs.size(); ++k) {
                if (k) inputs += ',';
                inputs += std::to_string(row.inputs[k]);
            }
            line(std::to_string(row.index), inputs, row.description, row.output_shape.str(),
                 std::to_string(row.parameters), mflops(row.flops));
        }
        line("", "", "total (output: node " + std::to_string(output) + ")", "",
             std::to_string(total_parameters), mflops(total_flops));
        return os.str();
    }
    friend std::ostream& operator<<(std::ostream& os, const GraphSummary& s) {
        return os << s.table();
    }
};

namespace detail {
/// A number no other Graph of this process has, so a GraphNode of one graph is refused by another.
inline std::uint64_t next_graph_id() {
    static std::atomic<std::uint64_t> last{0};
    return ++last;
}
}  // namespace detail

/// A directed acyclic graph of layers with one input and one output; see the example at the top.
///
/// Node 0 is the input; every add() makes a node that reads nodes made before it, so the order of
/// the nodes is an order in which they can run. forward() keeps every node's output for
/// backward(), reusing the storage from batch to batch; the output node writes straight into the
/// caller's y. A node output read by several nodes (x in the example) receives the sum of their
/// gradients: the first of them, going backward, writes into that node's gradient directly, each
/// further one into a scratch tensor added onto it. A layer that fuses_relu() (a batch norm) whose
/// only reader is a ReLU runs fused with it (forward_relu, backward_relu), as in Sequential.
template <typename T>
class Graph : public Layer<T> {
  public:
    /// An empty graph whose samples have `input_shape` (without the batch extent); `label`, if
    /// given, is what describe() shows, e.g. "ResidualBlock(16->32, stride 2)".
    explicit Graph(const Shape& input_shape, std::string label = "")
        : input_shape_(input_shape), label_(std::move(label)), id_(detail::next_graph_id()) {
        check(input_shape.rank() >= 1 && input_shape.rank() <= 3, "Graph: per-sample input shape ",
              input_shape.str(), " must have 1 to 3 extents");
        check(input_shape.size() > 0, "Graph: input shape ", input_shape.str(), " is empty");
        nodes_.emplace_back();
        nodes_[0].shape = input_shape;
    }
    Graph(Graph&&) noexcept = default;
    Graph& operator=(Graph&&) noexcept = default;

    /// The graph's input node.
    GraphNode input() const { return GraphNode(0, id_); }

    /// Adds a node running a layer of type L, built in place from `args`, on node `in`.
    template <typename L, typename... Args>
    GraphNode add(GraphNode in, Args&&... args) {
        return add(in, std::make_unique<L>(std::forward<Args>(args)...));
    }
    /// Adds a node running a merge layer of type L (e.g. Add, Concat) on the nodes `ins`, in order.
    template <typename L, typename... Args>
    GraphNode add(const std::vector<GraphNode>& ins, Args&&... args) {
        return add(ins, std::make_unique<L>(std::forward<Args>(args)...));
    }
    /// Adds a node running `layer` on node `in`.
    GraphNode add(GraphNode in, std::unique_ptr<Layer<T>> layer) {
        return add(std::vector<GraphNode>{in}, std::move(layer));
    }
    /// Adds a node running `layer` on the nodes `ins` (several only for a MergeLayer). Its output
    /// shape is inferred here: an Error naming the node, the layer and its input shapes when they
    /// do not fit.
    GraphNode add(const std::vector<GraphNode>& ins, std::unique_ptr<Layer<T>> layer) {
        std::vector<std::size_t> inputs;
        for (const GraphNode& n : ins) inputs.push_back(own(n, "add"));
        return GraphNode(add_node(std::move(inputs), std::move(layer)), id_);
    }
    /// Adds a node running `layer` on the nodes with these indices (as config() lists them).
    std::size_t add_node(std::vector<std::size_t> inputs, std::unique_ptr<Layer<T>> layer) {
        const std::size_t index = nodes_.size();
        check(layer != nullptr, "Graph::add: node ", index, ": null layer");
        check(!inputs.empty(), "Graph::add: node ", index, " (", layer->describe(),
              ") has no input");
        std::vector<Shape> shapes;
        std::string from;
        for (std::size_t k = 0; k < inputs.size(); ++k) {
            check(inputs[k] < index, "Graph::add: node ", index, " (", layer->describe(),
                  ") reads node ", inputs[k], ", which does not exist yet (", index,
                  " nodes so far)");
            shapes.push_back(nodes_[inputs[k]].shape);
            from += detail::concat(k ? ", " : "", "node ", inputs[k], " ", shapes.back().str());
        }
        auto* merge = dynamic_cast<MergeLayer<T>*>(layer.get());
        check(merge || inputs.size() == 1, "Graph::add: node ", index, " (", layer->describe(),
              ") takes one input, given ", inputs.size(), " (", from,
              "); join several with a merge layer such as Add or Concat");
        Shape out;
        try {
            out = merge ? merge->merged_shape(shapes) : layer->output_shape(shapes[0]);
        } catch (const Error& e) {
            throw Error(detail::concat("Graph::add: node ", index, " (", layer->describe(),
                                       ") cannot take its input (", from, "): ", e.what()));
        }
        check(out.size() > 0, "Graph::add: node ", index, " (", layer->describe(),
              ") produces an empty output ", out.str());
        layer->set_mode(this->mode_);
        Node node;
        node.layer = std::move(layer);
        node.merge = merge;
        node.inputs = std::move(inputs);
        node.shape = out;
        nodes_.push_back(std::move(node));
        activations_.emplace_back();
        gradients_.emplace_back();
        has_output_ = false;  // a node added after output() must be wired in and output() renewed
        return index;
    }

    /// Makes `node` the graph's output. Every node must lead to it (a node whose result nobody
    /// uses would be computed for nothing): an Error names the first that does not.
    void output(GraphNode node) { set_output(own(node, "output")); }
    /// output() by node index.
    void set_output(std::size_t node) {
        check(node < nodes_.size(), "Graph::output: node ", node, " does not exist (",
              nodes_.size(), " nodes)");
        std::vector<char> live(nodes_.size(), 0);
        live[node] = 1;
        for (std::size_t i = node + 1; i-- > 0;)
            if (live[i])
                for (std::size_t in : nodes_[i].inputs) live[in] = 1;
        for (std::size_t i = 1; i < nodes_.size(); ++i)
            check(live[i], "Graph::output: node ", i, " (", nodes_[i].layer->describe(),
                  ") does not lead to the output, node ", node,
                  "; every node must feed the output");
        output_ = node;
        has_output_ = true;
        plan_fusion();
    }

    /// The output node's index (0, the input, for a graph without layers).
    std::size_t output_node() const {
        require_output("output_node");
        return output_;
    }
    /// Nodes including the input.
    std::size_t node_count() const { return nodes_.size(); }
    /// The layer of node i (1 <= i < node_count()).
    Layer<T>& layer(std::size_t i) {
        check(i >= 1 && i < nodes_.size(), "Graph: node ", i, " has no layer (nodes 1 to ",
              nodes_.size() - 1, " do)");
        return *nodes_[i].layer;
    }
    /// The nodes node i reads, in order.
    const std::vector<std::size_t>& inputs(std::size_t i) const {
        check(i < nodes_.size(), "Graph: node ", i, " out of range");
        return nodes_[i].inputs;
    }
    /// The per-sample output shape of node i (the input shape for node 0).
    const Shape& node_shape(std::size_t i) const {
        check(i < nodes_.size(), "Graph: node ", i, " out of range");
        return nodes_[i].shape;
    }
    const Shape& input_shape() const { return input_shape_; }
    const std::string& label() const { return label_; }
    void set_label(std::string label) { label_ = std::move(label); }

    std::string type() const override { return "Graph"; }
    std::string describe() const override {
        return label_.empty() ? detail::concat("Graph(", nodes_.size() - 1, " layers)") : label_;
    }
    Shape output_shape(const Shape& input) const override {
        require_output("output_shape");
        check(input == input_shape_, describe(), ": built for input ", input_shape_.str(),
              ", given ", input.str());
        return nodes_[output_].shape;
    }

    // Each node in index order, on the outputs of the nodes it reads.
    void forward(const Tensor<T>& x, Tensor<T>& y) override {
        require_output("forward");
        check(x.rank() == input_shape_.rank() + 1 && x.dim(0) > 0 &&
                  sample_shape(x.shape()) == input_shape_,
              describe(), ": input ", x.shape().str(), " does not match the graph's input (N, ",
              input_shape_.str().substr(1));
        if (output_ == 0) {  // no layers: the identity
            y.resize(x.shape());
            std::memcpy(y.data(), x.data(), x.size() * sizeof(T));
            return;
        }
        std::vector<const Tensor<T>*> ins;
        for (std::size_t i = 1; i < nodes_.size(); ++i) {
            Node& node = nodes_[i];
            if (node.fused_from) continue;  // a ReLU its batch norm has already applied
            gather(node, x, y, ins);
            if (node.fused_into) {
                node.layer->forward_relu(*ins[0], result(node.fused_into, y));
            } else if (node.merge) {
                node.merge->forward_merge(ins, result(i, y));
            } else {
                node.layer->forward(*ins[0], result(i, y));
            }
        }
    }

    // Each node in reverse order, from dL/d(its output), summed over its readers. The gradient of
    // a node's input goes straight into that input's gradient when no other reader has written
    // one yet; otherwise into a scratch tensor, then added on (the multivariate chain rule: a
    // value read by k nodes has dL/dv = sum over the readers of their dL/dv).
    void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy,
                  Tensor<T>& dx) override {
        require_output("backward");
        check(dy.shape() == y.shape(), describe(), "::backward: dy is ", dy.shape().str(),
              ", the output is ", y.shape().str());
        if (output_ == 0) {
            dx.resize(x.shape());
            std::memcpy(dx.data(), dy.data(), dy.size() * sizeof(T));
            return;
        }
        started_.assign(nodes_.size(), 0);
        started_[output_] = 1;
        std::vector<const Tensor<T>*> ins;
        std::vector<Tensor<T>*> targets;
        for (std::size_t j = nodes_.size(); j-- > 1;) {
            if (nodes_[j].fused_into) continue;  // run with its ReLU, already done
            const std::size_t source = nodes_[j].fused_from ? nodes_[j].fused_from : j;
            Node& node = nodes_[source];
            const Tensor<T>& gy = j == output_ ? dy : gradients_[j];
            gather(node, x, y, ins);
            targets.clear();
            if (scratch_.size() < node.inputs.size()) scratch_.resize(node.inputs.size());
            for (std::size_t k = 0; k < node.inputs.size(); ++k) {
                const std::size_t u = node.inputs[k];
                targets.push_back(started_[u] ? &scratch_[k] : &gradient_of(u, dx));
                started_[u] = 1;
            }
            if (!node.merge && node.inputs[0] == 0)
                node.layer->set_input_gradient(this->input_gradient());
            if (node.fused_into) {
                node.layer->backward_relu(*ins[0], gy, *targets[0]);
            } else if (node.merge) {
                node.merge->backward_merge(ins, result(j, y), gy, targets);
            } else {
                node.layer->backward(*ins[0], result(j, y), gy, *targets[0]);
            }
            for (std::size_t k = 0; k < node.inputs.size(); ++k)
                if (targets[k] == &scratch_[k])
                    add_into(gradient_of(node.inputs[k], dx), scratch_[k]);
        }
    }

    /// Every node's parameters, named "<node>.<name>" (e.g. "3.weight"), in node order.
    std::vector<Parameter<T>> parameters() override {
        std::vector<Parameter<T>> all;
        for (std::size_t i = 1; i < nodes_.size(); ++i)
            for (Parameter<T> p : nodes_[i].layer->parameters()) {
                p.name = std::to_string(i) + "." + p.name;
                all.push_back(std::move(p));
            }
        return all;
    }
    /// Every node's buffers, named like parameters.
    std::vector<std::pair<std::string, Tensor<T>*>> buffers() override {
        std::vector<std::pair<std::string, Tensor<T>*>> all;
        for (std::size_t i = 1; i < nodes_.size(); ++i)
            for (auto& [name, tensor] : nodes_[i].layer->buffers())
                all.emplace_back(std::to_string(i) + "." + name, tensor);
        return all;
    }
    std::size_t flops(const Shape& input) const override {
        (void)output_shape(input);  // checks the input
        std::size_t total = 0;
        for (std::size_t i = 1; i < nodes_.size(); ++i) total += node_flops(i);
        return total;
    }
    /// The architecture as nested configs: "input_shape" (a list of extents), "label" (text),
    /// "nodes" (each node's layer config, node 1 first), "inputs" (for each node the list of the
    /// node indices it reads) and "output" (the output node's index).
    LayerConfig config() const override {
        require_output("config");
        ConfigValue::List shape, inputs;
        for (int a = 0; a < input_shape_.rank(); ++a) shape.emplace_back(input_shape_[a]);
        ConfigValue::Children layers;
        for (std::size_t i = 1; i < nodes_.size(); ++i) {
            layers.push_back(nodes_[i].layer->config());
            ConfigValue::List reads;
            for (std::size_t in : nodes_[i].inputs) reads.emplace_back(in);
            inputs.emplace_back(std::move(reads));
        }
        LayerConfig c{"Graph", {}};
        c.set("input_shape", std::move(shape));
        c.set("label", label_);
        c.set("nodes", std::move(layers));
        c.set("inputs", std::move(inputs));
        c.set("output", output_);
        return c;
    }

    /// Rebuilds a graph from config(), each node's layer by `factory` (make_layer<T> of
    /// layers/registry.hpp by default); an Error names the node that cannot be rebuilt.
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& c) {
        return from_config(c, [](const LayerConfig& child) { return make_layer<T>(child); });
    }
    /// The weights a model file holds for this config: the sum over its nodes' configs.
    static double stored_values_lower_bound(const LayerConfig& c) {
        const ConfigValue* nodes = c.find("nodes");
        if (nodes == nullptr || !nodes->is(ConfigValue::Kind::Children)) return 0;
        double total = 0;
        for (const LayerConfig& child : nodes->as_children())
            total += facet::stored_values_lower_bound(child);
        return total;
    }
    template <typename Factory>
    static std::unique_ptr<Layer<T>> from_config(const LayerConfig& c, const Factory& factory) {
        const ConfigValue::List& extents = c.list("input_shape");
        check(extents.size() >= 1 && extents.size() <= 3, "LayerConfig Graph: 'input_shape' has ",
              extents.size(), " extents, expected 1 to 3");
        std::size_t d[3] = {};
        for (std::size_t a = 0; a < extents.size(); ++a) {
            const std::int64_t v = extents[a].as_integer("LayerConfig Graph: 'input_shape'");
            check(v > 0 && v <= (std::int64_t{1} << 32), "LayerConfig Graph: 'input_shape' extent ",
                  v, " out of range");
            d[a] = static_cast<std::size_t>(v);
        }
        const Shape input = extents.size() == 1   ? Shape{d[0]}
                            : extents.size() == 2 ? Shape{d[0], d[1]}
                                                  : Shape{d[0], d[1], d[2]};
        auto g = std::make_unique<Graph<T>>(input, c.text("label", ""));
        const ConfigValue::Children& layers = c.children("nodes");
        const ConfigValue::List& inputs = c.list("inputs");
        check(inputs.size() == layers.size(), "LayerConfig Graph: ", layers.size(), " nodes but ",
              inputs.size(), " input lists");
        for (std::size_t i = 0; i < layers.size(); ++i) {
            std::vector<std::size_t> reads;
            for (const ConfigValue& v : inputs[i].as_list("LayerConfig Graph: 'inputs'")) {
                const std::int64_t in = v.as_integer("LayerConfig Graph: 'inputs'");
                check(in >= 0 && static_cast<std::size_t>(in) <= i, "LayerConfig Graph: node ",
                      i + 1, " reads node ", in, ", which is not an earlier node");
                reads.push_back(static_cast<std::size_t>(in));
            }
            std::unique_ptr<Layer<T>> layer;
            try {
                layer = factory(layers[i]);
                check(layer != nullptr, "unknown layer type");
            } catch (const Error& e) {
                throw Error(detail::concat("LayerConfig Graph: node ", i + 1, " (", layers[i].type,
                                           "): ", e.what()));
            }
            g->add_node(std::move(reads), std::move(layer));
        }
        const std::int64_t out = c.integer("output");
        check(out >= 0 && static_cast<std::size_t>(out) <= layers.size(),
              "LayerConfig Graph: output node ", out, " does not exist");
        g->set_output(static_cast<std::size_t>(out));
        return g;
    }

    /// Folds each batch norm (a layer that is affine_in_eval()) into the node it reads when that
    /// node absorbs_output_affine() (a convolution or dense layer), the batch norm is its only
    /// reader and it is not the output; the batch norm's node is removed, its readers read the
    /// producer instead, and the nodes are numbered again. Graphs nested in nodes fold first.
    /// Needs Mode::Eval (the running statistics are folded); returns how many it folded.
    std::size_t fold_batch_norms() override {
        require_output("fold_batch_norms");
        std::size_t nested = 0;
        for (std::size_t i = 1; i < nodes_.size(); ++i)
            nested += nodes_[i].layer->fold_batch_norms();
        std::size_t folded = 0;
        const std::size_t n = nodes_.size();
        std::vector<std::size_t> readers(n, 0), target(n);
        for (std::size_t i = 0; i < n; ++i) target[i] = i;
        for (std::size_t i = 1; i < n; ++i)
            for (std::size_t in : nodes_[i].inputs) ++readers[in];
        // A removed node's readers read what it read: target[i] < i, resolved in index order.
        for (std::size_t i = 1; i < n; ++i) {
            Node& node = nodes_[i];
            for (std::size_t& in : node.inputs) in = target[in];
            if (node.merge || node.inputs.size() != 1) continue;
            const std::size_t p = node.inputs[0];
            if (p == 0 || readers[p] != 1 || p == output_ ||
                !foldable_pair(*nodes_[p].layer, *node.layer))
                continue;
            fold_pair(*nodes_[p].layer, *node.layer);
            target[i] = p;
            readers[p] = readers[i];
            if (output_ == i) output_ = p;
            ++folded;
        }
        if (folded == 0) return nested;
        // Number the kept nodes again, in the same order.
        std::vector<std::size_t> renumber(n, 0);
        std::vector<Node> kept;
        for (std::size_t i = 0; i < n; ++i)
            if (target[i] == i) {
                renumber[i] = kept.size();
                kept.push_back(std::move(nodes_[i]));
            }
        for (Node& node : kept)
            for (std::size_t& in : node.inputs) in = renumber[in];
        nodes_ = std::move(kept);
        activations_.assign(nodes_.size() - 1, Tensor<T>());
        gradients_.assign(nodes_.size(), Tensor<T>());
        set_output(renumber[output_]);
        return nested + folded;
    }

    /// Each node's inputs, layer, output shape, parameters and FLOPs per sample, and the totals.
    GraphSummary summary() {
        GraphSummary s;
        s.description = describe();
        s.input_shape = input_shape_;
        s.output = has_output_ ? output_ : nodes_.size() - 1;
        for (std::size_t i = 1; i < nodes_.size(); ++i) {
            GraphNodeSummary row;
            row.index = i;
            row.inputs = nodes_[i].inputs;
            row.description = nodes_[i].layer->describe();
            row.output_shape = nodes_[i].shape;
            row.parameters = nodes_[i].layer->parameter_count();
            row.flops = node_flops(i);
            s.total_parameters += row.parameters;
            s.total_flops += row.flops;
            s.nodes.push_back(std::move(row));
        }
        return s;
    }

    /// Switches every node between training and inference behaviour.
    void set_mode(Mode m) override {
        this->mode_ = m;
        for (std::size_t i = 1; i < nodes_.size(); ++i) nodes_[i].layer->set_mode(m);
    }
    void visit_statistics_momentum(const std::function<void(double&)>& visit) override {
        for (std::size_t i = 1; i < nodes_.size(); ++i)
            nodes_[i].layer->visit_statistics_momentum(visit);
    }
    /// Restarts every node's random stream: node i gets seed + i, so no two draw the same masks.
    void reseed(std::uint64_t seed) override {
        for (std::size_t i = 1; i < nodes_.size(); ++i) nodes_[i].layer->reseed(seed + i);
    }

  private:
    struct Node {
        std::unique_ptr<Layer<T>> layer;  // null for the input
        MergeLayer<T>* merge = nullptr;   // the layer, when it is a merge layer
        std::vector<std::size_t> inputs;
        Shape shape;                 // per-sample output
        std::size_t fused_into = 0;  // a batch norm: the ReLU node it runs fused with
        std::size_t fused_from = 0;  // a ReLU: the batch norm node that runs it
    };

    /// The index of a node of this graph; an Error for a node of another graph.
    std::size_t own(const GraphNode& n, const char* who) const {
        check(n.graph_ == id_ && n.index_ < nodes_.size(), "Graph::", who, ": the node (index ",
              n.index_, ") belongs to another graph");
        return n.index_;
    }
    void require_output(const char* who) const {
        check(has_output_, describe(), "::", who, ": call output() first to name the output node");
    }

    /// Marks each layer that fuses_relu() (a batch norm) whose only reader is_relu(), unless it is
    /// the output.
    void plan_fusion() {
        std::vector<std::size_t> readers(nodes_.size(), 0), reader(nodes_.size(), 0);
        for (std::size_t i = 1; i < nodes_.size(); ++i) {
            nodes_[i].fused_into = nodes_[i].fused_from = 0;
            for (std::size_t in : nodes_[i].inputs) ++readers[in], reader[in] = i;
        }
        for (std::size_t i = 1; i < nodes_.size(); ++i) {
            if (!nodes_[i].layer->fuses_relu() || i == output_ || readers[i] != 1) continue;
            const std::size_t r = reader[i];
            if (!nodes_[r].layer->is_relu()) continue;
            nodes_[i].fused_into = r;
            nodes_[r].fused_from = i;
        }
    }

    /// Pointers to the tensors node `node` reads.
    void gather(const Node& node, const Tensor<T>& x, const Tensor<T>& y,
                std::vector<const Tensor<T>*>& ins) {
        ins.clear();
        for (std::size_t in : node.inputs) ins.push_back(in == 0 ? &x : &result(in, y));
    }
    /// Where node i's output lives: the caller's y for the output node.
    Tensor<T>& result(std::size_t i, const Tensor<T>& y) {
        return i == output_ ? const_cast<Tensor<T>&>(y) : activations_[i - 1];
    }
    /// Where dL/d(node u's output) is summed: the caller's dx for the input.
    Tensor<T>& gradient_of(std::size_t u, Tensor<T>& dx) { return u == 0 ? dx : gradients_[u]; }

    /// sum += part, element-wise.
    static void add_into(Tensor<T>& sum, const Tensor<T>& part) {
        check(sum.shape() == part.shape(), "Graph::backward: gradients of shapes ",
              sum.shape().str(), " and ", part.shape().str(), " for one node");
        T* s = sum.data();
        const T* p = part.data();
        detail::elementwise_for(sum.size(), [&](std::size_t b, std::size_t e) {
            for (std::size_t i = b; i < e; ++i) s[i] += p[i];
        });
    }

    std::size_t node_flops(std::size_t i) const {
        const Node& node = nodes_[i];
        std::vector<Shape> shapes;
        for (std::size_t in : node.inputs) shapes.push_back(nodes_[in].shape);
        return node.merge ? node.merge->merge_flops(shapes) : node.layer->flops(shapes[0]);
    }

    Shape input_shape_;
    std::string label_;
    std::uint64_t id_;
    std::vector<Node> nodes_;  // nodes_[0] is the input
    std::size_t output_ = 0;
    bool has_output_ = false;
    // activations_[i - 1] is node i's output of the last forward (the output node's is the
    // caller's y); gradients_[u] sums dL/d(node u's output) during backward.
    std::vector<Tensor<T>> activations_;
    std::vector<Tensor<T>> gradients_{1};
    std::vector<Tensor<T>> scratch_;  // scratch_[k]: input k's gradient when it must be added
    std::vector<char> started_;       // started_[u]: a reader has written node u's gradient
};

#ifdef FACET_PRECOMPILED  // compiled once in facet_precompiled (src/precompiled.cpp)
extern template class Graph<float>;
extern template class Graph<double>;
#endif

inline const bool graph_registered = register_layer<Graph>("Graph");

}  // namespace facet
