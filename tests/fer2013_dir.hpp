// fer2013_dir.hpp — where the tests find FER-2013's image-folder release (train/<class>/*.jpg,
// test/<class>/*.jpg): the environment variable FER2013_DIR when it is set, else the CMake cache
// variable FACET_FER2013_DIR when it is not empty, else the repository's data/fer2013. The test
// cases that read it are in the doctest suite "fer2013"; tests/CMakeLists.txt runs them as ctests
// of their own, reported as skipped without the data.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace facet_test {

/// What a test case needing FER-2013 prints when it is absent; ctest's skip pattern is "SKIP:".
inline const std::string fer2013_missing =
    "SKIP: no FER-2013 folder release (train/, test/): set FER2013_DIR, or configure with "
    "-DFACET_FER2013_DIR=DIR, or link it as data/fer2013";

/// The FER-2013 folder to test on, or an empty path when the one configured has no train/.
inline std::filesystem::path fer2013_dir() {
    std::filesystem::path dir = FACET_FER2013_DIR;
    if (dir.empty()) dir = std::filesystem::path(FACET_SOURCE_DIR) / "data" / "fer2013";
    if (const char* env = std::getenv("FER2013_DIR"); env != nullptr && *env != '\0') dir = env;
    if (!std::filesystem::is_directory(dir / "train")) return {};
    return dir;
}

}  // namespace facet_test
