// facet/model/serialize.hpp — saving and loading models (save / load) and training checkpoints
// (save_checkpoint / load_checkpoint) in facet's versioned binary format, specified in
// docs/model-format.md. A model file holds the architecture (input shape, each layer's type and
// config values) and every parameter and buffer, so load() rebuilds the model from the file alone.
// Every length read from a file is checked against a cap and against the bytes left before
// anything is allocated; a bad file gives a facet::Error naming the file and what is wrong.
// Read next: docs/model-format.md.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "facet/core/atomic_file.hpp"
#include "facet/core/crc32.hpp"
#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/layers/layer.hpp"
#include "facet/layers/registry.hpp"
// facet's own layers register themselves in their headers: included here so that load() knows
// all of them when a program includes only this header.
#include "facet/layers/activations.hpp"
#include "facet/layers/batchnorm.hpp"
#include "facet/layers/conv2d.hpp"
#include "facet/layers/dense.hpp"
#include "facet/layers/dropout.hpp"
#include "facet/layers/flatten.hpp"
#include "facet/layers/maxpool2d.hpp"
#include "facet/layers/softmax.hpp"
#include "facet/model/sequential.hpp"
#include "facet/optim/optimizer.hpp"
#include "facet/optim/schedule.hpp"

namespace facet {

/// The newest format version this build reads and the one it writes.
inline constexpr std::uint32_t model_format_version = 1;

/// Builds a layer from its saved config; make_layer<T> (layers/registry.hpp) unless you pass your
/// own.
template <typename T>
using LayerFactory = std::function<std::unique_ptr<Layer<T>>(const LayerConfig&)>;

namespace serial {

inline constexpr char model_magic[9] = "FACETMDL";
inline constexpr char checkpoint_magic[9] = "FACETCKP";
inline constexpr std::size_t header_size = 8 + 4 + 8;  // magic, version, total file size
inline constexpr std::size_t crc_size = 4;

// Caps on every count read from a file: far above any real model, far below what could exhaust
// memory.
inline constexpr std::size_t max_name_length = 1024;
inline constexpr std::size_t max_metadata_length = 1 << 16;
inline constexpr std::size_t max_layers = 4096;
inline constexpr std::size_t max_config_values = 256;
inline constexpr std::size_t max_tensors = 1 << 16;
inline constexpr std::size_t max_entries = 4096;  // optimiser/schedule scalars, seeds, metadata
inline constexpr std::size_t max_file_size = std::size_t{1} << 34;  // 16 GiB

/// Appends little-endian values to a byte vector.
class ByteWriter {
  public:
    void u8(std::uint8_t v) { bytes_.push_back(v); }
    void u32(std::uint32_t v) {
        for (int i = 0; i < 4; ++i) bytes_.push_back(static_cast<unsigned char>(v >> (8 * i)));
    }
    void u64(std::uint64_t v) {
        for (int i = 0; i < 8; ++i) bytes_.push_back(static_cast<unsigned char>(v >> (8 * i)));
    }
    void f64(double v) { u64(std::bit_cast<std::uint64_t>(v)); }
    void raw(const void* data, std::size_t n) {
        const std::size_t start = bytes_.size();
        bytes_.resize(start + n);
        if (n) std::memcpy(bytes_.data() + start, data, n);
    }
    /// u32 length, then the bytes.
    void string(const std::string& s, std::size_t max_length = max_name_length) {
        check(s.size() <= max_length, "cannot save string of ", s.size(), " bytes (limit ",
              max_length, "): '", s.substr(0, 40), "...'");
        u32(static_cast<std::uint32_t>(s.size()));
        raw(s.data(), s.size());
    }
    /// u32 rank, then rank u64 extents.
    void shape(const Shape& s) {
        u32(static_cast<std::uint32_t>(s.rank()));
        for (int i = 0; i < s.rank(); ++i) u64(s[i]);
    }
    /// The elements as little-endian float32.
    template <typename T>
    void floats(const Tensor<T>& t) {
        const std::size_t start = bytes_.size();
        bytes_.resize(start + 4 * t.size());
        unsigned char* out = bytes_.data() + start;
        if constexpr (std::is_same_v<T, float> && std::endian::native == std::endian::little) {
            if (t.size()) std::memcpy(out, t.data(), 4 * t.size());  // already the file's encoding
            return;
        }
        for (std::size_t i = 0; i < t.size(); ++i) {
            const std::uint32_t bits = std::bit_cast<std::uint32_t>(static_cast<float>(t[i]));
            for (int b = 0; b < 4; ++b)
                out[4 * i + static_cast<std::size_t>(b)] =
                    static_cast<unsigned char>(bits >> (8 * b));
        }
    }
    /// A named tensor: name, shape, float32 data.
    template <typename T>
    void tensor(const std::string& name, const Tensor<T>& t) {
        string(name);
        shape(t.shape());
        floats(t);
    }
    std::vector<unsigned char>& bytes() { return bytes_; }

