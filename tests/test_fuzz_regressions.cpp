// Regression tests for what the fuzz targets (tests/fuzz/) found, or what was found while writing
// them (docs/reliability.md, "Fuzzing", says which), each fed from bytes written here. Under the
// ASan + UBSan build these inputs were memory errors, undefined behaviour or huge allocations; in
// every build they must now be refused with a facet::Error naming the file.
#define FACET_IMPLEMENT_STB
#include "facet/data/image.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "facet/model/serialize.hpp"

namespace {

/// A JPEG stream that is only a start-of-image marker and one Huffman table segment whose 16 code
/// counts add up to `codes` (followed by that many symbols), then end-of-image.
std::vector<std::uint8_t> jpeg_with_huffman_codes(std::size_t codes) {
    std::vector<std::uint8_t> b = {0xFF, 0xD8, 0xFF, 0xC4};
    const std::size_t length = 2 + 1 + 16 + codes;
    b.push_back(static_cast<std::uint8_t>(length >> 8));
    b.push_back(static_cast<std::uint8_t>(length & 0xFF));
    b.push_back(0x00);  // a DC table, id 0
    std::size_t left = codes;
    for (int i = 0; i < 16; ++i) {  // spread the codes over the 16 code lengths, at most 255 each
        const std::size_t n = i == 15 ? left : std::min<std::size_t>(left, 16);
        b.push_back(static_cast<std::uint8_t>(n));
        left -= n;
    }
    for (std::size_t i = 0; i < codes; ++i) b.push_back(static_cast<std::uint8_t>(i));
    b.insert(b.end(), {0xFF, 0xD9});
    return b;
}

/// A model file with one layer of `type` and `config`, a tensor count of 3 and `padding` zero bytes
/// instead of tensors; in format 1 (all-double configs) or in format 2 (typed configs).
std::vector<unsigned char> model_file_without_tensors(
    const facet::Shape& input, const std::string& type,
    const std::vector<std::pair<std::string, double>>& config, std::size_t padding = 0,
    std::uint32_t version = 1) {
    facet::serial::ByteWriter w;
    facet::serial::begin_file(w, facet::serial::model_magic, version);
    w.shape(input);
    w.u32(1);
    if (version == 1) {
        w.string(type);
        w.u32(static_cast<std::uint32_t>(config.size()));
        for (const auto& [key, value] : config) w.string(key), w.f64(value);
    } else {
        facet::LayerConfig c{type, {}};
        for (const auto& [key, value] : config) c.set(key, static_cast<std::int64_t>(value));
        w.config(c);
    }
    w.u32(3);
    w.raw(std::vector<unsigned char>(padding).data(), padding);
    return facet::serial::finish_file(w);  // size and checksum are right: only the content is bad
}

std::string model_error(const std::vector<unsigned char>& bytes) {
    try {
        facet::decode_model<float>(bytes, "fuzz.fmdl");
    } catch (const facet::Error& e) {
        return e.what();
    }
    return "(loaded)";
}

std::string decode_error(const std::vector<std::uint8_t>& bytes) {
    try {
        facet::decode_image(bytes.data(), bytes.size(), "fuzz.jpg");
    } catch (const facet::Error& e) {
        return e.what();
    }
    return "(decoded)";
}

}  // namespace

TEST_CASE("fuzz_image: a JPEG Huffman table of more than 256 codes is refused before stb") {
    // stb_image 2.27 wrote past its 257-entry size list for this table (UBSan: index 257 out of
    // bounds in stbi__build_huffman); found by fuzz_image within seconds.
    const std::string over = decode_error(jpeg_with_huffman_codes(257));
    CHECK(over == "fuzz.jpg: corrupt image (a JPEG Huffman table with more than 256 codes)");
    // 256 codes is legal, so that table passes our check and stb gives its own reason (this stream
    // has no frame header).
    const std::string full = decode_error(jpeg_with_huffman_codes(256));
    CHECK(full.rfind("fuzz.jpg: ", 0) == 0);
    CHECK(full.find("Huffman") == std::string::npos);
}

TEST_CASE("fuzz_image: the Huffman check walks real JPEGs through to their end") {
    // A JPEG as stb_image_write makes it: tables, a scan of entropy-coded data, end of image.
    std::vector<std::uint8_t> gray(40 * 24);
    for (std::size_t i = 0; i < gray.size(); ++i) gray[i] = static_cast<std::uint8_t>(i * 7);
    std::vector<std::uint8_t> jpg;
    auto append = [](void* context, void* data, int size) {
        auto* out = static_cast<std::vector<std::uint8_t>*>(context);
        const auto* p = static_cast<const std::uint8_t*>(data);
        out->insert(out->end(), p, p + size);
    };
    REQUIRE(stbi_write_jpg_to_func(append, &jpg, 40, 24, 1, gray.data(), 90) != 0);
    CHECK(facet::detail::jpeg_huffman_problem(jpg.data(), jpg.size()) == nullptr);
    const facet::GrayImage image = facet::decode_image(jpg.data(), jpg.size(), "ok.jpg");
    CHECK(image.width == 40);
    CHECK(image.height == 24);
    // A second Huffman segment after the scan (as in progressive JPEGs) is checked too.
    std::vector<std::uint8_t> late = jpeg_with_huffman_codes(300);
    jpg.pop_back(), jpg.pop_back();  // drop the end-of-image marker
    jpg.insert(jpg.end(), late.begin() + 2, late.end());
    CHECK(facet::detail::jpeg_huffman_problem(jpg.data(), jpg.size()) != nullptr);
}

