#include "server/telemetry/query_range.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/core/time_args.h"

namespace edgefleet::server::telemetry {

namespace {

constexpr int64_t kMinute = 60;

absl::Status BadField(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

int64_t FloorToMinute(int64_t unix_seconds) {
  int64_t r = unix_seconds % kMinute;
  if (r < 0) r += kMinute;
  return unix_seconds - r;
}

}  // namespace

absl::StatusOr<Clock::TimePoint> ParseQueryTime(absl::string_view text, Clock::TimePoint now,
                                                absl::string_view fallback,
                                                absl::string_view field) {
  if (text.empty()) text = fallback;
  auto t = ParseTimeArg(std::string_view(text.data(), text.size()), now);
  if (!t.ok()) return BadField(field, t.status().message());
  return *t;
}

absl::StatusOr<std::chrono::seconds> ParseQueryDuration(absl::string_view text,
                                                        absl::string_view field) {
  auto d = ParseDurationSeconds(std::string_view(text.data(), text.size()));
  if (!d.ok()) return BadField(field, d.status().message());
  return std::chrono::seconds(*d);
}

absl::StatusOr<SeriesRange> ResolveSeriesRange(absl::string_view from_text,
                                               absl::string_view to_text,
                                               absl::string_view step_text, Clock::TimePoint now,
                                               const SeriesDefaults& defaults) {
  auto to = ParseQueryTime(to_text, now, "now", "to");
  if (!to.ok()) return to.status();
  Clock::TimePoint from_default = *to - defaults.range;
  auto from = from_text.empty() ? absl::StatusOr<Clock::TimePoint>(from_default)
                                : ParseQueryTime(from_text, now, "", "from");
  if (!from.ok()) return from.status();
  const int64_t from_unix = FloorToMinute(ToUnixSeconds(*from));
  const int64_t to_unix = ToUnixSeconds(*to);
  if (to_unix <= from_unix) {
    return BadField("from", "must be before to (after rounding down to the minute)");
  }
  const int64_t range = to_unix - from_unix;
  int64_t step = 0;
  if (step_text.empty()) {
    const int64_t per_point =
        defaults.points > 0 ? (range + defaults.points - 1) / defaults.points : range;
    step = std::max<int64_t>(1, (per_point + kMinute - 1) / kMinute) * kMinute;
  } else {
    auto parsed = ParseQueryDuration(step_text, "step");
    if (!parsed.ok()) return parsed.status();
    step = parsed->count();
    if (step < kMinute || step % kMinute != 0) {
      return BadField("step", absl::StrCat("must be a whole number of minutes (the roll-ups' "
                                           "minute), not ",
                                           step_text));
    }
  }
  const int64_t points = (range + step - 1) / step;
  if (points > kMaxSeriesPoints) {
    return BadField("step",
                    absl::StrCat(step_text.empty() ? "(default)" : step_text, " makes ", points,
                                 " points over the range; at most ", kMaxSeriesPoints));
  }
  return SeriesRange{FromUnixSeconds(from_unix), *to, std::chrono::seconds(step), points};
}

}  // namespace edgefleet::server::telemetry
