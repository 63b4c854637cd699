// Parsers for the small value syntaxes edgefleetctl accepts on its command line (tensor specs
// come from common/tensor_spec): tensor values ("input=1x4:0.1,0.2,0.3,0.4", "image=@x.npy"),
// durations ("30m") and digests.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/core/labels.h"
#include "common/core/time_args.h"
#include "common/tensor_spec/tensor_spec.h"  // ParseTensorSpec, shared with the REST gateway
#include "edgefleet/v1/types.pb.h"

namespace edgefleet::cli {

// "NAME=1x4:0.1,0.2,0.3,0.4": every dimension positive and the value count equal to the product
// of the shape. "NAME=@FILE.npy": the shape and values of a NumPy array (cli/npy.h: float or
// integer dtypes, as float32); NotFound when FILE cannot be read, else InvalidArgument.
absl::StatusOr<v1::Tensor> ParseTensorValue(std::string_view text);

// Durations ("30m") come from common/core/time_args.
using ::edgefleet::ParseDurationSeconds;

// 64 hex digits -> 32 raw bytes.
absl::StatusOr<std::string> ParseSha256Hex(std::string_view text);

// Merges "k=v" (or "k=v,k2=v2") items into one label map; later keys override earlier ones.
absl::StatusOr<Labels> ParseLabelItems(const std::vector<std::string>& items);

// "1x4", "-1x3" for shapes in tables; "?" for a dynamic dimension.
std::string FormatShape(const google::protobuf::RepeatedField<int64_t>& shape);

}  // namespace edgefleet::cli
