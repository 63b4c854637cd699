// The time syntaxes operators type, shared by edgefleetctl and the REST/gRPC telemetry reads:
// durations ("90", "90s", "30m", "24h", "7d") and points in time (RFC 3339, "now", or an age
// such as "-2h").
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/core/clock.h"

namespace edgefleet {

// "90" (seconds), "90s", "30m", "24h", "7d"; must be positive.
absl::StatusOr<uint64_t> ParseDurationSeconds(std::string_view text);

// RFC 3339 ("2026-12-01T10:00:00Z", an offset or fractional seconds allowed), "now", or an age
// before `now` with its unit: "-90m" (the sign is optional: "90m" is the same age; "-90" is
// refused).
absl::StatusOr<Clock::TimePoint> ParseTimeArg(std::string_view text, Clock::TimePoint now);

}  // namespace edgefleet
