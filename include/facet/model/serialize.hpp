// facet/model/serialize.hpp — saving and loading models (save / load) and training checkpoints
// (save_checkpoint / load_checkpoint) in facet's versioned binary format, specified in
// docs/model-format.md. A model file holds the architecture (input shape, each layer's type and
// typed config values), every parameter and buffer (float32, or float16 / bfloat16 / int8 weights
// on request) and the model's provenance, so load() rebuilds the model from the file alone.
// Files of format 1 (all-double configs, float32 tensors, no provenance) load as before.
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
#include "facet/core/convert.hpp"
#include "facet/core/crc32.hpp"
#include "facet/core/dtype.hpp"
#include "facet/core/error.hpp"
#include "facet/core/tensor.hpp"
#include "facet/core/version.hpp"
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
#include "facet/layers/quantized_conv2d.hpp"
#include "facet/layers/quantized_dense.hpp"
#include "facet/layers/softmax.hpp"
#include "facet/model/provenance.hpp"
#include "facet/model/sequential.hpp"
#include "facet/optim/optimizer.hpp"
#include "facet/optim/schedule.hpp"

namespace facet {

/// The newest format version this build reads and the one it writes (it reads 1 as well).
inline constexpr std::uint32_t model_format_version = 2;

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
inline constexpr std::size_t max_config_values = 256;     // per layer config (and child config)
inline constexpr std::size_t max_config_depth = 8;        // nesting of lists and child configs
inline constexpr std::size_t max_config_items = 1 << 16;  // every value of one layer's config tree
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
    void u16(std::uint16_t v) {
        bytes_.push_back(static_cast<unsigned char>(v));
        bytes_.push_back(static_cast<unsigned char>(v >> 8));
    }
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
    /// A named tensor: name, shape, element type, data (format 2). An Error when a value does
    /// not fit the element type (f16 overflows above 65504).
    template <typename T>
    void tensor(const std::string& name, const Tensor<T>& t, DType type = DType::F32) {
        string(name);
        shape(t.shape());
        u8(static_cast<std::uint8_t>(type));
        switch (type) {
            case DType::F32:
                floats(t);
                return;
            case DType::F16:
            case DType::BF16:
                for (std::size_t i = 0; i < t.size(); ++i) {
                    const float v = static_cast<float>(t[i]);
                    const std::uint16_t bits =
                        type == DType::F16 ? f16::from_float(v) : bf16::from_float(v);
                    const float back =
                        type == DType::F16 ? f16::to_float(bits) : float(bf16::from_bits(bits));
                    check(std::isfinite(back), "cannot save tensor '", name, "' as ",
                          dtype_name(type), ": its element ", i, " (", v, ") does not fit");
                    u16(bits);
                }
                return;
            case DType::I8: {
                check(t.rank() >= 1, "cannot save the scalar tensor '", name, "' as i8");
                const QuantizedTensor q = quantize_int8(t);
                for (float scale : q.scales) u32(std::bit_cast<std::uint32_t>(scale));
                raw(q.values.data(), q.values.size());
                return;
            }
            default:
                throw Error(detail::concat("cannot save tensor '", name, "' as ", dtype_name(type),
                                           " (f32, f16, bf16 or i8)"));
        }
    }
    /// An int8 tensor with its scales, as it is (format 2): name, shape, the i8 tag, one float32
    /// scale per outer index, then the values.
    void quantized(const std::string& name, const QuantizedTensor& q) {
        check(q.values.rank() >= 1 && q.scales.size() == q.values.dim(0),
              "cannot save int8 tensor '", name, "': ", q.scales.size(), " scales for shape ",
              q.values.shape().str());
        string(name);
        shape(q.values.shape());
        u8(static_cast<std::uint8_t>(DType::I8));
        for (float scale : q.scales) u32(std::bit_cast<std::uint32_t>(scale));
        raw(q.values.data(), q.values.size());
    }
    /// A tensor as format 1 stored it: name, shape, float32 data (tests write old files with it).
    template <typename T>
    void tensor_v1(const std::string& name, const Tensor<T>& t) {
        string(name);
        shape(t.shape());
        floats(t);
    }
    /// A layer config (format 2): type, value count, then (key, typed value) pairs; the same caps
    /// as the reader's, so that nothing is written that cannot be read back.
    void config(const LayerConfig& c) {
        std::size_t items = 0;
        config(c, 0, items);
    }
    std::vector<unsigned char>& bytes() { return bytes_; }

