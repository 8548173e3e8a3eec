// Tests of the report building blocks: PNG encoding (stb_image_write's, decoded back with
// stb_image, a separate decoder), base64 against RFC 4648's vectors, SVG charts and the HTML
// document.
#define FACET_IMPLEMENT_STB
#include "facet/data/image.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "facet/report/html.hpp"

using namespace facet::report;

TEST_CASE("base64 matches the RFC 4648 test vectors") {
    CHECK(base64("") == "");
    CHECK(base64("f") == "Zg==");
    CHECK(base64("fo") == "Zm8=");
    CHECK(base64("foo") == "Zm9v");
    CHECK(base64("foob") == "Zm9vYg==");
    CHECK(base64("fooba") == "Zm9vYmE=");
    CHECK(base64("foobar") == "Zm9vYmFy");
}

TEST_CASE("encode_png round-trips through stb_image: gray, gray + alpha, RGB, RGBA, large images") {
    for (int channels : {1, 2, 3, 4}) {
        for (auto [w, h] : {std::pair<int, int>{1, 1}, {48, 48}, {7, 3}, {300, 250}}) {
            std::vector<std::uint8_t> px(static_cast<std::size_t>(w * h * channels));
            for (std::size_t i = 0; i < px.size(); ++i)
                px[i] = static_cast<std::uint8_t>((i * 37 + i / 7) & 0xff);
            const std::vector<std::uint8_t> png = facet::encode_png(px.data(), w, h, channels);
            int rw = 0, rh = 0, rc = 0;
            unsigned char* back =
                stbi_load_from_memory(reinterpret_cast<const unsigned char*>(png.data()),
                                      static_cast<int>(png.size()), &rw, &rh, &rc, 0);
            REQUIRE_MESSAGE(back != nullptr, stbi_failure_reason());
            CHECK(rw == w);
            CHECK(rh == h);
            CHECK(rc == channels);
            CHECK(std::equal(px.begin(), px.end(), back));
            stbi_image_free(back);
        }
    }
    std::uint8_t p = 0;
    CHECK_THROWS_AS(facet::encode_png(&p, 1, 1, 5), facet::Error);
    CHECK_THROWS_AS(facet::encode_png(&p, 1, 1, 0), facet::Error);
    CHECK_THROWS_AS(facet::encode_png(&p, 0, 1, 1), facet::Error);
}

TEST_CASE("charts escape text, skip non-finite points and reject mismatched input") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const std::string chart =
        line_chart({{"loss <train>", {1.0, nan, 0.5}}}, "a & b", "epoch", "loss");
    CHECK(chart.find("a &amp; b") != std::string::npos);
    CHECK(chart.find("loss &lt;train&gt;") != std::string::npos);
    CHECK(chart.find("nan") == std::string::npos);
    // The NaN breaks the line into two pieces: two move-to commands.
    const auto path_start = chart.find("<path d='");
    REQUIRE(path_start != std::string::npos);
    const std::string path =
        chart.substr(path_start, chart.find('\'', path_start + 9) - path_start);
    CHECK(std::count(path.begin(), path.end(), 'M') == 2);

    CHECK_THROWS_AS(bar_chart({"a", "b"}, {1.0}, "t"), facet::Error);
    CHECK_THROWS_AS(heatmap({{1, 2}, {3}}, {"a", "b"}, "t"), facet::Error);
    const std::string hm = heatmap({{8, 2}, {0, 5}}, {"x", "y"}, "confusion");
    CHECK(hm.find(">8<") != std::string::npos);
    CHECK(hm.find(">5<") != std::string::npos);
}

TEST_CASE("HtmlDocument is one well-formed page with escaped text") {
    HtmlDocument doc("Run <1>");
    doc.heading("Metrics");
    doc.table({"class", "f1"}, {{"happy", "0.9"}, {"<script>", "0"}});
    const std::string s = doc.str();
    CHECK(s.rfind("<!DOCTYPE html>", 0) == 0);
    CHECK(s.find("Run &lt;1&gt;") != std::string::npos);
    CHECK(s.find("<script>") == std::string::npos);
    CHECK(s.find("</html>") != std::string::npos);
}
