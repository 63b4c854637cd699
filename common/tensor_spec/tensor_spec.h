// The "NAME:1x4" tensor-spec syntax shared by edgefleetctl flags and the REST upload route.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "edgefleet/v1/types.pb.h"

namespace edgefleet {

// "1x4" -> {1, 4}; with `allow_dynamic`, "-1" or "?" stand for a dynamic dimension (-1).
// Every other dimension must be a positive integer.
absl::StatusOr<std::vector<int64_t>> ParseTensorShape(std::string_view text, bool allow_dynamic);

// "NAME:1x4" or "NAME:-1x3x224x224". The name ends at the last ':' so names like "input:0" work
// as "input:0:1x4".
absl::StatusOr<v1::TensorSpec> ParseTensorSpec(std::string_view text);

}  // namespace edgefleet
