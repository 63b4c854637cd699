// The DriftSources of a running server: references from the reference store, field bins from
// the telemetry roll-ups.
#pragma once

#include "server/store/database.h"
#include "server/store/model_repo.h"
#include "server/store/reference_repo.h"
#include "server/telemetry/drift_service.h"
#include "server/telemetry/rollups.h"

namespace edgefleet::server::telemetry {

class StoredDriftSources final : public DriftSources {
 public:
  StoredDriftSources(Transactor& db, ModelStore& models, ReferenceStore& references,
                     RollupStore& rollups)
      : db_(db), models_(models), references_(references), rollups_(rollups) {}

  absl::StatusOr<std::optional<VersionReference>> Reference(const std::string& model_name,
                                                            const std::string& version) override;
  absl::StatusOr<std::vector<std::vector<ObservedBins>>> ObservedSeries(
      const std::string& model_name, const std::string& version,
      const std::optional<std::string>& hw, Clock::TimePoint from, Clock::TimePoint to,
      std::chrono::seconds step) override;
  absl::StatusOr<std::vector<VersionKey>> Active(Clock::TimePoint from,
                                                 Clock::TimePoint to) override;

 private:
  Transactor& db_;
  ModelStore& models_;
  ReferenceStore& references_;
  RollupStore& rollups_;
};

}  // namespace edgefleet::server::telemetry
