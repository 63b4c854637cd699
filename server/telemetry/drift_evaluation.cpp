#include "server/telemetry/drift_evaluation.h"

#include <algorithm>
#include <span>

namespace edgefleet::server::telemetry {

namespace et = edgefleet::telemetry;

namespace {

v1::DriftLevel LevelToProto(et::DriftLevel level) {
  switch (level) {
    case et::DriftLevel::kInsufficientData:
      return v1::DRIFT_LEVEL_INSUFFICIENT_DATA;
    case et::DriftLevel::kOk:
      return v1::DRIFT_LEVEL_OK;
    case et::DriftLevel::kWarn:
      return v1::DRIFT_LEVEL_WARN;
    case et::DriftLevel::kAlert:
      return v1::DRIFT_LEVEL_ALERT;
  }
  return v1::DRIFT_LEVEL_UNSPECIFIED;
}

// Scores one distribution; a missing field side (no windows) scores as zero samples.
v1::DriftScore Score(const v1::FeatureReference& reference, const v1::FeatureWindow* current,
                     const et::DriftThresholds& thresholds) {
  const std::span<const uint64_t> ref(reference.bins().data(), reference.bins().size());
  if (current == nullptr || current->bins().empty()) {
    std::vector<uint64_t> none(ref.size(), 0);
    return ToProto(et::ScoreDrift(ref, none, thresholds));
  }
  const std::span<const uint64_t> cur(current->bins().data(), current->bins().size());
  return ToProto(et::ScoreDrift(ref, cur, thresholds));
}

// Insufficient data ranks lowest: any number outranks "no number".
int Rank(v1::DriftLevel level) {
  switch (level) {
    case v1::DRIFT_LEVEL_OK:
      return 1;
    case v1::DRIFT_LEVEL_WARN:
      return 2;
    case v1::DRIFT_LEVEL_ALERT:
      return 3;
    default:
      return 0;
  }
}

}  // namespace

v1::DriftScore ToProto(const et::DriftScore& score) {
  v1::DriftScore out;
  out.set_level(LevelToProto(score.level));
  if (score.psi.has_value()) out.set_psi(*score.psi);
  if (score.js_distance.has_value()) out.set_js_distance(*score.js_distance);
  out.set_reference_samples(score.reference_samples);
  out.set_current_samples(score.current_samples);
  return out;
}

v1::DriftPoint EvaluateDrift(const VersionReference& reference,
                             const std::vector<ObservedBins>& observed,
                             const et::DriftThresholds& thresholds) {
  v1::DriftPoint point;
  const ObservedBins* matching = nullptr;
  for (const ObservedBins& bins : observed) {
    if (bins.profile_sha256 == reference.binning_sha256) {
      matching = &bins;
    } else {
      point.set_other_profile_windows(point.other_profile_windows() + bins.windows);
    }
  }
  if (matching != nullptr) point.set_windows(matching->windows);

  v1::DriftLevel worst = v1::DRIFT_LEVEL_INSUFFICIENT_DATA;
  auto note = [&](const v1::DriftScore& score) {
    if (Rank(score.level()) > Rank(worst)) worst = score.level();
  };
  const v1::ReferenceProfile& profile = reference.profile;
  for (int i = 0; i < profile.features_size(); ++i) {
    const v1::FeatureWindow* current = nullptr;
    if (matching != nullptr && i < static_cast<int>(matching->features.size())) {
      current = &matching->features[i];
    }
    v1::FeatureDrift* feature = point.add_features();
    feature->set_feature(static_cast<uint32_t>(i));
    *feature->mutable_score() = Score(profile.features(i), current, thresholds);
    note(feature->score());
  }
  if (profile.has_outputs() && !profile.outputs().bins().empty()) {
    *point.mutable_outputs() =
        Score(profile.outputs(), matching != nullptr ? &matching->outputs : nullptr, thresholds);
    note(point.outputs());
  }
  point.set_level(worst);
  return point;
}

}  // namespace edgefleet::server::telemetry
