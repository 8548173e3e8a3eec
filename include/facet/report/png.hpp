// facet/report/png.hpp — a minimal PNG encoder (8-bit gray or RGB, "stored" deflate blocks, no
// compression) and base64, so reports can inline pictures as data: URIs without any library.
// Pictures in reports are small (48x48 faces, 3x3 filters), where compression would buy little.
// Read next: report/html.hpp.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/report/svg.hpp"

namespace facet::report {

namespace detail {
inline std::uint32_t png_crc(const unsigned char* p, std::size_t n,
                             std::uint32_t crc = 0xffffffffu) {
    static const auto table = [] {
        std::array<std::uint32_t, 256> t{};
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return crc;
}
inline void put_be32(std::string& s, std::uint32_t v) {
    for (int sh = 24; sh >= 0; sh -= 8) s += static_cast<char>((v >> sh) & 0xff);
}
inline void png_chunk(std::string& png, const char* type, const std::string& data) {
    put_be32(png, static_cast<std::uint32_t>(data.size()));
    std::string body = std::string(type, 4) + data;
    png += body;
    put_be32(png, png_crc(reinterpret_cast<const unsigned char*>(body.data()), body.size()) ^
                      0xffffffffu);
}
}  // namespace detail

/// Encodes width x height pixels of `channels` (1 = gray, 3 = RGB) bytes each, row-major, as PNG.
inline std::string encode_png(const std::uint8_t* pixels, std::size_t width, std::size_t height,
                              int channels) {
    check(channels == 1 || channels == 3, "encode_png: channels must be 1 or 3, not ", channels);
    check(width > 0 && height > 0 && width <= 16384 && height <= 16384, "encode_png: bad size ",
          width, "x", height);
    const std::size_t row = width * static_cast<std::size_t>(channels);
    std::string raw;  // each row: filter byte 0 (none), then the pixels
    raw.reserve((row + 1) * height);
    for (std::size_t y = 0; y < height; ++y) {
        raw += '\0';
        raw.append(reinterpret_cast<const char*>(pixels + y * row), row);
    }
    // zlib stream: header, stored blocks of at most 65535 bytes, Adler-32 of the raw data.
    std::string z = "\x78\x01";
    for (std::size_t pos = 0; pos < raw.size() || pos == 0;) {
        const std::size_t len = std::min<std::size_t>(65535, raw.size() - pos);
        const bool last = pos + len == raw.size();
        z += static_cast<char>(last ? 1 : 0);
        z += static_cast<char>(len & 0xff), z += static_cast<char>(len >> 8);
        z += static_cast<char>(~len & 0xff), z += static_cast<char>((~len >> 8) & 0xff);
        z.append(raw, pos, len);
        pos += len;
        if (last) break;
    }
    std::uint32_t a = 1, b = 0;
    for (unsigned char c : raw) a = (a + c) % 65521, b = (b + a) % 65521;
    detail::put_be32(z, (b << 16) | a);

    std::string png = "\x89PNG\r\n\x1a\n";
    std::string ihdr;
    detail::put_be32(ihdr, static_cast<std::uint32_t>(width));
    detail::put_be32(ihdr, static_cast<std::uint32_t>(height));
    ihdr += static_cast<char>(8);                      // bit depth
    ihdr += static_cast<char>(channels == 1 ? 0 : 2);  // colour type: gray or RGB
    ihdr += std::string(3, '\0');                      // deflate, adaptive filtering, no interlace
    detail::png_chunk(png, "IHDR", ihdr);
    detail::png_chunk(png, "IDAT", z);
    detail::png_chunk(png, "IEND", "");
    return png;
}

/// Standard base64 (RFC 4648) with padding.
inline std::string base64(const std::string& in) {
    static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const std::uint32_t v = (std::uint32_t(std::uint8_t(in[i])) << 16) |
                                (std::uint32_t(std::uint8_t(in[i + 1])) << 8) |
                                std::uint8_t(in[i + 2]);
        out += abc[v >> 18], out += abc[(v >> 12) & 63], out += abc[(v >> 6) & 63],
            out += abc[v & 63];
    }
    if (i < in.size()) {
        std::uint32_t v = std::uint32_t(std::uint8_t(in[i])) << 16;
        if (i + 1 < in.size()) v |= std::uint32_t(std::uint8_t(in[i + 1])) << 8;
        out += abc[v >> 18], out += abc[(v >> 12) & 63];
        out += i + 1 < in.size() ? abc[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

/// An `<img>` element showing the picture inline, scaled by `scale` with crisp pixels.
inline std::string png_img(const std::uint8_t* pixels, std::size_t width, std::size_t height,
                           int channels, int scale = 2, const std::string& title = "") {
    const std::string t = escape_html(title);
    return "<img style='image-rendering:pixelated' width='" +
           std::to_string(width * static_cast<std::size_t>(scale)) + "' height='" +
           std::to_string(height * static_cast<std::size_t>(scale)) + "' title='" + t + "' alt='" +
           t + "' src='data:image/png;base64," +
           base64(encode_png(pixels, width, height, channels)) + "'/>";
}

}  // namespace facet::report
