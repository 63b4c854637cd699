// The capture request a rollout or deployment carries (edgefleet.v1.CaptureSpec): its validation,
// shared by the server (which refuses a bad one) and the CLI, and its upload window, which the
// agent reads.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "edgefleet/v1/capture.pb.h"

namespace edgefleet::capture {

inline constexpr uint64_t kMinBytesPerDay = 1024;
inline constexpr uint64_t kMaxBytesPerDay = uint64_t{1} << 30;

// InvalidArgument naming the field ("capture.sample_rate 1.5 is not in (0, 1]") when an enabled
// spec is malformed: a rate outside its range, no trigger, a cap outside [1 KiB, 1 GiB], an hour
// outside 0-23 (start) or 0-24 (end). A disabled spec must be empty apart from `enabled`.
absl::Status ValidateCaptureSpec(const v1::CaptureSpec& spec);

// Whether `local_hour` (0-23) lies in the window [start, end) of the local day, wrapping
// midnight when start > end; start == end (mod 24) is the whole day.
bool InUploadWindow(uint32_t start_hour, uint32_t end_hour, int local_hour);

}  // namespace edgefleet::capture
