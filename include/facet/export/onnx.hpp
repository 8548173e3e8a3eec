// facet/export/onnx.hpp — export_onnx(): writes a Sequential<float> as an ONNX model (opset 13)
// that other runtimes (OpenCV DNN, onnxruntime) run: optionally the input normalisation first,
// then every layer, then a softmax. Fold the batch norms first (model/fold_batchnorm.hpp) for
// the smallest graph; those left are exported as BatchNormalization.
//
// Each layer type is exported by an exporter registered under its type name, as layers register
// their factories (layers/registry.hpp): a new layer type adds one call to register_onnx_exporter
// next to its definition, and nothing here changes. The exporters of facet's own layers are at
// the end of this file; a layer without one is an Error naming it. The protobuf is written by
// export/protobuf_writer.hpp. Read next: docs/deployment.md.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "facet/core/atomic_file.hpp"
#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/core/version.hpp"
#include "facet/export/protobuf_writer.hpp"
#include "facet/layers/layer.hpp"
#include "facet/model/graph.hpp"
#include "facet/model/sequential.hpp"

namespace facet {

/// The opset the exporters write for (the default domain's operators as of ONNX 1.8).
inline constexpr std::int64_t onnx_opset = 13;
/// The ONNX IR version that goes with opset 13.
inline constexpr std::int64_t onnx_ir_version = 7;

/// One attribute of an ONNX node: an integer, a list of integers or a float.
struct OnnxAttribute {
    enum class Kind { Int, Ints, Float };
    std::string name;
    Kind kind = Kind::Int;
    std::int64_t i = 0;
    std::vector<std::int64_t> ints;
    float f = 0;

    static OnnxAttribute integer(std::string name, std::int64_t v) {
        return {std::move(name), Kind::Int, v, {}, 0};
    }
    static OnnxAttribute integers(std::string name, std::vector<std::int64_t> v) {
        return {std::move(name), Kind::Ints, 0, std::move(v), 0};
    }
    static OnnxAttribute real(std::string name, float v) {
        return {std::move(name), Kind::Float, 0, {}, v};
    }
};

/// The ONNX graph being written, as exporters see it: they add constant tensors (initializers)
/// and nodes, and refer to values by name.
class OnnxGraph {
  public:
    /// A name no other value of the graph has, from `hint`.
    std::string unique_name(const std::string& hint) {
        const std::size_t n = used_[hint]++;
        return n == 0 ? hint : hint + "_" + std::to_string(n);
    }

    /// Adds a float32 constant of shape `dims` holding `values` (dims' product of them); returns
    /// its name.
    std::string add_initializer(const std::string& hint, std::vector<std::int64_t> dims,
                                const std::vector<float>& values) {
        std::int64_t count = 1;
        for (std::int64_t d : dims) count *= d;
        check(count == static_cast<std::int64_t>(values.size()), "ONNX export: initializer ", hint,
              " of ", values.size(), " values for a shape of ", count);
        const std::string name = unique_name(hint);
        ProtobufWriter t;
        t.packed_ints(1, dims);                    // dims
        t.int_field(2, 1);                         // data_type: FLOAT
        t.bytes_field(8, name);                    // name
        std::string raw(values.size() * 4, '\0');  // raw_data: little-endian floats
        for (std::size_t i = 0; i < values.size(); ++i) {
            const std::uint32_t bits = std::bit_cast<std::uint32_t>(values[i]);
            for (int b = 0; b < 4; ++b)
                raw[4 * i + b] = static_cast<char>((bits >> (8 * b)) & 0xff);
        }
        t.bytes_field(9, raw);
        graph_.message_field(5, t);  // GraphProto.initializer
        return name;
    }
    /// add_initializer for a tensor, with its own shape.
    std::string add_initializer(const std::string& hint, const Tensor<float>& t) {
        std::vector<std::int64_t> dims;
        for (int a = 0; a < t.rank(); ++a) dims.push_back(static_cast<std::int64_t>(t.dim(a)));
        return add_initializer(hint, std::move(dims), std::vector<float>(t.begin(), t.end()));
    }

