// Telemetry ingest: the windows devices upload, checked and stored exactly once each, and the
// daily partitions they land in, created ahead and dropped after the retention.
#pragma once

#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "common/core/clock.h"
#include "edgefleet/v1/device.pb.h"
#include "server/metrics/server_metrics.h"
#include "server/store/database.h"
#include "server/store/telemetry_repo.h"
#include "server/telemetry/window_check.h"

namespace edgefleet::server::telemetry {

// An agent's cumulative drop counts (UploadTelemetryRequest.dropped_windows) against what the
// server kept of its last report: the increments to count, and the record to keep. A report
// from another outbox stream, or lower than the last one, comes from an agent whose state was
// wiped: its counts started again from zero, so all of it is new.
struct DropUpdate {
  TelemetryStore::DropCounts increment;
  TelemetryStore::DropRecord record;
};
DropUpdate AdvanceDrops(const TelemetryStore::DropRecord& last, uint64_t stream_id,
                        const v1::DroppedTelemetryWindows& reported);

class TelemetryIngest {
 public:
  TelemetryIngest(Transactor& db, TelemetryStore& store, const Clock& clock, ServerMetrics& metrics,
                  WindowCheckPolicy policy = {});

  // Checks each window and stores the good ones in one transaction, together with the agent's
  // drop counts (AdvanceDrops). A window stored by an earlier delivery is accepted again without
  // a second row (the agent's retry after a lost answer); a refused one is listed with its
  // reason. Errors are for the whole upload: a request without a stream id, or the store
  // failing (then nothing was stored, and the agent sends it all again).
  absl::StatusOr<v1::UploadTelemetryResponse> Ingest(const std::string& device_id,
                                                     const v1::UploadTelemetryRequest& request);

  // Creates the partitions from the retention's first day to tomorrow and drops those past the
  // retention. Run at start and then on the server's maintenance tick; idempotent.
  absl::Status Maintain();

 private:
  // Makes sure the UTC day of `t` has its partition (cached: one store call per new day).
  absl::Status EnsureDay(Clock::TimePoint t);

  Transactor& db_;
  TelemetryStore& store_;
  const Clock& clock_;
  ServerMetrics& metrics_;
  const WindowCheckPolicy policy_;
  std::mutex mu_;
  std::set<int64_t> days_with_partition_;  // guarded by mu_: UTC day numbers since the epoch
  // (model, version) pairs known to exist, guarded by mu_: a published version is never deleted,
  // so a yes stays true and saves each upload a query (a no is asked again: it may be published).
  std::set<std::pair<std::string, std::string>> known_versions_;
};

}  // namespace edgefleet::server::telemetry