  private:
    std::vector<unsigned char> bytes_;
};

/// Reads little-endian values from a byte range; every read is bounds-checked, and every failure
/// is an Error naming the file, the byte offset and what was being read.
class ByteReader {
  public:
    ByteReader(const unsigned char* data, std::size_t size, std::size_t offset, std::string file)
        : data_(data), size_(size), pos_(offset), file_(std::move(file)) {}

    [[noreturn]] void fail(const std::string& what) const {
        throw Error(detail::concat(file_, ": ", what, " (at byte ", pos_, ")"));
    }
    std::size_t remaining() const { return size_ - pos_; }
    const std::string& file() const { return file_; }

    std::uint8_t u8(const char* what) {
        need(1, what);
        return data_[pos_++];
    }
    std::uint32_t u32(const char* what) {
        need(4, what);
        std::uint32_t v = 0;
        for (int i = 0; i < 4; ++i) v |= std::uint32_t{data_[pos_++]} << (8 * i);
        return v;
    }
    std::uint64_t u64(const char* what) {
        need(8, what);
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i) v |= std::uint64_t{data_[pos_++]} << (8 * i);
        return v;
    }
    double f64(const char* what) { return std::bit_cast<double>(u64(what)); }
    /// A count, refused above `cap`.
    std::size_t count(const char* what, std::size_t cap) {
        const std::uint32_t n = u32(what);
        if (n > cap) fail(detail::concat(what, " is ", n, ", more than the limit of ", cap));
        return n;
    }
    std::string string(const char* what, std::size_t max_length = max_name_length) {
        const std::size_t n = count(what, max_length);
        need(n, what);
        std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
        pos_ += n;
        return s;
    }
    Shape shape(const char* what) {
        const std::size_t rank = u32(what);
        if (rank < 1 || rank > static_cast<std::size_t>(Shape::max_rank))
            fail(detail::concat(what, ": rank ", rank, " is not between 1 and ", Shape::max_rank));
        std::uint64_t d[Shape::max_rank] = {};
        for (std::size_t i = 0; i < rank; ++i) d[i] = u64(what);
        try {
            if (rank == 1) return Shape{d[0]};
            if (rank == 2) return Shape{d[0], d[1]};
            if (rank == 3) return Shape{d[0], d[1], d[2]};
            return Shape{d[0], d[1], d[2], d[3]};
        } catch (const Error& e) {  // the element count overflows
            fail(detail::concat(what, ": ", e.what()));
        }
    }
    /// Reads t.size() float32 values into t (already shaped); a NaN or infinity is an error, since
    /// no saved model or optimiser legitimately holds one.
    template <typename T>
    void floats(Tensor<T>& t, const std::string& name) {
        need(checked_mul(t.size(), 4, "tensor size"), name.c_str());
        const unsigned char* in = data_ + pos_;
        pos_ += 4 * t.size();
        for (std::size_t i = 0; i < t.size(); ++i) {
            std::uint32_t bits = 0;
            if constexpr (std::endian::native == std::endian::little) {
                std::memcpy(&bits, in + 4 * i, 4);
            } else {
                for (int b = 0; b < 4; ++b)
                    bits |= std::uint32_t{in[4 * i + static_cast<std::size_t>(b)]} << (8 * b);
            }
            const float v = std::bit_cast<float>(bits);
            if (!std::isfinite(v))
                fail(detail::concat("tensor '", name, "' holds a NaN or infinite value at element ",
                                    i));
            t[i] = static_cast<T>(v);
        }
    }
    /// A named tensor whose shape is not known in advance; its size is checked against the bytes
    /// left before it is allocated.
    template <typename T>
    std::pair<std::string, Tensor<T>> tensor() {
        std::string name = string("tensor name length");
        const Shape shape = this->shape(("shape of tensor '" + name + "'").c_str());
        const std::size_t n = shape.size();  // cannot overflow: shape() checked it
        if (n > remaining() / 4)
            fail(detail::concat("tensor '", name, "' of shape ", shape.str(), " needs ", n,
                                " floats but the file ends before"));
        Tensor<T> t(shape);
        floats(t, name);
        return {std::move(name), std::move(t)};
    }
    void expect_end() const {
        if (pos_ != size_)
            fail(detail::concat(size_ - pos_, " unexpected bytes after the last section"));
    }

