// Payload codecs behind delta.h's dispatch. Container codecs (match-zstd, tensor) read and
// write only the payload that follows the edgefleet container header; the container code
// checks lengths and digests. bsdiff40 is a complete file format of its own.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/delta/delta.h"

namespace edgefleet::delta::internal {

absl::Status Bsdiff40Encode(std::string_view old_data, std::string_view new_data, ByteSink& patch,
                            const DiffOptions& options);
absl::Status Bsdiff40Decode(OldSource& old, std::string_view patch, ByteSink& out,
                            const ApplyOptions& options);

absl::Status MatchZstdEncode(std::string_view old_data, std::string_view new_data,
                             ByteSink& payload, const DiffOptions& options);
// Produces exactly `new_size` bytes or fails.
absl::Status MatchZstdDecode(OldSource& old, std::string_view payload, uint64_t new_size,
                             ByteSink& out);

// How the tensor codec would pair new bytes with old ones (alignment only: no transform is chosen,
// so it is cheap): regions of new with the old offset they are coded against (none for tensors
// coded without a reference); every other byte is residual.
struct TensorAlignment {
  struct Region {
    uint64_t new_offset = 0;
    uint64_t length = 0;
    std::optional<uint64_t> old_offset;
  };
  std::vector<Region> regions;  // sorted by new_offset, non-overlapping
  // Old byte ranges (offset, length), sorted, that seed the residual's zstd window: the residual
  // coder copies from them already.
  std::vector<std::pair<uint64_t, uint64_t>> prefix;
  // The residual is also coded by match-zstd against the whole old file (when that is smaller).
  bool residual_matched = false;
};
TensorAlignment AlignTensors(std::string_view old_data, std::string_view new_data);

absl::Status TensorEncode(std::string_view old_data, std::string_view new_data, ByteSink& payload,
                          const DiffOptions& options);
absl::Status TensorDecode(OldSource& old, std::string_view payload, uint64_t new_size,
                          ByteSink& out);
// The same over an old file in memory.
inline absl::Status TensorDecode(std::string_view old_data, std::string_view payload,
                                 uint64_t new_size, ByteSink& out) {
  MemoryOldSource old(old_data);
  return TensorDecode(old, payload, new_size, out);
}

}  // namespace edgefleet::delta::internal
