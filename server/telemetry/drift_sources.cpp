#include "server/telemetry/drift_sources.h"

#include "common/telemetry/reference_profile.h"

namespace edgefleet::server::telemetry {

namespace {

ObservedBins ToObserved(const MergedTelemetry& merged) {
  ObservedBins bins;
  bins.profile_sha256 = merged.profile_sha256;
  bins.windows = merged.windows;
  bins.features = merged.features;
  bins.outputs = merged.outputs;
  return bins;
}

}  // namespace

absl::StatusOr<std::optional<VersionReference>> StoredDriftSources::Reference(
    const std::string& model_name, const std::string& version) {
  // NotFound for a version that does not exist, rather than "no reference yet".
  if (auto stored = models_.GetVersion(model_name, version); !stored.ok()) return stored.status();
  auto profile = db_.Transact("read reference profile",
                              [&](Tx& tx) { return references_.Get(tx, model_name, version); });
  if (!profile.ok()) return profile.status();
  if (!profile->has_value()) return std::nullopt;
  VersionReference reference;
  reference.profile = **profile;
  // A fleet profile was merged from default-binned windows: those are the ones it compares with.
  reference.binning_sha256 = edgefleet::telemetry::BinningOf(reference.profile).profile_sha256();
  return reference;
}

absl::StatusOr<std::vector<std::vector<ObservedBins>>> StoredDriftSources::ObservedSeries(
    const std::string& model_name, const std::string& version, const std::optional<std::string>& hw,
    Clock::TimePoint from, Clock::TimePoint to, std::chrono::seconds step) {
  auto series = db_.Transact("read telemetry roll-ups", [&](Tx& tx) {
    return rollups_.MergeSeries(tx, model_name, version, hw, from, to, step);
  });
  if (!series.ok()) return series.status();
  std::vector<std::vector<ObservedBins>> points;
  points.reserve(series->size());
  for (const TelemetryPoint& point : *series) {
    std::vector<ObservedBins>& bins = points.emplace_back();
    for (const MergedTelemetry& merged : point.by_profile) bins.push_back(ToObserved(merged));
  }
  return points;
}

absl::StatusOr<std::vector<VersionKey>> StoredDriftSources::Active(Clock::TimePoint from,
                                                                   Clock::TimePoint) {
  auto reporting = db_.Transact("count devices reporting",
                                [&](Tx& tx) { return rollups_.CountDevicesReporting(tx, from); });
  if (!reporting.ok()) return reporting.status();
  std::vector<VersionKey> keys;
  keys.reserve(reporting->size());
  for (const DevicesReporting& r : *reporting) keys.push_back({r.model_name, r.version, r.hw});
  return keys;
}

}  // namespace edgefleet::server::telemetry