  private:
    void need(std::size_t n, const char* what) const {
        if (n > remaining()) fail(detail::concat("file ends while reading ", what));
    }

    const unsigned char* data_;
    std::size_t size_, pos_;
    std::string file_;
};

/// Starts a file: magic, version, a placeholder for the total size.
inline void begin_file(ByteWriter& w, const char* magic) {
    w.raw(magic, 8);
    w.u32(model_format_version);
    w.u64(0);
}

/// Ends a file: fills in the total size and appends the CRC-32 of everything before it.
inline std::vector<unsigned char> finish_file(ByteWriter& w) {
    std::vector<unsigned char>& b = w.bytes();
    const std::uint64_t total = b.size() + crc_size;
    for (int i = 0; i < 8; ++i)
        b[12 + static_cast<std::size_t>(i)] = static_cast<unsigned char>(total >> (8 * i));
    w.u32(crc32(b.data(), b.size()));
    return std::move(b);
}

/// Checks magic, version, size and checksum, in that order, so the error says the most specific
/// thing that is wrong; returns a reader positioned after the header and ending before the CRC.
inline ByteReader open_file(const std::vector<unsigned char>& b, const std::string& file,
                            const char* magic, const char* kind) {
    auto fail = [&](const std::string& what) { throw Error(detail::concat(file, ": ", what)); };
    const bool other_kind_magic =
        b.size() >= 8 &&
        std::memcmp(b.data(), magic == model_magic ? checkpoint_magic : model_magic, 8) == 0;
    if (b.size() >= 8 && std::memcmp(b.data(), magic, 8) != 0) {
        if (other_kind_magic)
            fail(detail::concat("is a facet ",
                                magic == model_magic ? "training checkpoint" : "model file",
                                ", not a ", kind, " (use ",
                                magic == model_magic ? "load_checkpoint" : "load", ")"));
        fail(detail::concat("not a facet ", kind, ": wrong magic (expected \"",
                            std::string(magic, 8), "\")"));
    }
    if (b.size() < header_size + crc_size)
        fail(detail::concat("truncated: ", b.size(), " bytes is shorter than the ",
                            header_size + crc_size, "-byte header and checksum of a facet ", kind));
    ByteReader header(b.data(), b.size(), 8, file);
    const std::uint32_t version = header.u32("format version");
    if (version == 0) fail("invalid format version 0");
    if (version > model_format_version)
        fail(detail::concat("format version ", version, " is newer than this facet supports (",
                            model_format_version, "); update facet to read it"));
    const std::uint64_t total = header.u64("file size");
    if (b.size() < total)
        fail(detail::concat("truncated: the header says ", total, " bytes, the file has ",
                            b.size()));
    if (b.size() > total)
        fail(
            detail::concat("has ", b.size(), " bytes but its header says ", total, " (corrupted)"));
    const std::size_t body = b.size() - crc_size;
    ByteReader trailer(b.data(), b.size(), body, file);
    const std::uint32_t stored = trailer.u32("checksum");
    const std::uint32_t computed = crc32(b.data(), body);
    if (stored != computed) fail("checksum mismatch: the file is corrupted");
    return ByteReader(b.data(), body, header_size, file);
}

/// The architecture and all named tensors of a model.
template <typename T>
void write_model(ByteWriter& w, Sequential<T>& model) {
    w.shape(model.input_shape());
    w.u32(static_cast<std::uint32_t>(model.size()));
    for (const auto& layer : model.layers()) {
        const LayerConfig config = layer->config();
        w.string(config.type);
        w.u32(static_cast<std::uint32_t>(config.values.size()));
        for (const auto& entry : config.values) {
            w.string(entry.first);
            w.f64(config.get(entry.first));  // format 1 stores every value as a number
        }
    }
    const auto params = model.parameters();
    const auto buffers = model.buffers();
    w.u32(static_cast<std::uint32_t>(params.size() + buffers.size()));
    for (const Parameter<T>& p : params) w.tensor(p.name, *p.value);
    for (const auto& [name, tensor] : buffers) w.tensor(name, *tensor);
}

/// Rebuilds a model written by write_model, checking each tensor's name and shape against the
/// rebuilt model's.
template <typename T>
Sequential<T> read_model(ByteReader& r, const LayerFactory<T>& factory) {
    const Shape input = r.shape("input shape");
    if (input.rank() > 3)
        r.fail(detail::concat("input shape ", input.str(), " has more than 3 extents"));
    std::unique_ptr<Sequential<T>> model;
    try {
        model = std::make_unique<Sequential<T>>(input);
    } catch (const Error& e) {
        r.fail(e.what());
    }
    const std::size_t layers = r.count("layer count", max_layers);
    for (std::size_t i = 0; i < layers; ++i) {
        LayerConfig config;
        config.type = r.string("layer type");
        const std::size_t values = r.count("config value count", max_config_values);
        for (std::size_t v = 0; v < values; ++v) {
            std::string key = r.string("config key");
            config.values.emplace_back(std::move(key), r.f64("config value"));
        }
        // Checked *before* the layer is built, because building it allocates its parameters:
        // without this, a 120-byte file naming a Dense(65536 -> 65536) layer made the loader
        // allocate 32 GiB (found by the fuzz target fuzz_model_file, tests/fuzz/). Each
        // registered layer type gives its bound (Layer::stored_values_lower_bound).
        const double needed = facet::stored_values_lower_bound(config);
        if (needed > static_cast<double>(r.remaining() / 4))
            r.fail(detail::concat(
                "layer ", i, " (", config.type, ") needs at least ",
                needed < 1e18 ? std::to_string(std::uint64_t(needed)) : detail::concat(needed),
                " float32 values but only ", r.remaining(), " bytes are left in the file"));
        try {
            std::unique_ptr<Layer<T>> layer = factory(config);
            check(layer != nullptr, "unknown layer type");
            model->add(std::move(layer));
        } catch (const Error& e) {
            r.fail(detail::concat("layer ", i, " (", config.type, "): ", e.what()));
        }
    }
    std::vector<std::pair<std::string, Tensor<T>*>> expected;
    for (const Parameter<T>& p : model->parameters()) expected.emplace_back(p.name, p.value);
    for (const auto& b : model->buffers()) expected.push_back(b);
    const std::size_t tensors = r.count("tensor count", max_tensors);
    if (tensors != expected.size())
        r.fail(detail::concat("the file holds ", tensors, " tensors, the architecture needs ",
                              expected.size()));
    for (const auto& [name, tensor] : expected) {
        const std::string found = r.string("tensor name");
        if (found != name)
            r.fail(detail::concat("expected tensor '", name, "', found '", found, "'"));
        const Shape shape = r.shape(("shape of '" + name + "'").c_str());
        if (shape != tensor->shape())
            r.fail(detail::concat("tensor '", name, "' has shape ", shape.str(),
                                  ", the layer needs ", tensor->shape().str()));
        r.floats(*tensor, name);
    }
    return std::move(*model);
}

/// Small key/value notes: a count, then (key, value) string pairs.
inline void write_notes(ByteWriter& w,
                        const std::vector<std::pair<std::string, std::string>>& notes) {
    check(notes.size() <= max_entries, "save: more than ", max_entries, " notes");
    w.u32(static_cast<std::uint32_t>(notes.size()));
    for (const auto& [key, value] : notes) w.string(key), w.string(value, max_metadata_length);
}

inline std::vector<std::pair<std::string, std::string>> read_notes(ByteReader& r) {
    std::vector<std::pair<std::string, std::string>> notes;
    for (std::size_t i = 0, n = r.count("note count", max_entries); i < n; ++i) {
        std::string key = r.string("note name");
        notes.emplace_back(std::move(key), r.string("note", max_metadata_length));
    }
    return notes;
}

}  // namespace serial

