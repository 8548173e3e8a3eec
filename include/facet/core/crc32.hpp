// facet/core/crc32.hpp — the CRC-32 checksum (IEEE 802.3, as in zlib and PNG) that closes every
// facet model and checkpoint file, so a corrupted or truncated file is detected before it is used.
// Read next: core/atomic_file.hpp.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace facet {

namespace detail {
/// The 256-entry table of the reflected polynomial 0xEDB88320, built at compile time.
constexpr std::array<std::uint32_t, 256> make_crc32_table() {
    std::array<std::uint32_t, 256> table{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int bit = 0; bit < 8; ++bit) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    return table;
}
inline constexpr std::array<std::uint32_t, 256> crc32_table = make_crc32_table();
}  // namespace detail

/// Continues a CRC-32 over `size` more bytes. Start with crc = 0; crc32("123456789") == 0xCBF43926.
inline std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    crc = ~crc;
    for (std::size_t i = 0; i < size; ++i)
        crc = detail::crc32_table[(crc ^ bytes[i]) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}

/// The CRC-32 of a whole buffer.
inline std::uint32_t crc32(const void* data, std::size_t size) {
    return crc32_update(0, data, size);
}

}  // namespace facet
