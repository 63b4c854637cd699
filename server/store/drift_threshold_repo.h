// DriftThresholdStore keeps the drift thresholds operators set per model; DriftThresholdRepo is
// its PostgreSQL implementation.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/telemetry/drift.h"
#include "server/store/database.h"

namespace edgefleet::server {

struct DriftThresholdRecord {
  std::string model_name;
  edgefleet::telemetry::DriftThresholds thresholds;
  int64_t updated_at_unix = 0;
};

class DriftThresholdStore {
 public:
  virtual ~DriftThresholdStore() = default;

  // The thresholds set for `model_name`, nullopt when none were (the defaults apply).
  virtual absl::StatusOr<std::optional<DriftThresholdRecord>> Get(
      Tx& tx, const std::string& model_name) = 0;
  // Sets (or replaces) them at `now_unix`. NotFound for an unknown model.
  virtual absl::StatusOr<DriftThresholdRecord> Set(
      Tx& tx, const std::string& model_name,
      const edgefleet::telemetry::DriftThresholds& thresholds, const std::string& updated_by,
      int64_t now_unix) = 0;
};

class DriftThresholdRepo final : public DriftThresholdStore {
 public:
  absl::StatusOr<std::optional<DriftThresholdRecord>> Get(Tx& tx,
                                                          const std::string& model_name) override;
  absl::StatusOr<DriftThresholdRecord> Set(Tx& tx, const std::string& model_name,
                                           const edgefleet::telemetry::DriftThresholds& thresholds,
                                           const std::string& updated_by,
                                           int64_t now_unix) override;
};

}  // namespace edgefleet::server
