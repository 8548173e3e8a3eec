// source_revision.hpp — the git revision fer was built from, which fer train records in a model's
// provenance (note "git_commit"). The build writes it (examples/fer/source_revision.cmake); a
// program built without that step reports none.
#pragma once

#include <string>

#if __has_include("fer_source_revision.hpp")
#include "fer_source_revision.hpp"
#define FER_HAS_SOURCE_REVISION 1
#endif

namespace fer {

/// The full commit hash fer was built from, "-dirty" appended when the tree had changes; empty
/// when unknown (not built from a git checkout, or without the build step).
inline std::string source_revision() {
#ifdef FER_HAS_SOURCE_REVISION
    return generated_source_revision;
#else
    return "";
#endif
}

}  // namespace fer
