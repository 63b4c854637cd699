# Every dependency is a Debian 12 package; see scripts/install-deps.sh.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)
find_package(OpenSSL 3 REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(GTest REQUIRED)
pkg_check_modules(PQXX REQUIRED IMPORTED_TARGET libpqxx)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)

# Debian ships OpenCV's CMake package only with the full libopencv-dev; we need core + dnn.
find_path(OPENCV_INCLUDE_DIR opencv2/dnn.hpp PATH_SUFFIXES opencv4 REQUIRED)
find_library(OPENCV_CORE_LIBRARY opencv_core REQUIRED)
find_library(OPENCV_DNN_LIBRARY opencv_dnn REQUIRED)
add_library(edgefleet_opencv INTERFACE)
target_include_directories(edgefleet_opencv SYSTEM INTERFACE ${OPENCV_INCLUDE_DIR})
target_link_libraries(edgefleet_opencv INTERFACE ${OPENCV_DNN_LIBRARY} ${OPENCV_CORE_LIBRARY})

find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
find_program(EDGEFLEET_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH REQUIRED)