  private:
    void config(const LayerConfig& c, std::size_t depth, std::size_t& items) {
        check(c.values.size() <= max_config_values, "cannot save config of ", c.type, ": ",
              c.values.size(), " values (limit ", max_config_values, ")");
        string(c.type);
        u32(static_cast<std::uint32_t>(c.values.size()));
        for (const auto& [key, v] : c.values) {
            string(key);
            value(c.type, v, depth, items);
        }
    }
    void value(const std::string& type, const ConfigValue& v, std::size_t depth,
               std::size_t& items) {
        check(++items <= max_config_items && depth <= max_config_depth, "cannot save config of ",
              type, ": more than ", max_config_items, " values or nested deeper than ",
              max_config_depth);
        u8(static_cast<std::uint8_t>(v.kind()));
        switch (v.kind()) {
            case ConfigValue::Kind::Integer:
                u64(static_cast<std::uint64_t>(v.as_integer()));
                return;
            case ConfigValue::Kind::Real:
                f64(v.as_real());
                return;
            case ConfigValue::Kind::Flag:
                u8(v.as_flag() ? 1 : 0);
                return;
            case ConfigValue::Kind::Text:
                string(v.as_text(), max_metadata_length);
                return;
            case ConfigValue::Kind::List:
                check(v.as_list().size() <= max_entries, "cannot save config of ", type,
                      ": a list of ", v.as_list().size(), " values (limit ", max_entries, ")");
                u32(static_cast<std::uint32_t>(v.as_list().size()));
                for (const ConfigValue& item : v.as_list()) value(type, item, depth + 1, items);
                return;
            case ConfigValue::Kind::Children:
                check(v.as_children().size() <= max_entries, "cannot save config of ", type, ": ",
                      v.as_children().size(), " child configs (limit ", max_entries, ")");
                u32(static_cast<std::uint32_t>(v.as_children().size()));
                for (const LayerConfig& child : v.as_children()) config(child, depth + 1, items);
                return;
        }
    }

    std::vector<unsigned char> bytes_;
};

/// Reads little-endian values from a byte range; every read is bounds-checked, and every failure
/// is an Error naming the file, the byte offset and what was being read.
class ByteReader {
  public:
    ByteReader(const unsigned char* data, std::size_t size, std::size_t offset, std::string file,
               std::uint32_t version = model_format_version)
        : data_(data), size_(size), pos_(offset), file_(std::move(file)), version_(version) {}

