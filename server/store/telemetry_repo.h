// TelemetryRepo stores per-window model telemetry (inference counts, errors, latency) from agents.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "edgefleet/v1/device.pb.h"
#include "server/store/database.h"

namespace edgefleet::server {

class TelemetryRepo {
 public:
  explicit TelemetryRepo(Database& db) : db_(db) {}

  // Unset window bounds default to now_unix. NotFound for an unknown device.
  absl::Status Insert(const std::string& device_id, const v1::ModelTelemetry& telemetry,
                      int64_t now_unix);

 private:
  Database& db_;
};

}  // namespace edgefleet::server
