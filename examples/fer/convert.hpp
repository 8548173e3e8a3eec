// fer/convert.hpp — `fer convert`: rewrites a model file with its weights stored as f32, f16 or
// bf16 and, with --fold, its batch norms folded into the layers before them
// (facet/model/fold_batchnorm.hpp). The notes and provenance are kept; the provenance gains a
// note saying what was done. The output is written atomically, so converting a file onto itself
// is safe.
#pragma once

#include <filesystem>
#include <iostream>
#include <string>

#include <facet/core/dtype.hpp>
#include <facet/model/fold_batchnorm.hpp>
#include <facet/model/serialize.hpp>

#include "cli.hpp"

namespace fer {

inline Cli convert_cli() {
    Cli cli("convert",
            "Rewrites a model file: weights stored as f32, f16 or bf16 (half the size), batch "
            "norms folded into the layers before them (--fold). Notes and provenance are kept.");
    cli.option("model", "FILE", "model file to convert", "runs/default/model.facet")
        .option("o", "FILE", "where to write the converted model (may be the input itself)")
        .option("weights", "TYPE",
                "element type of the stored weights: f32, f16 or bf16 (default: as in the input)")
        .flag("fold", "fold every batch norm that follows a convolution or dense layer");
    return cli;
}

/// The element type a model file stores its weights in: the first tensor not stored as f32
/// (biases and batch-norm values always are), else f32.
inline facet::DType stored_weight_type(
    const std::vector<std::pair<std::string, facet::DType>>& tensor_types) {
    for (const auto& [name, type] : tensor_types)
        if (type != facet::DType::F32) return type;
    return facet::DType::F32;
}

inline int run_convert(const Cli& cli) {
    const std::string in = cli.str("model");
    facet::check(cli.has("o"), "convert: give the output file with -o FILE");
    const std::string out = cli.str("o");
    facet::check(std::filesystem::exists(in), "convert: no model file at ", in);
    const auto in_bytes = std::filesystem::file_size(in);
    facet::ModelFile<float> file = facet::load_model_file<float>(in);
    facet::DType weights = stored_weight_type(file.tensor_types);
    if (cli.has("weights")) {
        const std::string name = cli.str("weights");
        facet::check(name == "f32" || name == "f16" || name == "bf16",
                     "convert: --weights must be f32, f16 or bf16, got '", name, "'");
        weights = facet::dtype_from_name(name);
    }
    std::string done = std::string("weights stored as ") + facet::dtype_name(weights);
    if (cli.has("fold")) {
        const std::size_t folded = facet::fold_batchnorm(file.model);
        done += ", " + std::to_string(folded) + " batch norms folded";
    }
    // Every conversion is recorded, the earlier ones included, in the order they were done.
    std::string key = "conversion";
    for (int k = 2; !file.provenance.note(key).empty(); ++k)
        key = "conversion." + std::to_string(k);
    file.provenance.notes.emplace_back(key, done);
    facet::SaveOptions options;
    options.weights = weights;
    options.provenance = file.provenance;
    facet::save(file.model, out, file.metadata, options);
    std::cout << in << " -> " << out << ": " << done << ", " << std::filesystem::file_size(out)
              << " bytes (from " << in_bytes << ")\n";
    return 0;
}

}  // namespace fer