    [[noreturn]] void fail(const std::string& what) const {
        throw Error(detail::concat(file_, ": ", what, " (at byte ", pos_, ")"));
    }
    std::size_t remaining() const { return size_ - pos_; }
    const std::string& file() const { return file_; }
    /// The format version of the file (from its header), which decides how configs and tensors
    /// are encoded.
    std::uint32_t version() const { return version_; }

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
    /// A tensor's element type (format 2; format 1 stores only float32). f64 is not a stored
    /// type; an unknown tag is an error.
    DType dtype(const std::string& name) {
        if (version_ < 2) return DType::F32;
        const std::uint8_t tag = u8("element type");
        const auto type = static_cast<DType>(tag);
        if (type != DType::F32 && type != DType::F16 && type != DType::BF16 && type != DType::I8)
            fail(detail::concat("tensor '", name, "' has element type ", int(tag),
                                ", not one of f32 (0), bf16 (2), f16 (3), i8 (4)"));
        return type;
    }
    /// The bytes the data of n elements of `type` with outer extent `outer` take (i8 adds one
    /// float32 scale per outer index), or a failure when the file ends before them.
    std::size_t need_data(const std::string& name, const Shape& shape, DType type) {
        const std::size_t n = shape.size();  // cannot overflow: shape() checked it
        const std::size_t scales = type == DType::I8 ? 4 * shape[0] : 0;
        if (n > remaining() / dtype_size(type) || scales > remaining() - n * dtype_size(type))
            fail(detail::concat("tensor '", name, "' of shape ", shape.str(), " needs ", n, " ",
                                dtype_name(type), " values but the file ends before"));
        return n * dtype_size(type) + scales;
    }
    /// Reads the elements of t (already shaped) stored as `type`, converting to T; a NaN or
    /// infinity, or a negative or non-finite int8 scale, is an error.
    template <typename T>
    void elements(Tensor<T>& t, const std::string& name, DType type) {
        need_data(name, t.shape(), type);
        switch (type) {
            case DType::F32:
                floats(t, name);
                return;
            case DType::F16:
            case DType::BF16:
                for (std::size_t i = 0; i < t.size(); ++i) {
                    const std::uint16_t bits =
                        static_cast<std::uint16_t>(data_[pos_] | data_[pos_ + 1] << 8);
                    pos_ += 2;
                    const float v =
                        type == DType::F16 ? f16::to_float(bits) : float(bf16::from_bits(bits));
                    if (!std::isfinite(v))
                        fail(detail::concat("tensor '", name,
                                            "' holds a NaN or infinite value at element ", i));
                    t[i] = static_cast<T>(v);
                }
                return;
            case DType::I8: {
                const std::size_t groups = t.dim(0),
                                  per = t.size() / std::max<std::size_t>(groups, 1);
                std::vector<float> scales(groups);
                for (std::size_t g = 0; g < groups; ++g) {
                    scales[g] = std::bit_cast<float>(u32("int8 scale"));
                    if (!std::isfinite(scales[g]) || scales[g] < 0)
                        fail(detail::concat("tensor '", name, "' has int8 scale ", scales[g],
                                            " for index ", g, " (must be finite and >= 0)"));
                }
                for (std::size_t i = 0; i < t.size(); ++i) {
                    const auto q = static_cast<std::int8_t>(data_[pos_++]);
                    t[i] = static_cast<T>(static_cast<float>(q) * scales[i / per]);
                }
                return;
            }
            default:
                fail("internal: unexpected element type");
        }
    }
    /// The data of an int8 tensor (q.values already shaped), kept as int8 with its scales; the
    /// layer's check_loaded() judges the values.
    void quantized(QuantizedTensor& q, const std::string& name, DType type) {
        if (type != DType::I8)
            fail(detail::concat("tensor '", name,
                                "' must be stored as i8 (with its scales), found ",
                                dtype_name(type)));
        need_data(name, q.values.shape(), type);
        q.scales.resize(q.values.dim(0));
        for (float& scale : q.scales) scale = std::bit_cast<float>(u32("int8 scale"));
        std::memcpy(q.values.data(), data_ + pos_, q.values.size());
        pos_ += q.values.size();
    }
    /// A named tensor whose shape is not known in advance; its size is checked against the bytes
    /// left before it is allocated.
    template <typename T>
    std::pair<std::string, Tensor<T>> tensor() {
        std::string name = string("tensor name length");
        const Shape shape = this->shape(("shape of tensor '" + name + "'").c_str());
        const DType type = dtype(name);
        need_data(name, shape, type);
        Tensor<T> t(shape);
        elements(t, name, type);
        return {std::move(name), std::move(t)};
    }
    /// A layer config: format 1's (key, f64) pairs, or format 2's typed values, nested lists and
    /// child configs within the caps on depth and on the values of the whole tree.
    LayerConfig config() {
        std::size_t items = 0;
        return config(0, items);
    }
    void expect_end() const {
        if (pos_ != size_)
            fail(detail::concat(size_ - pos_, " unexpected bytes after the last section"));
    }

