// TelemetryStore stores what agents summarise of their models: telemetry windows (kept once per
// device, outbox stream and sequence, in daily partitions) and the older per-model summaries.
// TelemetryRepo is its PostgreSQL implementation; its mutating methods run in the caller's Tx.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "edgefleet/v1/device.pb.h"
#include "edgefleet/v1/telemetry.pb.h"
#include "server/store/database.h"

namespace edgefleet::server {

class TelemetryStore {
 public:
  virtual ~TelemetryStore() = default;

  // Unset window bounds default to now_unix. NotFound for an unknown device.
  virtual absl::Status Insert(Tx& tx, const std::string& device_id,
                              const v1::ModelTelemetry& telemetry, int64_t now_unix) = 0;

  // What a device may report windows for, read once per upload.
  struct DeviceContext {
    std::string hw;                     // its hw label, "" when it has none
    std::set<std::string> model_names;  // models it is targeted with or reports installed
  };
  // NotFound for an unknown device.
  virtual absl::StatusOr<DeviceContext> ReadDeviceContext(Tx& tx, const std::string& device_id) = 0;
  virtual absl::StatusOr<bool> VersionExists(Tx& tx, const std::string& model_name,
                                             const std::string& version) = 0;
  // Stores checked windows under (device, stream, sequence), all in one statement: for each
  // window, true when stored now, false when an earlier delivery (or an earlier copy in
  // `windows`) stored it. FailedPrecondition when no partition covers a window's start.
  virtual absl::StatusOr<std::vector<bool>> InsertWindows(
      Tx& tx, const std::string& device_id, uint64_t stream_id,
      std::span<const v1::TelemetryWindow* const> windows, const std::string& hw,
      int64_t now_unix) = 0;
  // InsertWindows of one window.
  absl::StatusOr<bool> InsertWindow(Tx& tx, const std::string& device_id, uint64_t stream_id,
                                    const v1::TelemetryWindow& window, const std::string& hw,
                                    int64_t now_unix);
  // Windows a device's agent reported it lost, by reason.
  struct DropCounts {
    uint64_t outbox_full = 0;
    uint64_t refused = 0;
  };
  // What the server keeps per device: the agent's last cumulative report (of `stream_id`) and
  // the device's lifetime totals (the sum of the increments).
  struct DropRecord {
    uint64_t stream_id = 0;
    DropCounts reported;
    DropCounts total;
  };
  // Reads the device's record, locked until the transaction ends (so concurrent uploads of one
  // device count each increment once); all zero when it has none yet. NotFound for an unknown
  // device.
  virtual absl::StatusOr<DropRecord> LockDrops(Tx& tx, const std::string& device_id) = 0;
  virtual absl::Status SaveDrops(Tx& tx, const std::string& device_id,
                                 const DropRecord& record) = 0;
  // The device's record, or nullopt when its agent never reported a drop.
  virtual absl::StatusOr<std::optional<DropRecord>> ReadDrops(Tx& tx,
                                                              const std::string& device_id) = 0;

  // Creates the missing daily partitions for the UTC days of [from_unix, to_unix]; returns how
  // many it created.
  virtual absl::StatusOr<int> EnsurePartitions(Tx& tx, int64_t from_unix, int64_t to_unix) = 0;
  // Drops the daily partitions of UTC days wholly before the day of `before_unix`.
  virtual absl::StatusOr<int> DropPartitionsBefore(Tx& tx, int64_t before_unix) = 0;
};

// The PostgreSQL TelemetryStore.
class TelemetryRepo final : public TelemetryStore {
 public:
  absl::Status Insert(Tx& tx, const std::string& device_id, const v1::ModelTelemetry& telemetry,
                      int64_t now_unix) override;
  absl::StatusOr<DeviceContext> ReadDeviceContext(Tx& tx, const std::string& device_id) override;
  absl::StatusOr<bool> VersionExists(Tx& tx, const std::string& model_name,
                                     const std::string& version) override;
  absl::StatusOr<std::vector<bool>> InsertWindows(
      Tx& tx, const std::string& device_id, uint64_t stream_id,
      std::span<const v1::TelemetryWindow* const> windows, const std::string& hw,
      int64_t now_unix) override;
  absl::StatusOr<DropRecord> LockDrops(Tx& tx, const std::string& device_id) override;
  absl::Status SaveDrops(Tx& tx, const std::string& device_id, const DropRecord& record) override;
  absl::StatusOr<std::optional<DropRecord>> ReadDrops(Tx& tx,
                                                      const std::string& device_id) override;
  absl::StatusOr<int> EnsurePartitions(Tx& tx, int64_t from_unix, int64_t to_unix) override;
  absl::StatusOr<int> DropPartitionsBefore(Tx& tx, int64_t before_unix) override;
};

}  // namespace edgefleet::server
