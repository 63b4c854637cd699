# edgefleet::options carries the language standard and warnings for our own code.
# Generated code (protobuf/gRPC) links edgefleet::base instead, which has no -Werror.
set(EDGEFLEET_SANITIZE "" CACHE STRING "Sanitizers to build with: address,undefined or thread")
if(EDGEFLEET_SANITIZE AND NOT EDGEFLEET_SANITIZE MATCHES "^(address|undefined|address,undefined|undefined,address|thread)$")
  message(FATAL_ERROR "EDGEFLEET_SANITIZE=${EDGEFLEET_SANITIZE}: use address,undefined or thread")
endif()

add_library(edgefleet_base INTERFACE)
add_library(edgefleet::base ALIAS edgefleet_base)
target_compile_features(edgefleet_base INTERFACE cxx_std_20)
if(EDGEFLEET_SANITIZE)
  target_compile_options(edgefleet_base INTERFACE -fsanitize=${EDGEFLEET_SANITIZE} -fno-omit-frame-pointer)
  target_link_options(edgefleet_base INTERFACE -fsanitize=${EDGEFLEET_SANITIZE})
  if(EDGEFLEET_SANITIZE MATCHES "undefined")
    # A UBSan finding stops the process (non-zero exit), so that a test cannot pass over one.
    target_compile_options(edgefleet_base INTERFACE -fno-sanitize-recover=undefined)
  endif()
endif()

add_library(edgefleet_options INTERFACE)
add_library(edgefleet::options ALIAS edgefleet_options)
target_link_libraries(edgefleet_options INTERFACE edgefleet_base)
target_compile_options(edgefleet_options INTERFACE -Wall -Wextra -Wpedantic -Werror)
# GCC 12 at -O3 (Release) reports -Wrestrict on plain std::string assignments and concatenations
# inlined from libstdc++ (GCC bugs 105329, 105651; fixed in 13): false positives that -Werror
# turned into a broken Release build.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(edgefleet_options INTERFACE -Wno-restrict)
endif()