TEST_CASE("fuzz_image: a JPEG scan that uses an undefined Huffman table is refused before stb") {
    // stb_image 2.27 decoded such a scan with the table's uninitialised memory and read a symbol
    // at index -873 (UBSan, stbi__jpeg_huff_decode); found by fuzz_image in session 3. The input
    // itself: its fourth table became DC table 3 where AC table 1 should be.
    std::ifstream in(FACET_SOURCE_DIR
                     "/tests/fuzz/regressions/image/stb-jpeg-undefined-huffman-table.jpg",
                     std::ios::binary);
    REQUIRE(in);
    const std::vector<std::uint8_t> found((std::istreambuf_iterator<char>(in)),
                                          std::istreambuf_iterator<char>());
    const std::string undefined =
        "fuzz.jpg: corrupt image (a JPEG scan uses a Huffman table the file does not define)";
    CHECK(decode_error(found) == undefined);

    // A good JPEG decodes; renaming its AC table 0 to AC table 3 leaves the scan's AC table
    // undefined, and the same JPEG is then refused.
    std::vector<std::uint8_t> gray(16 * 16, 90), jpg;
    auto append = [](void* context, void* data, int size) {
        auto* out = static_cast<std::vector<std::uint8_t>*>(context);
        const auto* p = static_cast<const std::uint8_t*>(data);
        out->insert(out->end(), p, p + size);
    };
    REQUIRE(stbi_write_jpg_to_func(append, &jpg, 16, 16, 1, gray.data(), 90) != 0);
    CHECK(facet::detail::jpeg_huffman_problem(jpg.data(), jpg.size()) == nullptr);
    std::size_t renamed = 0;
    for (std::size_t i = 0; i + 4 < jpg.size(); ++i)
        if (jpg[i] == 0xFF && jpg[i + 1] == 0xC4) {  // walk the tables of this DHT segment
            const std::size_t end = i + 2 + (std::size_t{jpg[i + 2]} << 8 | jpg[i + 3]);
            for (std::size_t t = i + 4; t < end;) {
                std::size_t codes = 0;
                for (std::size_t k = 1; k <= 16; ++k) codes += jpg[t + k];
                if (jpg[t] == 0x10) jpg[t] = 0x13, ++renamed;
                t += 17 + codes;
            }
        }
    REQUIRE(renamed == 1);
    CHECK(decode_error(jpg) == undefined);
}

TEST_CASE("fuzz_image: a PGM/PPM header number above INT_MAX is refused before stb parses it") {
    // stb_image 2.27 accumulated this width in an int (UBSan: signed integer overflow,
    // 266666666 * 10); found by fuzz_image.
    auto pgm = [](const std::string& header) {
        std::string text = header + std::string(40 * 24, '\x80');
        return std::vector<std::uint8_t>(text.begin(), text.end());
    };
    CHECK(decode_error(pgm("P5\n40 2666666666\n255\n")) ==
          "fuzz.jpg: corrupt image (a PGM/PPM header number above 2147483647)");
    CHECK(decode_error(pgm("P6 # a comment\n 99999999999 24 255\n")) ==
          "fuzz.jpg: corrupt image (a PGM/PPM header number above 2147483647)");
    // INT_MAX itself parses, and the file is then refused for not holding that many pixels.
    CHECK(decode_error(pgm("P5\n2147483647 24\n255\n")) ==
          "fuzz.jpg: corrupt image (the PGM/PPM file ends before its pixels do)");
    // A normal PGM decodes.
    const std::vector<std::uint8_t> ok = pgm("P5\n# made by hand\n40 24\n255\n");
    const facet::GrayImage image = facet::decode_image(ok.data(), ok.size(), "ok.pgm");
    CHECK(image.width == 40);
    CHECK(image.height == 24);
    CHECK(image.pixels[0] == 0x80);
}

