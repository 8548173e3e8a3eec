# Builds and runs a tiny project that uses facet the way an embedder does, then checks it ran.
#   MODE=install:       install facet into a scratch prefix, then find_package(facet) from project/
#   MODE=subdirectory:  subdir_project/ pulls the checkout in with add_subdirectory
file(REMOVE_RECURSE ${WORK_DIR})
if(MODE STREQUAL "install")
  set(steps
    "${CMAKE_COMMAND}|-S|${SOURCE_DIR}|-B|${WORK_DIR}/facet-build|-DFACET_BUILD_TESTS=OFF|-DFACET_BUILD_EXAMPLES=OFF|-DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix|-DCMAKE_CXX_COMPILER=${CXX}"
    "${CMAKE_COMMAND}|--install|${WORK_DIR}/facet-build"
    "${CMAKE_COMMAND}|-S|${SOURCE_DIR}/tests/consumer/project|-B|${WORK_DIR}/consumer-build|-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix|-DCMAKE_CXX_COMPILER=${CXX}")
elseif(MODE STREQUAL "subdirectory")
  set(steps
    "${CMAKE_COMMAND}|-S|${SOURCE_DIR}/tests/consumer/subdir_project|-B|${WORK_DIR}/consumer-build|-DFACET_SOURCE_DIR=${SOURCE_DIR}|-DCMAKE_CXX_COMPILER=${CXX}")
else()
  message(FATAL_ERROR "run_consumer.cmake: MODE must be install or subdirectory, not '${MODE}'")
endif()
list(APPEND steps "${CMAKE_COMMAND}|--build|${WORK_DIR}/consumer-build" "${WORK_DIR}/consumer-build/consumer")
foreach(step IN LISTS steps)  # each step's arguments are separated by '|'
  string(REPLACE "|" ";" command "${step}")
  execute_process(COMMAND ${command} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer step failed (${rc}): ${step}\n${out}\n${err}")
  endif()
endforeach()
message(STATUS "consumer output: ${out}")
