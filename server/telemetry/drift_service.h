// Drift as operators read it: per model version (optionally per hw label) over a time range or
// as a series, scored against the version's reference with the model's thresholds, and the
// Prometheus gauges of every version that reported over the last drift range.
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/core/clock.h"
#include "common/metrics/metrics.h"
#include "edgefleet/v1/admin.pb.h"
#include "server/store/database.h"
#include "server/store/drift_threshold_repo.h"
#include "server/telemetry/drift_evaluation.h"

namespace edgefleet::server::telemetry {

// (model, version, hw): what one set of drift gauges is about. hw "" stands for devices
// without a hw label.
struct VersionKey {
  std::string model_name;
  std::string version;
  std::string hw;
  auto operator<=>(const VersionKey&) const = default;
};

// Where drift's inputs come from: the reference store and the telemetry roll-ups.
class DriftSources {
 public:
  virtual ~DriftSources() = default;
  // The version's reference, nullopt while it has none (a fleet reference still collecting).
  // NotFound for an unknown model version.
  virtual absl::StatusOr<std::optional<VersionReference>> Reference(const std::string& model_name,
                                                                    const std::string& version) = 0;
  // The version's windows that started in [from, to), merged per binning, as consecutive
  // points of `step` from `from` (the last one ends at `to`); `hw` nullopt means every device,
  // "" the devices without a hw label.
  virtual absl::StatusOr<std::vector<std::vector<ObservedBins>>> ObservedSeries(
      const std::string& model_name, const std::string& version,
      const std::optional<std::string>& hw, Clock::TimePoint from, Clock::TimePoint to,
      std::chrono::seconds step) = 0;
  // The (model, version, hw) that have windows started in [from, to).
  virtual absl::StatusOr<std::vector<VersionKey>> Active(Clock::TimePoint from,
                                                         Clock::TimePoint to) = 0;
};

struct DriftOptions {
  // The range a drift read covers when it names no `from`, and the gauges' range.
  std::chrono::seconds range = std::chrono::minutes(60);
};

// The gauges drift publishes (no device label): PSI and JS distance per feature ("0", "1", ...
// or "output") and the thresholds per model, so an alert rule compares each model with its own.
struct DriftGauges {
  explicit DriftGauges(metrics::Registry& registry);
  metrics::Family<metrics::Gauge>& psi;              // {model, version, hw, feature}
  metrics::Family<metrics::Gauge>& js_distance;      // {model, version, hw, feature}
  metrics::Family<metrics::Gauge>& warn_threshold;   // {model}
  metrics::Family<metrics::Gauge>& alert_threshold;  // {model}
};

// InvalidArgument naming what is wrong: warn in (0, alert), alert at most 10.
absl::Status ValidateDriftThresholds(const v1::SetDriftThresholdsRequest& request);

class DriftService {
 public:
  DriftService(Transactor& db, DriftThresholdStore& thresholds, DriftSources& sources,
               const Clock& clock, DriftOptions options = {});

  // InvalidArgument for a malformed request (naming the field), NotFound for an unknown version.
  absl::StatusOr<v1::ModelDrift> GetDrift(const v1::GetModelDriftRequest& request);

  // Stores validated thresholds in the caller's transaction (which writes the audit row).
  absl::StatusOr<v1::DriftThresholds> SetThresholds(Tx& tx, const std::string& who,
                                                    const v1::SetDriftThresholdsRequest& request);

  // Scores every version that reported over the last range and sets the gauges; series of
  // versions that stopped reporting (or lost their numbers) are removed.
  absl::Status RefreshGauges(DriftGauges& gauges);

 private:
  absl::StatusOr<v1::DriftThresholds> ThresholdsOf(const std::string& model_name);

  Transactor& db_;
  DriftThresholdStore& thresholds_;
  DriftSources& sources_;
  const Clock& clock_;
  const DriftOptions options_;
  std::mutex gauges_mu_;
  std::set<metrics::Labels> published_;  // guarded by gauges_mu_: PSI/JS series set last time
  std::set<metrics::Labels> published_thresholds_;  // guarded by gauges_mu_
};

}  // namespace edgefleet::server::telemetry
