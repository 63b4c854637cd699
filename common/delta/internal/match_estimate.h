// A cheap estimate, made after the tensor codec, of whether byte matching (match-zstd, bsdiff40)
// can still make a smaller patch: `auto` skips the matchers when it cannot.
#pragma once

#include <cstdint>
#include <string_view>

namespace edgefleet::delta::internal {

struct MatchingEstimate {
  uint64_t sampled = 0;  // windows of new looked at
  // Sampled windows the tensor codec pays for: not equal to the old bytes it aligns them with,
  // and not in a residual it already matches against old.
  uint64_t costly = 0;
  uint64_t looked_up = 0;  // costly windows looked up in old (a uniform subset of them)
  // Looked-up windows that occur verbatim somewhere in old, where a matcher would copy them.
  uint64_t found = 0;
  bool can_pay = true;
};

// Samples windows of `new_data` (a fixed seed: the same inputs give the same answer), sorts them
// as above using the tensor codec's alignment, and looks the costly ones up in one pass over
// `old_data`. `can_pay` is false when fewer than 1 in 200 looked-up windows are found in old
// (the scan stops once that many are: `found` is then a lower bound). When the tensor codec aligns
// nothing (not ONNX, different lengths) nothing is sampled and `can_pay` stays true.
MatchingEstimate EstimateMatching(std::string_view old_data, std::string_view new_data);

}  // namespace edgefleet::delta::internal