    /// Adds a node of operator `op` reading `inputs`; returns the name of its (one) output,
    /// `output` if given, else a fresh name from `op`.
    std::string add_node(const std::string& op, const std::vector<std::string>& inputs,
                         const std::vector<OnnxAttribute>& attributes = {},
                         const std::string& output = "") {
        const std::string out = output.empty() ? unique_name(to_lower(op)) : output;
        if (!output.empty()) ++used_[output];
        ProtobufWriter node;
        for (const std::string& in : inputs) node.bytes_field(1, in);  // input
        node.bytes_field(2, out);                                      // output
        node.bytes_field(3, unique_name("node_" + to_lower(op)));      // name
        node.bytes_field(4, op);                                       // op_type
        for (const OnnxAttribute& a : attributes) {
            ProtobufWriter attr;
            attr.bytes_field(1, a.name);
            switch (a.kind) {
                case OnnxAttribute::Kind::Int:
                    attr.int_field(3, a.i).int_field(20, 2);  // i, type INT
                    break;
                case OnnxAttribute::Kind::Ints:
                    for (std::int64_t v : a.ints) attr.int_field(8, v);  // ints, unpacked
                    attr.int_field(20, 7);                               // type INTS
                    break;
                case OnnxAttribute::Kind::Float:
                    attr.float_field(2, a.f).int_field(20, 1);  // f, type FLOAT
                    break;
            }
            node.message_field(5, attr);
        }
        graph_.message_field(1, node);  // GraphProto.node
        return out;
    }

    /// The GraphProto fields written so far (nodes and initializers).
    const ProtobufWriter& proto() const { return graph_; }
    ProtobufWriter& proto() { return graph_; }

