// The roll-up job: on a short tick, claims the telemetry windows stored since the last run (any
// replica may run it; one at a time), merges them per (model, version, hw, profile, minute),
// appends the partial roll-ups and moves the watermark in one transaction, then adds what it
// merged to this replica's Prometheus counters. It also keeps the cached devices-reporting
// gauge and deletes roll-ups past the retention.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <stop_token>
#include <thread>
#include <tuple>

#include "absl/status/statusor.h"
#include "common/core/clock.h"
#include "server/metrics/server_metrics.h"
#include "server/store/rollup_repo.h"
#include "server/telemetry/rollups.h"

namespace edgefleet::server::telemetry {

struct RollupJobOptions {
  std::chrono::seconds interval{10};
  // Windows merged per transaction; a backlog takes several runs back to back.
  size_t max_windows_per_run = 20'000;
  // Devices count as reporting when a window of theirs started this recently.
  std::chrono::minutes devices_reporting_window{5};
  // How often the devices-reporting count is read again (it is cached in between).
  std::chrono::seconds devices_reporting_refresh{30};
  std::chrono::hours retention{30 * 24};
  // A (model, version, hw) whose windows stopped coming (a retired version, a renamed hw label)
  // loses its inference series after this long: otherwise every version ever seen stays in
  // every scrape until the server restarts. Longer than any rate() window a dashboard uses.
  std::chrono::hours idle_series_ttl{1};
};

struct RollupRunResult {
  bool claimed = false;  // false: another replica held the roll-up lock
  size_t windows = 0;    // windows merged
  size_t rows = 0;       // roll-up rows appended
};

class RollupJob {
 public:
  RollupJob(Transactor& db, RollupRepo& repo, RollupStore& store, const Clock& clock,
            ServerMetrics& metrics, RollupJobOptions options = {});
  ~RollupJob();

  // Runs on a background thread every interval until Stop (also called by the destructor).
  void Start();
  void Stop();

  // One run in one transaction: nothing of it is kept unless it commits (the metrics are added
  // only after the commit). Then drops the series of groups idle for idle_series_ttl.
  absl::StatusOr<RollupRunResult> RunOnce();
  // Runs until a run takes fewer than max_windows_per_run windows (a backlog drained).
  absl::StatusOr<RollupRunResult> RunUntilCaughtUp();
  // Reads the devices-reporting counts now and sets the gauge: 0 for groups no longer seen,
  // and no series once their inference series are dropped (see idle_series_ttl).
  absl::Status RefreshDevicesReporting();
  // Deletes roll-ups of buckets past the retention.
  absl::Status Maintain();

 private:
  using Group = std::tuple<std::string, std::string, std::string>;  // model, version, hw
  void Loop(std::stop_token stop);
  void Export(const std::map<Group, MergedTelemetry>& by_group, size_t windows);
  // Drops the inference series of groups exported last before now - idle_series_ttl.
  void DropIdleSeries();
  static metrics::Labels LabelsOf(const Group& group);

  Transactor& db_;
  RollupRepo& repo_;
  RollupStore& store_;
  const Clock& clock_;
  ServerMetrics& metrics_;
  const RollupJobOptions options_;
  std::mutex mu_;
  std::set<Group> reporting_groups_;  // guarded by mu_: groups the gauge was set for
  // Guarded by mu_: groups with inference series, when they last grew, and their error reasons.
  struct ExportedSeries {
    Clock::TimePoint last_export{};
    std::set<std::string> error_reasons;
  };
  std::map<Group, ExportedSeries> exported_;
  Clock::TimePoint devices_refreshed_{};  // guarded by mu_
  std::jthread thread_;
};

// The `reason` label of edgefleet_inference_errors_total: "invalid_input", "inference_failed",
// "non_finite_output", "overloaded", "unspecified".
std::string ErrorReasonLabel(v1::PredictErrorReason reason);

}  // namespace edgefleet::server::telemetry
