// Colin Percival's bsdiff matching over a libdivsufsort suffix array, shared by the bsdiff40 and
// match-zstd encoders so both find exactly the same control steps.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace edgefleet::delta::internal {

// One bsdiff control step: `diff_len` bytes of new are stored as (new - old) byte differences
// starting at old_pos, then `extra_len` bytes of new are stored literally, then the old cursor
// (old_pos + diff_len) moves by `seek`. The new cursor is implicit: steps cover new in order.
struct MatchStep {
  uint64_t diff_len = 0;
  uint64_t extra_len = 0;
  int64_t seek = 0;
};

// Runs the matcher and returns the steps in order. Their diff runs always lie inside old and
// their seeks land in [0, old.size()], as Debian's bsdiff 4.3 produces them (same algorithm, so
// the same steps). Memory: a suffix array of old (4 or 8 bytes per byte) plus the steps.
// DeadlineExceeded once `deadline` passes (checked every few thousand positions).
absl::StatusOr<std::vector<MatchStep>> ComputeMatchSteps(
    std::string_view old_data, std::string_view new_data,
    std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max());

// Walks `steps` and hands the encoder each stream's bytes in bounded chunks: the byte
// differences of every diff run (in order) to `diff`, the literal runs to `extra`.
absl::Status ForEachDiffChunk(std::string_view old_data, std::string_view new_data,
                              const std::vector<MatchStep>& steps,
                              absl::FunctionRef<absl::Status(std::string_view)> diff);
absl::Status ForEachExtraChunk(std::string_view new_data, const std::vector<MatchStep>& steps,
                               absl::FunctionRef<absl::Status(std::string_view)> extra);

// Total bytes ForEachDiffChunk / ForEachExtraChunk will produce.
uint64_t TotalDiffBytes(const std::vector<MatchStep>& steps);
uint64_t TotalExtraBytes(const std::vector<MatchStep>& steps);

}  // namespace edgefleet::delta::internal
