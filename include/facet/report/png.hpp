// facet/report/png.hpp — pictures inline in a report: base64 and an `<img>` element holding a
// data: URI of a PNG encoded by data/image.hpp's encode_png (stb_image_write), so a report needs
// no files beside it. Read next: report/html.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "facet/core/error.hpp"
#include "facet/data/image.hpp"
#include "facet/report/svg.hpp"

namespace facet::report {

/// Standard base64 (RFC 4648) with padding.
inline std::string base64(std::string_view in) {
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
    const std::vector<std::uint8_t> png = encode_png(pixels, width, height, channels);
    return "<img style='image-rendering:pixelated' width='" +
           std::to_string(width * static_cast<std::size_t>(scale)) + "' height='" +
           std::to_string(height * static_cast<std::size_t>(scale)) + "' title='" + t + "' alt='" +
           t + "' src='data:image/png;base64," +
           base64({reinterpret_cast<const char*>(png.data()), png.size()}) + "'/>";
}

}  // namespace facet::report
