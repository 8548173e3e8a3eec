// facet/data/image.hpp — image files in and out: decode any PNG/JPEG/BMP/GIF/TGA/PNM with
// stb_image into 8-bit gray, resample it to any size (area averaging to shrink, bilinear to
// enlarge), and encode PNG pictures with stb_image_write (the one PNG encoder of facet).
//
// stb is header-only too, so its implementation must be compiled in exactly one translation unit
// of a program: in ONE .cpp file write
//     #define FACET_IMPLEMENT_STB
//     #include <facet/data/image.hpp>
// (before any other facet include). All other files include facet headers as usual. A program that
// already compiles stb_image / stb_image_write itself simply does not define FACET_IMPLEMENT_STB.
// Read next: data/image_folder.hpp (reads a folder of class sub-folders with these functions).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "facet/core/atomic_file.hpp"
#include "facet/core/error.hpp"
#include "facet/data/dataset.hpp"

#if defined(FACET_IMPLEMENT_STB)
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#endif
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace facet {

/// An 8-bit grayscale image, row-major.
struct GrayImage {
    std::size_t width = 0;
    std::size_t height = 0;
    std::vector<std::uint8_t> pixels;
};

/// Bounds on what a decoder accepts; checked from the header before any pixel is allocated.
struct ImageLimits {
    std::size_t max_file_bytes = 64 << 20;
    std::size_t max_side = 8192;
    std::size_t max_pixels = std::size_t{1} << 26;
};

namespace detail {
/// What stb_image 2.27 (the one Debian 12 ships) would mishandle in a JPEG's Huffman tables, or
/// nullptr:
///  * a table with more than 256 codes: stb writes past its tables (fixed upstream in 2.28);
///  * a scan that uses a table the file has not defined before it: stb decodes with the table's
///    uninitialised memory, and a symbol index taken from it reads far outside the table
///    (UBSan: index -873 in stbi__jpeg_huff_decode, found by the fuzz_image target).
/// decode_image refuses such a stream first. The markers are walked the way stb reads them: fill
/// bytes 0xFF skipped, segments skipped by their length, entropy-coded data up to the next marker
/// that is neither a stuffed 0xFF00 nor a restart; bytes past the end read as 0, as in stb. A scan
/// needs the tables stb will decode it with: DC and AC in a sequential frame; in a progressive
/// one DC for a first DC scan, AC for an AC scan, none for a DC refinement. Non-JPEG input is left
/// to stb, and so are table ids above 3, which stb refuses itself.
inline const char* jpeg_huffman_problem(const std::uint8_t* bytes, std::size_t size) {
    auto at = [&](std::size_t i) -> unsigned { return i < size ? bytes[i] : 0u; };
    std::size_t pos = 0;
    if (at(pos) != 0xFF) return nullptr;
    while (pos < size && bytes[pos] == 0xFF) ++pos;
    if (at(pos) != 0xD8) return nullptr;  // not a JPEG (no start-of-image marker)
    ++pos;
    bool defined[2][4] = {};  // [DC 0 / AC 1][table id]
    bool progressive = false;
    while (pos < size) {
        while (pos < size && bytes[pos] != 0xFF) ++pos;  // stb skips stray bytes between markers
        while (pos < size && bytes[pos] == 0xFF) ++pos;
        if (pos >= size) break;
        const unsigned marker = bytes[pos++];
        if (marker == 0xD9) break;  // end of image: stb reads no further
        if (marker == 0x00 || marker == 0x01 || marker == 0xD8 ||
            (marker >= 0xD0 && marker <= 0xD7))
            continue;  // markers without a length
        const std::size_t length = at(pos) << 8 | at(pos + 1);
        if (length < 2) return nullptr;  // stb refuses the segment itself
        const std::size_t end = pos + length;
        if (marker == 0xC4) {  // define Huffman tables: class/id, 16 code counts, the symbols
            for (std::size_t t = pos + 2; t < end;) {
                std::size_t codes = 0;
                for (std::size_t i = 0; i < 16; ++i) codes += at(t + 1 + i);
                if (codes > 256)
                    return "corrupt image (a JPEG Huffman table with more than 256 codes)";
                const unsigned table_class = at(t) >> 4, id = at(t) & 15;
                if (table_class <= 1 && id <= 3) defined[table_class][id] = true;
                t += 17 + codes;
            }
        }
        if (marker >= 0xC0 && marker <= 0xC2) progressive = marker == 0xC2;
        if (marker == 0xDA) {  // start of scan: components, their tables, Ss, Se, Ah/Al
            const std::size_t components = at(pos + 2);
            const unsigned ss = at(pos + 3 + 2 * components),
                           ah = at(pos + 5 + 2 * components) >> 4;
            const bool needs_dc = progressive ? ss == 0 && ah == 0 : true;
            const bool needs_ac = progressive ? ss != 0 : true;
            for (std::size_t c = 0; c < components; ++c) {
                const unsigned dc = at(pos + 4 + 2 * c) >> 4, ac = at(pos + 4 + 2 * c) & 15;
                if ((needs_dc && dc <= 3 && !defined[0][dc]) ||
                    (needs_ac && ac <= 3 && !defined[1][ac]))
                    return "corrupt image (a JPEG scan uses a Huffman table the file does not "
                           "define)";
            }
        }
        pos = end;
        if (marker == 0xDA) {  // entropy-coded data follows
            while (pos < size) {
                if (bytes[pos] != 0xFF) {
                    ++pos;
                    continue;
                }
                std::size_t next = pos;
                while (next < size && bytes[next] == 0xFF) ++next;
                const unsigned c = at(next);
                if (c != 0x00 && !(c >= 0xD0 && c <= 0xD7)) break;  // a real marker
                pos = next + 1;
            }
        }
    }
    return nullptr;
}

/// False when a PNG chunk before IEND claims more bytes than the file has left. stb_image 2.27
/// grows its IDAT buffer to the claimed length before reading, so a 471-byte file made it
/// allocate 2 GiB; such a file can never decode (stb needs the IEND chunk after it). Non-PNG
/// input is left to stb.
inline bool png_chunks_fit(const std::uint8_t* bytes, std::size_t size) {
    static constexpr std::uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (size < 8 || !std::equal(signature, signature + 8, bytes)) return true;
    for (std::size_t pos = 8; size - pos >= 8;) {  // each chunk: length, type, data, CRC
        const std::size_t length = std::size_t{bytes[pos]} << 24 |
                                   std::size_t{bytes[pos + 1]} << 16 |
                                   std::size_t{bytes[pos + 2]} << 8 | bytes[pos + 3];
        if (std::equal(bytes + pos + 4, bytes + pos + 8, "IEND")) break;
        if (length > size - pos - 8 || size - pos - 8 - length < 4) return false;
        pos += 12 + length;
    }
    return true;
}

/// What stb_image 2.27 would mishandle in a binary PGM/PPM header (P5/P6), or nullptr: a number
/// above INT_MAX (stb accumulates width, height and maximum value in an int without an overflow
/// check: signed overflow, undefined behaviour), or a 16-bit PPM (maximum value above 255), which
/// stb converts to gray with its 8-bit converter and then reads as 16-bit, past the end of the
/// buffer, or a file shorter than its pixels. All three are fixed upstream in 2.28. Whitespace and
/// # comments are skipped as stb does; non-PNM input is left to stb.
inline const char* pnm_header_problem(const std::uint8_t* bytes, std::size_t size) {
    if (size < 2 || bytes[0] != 'P' || (bytes[1] != '5' && bytes[1] != '6')) return nullptr;
    auto space = [](unsigned c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
    std::size_t pos = 2;
    std::uint64_t value = 0, fields[3] = {};
    for (int field = 0; field < 3; ++field) {  // width, height, maximum value
        while (pos < size && (space(bytes[pos]) || bytes[pos] == '#')) {
            if (bytes[pos] == '#')
                while (pos < size && bytes[pos] != '\n' && bytes[pos] != '\r') ++pos;
            else
                ++pos;
        }
        value = 0;
        for (; pos < size && bytes[pos] >= '0' && bytes[pos] <= '9'; ++pos) {
            value = value * 10 + (bytes[pos] - '0');
            if (value > static_cast<std::uint64_t>(INT32_MAX))
                return "corrupt image (a PGM/PPM header number above 2147483647)";
        }
        fields[field] = value;
    }
    if (bytes[1] == '6' && value > 255)
        return "16-bit colour PPM is not supported (stb_image 2.27 misreads it)";
    // The pixels start after the one whitespace byte that ends the header. stb 2.27 ignores a
    // short read and would hand back uninitialised memory as pixels.
    const std::uint64_t pixels = fields[0] * fields[1];  // < 2^62: both are at most INT32_MAX
    const std::uint64_t left = pos + 1 < size ? size - (pos + 1) : 0;
    if (pixels > left || pixels * (bytes[1] == '6' ? 3 : 1) * (value > 255 ? 2 : 1) > left)
        return "corrupt image (the PGM/PPM file ends before its pixels do)";
    return nullptr;
}
}  // namespace detail

/// Decodes an encoded image held in memory (PNG, JPEG, BMP, GIF, TGA, PNM, PSD) to gray: colour
/// is converted by stb with the luma weights (77 R + 150 G + 29 B) / 256, alpha is dropped.
/// `name` (a path) appears in every error. The header is inspected first (stbi_info), so a
/// 60000 x 60000 image is refused without allocating its pixels.
inline GrayImage decode_image(const std::uint8_t* bytes, std::size_t size, const std::string& name,
                              const ImageLimits& limits = {}) {
    check(size > 0, name, ": empty image file");
    check(size <= limits.max_file_bytes, name, ": image file of ", size,
          " bytes exceeds the limit of ", limits.max_file_bytes);
    check(size <= static_cast<std::size_t>(INT32_MAX), name, ": image file too large");
    // Checks for what stb 2.27 mishandles (see each function), before stbi_info, which already
    // reads JPEG Huffman tables and PNM header numbers.
    if (const char* problem = detail::jpeg_huffman_problem(bytes, size))
        throw Error(detail::concat(name, ": ", problem));
    check(detail::png_chunks_fit(bytes, size), name,
          ": corrupt image (a PNG chunk runs past the end of the file)");
    if (const char* problem = detail::pnm_header_problem(bytes, size))
        throw Error(detail::concat(name, ": ", problem));
    const int length = static_cast<int>(size);
    int w = 0, h = 0, channels = 0;
    if (!stbi_info_from_memory(bytes, length, &w, &h, &channels))
        throw Error(detail::concat(name, ": not a readable image (", stbi_failure_reason(), ")"));
    check(w > 0 && h > 0, name, ": image has no pixels (", w, "x", h, ")");
    const auto uw = static_cast<std::size_t>(w), uh = static_cast<std::size_t>(h);
    check(uw <= limits.max_side && uh <= limits.max_side, name, ": image of ", w, "x", h,
          " exceeds the limit of ", limits.max_side, " pixels per side");
    check(uw * uh <= limits.max_pixels, name, ": image of ", w, "x", h, " exceeds the limit of ",
          limits.max_pixels, " pixels");
    unsigned char* decoded = stbi_load_from_memory(bytes, length, &w, &h, &channels, 1);
    if (!decoded)
        throw Error(detail::concat(name, ": corrupt image (", stbi_failure_reason(), ")"));
    if (static_cast<std::size_t>(w) != uw || static_cast<std::size_t>(h) != uh) {
        stbi_image_free(decoded);  // the limits were checked on the header's size, not this one
        throw Error(detail::concat(name, ": corrupt image (header says ", uw, "x", uh, ", decoded ",
                                   w, "x", h, ")"));
    }
    GrayImage image;
    image.width = static_cast<std::size_t>(w);
    image.height = static_cast<std::size_t>(h);
    image.pixels.assign(decoded, decoded + image.width * image.height);
    stbi_image_free(decoded);
    return image;
}

/// Reads and decodes the image file at `path` (see decode_image).
inline GrayImage load_image(const std::filesystem::path& path, const ImageLimits& limits = {}) {
    const std::string bytes = read_file_contents(path, limits.max_file_bytes);
    return decode_image(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(),
                        path.string(), limits);
}

namespace detail {
/// The source pixels and weights that make up each output pixel along one axis.
struct AxisWeights {
    std::vector<std::size_t> first;   ///< per output pixel, index of its first entry in taps
    std::vector<std::size_t> source;  ///< tap source index
    std::vector<float> weight;        ///< tap weight (the weights of one output pixel sum to 1)
};

/// Shrinking averages the source over each output pixel's footprint (area filter, no aliasing);
/// enlarging interpolates linearly between the two nearest source pixel centres.
inline AxisWeights resample_weights(std::size_t from, std::size_t to) {
    AxisWeights a;
    const double scale = static_cast<double>(from) / static_cast<double>(to);
    for (std::size_t j = 0; j < to; ++j) {
        a.first.push_back(a.source.size());
        if (from >= to) {
            const double begin = static_cast<double>(j) * scale, end = begin + scale;
            for (auto i = static_cast<std::size_t>(begin); i < from && static_cast<double>(i) < end;
                 ++i) {
                const double overlap = std::min(end, static_cast<double>(i + 1)) -
                                       std::max(begin, static_cast<double>(i));
                if (overlap <= 0) continue;
                a.source.push_back(i);
                a.weight.push_back(static_cast<float>(overlap / scale));
            }
        } else {
            const double x = std::clamp((static_cast<double>(j) + 0.5) * scale - 0.5, 0.0,
                                        static_cast<double>(from - 1));
            const auto i0 = static_cast<std::size_t>(x);
            const std::size_t i1 = std::min(i0 + 1, from - 1);
            const double f = x - static_cast<double>(i0);
            a.source.push_back(i0);
            a.weight.push_back(static_cast<float>(1.0 - f));
            a.source.push_back(i1);
            a.weight.push_back(static_cast<float>(f));
        }
    }
    a.first.push_back(a.source.size());
    return a;
}
}  // namespace detail

/// Resamples a gray image of src_width x src_height to dst_width x dst_height, separably (rows,
/// then columns): area averaging along an axis that shrinks, bilinear along one that grows.
/// Equal sizes copy the pixels unchanged.
inline void resize_gray(const std::uint8_t* src, std::size_t src_width, std::size_t src_height,
                        std::uint8_t* dst, std::size_t dst_width, std::size_t dst_height) {
    check(src_width > 0 && src_height > 0 && dst_width > 0 && dst_height > 0,
          "resize_gray: empty image (", src_width, "x", src_height, " -> ", dst_width, "x",
          dst_height, ")");
    if (src_width == dst_width && src_height == dst_height) {
        std::copy(src, src + src_width * src_height, dst);
        return;
    }
    const detail::AxisWeights across = detail::resample_weights(src_width, dst_width);
    const detail::AxisWeights down = detail::resample_weights(src_height, dst_height);
    std::vector<float> rows(src_height * dst_width);  // each source row resampled to dst_width
    for (std::size_t y = 0; y < src_height; ++y)
        for (std::size_t x = 0; x < dst_width; ++x) {
            float sum = 0;
            for (std::size_t t = across.first[x]; t < across.first[x + 1]; ++t)
                sum += across.weight[t] * src[y * src_width + across.source[t]];
            rows[y * dst_width + x] = sum;
        }
    for (std::size_t y = 0; y < dst_height; ++y)
        for (std::size_t x = 0; x < dst_width; ++x) {
            float sum = 0;
            for (std::size_t t = down.first[y]; t < down.first[y + 1]; ++t)
                sum += down.weight[t] * rows[down.source[t] * dst_width + x];
            dst[y * dst_width + x] =
                static_cast<std::uint8_t>(std::clamp(std::lround(sum), 0L, 255L));
        }
}

/// The image as width x height gray pixels: its central region with the target's aspect ratio
/// (the whole image when the ratios agree), resampled with resize_gray, so nothing is stretched.
inline std::vector<std::uint8_t> fit_gray(const GrayImage& image, std::size_t width,
                                          std::size_t height) {
    check(width > 0 && height > 0, "fit_gray: empty target size ", width, "x", height);
    check(image.width > 0 && image.height > 0, "fit_gray: empty image");
    // The largest crop_w x crop_h with crop_w / crop_h = width / height inside the image.
    std::size_t crop_w = image.width, crop_h = image.height;
    if (image.width * height > image.height * width)
        crop_w = std::max<std::size_t>(1, image.height * width / height);
    else
        crop_h = std::max<std::size_t>(1, image.width * height / width);
    const std::size_t x0 = (image.width - crop_w) / 2, y0 = (image.height - crop_h) / 2;
    std::vector<std::uint8_t> crop(crop_w * crop_h);
    for (std::size_t y = 0; y < crop_h; ++y)
        std::copy_n(image.pixels.data() + (y0 + y) * image.width + x0, crop_w,
                    crop.data() + y * crop_w);
    std::vector<std::uint8_t> out(width * height);
    resize_gray(crop.data(), crop_w, crop_h, out.data(), width, height);
    return out;
}

/// The image as side x side gray pixels: fit_gray to a square (a non-square image is cropped to
/// its central square first, so faces keep their proportions).
inline std::vector<std::uint8_t> to_square_gray(const GrayImage& image, std::size_t side) {
    return fit_gray(image, side, side);
}

/// Encodes width x height pixels of `channels` bytes each (1 gray, 2 gray + alpha, 3 RGB, 4 RGBA),
/// row-major, as a PNG file in memory (stb_image_write, deflate-compressed).
inline std::vector<std::uint8_t> encode_png(const std::uint8_t* pixels, std::size_t width,
                                            std::size_t height, int channels = 1) {
    check(channels >= 1 && channels <= 4, "encode_png: channels must be 1 to 4, not ", channels);
    check(width > 0 && height > 0 && width <= 1u << 16 && height <= 1u << 16,
          "encode_png: bad image size ", width, "x", height);
    std::vector<std::uint8_t> out;
    auto append = [](void* context, void* data, int size) {
        auto* bytes = static_cast<std::vector<std::uint8_t>*>(context);
        const auto* p = static_cast<const std::uint8_t*>(data);
        bytes->insert(bytes->end(), p, p + size);
    };
    const int stride = static_cast<int>(width) * channels;
    const int ok = stbi_write_png_to_func(append, &out, static_cast<int>(width),
                                          static_cast<int>(height), channels, pixels, stride);
    check(ok != 0, "encode_png: stb_image_write failed");
    return out;
}

/// Writes an image as a PNG file (see encode_png) with write_file_atomically: a reader never sees
/// a half-written file.
inline void write_png(const std::filesystem::path& path, const std::uint8_t* pixels,
                      std::size_t width, std::size_t height, int channels = 1) {
    const std::vector<std::uint8_t> png = encode_png(pixels, width, height, channels);
    write_file_atomically(path, png.data(), png.size());
}

/// Lays out the first `count` images of `data` in a grid of `columns` columns with a 1-pixel
/// gap, for looking at samples (write it with write_png).
inline GrayImage image_grid(const Dataset& data, std::size_t count, std::size_t columns) {
    count = std::min(count, data.size());
    check(count > 0 && columns > 0, "image_grid: nothing to lay out");
    const std::size_t rows = (count + columns - 1) / columns;
    GrayImage grid;
    grid.width = columns * (data.width + 1) + 1;
    grid.height = rows * (data.height + 1) + 1;
    grid.pixels.assign(grid.width * grid.height, 255);
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t gx = 1 + (i % columns) * (data.width + 1);
        const std::size_t gy = 1 + (i / columns) * (data.height + 1);
        for (std::size_t y = 0; y < data.height; ++y)
            std::copy_n(data.image(i) + y * data.width, data.width,
                        grid.pixels.data() + (gy + y) * grid.width + gx);
    }
    return grid;
}

}  // namespace facet
