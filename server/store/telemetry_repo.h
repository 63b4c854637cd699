// TelemetryStore stores per-window model telemetry (inference counts, errors, latency) from agents.
// TelemetryRepo is its PostgreSQL implementation; its mutating methods run in the caller's Tx.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "edgefleet/v1/device.pb.h"
#include "server/store/database.h"

namespace edgefleet::server {

class TelemetryStore {
 public:
  virtual ~TelemetryStore() = default;

  // Unset window bounds default to now_unix. NotFound for an unknown device.
  virtual absl::Status Insert(Tx& tx, const std::string& device_id,
                              const v1::ModelTelemetry& telemetry, int64_t now_unix) = 0;
};

// The PostgreSQL TelemetryStore.
class TelemetryRepo final : public TelemetryStore {
 public:
  absl::Status Insert(Tx& tx, const std::string& device_id, const v1::ModelTelemetry& telemetry,
                      int64_t now_unix) override;
};

}  // namespace edgefleet::server
