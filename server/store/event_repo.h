// EventStore stores the update lifecycle events agents report (download, verify, activate, fail).
// EventRepo is its PostgreSQL implementation; its mutating methods run in the caller's Tx.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "edgefleet/v1/device.pb.h"
#include "server/store/database.h"

namespace edgefleet::server {

class EventStore {
 public:
  virtual ~EventStore() = default;

  // Stores a report's events in their order, in one statement. `occurred_at` defaults to
  // now_unix when unset. NotFound for an unknown device.
  virtual absl::Status InsertAll(Tx& tx, const std::string& device_id,
                                 std::span<const v1::UpdateEvent* const> events,
                                 int64_t now_unix) = 0;
  absl::Status Insert(Tx& tx, const std::string& device_id, const v1::UpdateEvent& event,
                      int64_t now_unix) {
    const v1::UpdateEvent* one[] = {&event};
    return InsertAll(tx, device_id, one, now_unix);
  }
  // The device's most recent events first, at most `limit`.
  virtual absl::StatusOr<std::vector<v1::UpdateEvent>> ListForDevice(const std::string& device_id,
                                                                     int limit) = 0;
};

// The PostgreSQL EventStore.
class EventRepo final : public EventStore {
 public:
  explicit EventRepo(Database& db) : db_(db) {}
  absl::Status InsertAll(Tx& tx, const std::string& device_id,
                         std::span<const v1::UpdateEvent* const> events, int64_t now_unix) override;
  absl::StatusOr<std::vector<v1::UpdateEvent>> ListForDevice(const std::string& device_id,
                                                             int limit) override;

 private:
  Database& db_;
};

}  // namespace edgefleet::server
