// facet/export/protobuf_writer.hpp — ProtobufWriter: the protocol-buffers wire format, written by
// hand. A message is a sequence of fields, each a key (field number << 3 | wire type) followed by
// a varint (wire type 0), a 32-bit little-endian value (5) or a length-prefixed byte string (2),
// which also carries nested messages and packed repeated numbers. That is all an ONNX file needs,
// so facet writes it with these hundred lines instead of linking libprotobuf and generating code
// from onnx.proto (docs/deployment.md). Read next: export/onnx.hpp.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace facet {

/// Builds one protobuf message in memory, field by field, in the order the calls are made.
///
///     ProtobufWriter dim;
///     dim.int_field(1, 48);              // dim_value: 48
///     ProtobufWriter shape;
///     shape.message_field(1, dim);       // dim { dim_value: 48 }
class ProtobufWriter {
  public:
    /// The wire types this writer uses.
    enum class WireType : std::uint8_t { Varint = 0, Fixed32 = 5, LengthDelimited = 2 };

    /// Appends `value` as a base-128 varint: seven bits per byte, least significant first, the
    /// top bit set on every byte but the last.
    static void append_varint(std::string& out, std::uint64_t value) {
        while (value >= 0x80) {
            out.push_back(static_cast<char>((value & 0x7f) | 0x80));
            value >>= 7;
        }
        out.push_back(static_cast<char>(value));
    }

    /// An integer field (int32, int64, enum, bool): a varint. Negative values take ten bytes, as
    /// protobuf's int64 encodes them (two's complement, not zig-zag).
    ProtobufWriter& int_field(std::uint32_t field, std::int64_t value) {
        key(field, WireType::Varint);
        append_varint(bytes_, static_cast<std::uint64_t>(value));
        return *this;
    }
    /// A float field: four little-endian bytes.
    ProtobufWriter& float_field(std::uint32_t field, float value) {
        key(field, WireType::Fixed32);
        append_fixed32(std::bit_cast<std::uint32_t>(value));
        return *this;
    }
    /// A string or bytes field.
    ProtobufWriter& bytes_field(std::uint32_t field, std::string_view value) {
        key(field, WireType::LengthDelimited);
        append_varint(bytes_, value.size());
        bytes_.append(value.data(), value.size());
        return *this;
    }
    /// A nested message field.
    ProtobufWriter& message_field(std::uint32_t field, const ProtobufWriter& message) {
        return bytes_field(field, message.bytes());
    }
    /// A packed repeated float field: one length-prefixed run of little-endian floats.
    ProtobufWriter& packed_floats(std::uint32_t field, const float* values, std::size_t n) {
        key(field, WireType::LengthDelimited);
        append_varint(bytes_, 4 * n);
        for (std::size_t i = 0; i < n; ++i) append_fixed32(std::bit_cast<std::uint32_t>(values[i]));
        return *this;
    }
    /// A packed repeated integer field: one length-prefixed run of varints.
    ProtobufWriter& packed_ints(std::uint32_t field, const std::vector<std::int64_t>& values) {
        std::string run;
        for (std::int64_t v : values) append_varint(run, static_cast<std::uint64_t>(v));
        return bytes_field(field, run);
    }

    /// The message's bytes so far.
    const std::string& bytes() const { return bytes_; }

  private:
    void key(std::uint32_t field, WireType type) {
        append_varint(bytes_, (std::uint64_t{field} << 3) | static_cast<std::uint8_t>(type));
    }
    void append_fixed32(std::uint32_t v) {
        for (int b = 0; b < 4; ++b) bytes_.push_back(static_cast<char>((v >> (8 * b)) & 0xff));
    }

    std::string bytes_;
};

}  // namespace facet
