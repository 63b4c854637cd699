// EventRepo stores the update lifecycle events agents report (download, verify, activate, fail).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "edgefleet/v1/device.pb.h"
#include "server/store/database.h"

namespace edgefleet::server {

class EventRepo {
 public:
  explicit EventRepo(Database& db) : db_(db) {}

  // `occurred_at` defaults to now_unix when unset. NotFound for an unknown device.
  absl::Status Insert(const std::string& device_id, const v1::UpdateEvent& event, int64_t now_unix);
  // The device's most recent events first, at most `limit`.
  absl::StatusOr<std::vector<v1::UpdateEvent>> ListForDevice(const std::string& device_id,
                                                             int limit);

 private:
  Database& db_;
};

}  // namespace edgefleet::server