/// Free-form notes stored with a model: what a program needs besides the weights, e.g. the
/// input normalisation and the class names.
using ModelMetadata = std::vector<std::pair<std::string, std::string>>;

/// A model file's content: the model and its notes.
template <typename T>
struct ModelFile {
    Sequential<T> model;
    ModelMetadata metadata;

    /// The note stored under `key`, or `fallback`.
    std::string note(const std::string& key, const std::string& fallback = "") const {
        for (const auto& [k, v] : metadata)
            if (k == key) return v;
        return fallback;
    }
};

/// The bytes of a model file (what save() writes).
template <typename T>
std::vector<unsigned char> encode_model(Sequential<T>& model, const ModelMetadata& metadata = {}) {
    serial::ByteWriter w;
    serial::begin_file(w, serial::model_magic);
    serial::write_model(w, model);
    serial::write_notes(w, metadata);
    return serial::finish_file(w);
}

/// Rebuilds a model and its notes from the bytes of a model file; `file` names it in errors.
template <typename T>
ModelFile<T> decode_model_file(const std::vector<unsigned char>& bytes, const std::string& file,
                               const LayerFactory<T>& factory = make_layer<T>) {
    serial::ByteReader r = serial::open_file(bytes, file, serial::model_magic, "model file");
    ModelFile<T> m{serial::read_model<T>(r, factory), {}};
    m.metadata = serial::read_notes(r);
    r.expect_end();
    return m;
}

