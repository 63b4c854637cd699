// Drift scores at the boundaries a user sees: identical distributions score zero, a shifted one
// crosses the thresholds, too few samples give no number, and PSI/JS match values worked by hand.
#include "common/telemetry/drift.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace edgefleet::telemetry {
namespace {

TEST(DriftTest, SameDistributionScoresZeroAndOk) {
  const std::vector<uint64_t> ref(10, 1000), cur(10, 200);
  const auto s = ScoreDrift(ref, cur);
  EXPECT_EQ(s.level, DriftLevel::kOk);
  EXPECT_NEAR(*s.psi, 0, 1e-12);
  EXPECT_NEAR(*s.js_distance, 0, 1e-6);
  EXPECT_EQ(s.reference_samples, 10000u);
  EXPECT_EQ(s.current_samples, 2000u);
}

TEST(DriftTest, PsiAndJsMatchValuesWorkedByHand) {
  // p = (0.5, 0.5), q = (0.8, 0.2): PSI = 0.3 ln 1.6 + (-0.3) ln 0.4 = 0.4159;
  // JS: m = (0.65, 0.35), D(p||m) = 0.5 log2(0.5/0.65) + 0.5 log2(0.5/0.35), same for q.
  const std::vector<uint64_t> ref{5000, 5000}, cur{8000, 2000};
  const auto s = ScoreDrift(ref, cur);
  EXPECT_NEAR(*s.psi, 0.3 * std::log(1.6) - 0.3 * std::log(0.4), 1e-6);
  const double dp = 0.5 * std::log2(0.5 / 0.65) + 0.5 * std::log2(0.5 / 0.35);
  const double dq = 0.8 * std::log2(0.8 / 0.65) + 0.2 * std::log2(0.2 / 0.35);
  EXPECT_NEAR(*s.js_distance, std::sqrt(0.5 * dp + 0.5 * dq), 1e-6);
  EXPECT_EQ(s.level, DriftLevel::kAlert);
}

TEST(DriftTest, LevelsAtTheThresholds) {
  const DriftThresholds t{.warn = 0.1, .alert = 0.25, .min_samples = 1000};
  // Two bins, p = (0.5, 0.5), q = (x, 1 - x): pick x so PSI lands on either side of 0.1.
  auto psi_of = [](double x) {
    return (x - 0.5) * std::log(x / 0.5) + (0.5 - x) * std::log((1 - x) / 0.5);
  };
  ASSERT_LT(psi_of(0.65), 0.1);
  ASSERT_GT(psi_of(0.66), 0.1);
  EXPECT_EQ(
      ScoreDrift(std::vector<uint64_t>{5000, 5000}, std::vector<uint64_t>{6500, 3500}, t).level,
      DriftLevel::kOk);
  EXPECT_EQ(
      ScoreDrift(std::vector<uint64_t>{5000, 5000}, std::vector<uint64_t>{6600, 3400}, t).level,
      DriftLevel::kWarn);
  // A threshold equal to the score: within it.
  const double psi = psi_of(0.66);
  EXPECT_EQ(ScoreDrift(std::vector<uint64_t>{5000, 5000}, std::vector<uint64_t>{6600, 3400},
                       {.warn = 0.05, .alert = psi + 1e-12, .min_samples = 1000})
                .level,
            DriftLevel::kWarn);
}

TEST(DriftTest, UnderTheMinimumSampleCountThereIsNoNumber) {
  const std::vector<uint64_t> ref(10, 1000);
  std::vector<uint64_t> cur(10, 0);
  cur[0] = 999;  // all in one bin: enormous drift, but 999 samples
  auto s = ScoreDrift(ref, cur);
  EXPECT_EQ(s.level, DriftLevel::kInsufficientData);
  EXPECT_FALSE(s.psi.has_value());
  EXPECT_FALSE(s.js_distance.has_value());
  cur[0] = 1000;
  s = ScoreDrift(ref, cur);
  EXPECT_EQ(s.level, DriftLevel::kAlert);
  EXPECT_TRUE(std::isfinite(*s.psi)) << "empty bins are smoothed, never infinite";
  EXPECT_LE(*s.js_distance, 1.0);
  // The reference side counts too.
  EXPECT_EQ(ScoreDrift(std::vector<uint64_t>(10, 99), cur).level, DriftLevel::kInsufficientData);
}

TEST(DriftTest, MismatchedBinsAreInsufficientNotAScore) {
  EXPECT_EQ(
      ScoreDrift(std::vector<uint64_t>{1000, 1000}, std::vector<uint64_t>{1000, 1000, 1000}).level,
      DriftLevel::kInsufficientData);
  EXPECT_EQ(DriftLevelName(DriftLevel::kAlert), "alert");
}

}  // namespace
}  // namespace edgefleet::telemetry
