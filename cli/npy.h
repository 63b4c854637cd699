// Reading NumPy .npy files (format versions 1-3): the reference samples operators push with a
// model version. Only what a sample needs: C-order arrays of float32/float64 or integers,
// converted to float32 row-major.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace edgefleet::cli {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;  // row-major, product(shape) values
  std::string dtype;        // as the header states it, e.g. "<f4"
};

// InvalidArgument naming what is wrong: not a .npy file, a Fortran-order array, a dtype other
// than little-endian float32/float64/int8-64/uint8-64, or data that does not match the shape.
absl::StatusOr<NpyArray> ParseNpy(std::string_view bytes);
// ParseNpy of a file's bytes; NotFound when it cannot be read.
absl::StatusOr<NpyArray> ReadNpyFile(const std::string& path);

}  // namespace edgefleet::cli
