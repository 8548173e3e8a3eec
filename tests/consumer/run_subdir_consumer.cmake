# Configures, builds and runs a tiny parent project that pulls facet in with add_subdirectory.
file(REMOVE_RECURSE ${WORK_DIR})
foreach(step IN ITEMS
    "${CMAKE_COMMAND};-S;${SOURCE_DIR}/tests/consumer/subdir_project;-B;${WORK_DIR};-DFACET_SOURCE_DIR=${SOURCE_DIR};-DCMAKE_CXX_COMPILER=${CXX}"
    "${CMAKE_COMMAND};--build;${WORK_DIR}"
    "${WORK_DIR}/consumer")
  execute_process(COMMAND ${step} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "add_subdirectory consumer step failed (${rc}): ${step}\n${out}\n${err}")
  endif()
endforeach()
message(STATUS "consumer output: ${out}")
