// facet/report/html.hpp — a self-contained HTML document builder: headings, paragraphs, tables,
// inline SVG charts (report/svg.hpp) and inline PNG pictures (report/png.hpp). The output needs
// no network and no files beside it: open it in any browser.
#pragma once

#include <string>
#include <vector>

#include "facet/report/png.hpp"
#include "facet/report/svg.hpp"

namespace facet::report {

/// Builds one HTML page in memory; str() returns it.
class HtmlDocument {
  public:
    explicit HtmlDocument(std::string title) : title_(std::move(title)) {}

    void heading(const std::string& text, int level = 2) {
        const std::string h = "h" + std::to_string(level < 1 ? 1 : level > 4 ? 4 : level);
        body_ += "<" + h + ">" + escape_html(text) + "</" + h + ">\n";
    }
    /// A paragraph of plain text (escaped).
    void paragraph(const std::string& text) { body_ += "<p>" + escape_html(text) + "</p>\n"; }
    /// Markup inserted as it is (SVG charts, `<img>` elements, prepared fragments).
    void raw(const std::string& html) { body_ += html + "\n"; }
    /// A table with a header row; cells are escaped text.
    void table(const std::vector<std::string>& header,
               const std::vector<std::vector<std::string>>& rows) {
        std::string t = "<table><tr>";
        for (const auto& h : header) t += "<th>" + escape_html(h) + "</th>";
        t += "</tr>";
        for (const auto& r : rows) {
            t += "<tr>";
            for (const auto& c : r) t += "<td>" + escape_html(c) + "</td>";
            t += "</tr>";
        }
        body_ += t + "</table>\n";
    }
    /// Starts/ends a block whose children sit side by side and wrap (for charts and image grids).
    void begin_row() { body_ += "<div class='row'>\n"; }
    void end_row() { body_ += "</div>\n"; }

    std::string str() const {
        return "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>" +
               escape_html(title_) +
               "</"
               "title>\n<style>body{font-family:sans-serif;margin:24px;max-width:1200px;color:#222}"
               "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid "
               "#ccc;padding:3px 8px;"
               "text-align:right}th{background:#f3f3f3}.row{display:flex;flex-wrap:wrap;gap:16px;"
               "align-items:flex-start}.cap{font-size:11px;text-align:center}figure{margin:0}"
               "h1{margin-bottom:4px}</style></head>\n<body>\n<h1>" +
               escape_html(title_) + "</h1>\n" + body_ + "</body></html>\n";
    }

  private:
    std::string title_;
    std::string body_;
};

}  // namespace facet::report
