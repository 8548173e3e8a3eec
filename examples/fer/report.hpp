// fer/report.hpp — `fer report`: one self-contained HTML page about a training run — the data
// (class distribution, sample faces), the training curves, the confusion matrix and per-class
// metrics on the validation split, the most confidently misclassified faces, and for students the
// first layer's learned filters and one face's feature maps through the network.
#pragma once

#include <fstream>
#include <iostream>
#include <map>
#include <numeric>

#include <facet/layers/conv2d.hpp>
#include <facet/report/html.hpp>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "common.hpp"
#include "evaluate.hpp"

namespace fer {

namespace detail {
/// The numeric fields of the training log's epoch records, one JSON object per line: each number
/// by its key, null as NaN (a gap in a chart); other values are left out. Records with an "event"
/// key (validation split, test results) are skipped. An Error names the file and line of a line
/// that is not a JSON object or has no "epoch".
inline std::vector<std::map<std::string, double>> read_json_lines(const std::string& path) {
    std::vector<std::map<std::string, double>> rows;
    std::ifstream in(path);
    facet::check(static_cast<bool>(in), "report: cannot read the training log ", path);
    std::string line;
    for (std::size_t number = 1; std::getline(in, line); ++number) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        const nlohmann::json object = nlohmann::json::parse(line, nullptr, false);
        facet::check(object.is_object(), path, ":", number, ": not a JSON object");
        if (object.contains("event")) continue;  // not an epoch record
        std::map<std::string, double> row;
        for (const auto& [key, value] : object.items()) {
            if (value.is_number()) row[key] = value.get<double>();
            if (value.is_null()) row[key] = std::nan("");
        }
        facet::check(row.count("epoch") == 1, path, ":", number, ": no \"epoch\" field");
        rows.push_back(std::move(row));
    }
    return rows;
}

/// Maps values linearly onto 0..255 (min -> 0, max -> 255) for display.
inline std::vector<std::uint8_t> to_gray(const float* v, std::size_t n) {
    const auto [lo, hi] = std::minmax_element(v, v + n);
    const float range = *hi - *lo > 1e-12f ? *hi - *lo : 1.0f;
    std::vector<std::uint8_t> out(n);
    for (std::size_t i = 0; i < n; ++i)
        out[i] = static_cast<std::uint8_t>(std::lround(255.0f * (v[i] - *lo) / range));
    return out;
}

inline std::string figure(const std::string& img, const std::string& caption) {
    return "<figure>" + img + "<figcaption class='cap'>" + facet::report::escape_html(caption) +
           "</figcaption></figure>";
}
}  // namespace detail

inline Cli report_cli() {
    Cli cli(
        "report",
        "Writes one self-contained HTML report of a training run (no network needed to view it).");
    cli.option("run", "DIR", "the --out directory of fer train", "runs/default")
        .option("data", "DIR|CSV", "the data the run used (default: data/fer2013, else synthetic)")
        .option("split", "NAME", "split for the metrics (default: val, else test)")
        .option("o", "FILE", "output HTML file (default: RUN/report.html)")
        .option("threads", "N", "threads (0: all cores)", "0");
    return cli;
}

