// The time range of a telemetry read (model stats, drift): `from`, `to` and `step` as operators
// type them, checked and aligned to the roll-ups' minutes. INVALID_ARGUMENT names the field.
#pragma once

#include <chrono>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/core/clock.h"

namespace edgefleet::server::telemetry {

// At most this many points per series (a day at one minute is 1,440).
inline constexpr int64_t kMaxSeriesPoints = 1500;

// "now", an RFC 3339 time, or an age ("-90s", "-15m", "-1h", "-7d"; common/core/time_args);
// `fallback` when empty. InvalidArgument naming `field` otherwise.
absl::StatusOr<Clock::TimePoint> ParseQueryTime(absl::string_view text, Clock::TimePoint now,
                                                absl::string_view fallback,
                                                absl::string_view field);
// "30s", "5m", "1h", "2d" (or plain seconds). InvalidArgument naming `field` otherwise.
absl::StatusOr<std::chrono::seconds> ParseQueryDuration(absl::string_view text,
                                                        absl::string_view field);

struct SeriesRange {
  Clock::TimePoint from;  // rounded down to a minute
  Clock::TimePoint to;
  std::chrono::seconds step;  // a whole number of minutes
  int64_t points = 0;         // ceil((to - from) / step), at least 1
};

struct SeriesDefaults {
  std::chrono::seconds range{3600};  // an empty `from` is `to` minus this
  // An empty `step`: 0 means one point over the whole range, else about this many points.
  int64_t points = 0;
};

// Checks and aligns a read's range: from < to, step a whole number of minutes, at most
// kMaxSeriesPoints points.
absl::StatusOr<SeriesRange> ResolveSeriesRange(absl::string_view from, absl::string_view to,
                                               absl::string_view step, Clock::TimePoint now,
                                               const SeriesDefaults& defaults);

}  // namespace edgefleet::server::telemetry
