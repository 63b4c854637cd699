// What an ONNX model says it takes and gives: the names and shapes of its graph's inputs and
// outputs, read from the protobuf wire format without the onnx library (the server checks pushed
// models with it; it does not link an inference engine).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace edgefleet::delta {

struct OnnxTensorInfo {
  std::string name;
  // False when the graph states no shape; then `dims` is empty.
  bool has_shape = false;
  // -1 for a dimension the graph leaves open (dim_param or unset).
  std::vector<int64_t> dims;
};

struct OnnxSignature {
  int64_t ir_version = 0;
  // Graph inputs that are not initializers (older IR versions list weights as inputs too).
  std::vector<OnnxTensorInfo> inputs;
  std::vector<OnnxTensorInfo> outputs;
};

// InvalidArgument ("not an ONNX model: ...") unless `model` is a well-formed ModelProto with an
// ir_version and a graph that has at least one output and only tensor-typed inputs and outputs.
// Never reads outside `model`.
absl::StatusOr<OnnxSignature> ParseOnnxSignature(std::string_view model);

}  // namespace edgefleet::delta
