// The gate evaluation table: pass, fail and inconclusive at the boundary values, with the value
// and threshold written into each result.
#include "server/rollout/gates.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace edgefleet::server::rollout {
namespace {

using std::chrono::seconds;
constexpr auto PASS = v1::GATE_OUTCOME_PASS;
constexpr auto FAIL = v1::GATE_OUTCOME_FAIL;
constexpr auto INCONCLUSIVE = v1::GATE_OUTCOME_INCONCLUSIVE;

GateThresholds Thresholds() {
  GateThresholds t;
  t.max_install_failure_bp = 500;  // 5%
  t.min_finished_devices = 20;
  t.max_probation_failure_bp = 1000;  // 10%
  t.max_timeout_bp = 1000;            // 10%
  return t;
}

const v1::GateResult& Find(const std::vector<v1::GateResult>& results, v1::Gate gate) {
  for (const auto& r : results) {
    if (r.gate() == gate) return r;
  }
  static const v1::GateResult kNone;
  ADD_FAILURE() << "no result for " << v1::Gate_Name(gate);
  return kNone;
}

struct Row {
  const char* name;
  WaveCounts counts;
  v1::GateOutcome install;
  v1::GateOutcome probation;
  v1::GateOutcome timeouts;
  double install_value;
};

// targeted, serving, install_failed, refused, probation_failed, timed_out
TEST(GatesTest, TheBoundaryTable) {
  const Row rows[] = {
      {"zero devices", {0, 0, 0, 0, 0, 0}, INCONCLUSIVE, INCONCLUSIVE, INCONCLUSIVE, 0},
      {"none finished", {40, 0, 0, 0, 0, 0}, INCONCLUSIVE, INCONCLUSIVE, INCONCLUSIVE, 0},
      {"min count - 1, all failed",
       {40, 0, 19, 0, 0, 0},
       INCONCLUSIVE,
       INCONCLUSIVE,
       INCONCLUSIVE,
       100},
      {"min count, none failed", {40, 20, 0, 0, 0, 0}, PASS, PASS, INCONCLUSIVE, 0},
      {"exactly at 5%: 1 of 20", {20, 19, 1, 0, 0, 0}, PASS, PASS, PASS, 5},
      {"one above: 2 of 20", {20, 18, 1, 1, 0, 0}, FAIL, PASS, PASS, 10},
      {"one below: 1 of 21", {21, 20, 0, 1, 0, 0}, PASS, PASS, PASS, 100.0 / 21},
      {"5% exactly of 40 with refusals", {40, 38, 0, 2, 0, 0}, PASS, PASS, PASS, 5},
      {"probation exactly at 10%", {20, 18, 0, 0, 2, 0}, PASS, PASS, PASS, 0},
      {"probation one above", {20, 17, 0, 0, 3, 0}, PASS, FAIL, PASS, 0},
      {"timeouts exactly at 10%", {20, 18, 0, 0, 0, 2}, PASS, PASS, PASS, 0},
      {"timeouts one above", {20, 17, 0, 0, 0, 3}, PASS, PASS, FAIL, 0},
      {"timeouts fail before the others finish", {40, 20, 0, 0, 0, 5}, PASS, PASS, FAIL, 0},
      {"one device still within its time",
       {20, 19, 0, 0, 0, 0},
       INCONCLUSIVE,
       INCONCLUSIVE,
       INCONCLUSIVE,
       0},
      // Timed-out devices may never report: the minimum counts only those that still can.
      {"min count reached among devices not timed out", {21, 19, 0, 0, 0, 2}, PASS, PASS, PASS, 0},
      {"every device timed out", {3, 0, 0, 0, 0, 3}, INCONCLUSIVE, INCONCLUSIVE, FAIL, 0},
      // A wave smaller than min_finished: every device finished is enough evidence.
      {"small wave all finished", {2, 2, 0, 0, 0, 0}, PASS, PASS, PASS, 0},
      {"small wave one failed", {2, 1, 1, 0, 0, 0}, FAIL, PASS, PASS, 50},
      {"small wave one to go", {2, 1, 0, 0, 0, 0}, INCONCLUSIVE, INCONCLUSIVE, INCONCLUSIVE, 0},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    const auto results = EvaluateGates(Thresholds(), row.counts);
    ASSERT_EQ(results.size(), 3u) << "no count gate without a count limit";
    const auto& install = Find(results, v1::GATE_INSTALL_FAILURES);
    EXPECT_EQ(install.result(), row.install) << install.detail();
    EXPECT_DOUBLE_EQ(install.value(), row.install_value);
    EXPECT_DOUBLE_EQ(install.threshold(), 5);
    EXPECT_EQ(Find(results, v1::GATE_PROBATION_FAILURES).result(), row.probation)
        << Find(results, v1::GATE_PROBATION_FAILURES).detail();
    EXPECT_EQ(Find(results, v1::GATE_TIMEOUTS).result(), row.timeouts)
        << Find(results, v1::GATE_TIMEOUTS).detail();
    EXPECT_DOUBLE_EQ(Find(results, v1::GATE_TIMEOUTS).threshold(), 10);
    const v1::GateOutcome worst =
        (row.install == FAIL || row.probation == FAIL || row.timeouts == FAIL)   ? FAIL
        : (row.install == PASS && row.probation == PASS && row.timeouts == PASS) ? PASS
                                                                                 : INCONCLUSIVE;
    EXPECT_EQ(Overall(results), worst);
  }
}

TEST(GatesTest, ResultsCarryTheirNumbers) {
  const auto results = EvaluateGates(Thresholds(), {20, 18, 1, 1, 0, 0});
  const auto& install = Find(results, v1::GATE_INSTALL_FAILURES);
  EXPECT_EQ(install.devices(), 20u);
  EXPECT_EQ(install.min_devices(), 20u);
  EXPECT_EQ(install.detail(),
            "2 of 20 finished devices failed or refused the install: 10.00% > 5.00%");
  const auto held = EvaluateGates(Thresholds(), {40, 5, 0, 0, 0, 0});
  EXPECT_EQ(Find(held, v1::GATE_INSTALL_FAILURES).detail(), "5 of 40 devices finished; 20 needed");
  EXPECT_EQ(Find(held, v1::GATE_TIMEOUTS).detail(),
            "35 of 40 devices still within their 3600 s to reach serving");
}

TEST(GatesTest, AProbationCountLimitAddsACountGate) {
  GateThresholds t = Thresholds();
  t.max_probation_failures = 1;
  struct {
    WaveCounts counts;
    v1::GateOutcome count;
  } rows[] = {
      {{20, 20, 0, 0, 0, 0}, PASS},
      {{20, 19, 0, 0, 1, 0}, PASS},  // at the limit
      {{20, 18, 0, 0, 2, 0}, FAIL},  // one above, though 10% passes the share gate
      {{40, 0, 0, 0, 19, 0}, INCONCLUSIVE},
  };
  for (const auto& row : rows) {
    const auto results = EvaluateGates(t, row.counts);
    ASSERT_EQ(results.size(), 4u);
    const auto& count = Find(results, v1::GATE_PROBATION_FAILURE_COUNT);
    EXPECT_EQ(count.result(), row.count) << count.detail();
    EXPECT_DOUBLE_EQ(count.value(), static_cast<double>(row.counts.probation_failed));
    EXPECT_DOUBLE_EQ(count.threshold(), 1);
  }
  t.max_probation_failures = 0;
  EXPECT_EQ(Find(EvaluateGates(t, {20, 19, 0, 0, 1, 0}), v1::GATE_PROBATION_FAILURE_COUNT).result(),
            FAIL);
}

TEST(GatesTest, ZeroToleranceAndMinimumZero) {
  GateThresholds t;
  t.max_install_failure_bp = 0;
  t.min_finished_devices = 0;  // still at least one finished device
  EXPECT_EQ(Find(EvaluateGates(t, {10, 0, 0, 0, 0, 0}), v1::GATE_INSTALL_FAILURES).result(),
            INCONCLUSIVE);
  EXPECT_EQ(Find(EvaluateGates(t, {10, 1, 0, 0, 0, 0}), v1::GATE_INSTALL_FAILURES).result(), PASS);
  EXPECT_EQ(Find(EvaluateGates(t, {10, 9, 1, 0, 0, 0}), v1::GATE_INSTALL_FAILURES).result(), FAIL);
}

TEST(GatesTest, ADeviceTimesOutExactlyAtItsLimitSinceItWasTargeted) {
  const Clock::TimePoint t0 = FromUnixSeconds(1'800'000'000);
  const std::vector<DeviceProgress> devices = {
      {DeviceOutcome::kWaiting, t0}, {DeviceOutcome::kWaiting, t0 + seconds(1)},
      {DeviceOutcome::kServing, t0}, {DeviceOutcome::kInstallFailed, t0},
      {DeviceOutcome::kRefused, t0}, {DeviceOutcome::kProbationFailed, t0},
  };
  EXPECT_EQ(TallyWave(devices, t0 + seconds(59), seconds(60)), (WaveCounts{6, 1, 1, 1, 1, 0}));
  EXPECT_EQ(TallyWave(devices, t0 + seconds(60), seconds(60)), (WaveCounts{6, 1, 1, 1, 1, 1}));
  EXPECT_EQ(TallyWave(devices, t0 + seconds(61), seconds(60)), (WaveCounts{6, 1, 1, 1, 1, 2}));
  EXPECT_EQ(TallyWave({}, t0, seconds(60)), WaveCounts{});
}

TEST(GatesTest, StatusCountsAddUp) {
  v1::WaveStatus status;
  SetCounts({10, 4, 1, 2, 1, 1}, &status);
  EXPECT_EQ(status.targeted(), 10u);
  EXPECT_EQ(status.serving(), 4u);
  EXPECT_EQ(status.failed(), 4u);
  EXPECT_EQ(status.in_progress(), 2u);
  EXPECT_EQ(status.timed_out(), 1u);
}

}  // namespace
}  // namespace edgefleet::server::rollout
