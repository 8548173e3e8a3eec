// fer/export.hpp — `fer export --onnx FILE`: a fer model as an ONNX file for other runtimes
// (OpenCV DNN, onnxruntime). The batch norms are folded first; the graph takes raw pixel values
// 0-255 of 48 x 48 gray faces, [N, 1, 48, 48], standardises them with the model's own
// normalisation notes, and gives `probabilities` [N, 7] after a softmax; the class names go into
// the file's metadata (facet/export/onnx.hpp writes it).
#pragma once

#include <filesystem>
#include <iostream>
#include <string>

#include <facet/export/onnx.hpp>
#include <facet/model/fold_batchnorm.hpp>

#include "cli.hpp"
#include "evaluate.hpp"

namespace fer {

inline Cli export_cli() {
    Cli cli("export",
            "Writes a trained model as an ONNX file (opset 13, batch norms folded): input 'image' "
            "[N, 1, 48, 48] of raw pixel values 0-255, output 'probabilities' [N, classes]; the "
            "class names in its metadata.");
    cli.option("onnx", "FILE", "the ONNX file to write")
        .option("model", "FILE", "model file written by fer train", "runs/default/model.facet");
    return cli;
}

/// The ONNX export options for a fer model: its normalisation inside the graph, its class names
/// and where it came from in the metadata.
inline facet::OnnxExportOptions fer_onnx_options(const TrainedModel& t) {
    facet::OnnxExportOptions o;
    o.normalize_input = true;
    o.input_divisor = 255.0f;
    o.mean = t.norm.mean;
    o.stddev = t.norm.stddev;
    o.graph_name = "fer";
    std::string classes;
    for (const std::string& c : t.classes) classes += (classes.empty() ? "" : ",") + c;
    o.metadata = {{"classes", classes},
                  {"input", "image: float32 [N, 1, 48, 48], raw gray pixel values 0-255"},
                  {"output", "probabilities: float32 [N, classes], softmax, classes in order"}};
    for (const auto& [key, value] : t.metadata)
        if (key == "model" || key == "normalization.mean" || key == "normalization.stddev" ||
            key == "val_accuracy")
            o.metadata.emplace_back(key, value);
    return o;
}

inline int run_export(const Cli& cli) {
    facet::check(cli.has("onnx"), "export: give the file to write with --onnx FILE");
    const std::string out = cli.str("onnx");
    TrainedModel t = load_trained(cli.str("model"));
    const std::string classes_note = [&] {
        for (const auto& [k, v] : t.metadata)
            if (k == "classes") return v;
        return std::string();
    }();
    if (!classes_note.empty()) {  // the model's own class names, in its order
        t.classes.clear();
        std::size_t start = 0;
        for (std::size_t comma; (comma = classes_note.find(',', start)) != std::string::npos;
             start = comma + 1)
            t.classes.push_back(classes_note.substr(start, comma - start));
        t.classes.push_back(classes_note.substr(start));
    }
    const std::size_t folded = facet::fold_batchnorm(t.model);
    facet::export_onnx(t.model, out, fer_onnx_options(t));
    std::cout << "wrote " << out << " (" << std::filesystem::file_size(out) << " bytes; ONNX opset "
              << facet::onnx_opset << ", " << folded << " batch norms folded)\n";
    return 0;
}

}  // namespace fer
