// RollupRepo keeps the telemetry roll-up rows (migration 0011): it claims the windows stored
// since the last run under the roll-up watermark, appends partial roll-up rows together with the
// next watermark, and reads roll-up rows and raw windows back. Rows carry the summaries as
// serialized edgefleet.v1.TelemetryWindow bytes; merging them is server/telemetry's job.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/store/database.h"

namespace edgefleet::server {

// A stored window as the roll-up job needs it.
struct NewWindow {
  std::string model_name;
  std::string version;
  std::string hw;
  int64_t window_start_unix = 0;
  std::string summary;  // serialized v1::TelemetryWindow
};

// The windows of one claim: every window with from_xid <= ingest_xid < to_xid.
struct WindowClaim {
  int64_t from_xid = 0;
  int64_t to_xid = 0;  // the watermark to store with the roll-up rows of these windows
  std::vector<NewWindow> windows;
};

// One partial roll-up of a (model, version, hw, profile, minute).
struct RollupRow {
  std::string model_name;
  std::string version;
  std::string hw;
  std::string profile_sha256;  // raw bytes, empty when none
  int64_t bucket_start_unix = 0;
  uint64_t windows = 0;
  uint64_t requests = 0;
  uint64_t errors = 0;
  std::string summary;  // serialized v1::TelemetryWindow with the merged summaries
};

// A (model, version, hw) and how many distinct devices sent windows starting since a time.
struct DevicesReporting {
  std::string model_name;
  std::string version;
  std::string hw;
  uint64_t devices = 0;
};

// A stored window of one device, for the drill-down.
struct DeviceWindowRow {
  std::string model_name;
  std::string version;
  int64_t window_start_unix = 0;
  int64_t window_end_unix = 0;
  int64_t received_at_unix = 0;
  std::string summary;  // serialized v1::TelemetryWindow
};

class RollupRepo {
 public:
  // Takes the roll-up lock for the transaction (pg_try_advisory_xact_lock): nullopt when another
  // replica holds it. Otherwise the windows from the stored watermark up to the horizon below
  // which no transaction is running any more; at most about `max_windows` (all windows of one
  // inserting transaction stay together, so the next claim starts at a transaction boundary).
  absl::StatusOr<std::optional<WindowClaim>> ClaimNewWindows(Tx& tx, size_t max_windows);
  // Appends `rows` and moves the watermark from claim.from_xid to claim.to_xid; Aborted when the
  // watermark moved meanwhile (then nothing of this transaction may commit).
  absl::Status AppendRollups(Tx& tx, const WindowClaim& claim, const std::vector<RollupRow>& rows);
  // The roll-up rows of (model, version[, hw]) with bucket_start in [from_unix, to_unix), in
  // bucket order.
  absl::StatusOr<std::vector<RollupRow>> ReadRollups(Tx& tx, const std::string& model_name,
                                                     const std::string& version,
                                                     const std::optional<std::string>& hw,
                                                     int64_t from_unix, int64_t to_unix);
  // Distinct devices per (model, version, hw) among the windows starting at or after
  // `since_unix`, for the groups with roll-ups since then (one index probe per group).
  absl::StatusOr<std::vector<DevicesReporting>> CountDevicesReporting(Tx& tx, int64_t since_unix);
  // Deletes the roll-up rows of buckets before `before_unix` (retention); returns how many.
  absl::StatusOr<int64_t> DeleteRollupsBefore(Tx& tx, int64_t before_unix);
  // The newest windows of `device_id` (of `model_name` when set) starting in
  // [from_unix, to_unix), newest first, at most `limit`.
  absl::StatusOr<std::vector<DeviceWindowRow>> ReadDeviceWindows(
      Tx& tx, const std::string& device_id, const std::optional<std::string>& model_name,
      int64_t from_unix, int64_t to_unix, size_t limit);
};

}  // namespace edgefleet::server