TEST_CASE("fuzz_image: 16-bit colour PPM and PGM/PPM files shorter than their pixels") {
    auto bytes = [](const std::string& header, std::size_t pixel_bytes) {
        std::string text = header + std::string(pixel_bytes, '\x40');
        return std::vector<std::uint8_t>(text.begin(), text.end());
    };
    // stb_image 2.27 converted this 16-bit PPM to gray with its 8-bit converter, then read the
    // result as 16-bit: a heap-buffer-overflow (ASan) found by fuzz_image.
    CHECK(decode_error(bytes("P6\n2\n40 459 2", 10)) ==
          "fuzz.jpg: 16-bit colour PPM is not supported (stb_image 2.27 misreads it)");
    // A file one byte short: stb 2.27 ignored the short read and returned uninitialised pixels.
    CHECK(decode_error(bytes("P5 40 24 255\n", 40 * 24 - 1)) ==
          "fuzz.jpg: corrupt image (the PGM/PPM file ends before its pixels do)");
    CHECK(decode_error(bytes("P6 4 3 255\n", 4 * 3 * 3 - 1)) ==
          "fuzz.jpg: corrupt image (the PGM/PPM file ends before its pixels do)");
    CHECK(decode_error(bytes("P5 4 3 65535\n", 4 * 3 * 2 - 1)) ==
          "fuzz.jpg: corrupt image (the PGM/PPM file ends before its pixels do)");
    // Complete files decode: 8-bit PPM, 16-bit PGM (0x4040 / 257 = 64).
    for (const auto& [header, size] :
         {std::pair<std::string, std::size_t>{"P6 4 3 255\n", 36}, {"P5 4 3 65535\n", 24}}) {
        const std::vector<std::uint8_t> ok = bytes(header, size);
        const facet::GrayImage image = facet::decode_image(ok.data(), ok.size(), "ok.pnm");
        CHECK(image.width == 4);
        CHECK(image.height == 3);
        CHECK(image.pixels[0] == 0x40);
    }
}

TEST_CASE("fuzz_image: a PNG chunk longer than the rest of the file is refused before stb") {
    // stb_image 2.27 grew its IDAT buffer to the claimed length before reading it: a 471-byte file
    // claiming a 1.9 GB IDAT chunk made it allocate 2 GiB (libFuzzer: out-of-memory).
    const std::vector<std::uint8_t> gray(48 * 48, 100);
    const std::vector<std::uint8_t> png = facet::encode_png(gray.data(), 48, 48);
    CHECK(facet::detail::png_chunks_fit(png.data(), png.size()));
    // Signature and IHDR of the real file, then an IDAT chunk that claims 0x72606565 bytes.
    std::vector<std::uint8_t> bad(png.begin(), png.begin() + 8 + 12 + 13);
    bad.insert(bad.end(), {0x72, 0x60, 0x65, 0x65, 'I', 'D', 'A', 'T', 0x78, 0x5E, 0x63, 0x64});
    CHECK(decode_error(bad) ==
          "fuzz.jpg: corrupt image (a PNG chunk runs past the end of the file)");
    // The real file (IHDR, IDAT, IEND) cut anywhere inside its IDAT data or CRC.
    const std::size_t idat = 8 + 12 + 13, iend = png.size() - 12;
    REQUIRE(std::string(png.begin() + idat + 4, png.begin() + idat + 8) == "IDAT");
    for (std::size_t cut = idat + 8; cut < iend; ++cut)
        CHECK_FALSE(facet::detail::png_chunks_fit(png.data(), cut));
}

TEST_CASE("model file: a layer too large for the bytes left is refused before it is built") {
    // Building the layer allocates its parameters, so the bound must be checked first: this
    // 120-byte file once made the loader allocate a 4096 x 4096 Dense layer (and 65536 x 65536,
    // 32 GiB with its gradient, as easily) before noticing that the weights were missing.
    const std::string dense = model_error(model_file_without_tensors(
        facet::Shape{4096}, "Dense", {{"in_features", 4096}, {"out_features", 4096}}));
    CHECK(dense.rfind("fuzz.fmdl: layer 0 (Dense) needs at least 16777216 float32 values but only ",
                      0) == 0);
    const std::string conv = model_error(model_file_without_tensors(
        facet::Shape{512, 8, 8}, "Conv2d",
        {{"in_channels", 512}, {"out_channels", 512}, {"kernel_h", 3}, {"kernel_w", 1}}));
    CHECK(conv.rfind("fuzz.fmdl: layer 0 (Conv2d) needs at least 786432 float32 values", 0) == 0);
    const std::string norm = model_error(
        model_file_without_tensors(facet::Shape{1 << 20}, "BatchNorm1d", {{"channels", 1 << 20}}));
    CHECK(norm.rfind("fuzz.fmdl: layer 0 (BatchNorm1d) needs at least 2097152 float32 values", 0) ==
          0);
    // A layer whose weights fit in the bytes that follow passes the bound, and the file fails
    // later, on what is really wrong with it.
    const std::string small = model_error(model_file_without_tensors(
        facet::Shape{2}, "Dense", {{"in_features", 2}, {"out_features", 1}}, 64));
    CHECK(small.rfind("fuzz.fmdl: the file holds 3 tensors, the architecture needs 2", 0) == 0);
    // Format 2 may store a weight in one byte (int8), so its bound counts bytes, not floats.
    const std::string typed = model_error(model_file_without_tensors(
        facet::Shape{4096}, "Dense", {{"in_features", 4096}, {"out_features", 4096}}, 0, 2));
    CHECK(typed.rfind("fuzz.fmdl: layer 0 (Dense) needs at least 16777216 stored values but only ",
                      0) == 0);
    const std::string fits = model_error(model_file_without_tensors(
        facet::Shape{8}, "Dense", {{"in_features", 8}, {"out_features", 8}}, 64, 2));
    CHECK(fits.rfind("fuzz.fmdl: the file holds 3 tensors, the architecture needs 2", 0) == 0);
}
