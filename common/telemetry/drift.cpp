#include "common/telemetry/drift.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace edgefleet::telemetry {
namespace {

// Shares of each bin, every bin at least kEmptyBinShare, renormalised to sum to 1.
std::vector<double> Shares(std::span<const uint64_t> counts, uint64_t total) {
  std::vector<double> p(counts.size());
  double sum = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    p[i] = std::max(static_cast<double>(counts[i]) / static_cast<double>(total), kEmptyBinShare);
    sum += p[i];
  }
  for (double& v : p) v /= sum;
  return p;
}

}  // namespace

std::string_view DriftLevelName(DriftLevel level) {
  switch (level) {
    case DriftLevel::kInsufficientData:
      return "insufficient_data";
    case DriftLevel::kOk:
      return "ok";
    case DriftLevel::kWarn:
      return "warn";
    case DriftLevel::kAlert:
      return "alert";
  }
  return "unknown";
}

DriftScore ScoreDrift(std::span<const uint64_t> reference, std::span<const uint64_t> current,
                      const DriftThresholds& thresholds) {
  DriftScore score;
  score.reference_samples = std::accumulate(reference.begin(), reference.end(), uint64_t{0});
  score.current_samples = std::accumulate(current.begin(), current.end(), uint64_t{0});
  if (reference.size() != current.size() || reference.empty()) return score;
  const uint64_t min_samples = std::max<uint64_t>(thresholds.min_samples, 1);
  if (score.reference_samples < min_samples || score.current_samples < min_samples) return score;

  const std::vector<double> p = Shares(reference, score.reference_samples);
  const std::vector<double> q = Shares(current, score.current_samples);
  double psi = 0;
  double js = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    psi += (q[i] - p[i]) * std::log(q[i] / p[i]);
    const double m = (p[i] + q[i]) / 2;
    js += 0.5 * p[i] * std::log2(p[i] / m) + 0.5 * q[i] * std::log2(q[i] / m);
  }
  score.psi = psi;
  score.js_distance = std::sqrt(std::clamp(js, 0.0, 1.0));
  // A value equal to its threshold is within it, as for the rollout gates.
  score.level = psi > thresholds.alert  ? DriftLevel::kAlert
                : psi > thresholds.warn ? DriftLevel::kWarn
                                        : DriftLevel::kOk;
  return score;
}

}  // namespace edgefleet::telemetry
