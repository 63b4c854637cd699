// Telemetry roll-ups: the windows' summaries merged by addition per (model, version, hw,
// reference profile, minute), and the read interface the drift and rollout-gate code call to
// get the merged summaries of a time range (RollupStore; DatabaseRollupStore reads the
// PostgreSQL roll-up rows, tests fake it).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/core/clock.h"
#include "common/telemetry/latency_sketch.h"
#include "edgefleet/v1/telemetry.pb.h"
#include "server/store/database.h"
#include "server/store/rollup_repo.h"

namespace edgefleet::server::telemetry {

// Roll-ups are kept per minute of window_start: a window counts in the minute it starts in
// (a late window in its old minute), and a query's range and step are whole minutes.
inline constexpr std::chrono::seconds kRollupBucket{60};

// The summaries of many windows of one (model, version[, hw]) and reference profile, merged.
struct MergedTelemetry {
  uint64_t windows = 0;
  uint64_t requests = 0;
  std::map<v1::PredictErrorReason, uint64_t> errors;
  edgefleet::telemetry::LatencySketch latency;  // of answered requests
  // Raw bytes as in TelemetryWindow.profile_sha256 (the version's ReferenceProfile), "" when the
  // windows carried none. Histograms binned by different profiles are never added together.
  std::string profile_sha256;
  // features[i]: feature i's bins added, nan counts added, min/max over the windows, sums added.
  std::vector<v1::FeatureWindow> features;
  v1::FeatureWindow outputs;
  // Windows whose histograms did not line up with the others' (another feature or bin count
  // under the same profile) or whose latency sketch did not decode: their counts are in, those
  // parts are not.
  uint64_t windows_partly_merged = 0;

  uint64_t error_count() const;
};

// Adds one window's summaries (`windows` is how many windows it stands for: 1 for a raw window,
// more for a stored roll-up). Its profile must be into's (or into empty: it takes the window's).
void AddWindow(MergedTelemetry& into, const v1::TelemetryWindow& window, uint64_t windows = 1);
// Adds `from` (of the same profile) to `into`.
void Merge(MergedTelemetry& into, const MergedTelemetry& from);
// Adds one histogram's parts to another's; false (and nothing changes) when the bins differ in
// number. An empty `into` takes `from`'s shape.
bool MergeFeatureWindow(v1::FeatureWindow& into, const v1::FeatureWindow& from);
// The stored form of a merged summary: a TelemetryWindow with the counts, errors, sketch,
// histograms and profile (no sequence, model or time: the roll-up row has those).
v1::TelemetryWindow ToWindow(const MergedTelemetry& merged);
// Counts, errors and latency of several profiles' merges together; features and outputs only
// when there is a single profile (histograms of different profiles do not add).
MergedTelemetry MergeProfiles(const std::vector<MergedTelemetry>& by_profile);

// One point of a series: the windows starting in [start, start + step), per profile.
struct TelemetryPoint {
  Clock::TimePoint start;
  std::vector<MergedTelemetry> by_profile;  // empty when no window started in the point
};

class RollupStore {
 public:
  virtual ~RollupStore() = default;

  // The merged summaries of the windows of (model, version) — of devices with hw label `hw`
  // when set ("" for devices without one), of every hw otherwise — starting in [from, to), one
  // entry per profile_sha256 seen. `from` is rounded down and `to` up to whole minutes. Windows
  // rolled up so far only: a window is in the roll-ups a roll-up tick after it is stored.
  virtual absl::StatusOr<std::vector<MergedTelemetry>> MergeRange(Tx& tx, const std::string& model,
                                                                  const std::string& version,
                                                                  std::optional<std::string> hw,
                                                                  Clock::TimePoint from,
                                                                  Clock::TimePoint to) = 0;
  // The same, as consecutive points of `step` (a whole number of minutes) from `from` (rounded
  // down to a minute) until `to`: every point present, empty ones too.
  virtual absl::StatusOr<std::vector<TelemetryPoint>> MergeSeries(
      Tx& tx, const std::string& model, const std::string& version, std::optional<std::string> hw,
      Clock::TimePoint from, Clock::TimePoint to, std::chrono::seconds step) = 0;
  // Distinct devices per (model, version, hw) whose windows start at or after `since`.
  virtual absl::StatusOr<std::vector<DevicesReporting>> CountDevicesReporting(
      Tx& tx, Clock::TimePoint since) = 0;
};

// The RollupStore over the PostgreSQL roll-up rows.
class DatabaseRollupStore final : public RollupStore {
 public:
  explicit DatabaseRollupStore(RollupRepo& repo) : repo_(repo) {}

  absl::StatusOr<std::vector<MergedTelemetry>> MergeRange(Tx& tx, const std::string& model,
                                                          const std::string& version,
                                                          std::optional<std::string> hw,
                                                          Clock::TimePoint from,
                                                          Clock::TimePoint to) override;
  absl::StatusOr<std::vector<TelemetryPoint>> MergeSeries(
      Tx& tx, const std::string& model, const std::string& version, std::optional<std::string> hw,
      Clock::TimePoint from, Clock::TimePoint to, std::chrono::seconds step) override;
  absl::StatusOr<std::vector<DevicesReporting>> CountDevicesReporting(
      Tx& tx, Clock::TimePoint since) override;

 private:
  RollupRepo& repo_;
};

// Start of the roll-up bucket holding `unix_seconds` (floor to the minute, also before 1970).
int64_t BucketStart(int64_t unix_seconds);

}  // namespace edgefleet::server::telemetry