  private:
    void need(std::size_t n, const char* what) const {
        if (n > remaining()) fail(detail::concat("file ends while reading ", what));
    }

    LayerConfig config(std::size_t depth, std::size_t& items) {
        LayerConfig c;
        c.type = string("layer type");
        const std::size_t values = count("config value count", max_config_values);
        for (std::size_t v = 0; v < values; ++v) {
            std::string key = string("config key");
            if (version_ < 2) {
                c.values.emplace_back(std::move(key), f64("config value"));
            } else {
                const std::string what = detail::concat("value '", key, "' of ", c.type);
                ConfigValue value = this->value(what, depth, items);
                c.values.emplace_back(std::move(key), std::move(value));
            }
        }
        return c;
    }
    ConfigValue value(const std::string& what, std::size_t depth, std::size_t& items) {
        if (++items > max_config_items)
            fail(detail::concat("config ", what, ": more than ", max_config_items,
                                " values in one layer's config"));
        if (depth > max_config_depth)
            fail(detail::concat("config ", what, ": nested deeper than ", max_config_depth));
        const std::uint8_t kind = u8("config value kind");
        switch (static_cast<ConfigValue::Kind>(kind)) {
            case ConfigValue::Kind::Integer:
                return static_cast<std::int64_t>(u64("config integer"));
            case ConfigValue::Kind::Real:
                return f64("config real");
            case ConfigValue::Kind::Flag: {
                const std::uint8_t flag = u8("config flag");
                if (flag > 1)
                    fail(detail::concat("config ", what, ": flag ", int(flag), " is not 0 or 1"));
                return flag == 1;
            }
            case ConfigValue::Kind::Text:
                return string("config text", max_metadata_length);
            case ConfigValue::Kind::List: {
                ConfigValue::List list;
                for (std::size_t i = 0, n = count("config list length", max_entries); i < n; ++i)
                    list.push_back(value(what, depth + 1, items));
                return list;
            }
            case ConfigValue::Kind::Children: {
                ConfigValue::Children children;
                for (std::size_t i = 0, n = count("child config count", max_entries); i < n; ++i) {
                    if (++items > max_config_items || depth + 1 > max_config_depth)
                        fail(detail::concat("config ", what,
                                            ": too many values or nested too deep"));
                    children.push_back(config(depth + 1, items));
                }
                return children;
            }
        }
        fail(detail::concat("config ", what, ": unknown value kind ", int(kind)));
    }

    const unsigned char* data_;
    std::size_t size_, pos_;
    std::string file_;
    std::uint32_t version_;
};

/// Starts a file: magic, version (this build's unless told), a placeholder for the total size.
inline void begin_file(ByteWriter& w, const char* magic,
                       std::uint32_t version = model_format_version) {
    w.raw(magic, 8);
    w.u32(version);
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
    return ByteReader(b.data(), body, header_size, file, version);
}

/// The architecture and all named tensors of a model (format 2). Parameters of rank 2 and more
/// (convolution and dense weights) are stored as `weights`; biases, batch-norm parameters and
/// buffers always as float32.
template <typename T>
void write_model(ByteWriter& w, Sequential<T>& model, DType weights = DType::F32) {
    w.shape(model.input_shape());
    w.u32(static_cast<std::uint32_t>(model.size()));
    for (const auto& layer : model.layers()) w.config(layer->config());
    const auto params = model.parameters();
    const auto buffers = model.buffers();
    const auto quantized = model.quantized_tensors();
    w.u32(static_cast<std::uint32_t>(params.size() + buffers.size() + quantized.size()));
    for (const Parameter<T>& p : params)
        w.tensor(p.name, *p.value, p.value->rank() >= 2 ? weights : DType::F32);
    for (const auto& [name, tensor] : buffers) w.tensor(name, *tensor);
    for (const auto& [name, tensor] : quantized) w.quantized(name, *tensor);
}

