// Fuzzing the ONNX wire-format walkers the delta engine and the server run over pushed models:
// every range they report must lie inside the model.
#include <string>

#include "common/delta/internal/onnx_layout.h"
#include "common/delta/onnx_signature.h"
#include "tests/fuzz/fuzz_targets.h"
#include "tests/fuzz/input_targets.h"

namespace edgefleet::fuzz {

absl::Status RunOnnxWalker(std::string_view input) {
  auto layout = delta::internal::ParseOnnxLayout(input);
  if (layout.ok()) {
    uint64_t previous_end = 0;
    for (const delta::internal::TensorRange& range : *layout) {
      Require(range.offset <= input.size() && range.length <= input.size() - range.offset,
              "ParseOnnxLayout reported a tensor range outside the model");
      Require(range.offset >= previous_end, "ParseOnnxLayout's ranges are not in file order");
      previous_end = range.offset + range.length;
      const int width = delta::internal::WordWidthForDataType(range.data_type);
      Require(width == 1 || width == 2 || width == 4, "a word width other than 1, 2 or 4");
    }
  }
  auto signature = delta::ParseOnnxSignature(input);
  if (signature.ok()) {
    Require(!signature->outputs.empty(), "ParseOnnxSignature accepted a graph without outputs");
    for (const auto* list : {&signature->inputs, &signature->outputs}) {
      for (const delta::OnnxTensorInfo& info : *list) {
        Require(info.has_shape || info.dims.empty(), "dims reported for a tensor without shape");
      }
    }
  }
  // Both directions: the server estimates this for every pushed version against older ones.
  const double forward = delta::internal::AlignedTensorFraction(delta::fuzz::OldModel(), input);
  const double backward = delta::internal::AlignedTensorFraction(input, delta::fuzz::OldModel());
  Require(forward >= 0 && forward <= 1 && backward >= 0 && backward <= 1,
          "AlignedTensorFraction outside [0, 1]");
  if (!layout.ok()) return layout.status();
  return signature.status();
}

}  // namespace edgefleet::fuzz
