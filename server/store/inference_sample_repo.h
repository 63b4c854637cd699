// InferenceSampleSource reads what the rollout controller's inference gates compare: a wave's
// canary devices, and the telemetry windows a set of devices sent for one model version over a
// time, merged (server/rollout/inference_gates.h defines both sides). InferenceSampleRepo is its
// PostgreSQL implementation; each method is one set-based query in the caller's Tx.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/rollout/inference_gates.h"
#include "server/store/database.h"

namespace edgefleet::server {

class InferenceSampleSource {
 public:
  virtual ~InferenceSampleSource() = default;

  struct Canary {
    std::string device_id;
    std::string previous_version;  // "" when the device ran no version of the model before
  };
  // The devices of wave `wave` of the deployment whose target is SERVING its version (probation
  // passed; not superseded, not rolled back), by device id.
  virtual absl::StatusOr<std::vector<Canary>> WaveCanaries(Tx& tx, int64_t deployment_id,
                                                           uint32_t wave) = 0;
  // The windows of `model_name` `version` that `device_ids` sent and that started in
  // [from_unix, to_unix), merged. Internal when a stored summary does not parse.
  virtual absl::StatusOr<rollout::InferenceSide> Sample(Tx& tx, const std::string& model_name,
                                                        const std::string& version,
                                                        const std::vector<std::string>& device_ids,
                                                        int64_t from_unix, int64_t to_unix) = 0;
};

// The PostgreSQL InferenceSampleSource. Sample reads telemetry_windows through its (model_name,
// version, window_start) index, only the partitions of the days asked for, and merges the
// summaries here (no extension needed in PostgreSQL).
class InferenceSampleRepo final : public InferenceSampleSource {
 public:
  absl::StatusOr<std::vector<Canary>> WaveCanaries(Tx& tx, int64_t deployment_id,
                                                   uint32_t wave) override;
  absl::StatusOr<rollout::InferenceSide> Sample(Tx& tx, const std::string& model_name,
                                                const std::string& version,
                                                const std::vector<std::string>& device_ids,
                                                int64_t from_unix, int64_t to_unix) override;
};

}  // namespace edgefleet::server
