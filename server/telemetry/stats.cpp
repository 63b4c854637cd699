#include "server/telemetry/stats.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/core/names.h"

namespace edgefleet::server::telemetry {
namespace {

constexpr int64_t kDefaultPoints = 60;

absl::Status BadField(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

google::protobuf::Timestamp ToTimestamp(int64_t unix_seconds) {
  google::protobuf::Timestamp t;
  t.set_seconds(unix_seconds);
  return t;
}

// Counts, errors and quantiles of `m` into any message with the stats fields.
template <typename Point>
void FillCounts(const MergedTelemetry& m, Point* p) {
  p->set_requests(m.requests);
  p->set_errors(m.error_count());
  for (const auto& [reason, count] : m.errors) {
    if (count == 0) continue;
    v1::PredictErrorCount* e = p->add_errors_by_reason();
    e->set_reason(reason);
    e->set_count(count);
  }
  if (m.latency.empty()) return;
  p->set_latency_p50_seconds(*m.latency.Quantile(0.50));
  p->set_latency_p95_seconds(*m.latency.Quantile(0.95));
  p->set_latency_p99_seconds(*m.latency.Quantile(0.99));
}

void FillPoint(const MergedTelemetry& m, int64_t start_unix, v1::ModelStatsPoint* p) {
  *p->mutable_start() = ToTimestamp(start_unix);
  p->set_windows(m.windows);
  FillCounts(m, p);
}

}  // namespace

absl::StatusOr<v1::ModelStatsResponse> TelemetryQueries::ModelStats(
    const v1::ModelStatsRequest& request) {
  if (auto s = ValidateModelName(request.model_name()); !s.ok()) return s;
  if (auto s = ValidateVersion(request.version()); !s.ok()) return s;
  auto range =
      ResolveSeriesRange(request.from(), request.to(), request.step(), clock_.Now(),
                         SeriesDefaults{.range = std::chrono::hours(1), .points = kDefaultPoints});
  if (!range.ok()) return range.status();
  const int64_t from_unix = ToUnixSeconds(range->from);
  const int64_t to_unix = ToUnixSeconds(range->to);
  const int64_t step = range->step.count();
  std::optional<std::string> hw;
  if (request.has_hw()) hw = request.hw();
  auto series = db_.Transact("read model stats", [&](Tx& tx) {
    return rollups_.MergeSeries(tx, request.model_name(), request.version(), hw, range->from,
                                range->to, range->step);
  });
  if (!series.ok()) return series.status();
  v1::ModelStatsResponse response;
  response.set_model_name(request.model_name());
  response.set_version(request.version());
  if (hw.has_value()) response.set_hw(*hw);
  *response.mutable_from() = ToTimestamp(from_unix);
  *response.mutable_to() = ToTimestamp(to_unix);
  response.set_step_seconds(static_cast<uint64_t>(step));
  std::vector<MergedTelemetry> all;
  for (const TelemetryPoint& point : *series) {
    MergedTelemetry merged = MergeProfiles(point.by_profile);
    FillPoint(merged, ToUnixSeconds(point.start), response.add_points());
    all.push_back(std::move(merged));
  }
  FillPoint(MergeProfiles(all), from_unix, response.mutable_total());
  return response;
}

absl::StatusOr<v1::DeviceTelemetryResponse> TelemetryQueries::DeviceTelemetry(
    const v1::DeviceTelemetryRequest& request) {
  if (request.device_id().empty()) return BadField("device_id", "is required");
  if (!request.model().empty()) {
    if (auto s = ValidateModelName(request.model()); !s.ok()) return s;
  }
  const Clock::TimePoint now = clock_.Now();
  auto from = ParseQueryTime(request.from(), now, "-1h", "from");
  if (!from.ok()) return from.status();
  auto to = ParseQueryTime(request.to(), now, "now", "to");
  if (!to.ok()) return to.status();
  if (*to <= *from) return BadField("from", "must be before to");
  if (request.limit() > kMaxDeviceWindows) {
    return BadField("limit", absl::StrCat("at most ", kMaxDeviceWindows));
  }
  const uint32_t limit = request.limit() == 0 ? kDefaultDeviceWindows : request.limit();
  std::optional<std::string> model;
  if (!request.model().empty()) model = request.model();
  auto rows = db_.Transact("read device telemetry", [&](Tx& tx) {
    return windows_.ReadDeviceWindows(tx, request.device_id(), model, ToUnixSeconds(*from),
                                      ToUnixSeconds(*to), limit);
  });
  if (!rows.ok()) return rows.status();
  v1::DeviceTelemetryResponse response;
  response.set_device_id(request.device_id());
  for (const DeviceWindowRow& row : *rows) {
    v1::TelemetryWindow window;
    if (!window.ParseFromString(row.summary)) {
      return absl::DataLossError(
          absl::StrCat("a stored window of device ", request.device_id(), " does not parse"));
    }
    MergedTelemetry merged;
    AddWindow(merged, window);
    v1::DeviceTelemetryWindow* w = response.add_windows();
    w->set_model_name(row.model_name);
    w->set_version(row.version);
    *w->mutable_window_start() = ToTimestamp(row.window_start_unix);
    *w->mutable_window_end() = ToTimestamp(row.window_end_unix);
    *w->mutable_received_at() = ToTimestamp(row.received_at_unix);
    FillCounts(merged, w);
  }
  return response;
}

}  // namespace edgefleet::server::telemetry