/// Rebuilds a model written by write_model (or by format 1's), checking each tensor's name and
/// shape against the rebuilt model's. `stored` (if given) receives each tensor's element type.
template <typename T>
Sequential<T> read_model(ByteReader& r, const LayerFactory<T>& factory,
                         std::vector<std::pair<std::string, DType>>* stored = nullptr) {
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
    // Format 1 stores every value as float32; format 2 may store int8, one byte per value.
    const std::size_t smallest = r.version() < 2 ? 4 : 1;
    for (std::size_t i = 0; i < layers; ++i) {
        const LayerConfig config = r.config();
        // Checked *before* the layer is built, because building it allocates its parameters:
        // without this, a 120-byte file naming a Dense(65536 -> 65536) layer made the loader
        // allocate 32 GiB (found by the fuzz target fuzz_model_file, tests/fuzz/). Each
        // registered layer type gives its bound (Layer::stored_values_lower_bound).
        const double needed = facet::stored_values_lower_bound(config);
        if (needed > static_cast<double>(r.remaining() / smallest))
            r.fail(detail::concat(
                "layer ", i, " (", config.type, ") needs at least ",
                needed < 1e18 ? std::to_string(std::uint64_t(needed)) : detail::concat(needed),
                smallest == 4 ? " float32 values" : " stored values", " but only ", r.remaining(),
                " bytes are left in the file"));
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
    const auto quantized = model->quantized_tensors();
    const std::size_t tensors = r.count("tensor count", max_tensors);
    if (tensors != expected.size() + quantized.size())
        r.fail(detail::concat("the file holds ", tensors, " tensors, the architecture needs ",
                              expected.size() + quantized.size()));
    for (const auto& [name, tensor] : expected) {
        const std::string found = r.string("tensor name");
        if (found != name)
            r.fail(detail::concat("expected tensor '", name, "', found '", found, "'"));
        const Shape shape = r.shape(("shape of '" + name + "'").c_str());
        if (shape != tensor->shape())
            r.fail(detail::concat("tensor '", name, "' has shape ", shape.str(),
                                  ", the layer needs ", tensor->shape().str()));
        const DType type = r.dtype(name);
        r.elements(*tensor, name, type);
        if (stored) stored->emplace_back(name, type);
    }
    // int8 tensors come last (write_model), kept as int8; each layer then checks its values.
    for (const auto& [name, tensor] : quantized) {
        const std::string found = r.string("tensor name");
        if (found != name)
            r.fail(detail::concat("expected tensor '", name, "', found '", found, "'"));
        const Shape shape = r.shape(("shape of '" + name + "'").c_str());
        if (shape != tensor->values.shape())
            r.fail(detail::concat("tensor '", name, "' has shape ", shape.str(),
                                  ", the layer needs ", tensor->values.shape().str()));
        const DType type = r.dtype(name);
        r.quantized(*tensor, name, type);
        if (stored) stored->emplace_back(name, type);
    }
    for (std::size_t i = 0; i < model->size(); ++i) try {
            model->layer(i).check_loaded();
        } catch (const Error& e) {
            r.fail(detail::concat("layer ", i, " (", model->layer(i).type(), "): ", e.what()));
        }
    return std::move(*model);
}

/// A provenance record (format 2): command line, library version, data fingerprint, then
/// (name, f64) metrics and (key, value) notes.
inline void write_provenance(ByteWriter& w, const Provenance& p) {
    w.string(p.command_line, max_metadata_length);
    w.string(p.library_version);
    w.string(p.data_fingerprint, max_metadata_length);
    check(p.metrics.size() <= max_entries && p.notes.size() <= max_entries, "save: more than ",
          max_entries, " provenance metrics or notes");
    w.u32(static_cast<std::uint32_t>(p.metrics.size()));
    for (const auto& [key, value] : p.metrics) w.string(key), w.f64(value);
    w.u32(static_cast<std::uint32_t>(p.notes.size()));
    for (const auto& [key, value] : p.notes) w.string(key), w.string(value, max_metadata_length);
}

inline Provenance read_provenance(ByteReader& r) {
    Provenance p;
    p.command_line = r.string("provenance command line", max_metadata_length);
    p.library_version = r.string("provenance library version");
    p.data_fingerprint = r.string("provenance data fingerprint", max_metadata_length);
    for (std::size_t i = 0, n = r.count("provenance metric count", max_entries); i < n; ++i) {
        std::string key = r.string("provenance metric name");
        p.metrics.emplace_back(std::move(key), r.f64("provenance metric"));
    }
    for (std::size_t i = 0, n = r.count("provenance note count", max_entries); i < n; ++i) {
        std::string key = r.string("provenance note name");
        p.notes.emplace_back(std::move(key), r.string("provenance note", max_metadata_length));
    }
    return p;
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

/// How save() stores a model besides its architecture and values.
struct SaveOptions {
    /// The element type of the weights (parameters of rank 2 and more): F32 (exact), F16 or BF16
    /// (half the size, rounded to nearest even; f16 refuses values above 65504), or I8
    /// (a quarter, symmetric per output channel, core/convert.hpp). Biases, batch-norm
    /// parameters and buffers stay float32.
    DType weights = DType::F32;
    /// Where the model came from; library_version is filled in when empty.
    Provenance provenance;
};

/// A model file's content: the model, its notes, its provenance and how it was stored.
template <typename T>
struct ModelFile {
    Sequential<T> model;
    ModelMetadata metadata;
    Provenance provenance;             ///< empty for files of format 1
    std::uint32_t format_version = 0;  ///< the version the file was written in
    /// Each stored tensor's name and element type, in file order.
    std::vector<std::pair<std::string, DType>> tensor_types;

    /// The note stored under `key`, or `fallback`.
    std::string note(const std::string& key, const std::string& fallback = "") const {
        for (const auto& [k, v] : metadata)
            if (k == key) return v;
        return fallback;
    }
};

/// The bytes of a model file (what save() writes).
template <typename T>
std::vector<unsigned char> encode_model(Sequential<T>& model, const ModelMetadata& metadata = {},
                                        const SaveOptions& options = {}) {
    serial::ByteWriter w;
    serial::begin_file(w, serial::model_magic);
    serial::write_model(w, model, options.weights);
    Provenance provenance = options.provenance;
    if (provenance.library_version.empty()) provenance.library_version = version_string;
    serial::write_provenance(w, provenance);
    serial::write_notes(w, metadata);
    return serial::finish_file(w);
}

/// Rebuilds a model, its notes and its provenance from the bytes of a model file (format 1 or
/// 2); `file` names it in errors.
template <typename T>
ModelFile<T> decode_model_file(const std::vector<unsigned char>& bytes, const std::string& file,
                               const LayerFactory<T>& factory = make_layer<T>) {
    serial::ByteReader r = serial::open_file(bytes, file, serial::model_magic, "model file");
    std::vector<std::pair<std::string, DType>> types;
    ModelFile<T> m{serial::read_model<T>(r, factory, &types), {}, {}, r.version(), {}};
    m.tensor_types = std::move(types);
    if (r.version() >= 2) m.provenance = serial::read_provenance(r);
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

/// Saves the model's architecture, parameters and buffers, its notes and (options) its
/// provenance to `path`, atomically: a failed save leaves an existing file unchanged. Values are
/// stored as float32 unless options.weights says otherwise.
template <typename T>
void save(Sequential<T>& model, const std::string& path, const ModelMetadata& metadata = {},
          const SaveOptions& options = {}) {
    write_file_atomically(path, encode_model(model, metadata, options));
}

/// Loads a model file with its notes and provenance (see load()).
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
