#include "server/telemetry/window_check.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/core/names.h"
#include "common/telemetry/telemetry_codec.h"
#include "google/protobuf/util/time_util.h"

namespace edgefleet::server::telemetry {
namespace {

using google::protobuf::util::TimeUtil;

Clock::TimePoint ToTimePoint(const google::protobuf::Timestamp& t) {
  return Clock::TimePoint(std::chrono::duration_cast<Clock::TimePoint::duration>(
      std::chrono::nanoseconds(TimeUtil::TimestampToNanoseconds(t))));
}

// Within protobuf's Timestamp range (years 1..9999) with nanos that are nanos.
bool ValidTimestamp(const google::protobuf::Timestamp& t) {
  return t.seconds() >= TimeUtil::kTimestampMinSeconds &&
         t.seconds() <= TimeUtil::kTimestampMaxSeconds && t.nanos() >= 0 &&
         t.nanos() <= 999'999'999;
}

std::string Iso(Clock::TimePoint t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromChrono(t), absl::UTCTimeZone());
}

WindowVerdict Refuse(Refusal refusal, std::string reason) {
  return {.ok = false, .refusal = refusal, .reason = std::move(reason)};
}

WindowVerdict Malformed(absl::string_view what) {
  return Refuse(Refusal::kMalformed, std::string(what));
}

}  // namespace

const char* RefusalName(Refusal refusal) {
  switch (refusal) {
    case Refusal::kMalformed:
      return "malformed";
    case Refusal::kFuture:
      return "future";
    case Refusal::kExpired:
      return "expired";
    case Refusal::kUnknownModel:
      return "unknown_model";
  }
  return "unknown";
}

WindowVerdict CheckWindow(const v1::TelemetryWindow& w, Clock::TimePoint now,
                          const WindowCheckPolicy& policy) {
  if (w.sequence() == 0) return Malformed("sequence must be positive");
  if (auto s = ValidateModelName(w.model_name()); !s.ok()) return Malformed(s.message());
  if (auto s = ValidateVersion(w.version()); !s.ok()) return Malformed(s.message());
  if (!w.has_window_start() || !w.has_window_end()) {
    return Malformed("window_start and window_end are required");
  }
  if (!ValidTimestamp(w.window_start()) ||
      !ValidTimestamp(w.window_end())) {
    return Malformed("window_start or window_end is not a valid time");
  }
  const Clock::TimePoint start = ToTimePoint(w.window_start());
  const Clock::TimePoint end = ToTimePoint(w.window_end());
  if (end < start) return Malformed("window_end is before window_start");
  if (end - start > policy.max_length) {
    return Malformed(absl::StrCat("window is longer than ", policy.max_length.count(), " h"));
  }
  if (end > now + policy.clock_skew) {
    return Refuse(Refusal::kFuture, absl::StrCat("window ends in the future (", Iso(end),
                                                 "; the server's time is ", Iso(now), ")"));
  }
  if (start < now - policy.retention) {
    return Refuse(Refusal::kExpired, absl::StrCat("window starts at ", Iso(start), ", before the ",
                                                  policy.retention.count() / 24, "-day retention"));
  }
  uint64_t errors = 0;
  for (const auto& e : w.errors()) {
    if (e.reason() == v1::PREDICT_ERROR_REASON_UNSPECIFIED)
      return Malformed("an error count has no reason");
    if (errors + e.count() < errors) return Malformed("error counts overflow");
    errors += e.count();
  }
  if (errors > w.request_count()) return Malformed("more errors than requests");
  auto sketch = edgefleet::telemetry::FromProto(w.latency());
  if (!sketch.ok()) return Malformed(sketch.status().message());
  if (sketch->count() > w.request_count()) return Malformed("more latencies than requests");
  for (int i = 0; i < w.features_size(); ++i) {
    if (auto s = edgefleet::telemetry::CheckFeatureWindow(w.features(i)); !s.ok()) {
      return Malformed(absl::StrCat("feature ", i, ": ", s.message()));
    }
  }
  if (w.has_outputs()) {
    if (auto s = edgefleet::telemetry::CheckFeatureWindow(w.outputs()); !s.ok()) {
      return Malformed(absl::StrCat("outputs: ", s.message()));
    }
  }
  return {};
}

}  // namespace edgefleet::server::telemetry
