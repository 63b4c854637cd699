// Payload codecs behind delta.h's dispatch. Container codecs (match-zstd, tensor) read and
// write only the payload that follows the edgefleet container header; the container code
// checks lengths and digests. bsdiff40 is a complete file format of its own.
#pragma once

#include <cstdint>
#include <string_view>

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
