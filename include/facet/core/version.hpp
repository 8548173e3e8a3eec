// facet/core/version.hpp — the library's version, as CMake's project() declares it (a test
// compares the two); model files record it in their provenance (model/provenance.hpp).
// Read next: core/error.hpp.
#pragma once

namespace facet {

inline constexpr int version_major = 0;
inline constexpr int version_minor = 1;
inline constexpr int version_patch = 0;
/// "major.minor.patch".
inline constexpr const char* version_string = "0.1.0";

}  // namespace facet
