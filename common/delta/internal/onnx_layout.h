// Finds where an ONNX model keeps its initializer tensors' bytes, so the tensor codec can align
// old and new weights by name; a protobuf wire-format walker over hostile input.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace edgefleet::delta::internal {

// One contiguous run of tensor element bytes inside the model file.
struct TensorRange {
  std::string name;           // TensorProto.name (may be empty)
  int32_t data_type = 0;      // TensorProto.DataType (1 = FLOAT, 10 = FLOAT16, 16 = BFLOAT16, ...)
  std::vector<int64_t> dims;  // TensorProto.dims
  int field = 0;        // where the bytes live: 9 = raw_data, 4 = float_data, 10 = double_data
  uint64_t offset = 0;  // into the model file
  uint64_t length = 0;  // bytes
};

// Walks ModelProto.graph (7) -> GraphProto.initializer (5) -> TensorProto and returns, in file
// order, the byte ranges of raw_data (9) and packed float_data (4) / double_data (10). Tensors in
// nested subgraphs, sparse initializers and external data are not reported (their bytes simply
// stay "structure"). Fails with InvalidArgument when `model` is not a well-formed ModelProto with
// a graph; never reads outside `model`.
absl::StatusOr<std::vector<TensorRange>> ParseOnnxLayout(std::string_view model);

// Bytes per element that the codec should treat as one word for an ONNX data type: 4 for
// FLOAT/INT32/UINT32 (and 8-byte types, split into 4-byte words), 2 for FLOAT16/BFLOAT16/INT16/
// UINT16, 1 otherwise.
int WordWidthForDataType(int32_t data_type);

// The share (0..1) of `new_model`'s bytes that are tensors with a same-named, same-sized tensor
// in `old_model`: where aligned coding is at its best. 0 when either is not ONNX.
double AlignedTensorFraction(std::string_view old_model, std::string_view new_model);

}  // namespace edgefleet::delta::internal
