// Drift between a reference distribution and what the field sees, over the same bins: the
// Population Stability Index and the Jensen-Shannon distance. Sample-size aware: with too few
// samples on either side there is no number, only "insufficient data" — a drift score from 40
// requests is noise, and a gate must hold on it rather than pass or fail.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace edgefleet::telemetry {

struct DriftThresholds {
  double warn = 0.1;    // PSI
  double alert = 0.25;  // PSI
  uint64_t min_samples = 1000;
};

enum class DriftLevel { kInsufficientData, kOk, kWarn, kAlert };
std::string_view DriftLevelName(DriftLevel level);  // "insufficient_data", "ok", "warn", "alert"

struct DriftScore {
  DriftLevel level = DriftLevel::kInsufficientData;
  // Both set unless the level is kInsufficientData.
  std::optional<double> psi;
  std::optional<double> js_distance;  // in [0, 1] (base-2 logarithms)
  uint64_t reference_samples = 0;
  uint64_t current_samples = 0;
};

// Compares bin counts of the same bins. Empty bins are smoothed (a bin holds at least
// kEmptyBinShare of its side), so one bin that one side never hit does not make PSI infinite.
// Mismatched bin counts are a caller's bug and score as insufficient data.
DriftScore ScoreDrift(std::span<const uint64_t> reference, std::span<const uint64_t> current,
                      const DriftThresholds& thresholds = {});

inline constexpr double kEmptyBinShare = 1e-4;

}  // namespace edgefleet::telemetry
