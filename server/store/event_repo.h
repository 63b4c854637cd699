// EventStore stores the update lifecycle events agents report (download, verify, activate, fail).
// EventRepo is its PostgreSQL implementation; its mutating methods run in the caller's Tx.
#pragma once

#include <cstdint>
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

  // `occurred_at` defaults to now_unix when unset. NotFound for an unknown device.
  virtual absl::Status Insert(Tx& tx, const std::string& device_id, const v1::UpdateEvent& event,
                              int64_t now_unix) = 0;
  // The device's most recent events first, at most `limit`.
  virtual absl::StatusOr<std::vector<v1::UpdateEvent>> ListForDevice(const std::string& device_id,
                                                                     int limit) = 0;
};

// The PostgreSQL EventStore.
class EventRepo final : public EventStore {
 public:
  explicit EventRepo(Database& db) : db_(db) {}
  absl::Status Insert(Tx& tx, const std::string& device_id, const v1::UpdateEvent& event,
                      int64_t now_unix) override;
  absl::StatusOr<std::vector<v1::UpdateEvent>> ListForDevice(const std::string& device_id,
                                                             int limit) override;

 private:
  Database& db_;
};

}  // namespace edgefleet::server