  private:
    static std::string to_lower(std::string s) {
        for (char& c : s)
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        return s;
    }
    ProtobufWriter graph_;
    std::map<std::string, std::size_t> used_;
};

/// Emits the ONNX nodes that compute `layer` on the values named `inputs` (one, or several for a
/// merge layer) whose per-sample shapes are `shapes`, and returns the name of the result.
using OnnxExporter =
    std::function<std::string(Layer<float>& layer, const std::vector<std::string>& inputs,
                              const std::vector<Shape>& shapes, OnnxGraph& g)>;

namespace detail {
struct OnnxExporterTable {
    std::mutex mutex;
    std::map<std::string, OnnxExporter> entries;
};
inline OnnxExporterTable& onnx_exporter_table() {
    static OnnxExporterTable table;
    return table;
}
}  // namespace detail

/// Registers the exporter of the layer type named `type` (its type()); a second registration of
/// the same name replaces the first. Call it once, next to the layer's definition:
///
///     inline const bool scale_onnx = facet::register_onnx_exporter("Scale", export_scale);
inline bool register_onnx_exporter(const std::string& type, OnnxExporter exporter) {
    check(!type.empty() && exporter != nullptr, "register_onnx_exporter: empty type or exporter");
    detail::OnnxExporterTable& table = detail::onnx_exporter_table();
    std::lock_guard lock(table.mutex);
    table.entries[type] = std::move(exporter);
    return true;
}

/// Whether a layer type has an exporter.
inline bool has_onnx_exporter(const std::string& type) {
    detail::OnnxExporterTable& table = detail::onnx_exporter_table();
    std::lock_guard lock(table.mutex);
    return table.entries.count(type) != 0;
}

/// Runs the exporter registered for `layer`'s type; an Error naming the layer when there is
/// none, or when its exporter refuses it.
inline std::string export_onnx_layer(Layer<float>& layer, const std::vector<std::string>& inputs,
                                     const std::vector<Shape>& shapes, OnnxGraph& g,
                                     const std::string& where) {
    OnnxExporter exporter;
    {
        detail::OnnxExporterTable& table = detail::onnx_exporter_table();
        std::lock_guard lock(table.mutex);
        if (auto it = table.entries.find(layer.type()); it != table.entries.end())
            exporter = it->second;
    }
    check(exporter != nullptr, "ONNX export: ", where, " (", layer.describe(),
          ") has no ONNX exporter for layer type '", layer.type(),
          "' (register one with facet::register_onnx_exporter)");
    try {
        return exporter(layer, inputs, shapes, g);
    } catch (const Error& e) {
        throw Error(
            detail::concat("ONNX export: ", where, " (", layer.describe(), "): ", e.what()));
    }
}

/// What export_onnx() writes besides the layers.
struct OnnxExportOptions {
    std::string input_name = "image";
    std::string output_name = "probabilities";
    /// When set, the graph standardises its input first as facet's Normalization does:
    /// x = (raw / input_divisor - mean) * (1 / stddev), so the file takes raw pixel values.
    bool normalize_input = false;
    float input_divisor = 255.0f, mean = 0.0f, stddev = 1.0f;
    /// Whether the output is the softmax of the model's last layer (probabilities) or that layer
    /// itself.
    bool softmax = true;
    /// Key/value notes stored as the model's metadata_props (e.g. the class names).
    std::vector<std::pair<std::string, std::string>> metadata;
    std::string graph_name = "facet";
};

/// The bytes of an ONNX model of `model` (a ModelProto): input [N, input shape...] float32 with
/// a symbolic batch extent "N", output [N, outputs] float32.
inline std::string encode_onnx(Sequential<float>& model, const OnnxExportOptions& options = {}) {
    check(model.size() > 0, "ONNX export: the model has no layers");
    check(options.stddev > 0 && std::isfinite(options.mean) && options.input_divisor != 0,
          "ONNX export: bad input normalisation (divisor ", options.input_divisor, ", mean ",
          options.mean, ", stddev ", options.stddev, ")");
    model.set_mode(Mode::Eval);
    OnnxGraph g;
    (void)g.unique_name(options.input_name);
    std::string x = options.input_name;
    if (options.normalize_input) {
        // The same float operations as Normalization::apply: divide, subtract, multiply.
        x = g.add_node("Div",
                       {x, g.add_initializer("input_divisor", {1}, {options.input_divisor})});
        x = g.add_node("Sub", {x, g.add_initializer("input_mean", {1}, {options.mean})});
        x = g.add_node(
            "Mul", {x, g.add_initializer("input_inverse_stddev", {1}, {1.0f / options.stddev})});
    }
    Shape shape = model.input_shape();
    for (std::size_t i = 0; i < model.size(); ++i) {
        x = export_onnx_layer(model.layer(i), {x}, {shape}, g, detail::concat("layer ", i));
        shape = model.output_shape(i);
    }
    check(shape.rank() == 1, "ONNX export: the model's output per sample is ", shape.str(),
          "; expected a vector of class scores");
    if (options.softmax)
        x = g.add_node("Softmax", {x}, {OnnxAttribute::integer("axis", 1)}, options.output_name);
    else
        x = g.add_node("Identity", {x}, {}, options.output_name);

    auto value_info = [](const std::string& name, const Shape& per_sample) {
        ProtobufWriter shape_proto;
        ProtobufWriter batch;
        batch.bytes_field(2, "N");  // dim_param: the batch extent is free
        shape_proto.message_field(1, batch);
        for (int a = 0; a < per_sample.rank(); ++a) {
            ProtobufWriter dim;
            dim.int_field(1, static_cast<std::int64_t>(per_sample[a]));  // dim_value
            shape_proto.message_field(1, dim);
        }
        ProtobufWriter tensor_type;
        tensor_type.int_field(1, 1);  // elem_type: FLOAT
        tensor_type.message_field(2, shape_proto);
        ProtobufWriter type;
        type.message_field(1, tensor_type);  // TypeProto.tensor_type
        ProtobufWriter info;
        info.bytes_field(1, name).message_field(2, type);
        return info;
    };
    ProtobufWriter& graph = g.proto();
    graph.bytes_field(2, options.graph_name);
    graph.message_field(11, value_info(options.input_name, model.input_shape()));
    graph.message_field(12, value_info(options.output_name, shape));

    ProtobufWriter opset;
    opset.bytes_field(1, "").int_field(2, onnx_opset);
    ProtobufWriter m;
    m.int_field(1, onnx_ir_version)
        .bytes_field(2, "facet")
        .bytes_field(3, version_string)
        .message_field(7, graph)
        .message_field(8, opset);
    for (const auto& [key, value] : options.metadata) {
        ProtobufWriter entry;
        entry.bytes_field(1, key).bytes_field(2, value);
        m.message_field(14, entry);
    }
    return m.bytes();
}

/// Writes encode_onnx(model, options) to `path`, atomically: on any error (a layer without an
/// exporter, a folder that cannot be written) no file, not even a partial one, is left there.
inline void export_onnx(Sequential<float>& model, const std::string& path,
                        const OnnxExportOptions& options = {}) {
    const std::string bytes = encode_onnx(model, options);
    write_file_atomically(path, bytes.data(), bytes.size());
}

// ---- The exporters of facet's layers. Hyper-parameters come from config(), values from
// parameters() and buffers(), so the exporters need no access to the classes themselves; only
// Graph's, which walks the nodes, needs the Graph.

namespace detail {

/// The parameter or buffer of `layer` named `name`, or null.
inline const Tensor<float>* find_tensor(Layer<float>& layer, const std::string& name) {
    for (const Parameter<float>& p : layer.parameters())
        if (p.name == name) return p.value;
    for (auto& [n, t] : layer.buffers())
        if (n == name) return t;
    return nullptr;
}

inline std::int64_t config_int(const LayerConfig& c, const std::string& key,
                               std::int64_t fallback) {
    return c.has(key) ? static_cast<std::int64_t>(config_count(c, key, 0)) : fallback;
}

/// Conv2d and GroupedConv2d: Conv with a bias (zeros when the layer has none).
inline std::string export_convolution(Layer<float>& layer, const std::vector<std::string>& in,
                                      const std::vector<Shape>&, OnnxGraph& g) {
    const LayerConfig c = layer.config();
    const std::int64_t k = config_int(c, "kernel", 1);
    const std::int64_t kh = config_int(c, "kernel_h", k), kw = config_int(c, "kernel_w", k);
    const std::int64_t s = config_int(c, "stride", 1);
    const std::int64_t sh = config_int(c, "stride_h", s), sw = config_int(c, "stride_w", s);
    const std::int64_t p = config_int(c, "pad", 0);
    const std::int64_t ph = config_int(c, "pad_h", p), pw = config_int(c, "pad_w", p);
    const Tensor<float>* w = find_tensor(layer, "weight");
    check(w != nullptr && w->rank() == 4, "no 4-d weight");
    const Tensor<float>* b = find_tensor(layer, "bias");
    const std::vector<float> bias =
        b ? std::vector<float>(b->begin(), b->end()) : std::vector<float>(w->dim(0), 0.0f);
    const std::string wn = g.add_initializer("conv_weight", *w);
    const std::string bn =
        g.add_initializer("conv_bias", {static_cast<std::int64_t>(w->dim(0))}, bias);
    return g.add_node("Conv", {in[0], wn, bn},
                      {OnnxAttribute::integers("kernel_shape", {kh, kw}),
                       OnnxAttribute::integers("strides", {sh, sw}),
                       OnnxAttribute::integers("pads", {ph, pw, ph, pw}),
                       OnnxAttribute::integers("dilations", {1, 1}),
                       OnnxAttribute::integer("group", config_int(c, "groups", 1))});
}

/// Dense: Gemm(x, W, b) with W transposed (facet's weight is (out, in), as ONNX's B with
/// transB = 1).
inline std::string export_dense(Layer<float>& layer, const std::vector<std::string>& in,
                                const std::vector<Shape>&, OnnxGraph& g) {
    const Tensor<float>* w = find_tensor(layer, "weight");
    check(w != nullptr && w->rank() == 2, "no 2-d weight");
    const Tensor<float>* b = find_tensor(layer, "bias");
    const std::vector<float> bias =
        b ? std::vector<float>(b->begin(), b->end()) : std::vector<float>(w->dim(0), 0.0f);
    const std::string wn = g.add_initializer("dense_weight", *w);
    const std::string bn =
        g.add_initializer("dense_bias", {static_cast<std::int64_t>(w->dim(0))}, bias);
    return g.add_node("Gemm", {in[0], wn, bn}, {OnnxAttribute::integer("transB", 1)});
}

/// A batch norm that was not folded: BatchNormalization with the running statistics.
inline std::string export_batch_norm(Layer<float>& layer, const std::vector<std::string>& in,
                                     const std::vector<Shape>&, OnnxGraph& g) {
    const LayerConfig c = layer.config();
    const Tensor<float>* mean = find_tensor(layer, "running_mean");
    const Tensor<float>* var = find_tensor(layer, "running_var");
    check(mean != nullptr && var != nullptr, "no running statistics");
    const std::int64_t channels = static_cast<std::int64_t>(mean->size());
    const Tensor<float>* gamma = find_tensor(layer, "gamma");
    const Tensor<float>* beta = find_tensor(layer, "beta");
    const std::vector<float> scale =
        gamma ? std::vector<float>(gamma->begin(), gamma->end())
              : std::vector<float>(static_cast<std::size_t>(channels), 1.0f);
    const std::vector<float> shift =
        beta ? std::vector<float>(beta->begin(), beta->end())
             : std::vector<float>(static_cast<std::size_t>(channels), 0.0f);
    return g.add_node("BatchNormalization",
                      {in[0], g.add_initializer("bn_scale", {channels}, scale),
                       g.add_initializer("bn_bias", {channels}, shift),
                       g.add_initializer("bn_mean", *mean), g.add_initializer("bn_var", *var)},
                      {OnnxAttribute::real("epsilon", float(config_real(c, "eps", 1e-5)))});
}

/// MaxPool2d and AvgPool2d: square windows, no padding for max pooling.
inline std::string export_pool(const std::string& op, Layer<float>& layer,
                               const std::vector<std::string>& in, OnnxGraph& g) {
    const LayerConfig c = layer.config();
    const std::int64_t k = config_int(c, "kernel", 1);
    const std::int64_t s = config_int(c, "stride", k);
    const std::int64_t p = config_int(c, "pad", 0);
    std::vector<OnnxAttribute> attributes{OnnxAttribute::integers("kernel_shape", {k, k}),
                                          OnnxAttribute::integers("strides", {s, s}),
                                          OnnxAttribute::integers("pads", {p, p, p, p})};
    if (op == "AveragePool")
        attributes.push_back(OnnxAttribute::integer(
            "count_include_pad", config_flag(c, "count_include_pad", true) ? 1 : 0));
    return g.add_node(op, {in[0]}, attributes);
}

}  // namespace detail

inline const bool onnx_builtin_exporters_registered = [] {
    using detail::concat;
    register_onnx_exporter("Conv2d", detail::export_convolution);
    register_onnx_exporter("GroupedConv2d", detail::export_convolution);
    register_onnx_exporter("Dense", detail::export_dense);
    register_onnx_exporter("BatchNorm2d", detail::export_batch_norm);
    register_onnx_exporter("BatchNorm1d", detail::export_batch_norm);
    register_onnx_exporter(
        "ReLU", [](Layer<float>&, const std::vector<std::string>& in, const std::vector<Shape>&,
                   OnnxGraph& g) { return g.add_node("Relu", {in[0]}); });
    register_onnx_exporter("LeakyReLU", [](Layer<float>& l, const std::vector<std::string>& in,
                                           const std::vector<Shape>&, OnnxGraph& g) {
        const float slope = float(detail::config_real(l.config(), "slope", 0.01));
        return g.add_node("LeakyRelu", {in[0]}, {OnnxAttribute::real("alpha", slope)});
    });
    register_onnx_exporter("MaxPool2d", [](Layer<float>& l, const std::vector<std::string>& in,
                                           const std::vector<Shape>&, OnnxGraph& g) {
        return detail::export_pool("MaxPool", l, in, g);
    });
    register_onnx_exporter("AvgPool2d", [](Layer<float>& l, const std::vector<std::string>& in,
                                           const std::vector<Shape>&, OnnxGraph& g) {
        return detail::export_pool("AveragePool", l, in, g);
    });
    // facet's global pooling gives (N, C); ONNX's (N, C, 1, 1), hence the Flatten.
    register_onnx_exporter("GlobalAvgPool2d", [](Layer<float>&, const std::vector<std::string>& in,
                                                 const std::vector<Shape>&, OnnxGraph& g) {
        return g.add_node("Flatten", {g.add_node("GlobalAveragePool", {in[0]})},
                          {OnnxAttribute::integer("axis", 1)});
    });
    // Dropout is the identity in inference: no node at all.
    register_onnx_exporter("Dropout", [](Layer<float>&, const std::vector<std::string>& in,
                                         const std::vector<Shape>&, OnnxGraph&) { return in[0]; });
    register_onnx_exporter("Flatten", [](Layer<float>&, const std::vector<std::string>& in,
                                         const std::vector<Shape>&, OnnxGraph& g) {
        return g.add_node("Flatten", {in[0]}, {OnnxAttribute::integer("axis", 1)});
    });
    register_onnx_exporter("Softmax", [](Layer<float>&, const std::vector<std::string>& in,
                                         const std::vector<Shape>&, OnnxGraph& g) {
        return g.add_node("Softmax", {in[0]}, {OnnxAttribute::integer("axis", 1)});
    });
    // Add of n inputs: n - 1 two-input Adds, summed in facet's order.
    register_onnx_exporter("Add", [](Layer<float>&, const std::vector<std::string>& in,
                                     const std::vector<Shape>&, OnnxGraph& g) {
        std::string sum = in[0];
        for (std::size_t k = 1; k < in.size(); ++k) sum = g.add_node("Add", {sum, in[k]});
        return sum;
    });
    register_onnx_exporter("Concat", [](Layer<float>&, const std::vector<std::string>& in,
                                        const std::vector<Shape>&, OnnxGraph& g) {
        return g.add_node("Concat", in, {OnnxAttribute::integer("axis", 1)});
    });
    // A Graph: its nodes in order, each on the values of the nodes it reads. The one exporter
    // that needs the class: the registry found it by the type name "Graph".
    register_onnx_exporter("Graph", [](Layer<float>& l, const std::vector<std::string>& in,
                                       const std::vector<Shape>&, OnnxGraph& g) {
        auto* graph = dynamic_cast<Graph<float>*>(&l);
        check(graph != nullptr, "a layer named Graph that is not a facet::Graph");
        std::vector<std::string> names{in[0]};
        for (std::size_t i = 1; i < graph->node_count(); ++i) {
            std::vector<std::string> ins;
            std::vector<Shape> shapes;
            for (std::size_t u : graph->inputs(i)) {
                ins.push_back(names[u]);
                shapes.push_back(graph->node_shape(u));
            }
            names.push_back(export_onnx_layer(graph->layer(i), ins, shapes, g,
                                              concat(graph->describe(), " node ", i)));
        }
        return names[graph->output_node()];
    });
    return true;
}();

}  // namespace facet
