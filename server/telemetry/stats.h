// The telemetry queries of the admin API: a model version's time series from the roll-ups
// (requests, errors by reason, latency quantiles per point) and one device's latest windows.
// Validates the request's times, step and size (INVALID_ARGUMENT naming the field).
#pragma once

#include <chrono>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/core/clock.h"
#include "edgefleet/v1/admin.pb.h"
#include "server/store/database.h"
#include "server/store/rollup_repo.h"
#include "server/telemetry/query_range.h"
#include "server/telemetry/rollups.h"

namespace edgefleet::server::telemetry {

inline constexpr uint32_t kDefaultDeviceWindows = 100;
inline constexpr uint32_t kMaxDeviceWindows = 1000;

class TelemetryQueries {
 public:
  TelemetryQueries(Transactor& db, RollupStore& rollups, RollupRepo& windows, const Clock& clock)
      : db_(db), rollups_(rollups), windows_(windows), clock_(clock) {}

  absl::StatusOr<v1::ModelStatsResponse> ModelStats(const v1::ModelStatsRequest& request);
  absl::StatusOr<v1::DeviceTelemetryResponse> DeviceTelemetry(
      const v1::DeviceTelemetryRequest& request);

 private:
  Transactor& db_;
  RollupStore& rollups_;
  RollupRepo& windows_;
  const Clock& clock_;
};

}  // namespace edgefleet::server::telemetry