inline int run_report(const Cli& cli) {
    using namespace facet::report;
    facet::set_num_threads(static_cast<int>(cli.integer("threads")));
    const std::string run = cli.str("run");
    const std::string out = cli.has("o") ? cli.str("o") : run + "/report.html";
    TrainedModel t = load_trained(run + "/model.facet");
    const DataChoice data = cli.has("data") ? DataChoice{cli.str("data")} : default_data();
    const facet::DataSplits splits = load_splits(data, {});
    const facet::Dataset& split = pick_split(splits, cli.has("split") ? cli.str("split") : "");
    const facet::Dataset* train = splits.training();
    const std::vector<std::string>& names = t.classes;

    HtmlDocument doc("fer — training report");
    doc.paragraph("Run " + run + ", model " +
                  [&] {
                      for (const auto& [k, v] : t.metadata)
                          if (k == "model") return v;
                      return std::string("?");
                  }() +
                  ", data: " + data.describe() + ". Metrics on the '" + split.split + "' split (" +
                  std::to_string(split.size()) + " images).");
    if (data.synthetic())
        doc.raw(
            "<p><b>These are synthetic cartoon faces, not FER-2013.</b> Link the real data to "
            "data/fer2013 to train on it.</p>");

    // --- data ---
    doc.heading("Data");
    doc.begin_row();
    for (const facet::Dataset* d : {train, &split}) {
        if (!d) continue;
        std::vector<double> counts;
        for (std::size_t c : d->class_counts()) counts.push_back(static_cast<double>(c));
        doc.raw(bar_chart(names, counts, "class distribution: " + d->split));
    }
    doc.end_row();
    if (train) {
        doc.heading("Sample faces per class", 3);
        std::string grid = "<table>";
        for (int c = 0; c < static_cast<int>(names.size()); ++c) {
            grid += "<tr><th>" + escape_html(names[std::size_t(c)]) +
                    "</th><td style='text-align:left'>";
            int shown = 0;
            for (std::size_t i = 0; i < train->size() && shown < 12; ++i)
                if (train->labels[i] == c)
                    grid += png_img(train->image(i), train->width, train->height, 1, 1), ++shown;
            grid += "</td></tr>";
        }
        doc.raw(grid + "</table>");
    }

    // --- training curves ---
    doc.heading("Training");
    if (fs::exists(run + "/log.jsonl")) {
        const auto rows = detail::read_json_lines(run + "/log.jsonl");
        auto column = [&](const char* key) {
            std::vector<double> v;
            for (const auto& r : rows) v.push_back(r.count(key) ? r.at(key) : std::nan(""));
            return v;
        };
        const std::vector<double> epochs = column("epoch");
        doc.begin_row();
        doc.raw(line_chart({{"train", column("train_loss"), "#1f77b4", epochs},
                            {"validation", column("val_loss"), "#d62728", epochs}},
                           "loss", "epoch", "cross-entropy"));
        doc.raw(line_chart({{"train", column("train_acc"), "#1f77b4", epochs},
                            {"validation", column("val_acc"), "#d62728", epochs}},
                           "accuracy", "epoch", "accuracy"));
        doc.end_row();
        double total_seconds = 0;
        for (double s : column("seconds")) total_seconds += std::isfinite(s) ? s : 0;
        doc.paragraph(std::to_string(rows.size()) + " epochs, " + fmt(total_seconds / 60, "%.1f") +
                      " minutes of training.");
    } else {
        doc.paragraph("No training log (log.jsonl) in " + run + ".");
    }

    // --- evaluation ---
    const Evaluation ev = evaluate(t.model, split, t.norm);
    const facet::ClassificationReport rep =
        facet::classification_report(split.labels, ev.predicted, names);
    doc.heading("Results on '" + split.split + "': accuracy " + fmt(100 * rep.accuracy, "%.2f") +
                "%");
    doc.begin_row();
    std::vector<std::vector<double>> cm(names.size(), std::vector<double>(names.size()));
    for (std::size_t i = 0; i < names.size(); ++i)
        for (std::size_t j = 0; j < names.size(); ++j)
            cm[i][j] = double(rep.confusion.count(int(i), int(j)));
    doc.raw(heatmap(cm, names, "confusion matrix (row-normalised shading)"));
    std::vector<std::vector<std::string>> rows;
    std::vector<double> f1s;
    for (std::size_t c = 0; c < rep.per_class.size(); ++c) {
        const auto& m = rep.per_class[c];
        rows.push_back({names[c], fmt(m.precision, "%.3f"), fmt(m.recall, "%.3f"),
                        fmt(m.f1, "%.3f"), std::to_string(m.support)});
        f1s.push_back(m.f1);
    }
    doc.raw("<div>");
    doc.table({"class", "precision", "recall", "F1", "support"}, rows);
    doc.raw(bar_chart(names, f1s, "F1 per class", 460, 220, "#55a868"));
    doc.raw("</div>");
    doc.end_row();

    // --- confident mistakes ---
    doc.heading("Most confidently misclassified faces", 3);
    std::vector<std::size_t> wrong;
    for (std::size_t i = 0; i < split.size(); ++i)
        if (ev.predicted[i] != split.labels[i]) wrong.push_back(i);
    std::sort(wrong.begin(), wrong.end(), [&](std::size_t a, std::size_t b) {
        return ev.probability(a, ev.predicted[a]) > ev.probability(b, ev.predicted[b]);
    });
    doc.begin_row();
    for (std::size_t k = 0; k < std::min<std::size_t>(24, wrong.size()); ++k) {
        const std::size_t i = wrong[k];
        doc.raw(detail::figure(png_img(split.image(i), split.width, split.height, 1, 2),
                               names[std::size_t(split.labels[i])] + " → " +
                                   names[std::size_t(ev.predicted[i])] + " " +
                                   fmt(100 * ev.probability(i, ev.predicted[i]), "%.0f") + "%"));
    }
    doc.end_row();

    // --- inside the network ---
    doc.heading("Inside the network");
    auto* first_conv = dynamic_cast<facet::Conv2d<float>*>(&t.model.layer(0));
    if (first_conv) {
        const facet::Tensor<float>& w = *first_conv->parameters().front().value;  // (OC, C, kh, kw)
        doc.paragraph("The " + std::to_string(w.dim(0)) +
                      " learned filters of the first convolution (" + std::to_string(w.dim(2)) +
                      "x" + std::to_string(w.dim(3)) +
                      ", shown enlarged; white = positive weight).");
        doc.begin_row();
        const std::size_t k = w.dim(2) * w.dim(3);
        for (std::size_t o = 0; o < w.dim(0); ++o) {
            const auto g = detail::to_gray(w.data() + o * w.dim(1) * k, k);
            doc.raw(png_img(g.data(), w.dim(3), w.dim(2), 1, 12));
        }
        doc.end_row();
    }
    if (!split.empty()) {
        doc.paragraph(
            "One face through the network: up to 16 channels of each convolution's output (after "
            "its ReLU where one follows).");
        facet::Tensor<float> x(facet::Shape{1, 1, split.height, split.width});
        t.norm.apply(split.image(0), x.data(), split.image_size());
        t.model.forward(x);
        doc.begin_row();
        doc.raw(detail::figure(png_img(split.image(0), split.width, split.height, 1, 2),
                               "input: " + names[std::size_t(split.labels[0])]));
        doc.end_row();
        for (std::size_t i = 0; i < t.model.layers().size(); ++i) {
            if (t.model.layer(i).type() != "ReLU" && t.model.layer(i).type() != "MaxPool2d")
                continue;
            const facet::Tensor<float>& a = t.model.activation(i);
            if (a.rank() != 4) continue;
            doc.raw("<div class='row'><div class='cap' style='width:140px'>layer " +
                    std::to_string(i) + " " + escape_html(t.model.layer(i).type()) + " " +
                    a.shape().str() + "</div>");
            const std::size_t hw = a.dim(2) * a.dim(3);
            const int scale = a.dim(2) >= 48 ? 1 : a.dim(2) >= 24 ? 2 : 4;
            for (std::size_t c = 0; c < std::min<std::size_t>(16, a.dim(1)); ++c) {
                const auto g = detail::to_gray(a.data() + c * hw, hw);
                doc.raw(png_img(g.data(), a.dim(3), a.dim(2), 1, scale));
            }
            doc.raw("</div>");
        }
    }
    const std::string html = doc.str();
    fs::create_directories(fs::path(out).parent_path().empty() ? fs::path(".")
                                                               : fs::path(out).parent_path());
    facet::write_file_atomically(out, html.data(), html.size());
    std::cout << "wrote " << out << " (" << html.size() / 1024 << " KiB)\n";
    return 0;
}

}  // namespace fer