/// Rebuilds a model from the bytes of a model file; `file` names it in error messages.
template <typename T>
Sequential<T> decode_model(const std::vector<unsigned char>& bytes, const std::string& file,
                           const LayerFactory<T>& factory = make_layer<T>) {
    return std::move(decode_model_file<T>(bytes, file, factory).model);
}

/// Saves the model's architecture, parameters and buffers (and optional notes) to `path`,
/// atomically: a failed save leaves an existing file unchanged. Values are stored as float32.
template <typename T>
void save(Sequential<T>& model, const std::string& path, const ModelMetadata& metadata = {}) {
    write_file_atomically(path, encode_model(model, metadata));
}

/// Loads a model file with its notes (see load()).
template <typename T>
ModelFile<T> load_model_file(const std::string& path,
                             const LayerFactory<T>& factory = make_layer<T>) {
    return decode_model_file<T>(read_whole_file(path, serial::max_file_size), path, factory);
}

/// Loads a model saved by save(), rebuilding every layer with `factory` (make_layer<T> by
/// default). The model comes back in training mode; call set_mode(Mode::Eval) for inference.
template <typename T>
Sequential<T> load(const std::string& path, const LayerFactory<T>& factory = make_layer<T>) {
    return std::move(load_model_file<T>(path, factory).model);
}

/// Where a training run stands, besides the model and optimiser: the position in the run, the
/// seeds of its random streams, and small free-form key/value notes (e.g. the command line).
struct CheckpointInfo {
    std::uint64_t epoch = 0;  ///< completed epochs
    std::uint64_t step = 0;   ///< completed optimiser steps (the schedule's next step)
    std::vector<std::pair<std::string, std::uint64_t>> seeds;
    std::vector<std::pair<std::string, std::string>> metadata;

    /// The seed stored under `key`, or an Error.
    std::uint64_t seed(const std::string& key) const {
        for (const auto& [k, v] : seeds)
            if (k == key) return v;
        throw Error(detail::concat("checkpoint: no seed '", key, "'"));
    }
    /// The note stored under `key`, or `fallback`.
    std::string note(const std::string& key, const std::string& fallback = "") const {
        for (const auto& [k, v] : metadata)
            if (k == key) return v;
        return fallback;
    }
};

