// fer/default_model.hpp — the model `fer predict`, `fer video` and `fer eval` use when --model is
// not given: the user's own runs/default/model.facet when there is one (what `fer train` writes by
// default), else the model that ships with the project, models/fer.facet, looked for in the
// current folder, then two folders above the executable (the repository of build/release/fer),
// then in ../share/facet beside the executable's folder (an installed bin/fer).
#pragma once

#include <filesystem>
#include <iostream>
#include <string>
#include <system_error>
#include <vector>

#include <facet/core/error.hpp>

#include "cli.hpp"

namespace fer {

namespace fs = std::filesystem;

/// What `fer train` writes without --out, relative to the current folder.
inline const char* const own_model_path = "runs/default/model.facet";
/// The model the project ships, relative to the repository's root.
inline const char* const shipped_model_path = "models/fer.facet";

/// The places searched for a file the project ships (`relative` to the repository's root), in
/// order.
inline std::vector<fs::path> shipped_file_candidates(const fs::path& relative) {
    std::vector<fs::path> places = {relative};
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec && exe.has_parent_path()) {
        const fs::path bin = exe.parent_path();
        places.push_back(bin.parent_path().parent_path() / relative);
        places.push_back(bin.parent_path() / "share" / "facet" / relative);
    }
    return places;
}

/// The places searched for the shipped model, in order.
inline std::vector<fs::path> shipped_model_candidates() {
    return shipped_file_candidates(shipped_model_path);
}

/// The model to use without --model: runs/default/model.facet if it exists, else the first
/// shipped model found; throws facet::Error saying how to get one when there is neither.
inline std::string default_model() {
    std::error_code ec;
    if (fs::is_regular_file(own_model_path, ec)) return own_model_path;
    std::string searched = own_model_path;
    for (const fs::path& place : shipped_model_candidates()) {
        if (fs::is_regular_file(place, ec)) return place.lexically_normal().string();
        searched += ", " + place.lexically_normal().string();
    }
    throw facet::Error(facet::detail::concat("no model given and none found (searched ", searched,
                                             "): train one with `fer train` (it writes ",
                                             own_model_path, "), or pass --model FILE"));
}

/// The --help text of the --model option of the commands that use a trained model.
inline std::string model_option_help() {
    return std::string("model file written by fer train (default: ") + own_model_path +
           " if it exists, else the shipped " + shipped_model_path + ")";
}

/// The model file a command runs with: --model when given, else default_model(), which is then
/// named on stderr (once per process) so the user knows which one answered.
inline std::string model_to_use(const Cli& cli, const std::string& command) {
    if (cli.has("model")) return cli.str("model");
    const std::string path = default_model();
    static bool told = false;
    if (!told) std::cerr << "fer " << command << ": using the model " << path << "\n";
    told = true;
    return path;
}

}  // namespace fer
