// The BSDIFF40 header, parsed and bounds-checked, for Inspect and the decoder.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace edgefleet::delta::internal {

struct Bsdiff40Header {
  uint64_t ctrl_block_bytes = 0;
  uint64_t diff_block_bytes = 0;
  uint64_t new_size_bytes = 0;
};

// InvalidArgument for a short patch, bad magic, negative lengths or blocks past the end.
absl::StatusOr<Bsdiff40Header> ParseBsdiff40Header(std::string_view patch);

}  // namespace edgefleet::delta::internal
