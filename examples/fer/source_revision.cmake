# Writes OUT, a header naming the source tree's git revision (`git describe --always --dirty`:
# the full commit hash, with "-dirty" when files differ from it; empty outside a git checkout).
# Run at every build by the target fer_source_revision; OUT is rewritten only when the revision
# changed, so nothing recompiles otherwise.
# Usage: cmake -DGIT=git -DSOURCE_DIR=DIR -DOUT=FILE -P source_revision.cmake
set(revision "")
if(GIT)
  execute_process(COMMAND ${GIT} -C ${SOURCE_DIR} describe --always --dirty --abbrev=40
                  OUTPUT_VARIABLE revision OUTPUT_STRIP_TRAILING_WHITESPACE
                  ERROR_QUIET RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    set(revision "")
  endif()
endif()
set(content "// Generated at build time by examples/fer/source_revision.cmake.\n#pragma once\n\nnamespace fer {\ninline constexpr const char* generated_source_revision = \"${revision}\";\n}  // namespace fer\n")
set(old "")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT old STREQUAL content)
  file(WRITE ${OUT} "${content}")
endif()