/// What load_checkpoint() returns: restore the optimiser with optimizer.load_state(c.optimizer)
/// after binding it to c.model.parameters(), and the schedule with schedule.load_state(c.schedule).
template <typename T>
struct Checkpoint {
    Sequential<T> model;
    OptimizerState<T> optimizer;
    ScheduleState schedule;
    CheckpointInfo info;
};

/// Saves a training checkpoint: the model as in save(), then the optimiser state, the schedule
/// state and `info`, atomically.
template <typename T>
void save_checkpoint(const std::string& path, Sequential<T>& model, const Optimizer<T>& optimizer,
                     const Schedule& schedule, const CheckpointInfo& info) {
    serial::ByteWriter w;
    serial::begin_file(w, serial::checkpoint_magic);
    serial::write_model(w, model);
    const OptimizerState<T> opt = optimizer.state();
    w.string(opt.type);
    w.u32(static_cast<std::uint32_t>(opt.scalars.size()));
    for (const auto& [key, value] : opt.scalars) w.string(key), w.f64(value);
    w.u32(static_cast<std::uint32_t>(opt.tensors.size()));
    for (const auto& [name, tensor] : opt.tensors) w.tensor(name, tensor);
    const ScheduleState sched = schedule.state();
    w.string(sched.type);
    w.u32(static_cast<std::uint32_t>(sched.values.size()));
    for (const auto& [key, value] : sched.values) w.string(key), w.f64(value);
    w.u64(info.epoch);
    w.u64(info.step);
    check(info.seeds.size() <= serial::max_entries, "save_checkpoint: more than ",
          serial::max_entries, " seeds");
    w.u32(static_cast<std::uint32_t>(info.seeds.size()));
    for (const auto& [key, value] : info.seeds) w.string(key), w.u64(value);
    serial::write_notes(w, info.metadata);
    write_file_atomically(path, serial::finish_file(w));
}

/// Rebuilds a checkpoint from the bytes of a checkpoint file; `file` names it in errors.
template <typename T>
Checkpoint<T> decode_checkpoint(const std::vector<unsigned char>& bytes, const std::string& file,
                                const LayerFactory<T>& factory = make_layer<T>) {
    serial::ByteReader r =
        serial::open_file(bytes, file, serial::checkpoint_magic, "training checkpoint");
    Checkpoint<T> c{serial::read_model<T>(r, factory), {}, {}, {}};
    c.optimizer.type = r.string("optimizer type");
    for (std::size_t i = 0, n = r.count("optimizer value count", serial::max_entries); i < n; ++i) {
        std::string key = r.string("optimizer value name");
        c.optimizer.scalars.emplace_back(std::move(key), r.f64("optimizer value"));
    }
    for (std::size_t i = 0, n = r.count("optimizer tensor count", serial::max_tensors); i < n; ++i)
        c.optimizer.tensors.push_back(r.tensor<T>());
    c.schedule.type = r.string("schedule type");
    for (std::size_t i = 0, n = r.count("schedule value count", serial::max_entries); i < n; ++i) {
        std::string key = r.string("schedule value name");
        c.schedule.values.emplace_back(std::move(key), r.f64("schedule value"));
    }
    c.info.epoch = r.u64("epoch");
    c.info.step = r.u64("step");
    for (std::size_t i = 0, n = r.count("seed count", serial::max_entries); i < n; ++i) {
        std::string key = r.string("seed name");
        c.info.seeds.emplace_back(std::move(key), r.u64("seed"));
    }
    c.info.metadata = serial::read_notes(r);
    r.expect_end();
    return c;
}

/// Loads a checkpoint written by save_checkpoint(), with the same checks as load().
template <typename T>
Checkpoint<T> load_checkpoint(const std::string& path,
                              const LayerFactory<T>& factory = make_layer<T>) {
    return decode_checkpoint<T>(read_whole_file(path, serial::max_file_size), path, factory);
}

}  // namespace facet
