include(GoogleTest)

# edgefleet_add_test(NAME SOURCES a.cpp b.cpp LIBS edgefleet_x ... [LABELS integration])
# One GoogleTest binary per component; each TEST() is its own ctest case.
function(edgefleet_add_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE edgefleet::options ${T_LIBS} GTest::gmock GTest::gtest_main)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  target_compile_definitions(${name} PRIVATE
    EDGEFLEET_BIN_DIR="${CMAKE_BINARY_DIR}/bin"
    EDGEFLEET_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    EDGEFLEET_TEST_DATA_DIR="${CMAKE_BINARY_DIR}/testdata")
  set(labels ${T_LABELS})
  if(NOT labels)
    set(labels unit)
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${labels}" TIMEOUT 300)
endfunction()
