// facet/report/svg.hpp — small inline-SVG charts for self-contained HTML reports: line charts
// (training curves), bar charts (class distribution, per-class scores) and heat maps (confusion
// matrices). Plain strings out, no dependencies. Read next: report/html.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

#include "facet/core/error.hpp"

namespace facet::report {

/// Escapes text for HTML/SVG element content and attribute values.
inline std::string escape_html(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\'':
                out += "&#39;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

/// A number printed compactly (%.4g), for labels and ticks.
inline std::string fmt(double v, const char* format = "%.4g") {
    char buf[64];
    std::snprintf(buf, sizeof buf, format, v);
    return buf;
}

/// One named series of a line chart; x values are 1, 2, ... when xs is empty.
struct Series {
    std::string name;
    std::vector<double> ys;
    std::string color = "#1f77b4";
    std::vector<double> xs{};
};

/// A line chart with axes, 5 ticks per axis and a legend. Non-finite points are skipped (a NaN
/// loss shows as a gap, not as a broken chart).
inline std::string line_chart(const std::vector<Series>& series, const std::string& title,
                              const std::string& x_label, const std::string& y_label,
                              int width = 460, int height = 300) {
    const double left = 56, right = 12, top = 40, bottom = 44;  // the legend sits above the plot
    double xmin = 1e300, xmax = -1e300, ymin = 1e300, ymax = -1e300;
    for (const auto& s : series)
        for (std::size_t i = 0; i < s.ys.size(); ++i) {
            const double x = s.xs.empty() ? double(i + 1) : s.xs[i], y = s.ys[i];
            if (!std::isfinite(y)) continue;
            xmin = std::min(xmin, x), xmax = std::max(xmax, x);
            ymin = std::min(ymin, y), ymax = std::max(ymax, y);
        }
    if (xmin > xmax) xmin = 0, xmax = 1, ymin = 0, ymax = 1;  // no finite data: empty axes
    if (xmax == xmin) xmax = xmin + 1;
    if (ymax == ymin) ymax = ymin + 1;
    const double pad = 0.05 * (ymax - ymin);
    ymin -= pad, ymax += pad;
    const double pw = width - left - right, ph = height - top - bottom;
    auto X = [&](double x) { return left + (x - xmin) / (xmax - xmin) * pw; };
    auto Y = [&](double y) { return top + (1 - (y - ymin) / (ymax - ymin)) * ph; };

    std::string svg = "<svg xmlns='http://www.w3.org/2000/svg' width='" + std::to_string(width) +
                      "' height='" + std::to_string(height) +
                      "' font-family='sans-serif' font-size='11'>";
    svg += "<text x='" + fmt(width / 2.0) + "' y='16' text-anchor='middle' font-size='13'>" +
           escape_html(title) + "</text>";
    svg += "<rect x='" + fmt(left) + "' y='" + fmt(top) + "' width='" + fmt(pw) + "' height='" +
           fmt(ph) + "' fill='none' stroke='#888'/>";
    for (int t = 0; t <= 4; ++t) {
        const double yv = ymin + (ymax - ymin) * t / 4, xv = xmin + (xmax - xmin) * t / 4;
        svg += "<line x1='" + fmt(left) + "' x2='" + fmt(left + pw) + "' y1='" + fmt(Y(yv)) +
               "' y2='" + fmt(Y(yv)) + "' stroke='#eee'/>";
        svg += "<text x='" + fmt(left - 4) + "' y='" + fmt(Y(yv) + 4) + "' text-anchor='end'>" +
               fmt(yv, "%.3g") + "</text>";
        svg += "<text x='" + fmt(X(xv)) + "' y='" + fmt(top + ph + 14) + "' text-anchor='middle'>" +
               fmt(xv, "%.3g") + "</text>";
    }
    svg += "<text x='" + fmt(left + pw / 2) + "' y='" + fmt(height - 6.0) +
           "' text-anchor='middle'>" + escape_html(x_label) + "</text>";
    svg += "<text transform='translate(12," + fmt(top + ph / 2) +
           ") rotate(-90)' text-anchor='middle'>" + escape_html(y_label) + "</text>";
    for (std::size_t k = 0; k < series.size(); ++k) {
        const auto& s = series[k];
        std::string path;
        bool pen_down = false;
        for (std::size_t i = 0; i < s.ys.size(); ++i) {
            const double x = s.xs.empty() ? double(i + 1) : s.xs[i], y = s.ys[i];
            if (!std::isfinite(y)) {
                pen_down = false;
                continue;
            }
            path += (pen_down ? " L" : " M") + fmt(X(x), "%.1f") + "," + fmt(Y(y), "%.1f");
            pen_down = true;
        }
        svg += "<path d='" + path + "' fill='none' stroke='" + s.color + "' stroke-width='2'/>";
        for (std::size_t i = 0; i < s.ys.size() && s.ys.size() <= 60;
             ++i) {  // markers on short series
            const double x = s.xs.empty() ? double(i + 1) : s.xs[i];
            if (std::isfinite(s.ys[i]))
                svg += "<circle cx='" + fmt(X(x), "%.1f") + "' cy='" + fmt(Y(s.ys[i]), "%.1f") +
                       "' r='2.5' fill='" + s.color + "'/>";
        }
        // Side by side between the title and the plot, so it never hides a curve.
        const double ly = top - 8, lx = left + 110.0 * static_cast<double>(k);
        svg += "<line x1='" + fmt(lx) + "' x2='" + fmt(lx + 18) + "' y1='" + fmt(ly - 4) +
               "' y2='" + fmt(ly - 4) + "' stroke='" + s.color + "' stroke-width='2'/>";
        svg +=
            "<text x='" + fmt(lx + 22) + "' y='" + fmt(ly) + "'>" + escape_html(s.name) + "</text>";
    }
    return svg + "</svg>";
}

/// A vertical bar chart with the value printed above each bar.
inline std::string bar_chart(const std::vector<std::string>& labels,
                             const std::vector<double>& values, const std::string& title,
                             int width = 460, int height = 260,
                             const std::string& color = "#4c72b0") {
    check(labels.size() == values.size(), "bar_chart: ", labels.size(), " labels for ",
          values.size(), " values");
    const double left = 40, bottom = 40, top = 44;  // room for the title and the value labels
    double vmax = 0;
    for (double v : values)
        if (std::isfinite(v)) vmax = std::max(vmax, v);
    if (vmax <= 0) vmax = 1;
    const double pw = width - left - 10, ph = height - top - bottom;
    const double bw = labels.empty() ? 0 : pw / static_cast<double>(labels.size());
    std::string svg = "<svg xmlns='http://www.w3.org/2000/svg' width='" + std::to_string(width) +
                      "' height='" + std::to_string(height) +
                      "' font-family='sans-serif' font-size='11'>";
    svg += "<text x='" + fmt(width / 2.0) + "' y='16' text-anchor='middle' font-size='13'>" +
           escape_html(title) + "</text>";
    for (std::size_t i = 0; i < labels.size(); ++i) {
        const double v = std::isfinite(values[i]) ? std::max(values[i], 0.0) : 0.0;
        const double h = v / vmax * ph, x = left + bw * static_cast<double>(i);
        svg += "<rect x='" + fmt(x + bw * 0.1) + "' y='" + fmt(top + ph - h) + "' width='" +
               fmt(bw * 0.8) + "' height='" + fmt(h) + "' fill='" + color + "'/>";
        svg += "<text x='" + fmt(x + bw / 2) + "' y='" + fmt(top + ph - h - 3) +
               "' text-anchor='middle'>" + fmt(values[i], "%.4g") + "</text>";
        svg += "<text x='" + fmt(x + bw / 2) + "' y='" + fmt(top + ph + 14) +
               "' text-anchor='middle'>" + escape_html(labels[i]) + "</text>";
    }
    svg += "<line x1='" + fmt(left) + "' x2='" + fmt(left + pw) + "' y1='" + fmt(top + ph) +
           "' y2='" + fmt(top + ph) + "' stroke='#444'/>";
    return svg + "</svg>";
}

/// A heat map of a square matrix (e.g. a confusion matrix: rows = true class, columns =
/// predicted), each cell shaded by its share of its row and labelled with its count.
inline std::string heatmap(const std::vector<std::vector<double>>& m,
                           const std::vector<std::string>& labels, const std::string& title,
                           const std::string& row_axis = "true",
                           const std::string& col_axis = "predicted", int cell = 44) {
    const std::size_t n = labels.size();
    check(m.size() == n, "heatmap: ", m.size(), " rows for ", n, " labels");
    for (const auto& row : m)
        check(row.size() == n, "heatmap: a row has ", row.size(), " columns, expected ", n);
    const int left = 80, top = 56;
    const int width = left + cell * static_cast<int>(n) + 10,
              height = top + cell * static_cast<int>(n) + 30;
    std::string svg = "<svg xmlns='http://www.w3.org/2000/svg' width='" + std::to_string(width) +
                      "' height='" + std::to_string(height) +
                      "' font-family='sans-serif' font-size='11'>";
    svg += "<text x='" + fmt(width / 2.0) + "' y='16' text-anchor='middle' font-size='13'>" +
           escape_html(title) + "</text>";
    svg += "<text x='" + fmt(left + cell * n / 2.0) + "' y='34' text-anchor='middle'>" +
           escape_html(col_axis) + "</text>";
    svg += "<text transform='translate(12," + fmt(top + cell * n / 2.0) +
           ") rotate(-90)' text-anchor='middle'>" + escape_html(row_axis) + "</text>";
    for (std::size_t i = 0; i < n; ++i) {
        double row_sum = 0;
        for (double v : m[i]) row_sum += v;
        svg += "<text x='" + std::to_string(left - 4) + "' y='" + fmt(top + cell * (i + 0.5) + 4) +
               "' text-anchor='end'>" + escape_html(labels[i]) + "</text>";
        svg += "<text x='" + fmt(left + cell * (i + 0.5)) + "' y='" + std::to_string(top - 6) +
               "' text-anchor='middle'>" + escape_html(labels[i].substr(0, 5)) + "</text>";
        for (std::size_t j = 0; j < n; ++j) {
            const double share = row_sum > 0 ? m[i][j] / row_sum : 0.0;
            const int shade =
                255 - static_cast<int>(std::lround(200 * std::clamp(share, 0.0, 1.0)));
            char fill[16];
            std::snprintf(fill, sizeof fill, "#%02x%02xff", shade, shade);
            svg += "<rect x='" + fmt(left + cell * double(j)) + "' y='" +
                   fmt(top + cell * double(i)) + "' width='" + std::to_string(cell) + "' height='" +
                   std::to_string(cell) + "' fill='" + fill + "' stroke='#fff'/>";
            svg += "<text x='" + fmt(left + cell * (j + 0.5)) + "' y='" +
                   fmt(top + cell * (i + 0.5) + 4) + "' text-anchor='middle' fill='" +
                   (share > 0.5 ? "#fff" : "#000") + "'>" + fmt(m[i][j], "%.0f") + "</text>";
        }
    }
    return svg + "</svg>";
}

}  // namespace facet::report
