# Installs facet into a scratch prefix, then configures, builds and runs a tiny project that uses
# it through find_package(facet) — what a user who embeds the library does.
file(REMOVE_RECURSE ${WORK_DIR})
foreach(step IN ITEMS
    "${CMAKE_COMMAND};-S;${SOURCE_DIR};-B;${WORK_DIR}/facet-build;-DFACET_BUILD_TESTS=OFF;-DFACET_BUILD_EXAMPLES=OFF;-DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix;-DCMAKE_CXX_COMPILER=${CXX}"
    "${CMAKE_COMMAND};--install;${WORK_DIR}/facet-build"
    "${CMAKE_COMMAND};-S;${SOURCE_DIR}/tests/consumer/project;-B;${WORK_DIR}/consumer-build;-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix;-DCMAKE_CXX_COMPILER=${CXX}"
    "${CMAKE_COMMAND};--build;${WORK_DIR}/consumer-build"
    "${WORK_DIR}/consumer-build/consumer")
  execute_process(COMMAND ${step} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer step failed (${rc}): ${step}\n${out}\n${err}")
  endif()
endforeach()
message(STATUS "consumer output: ${out}")
