// The inference gates' arithmetic: merging windows per side, the minimums, each gate's boundary
// (a value equal to its threshold passes), and the sides that cannot be compared.
#include "server/rollout/inference_gates.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/telemetry/telemetry_codec.h"
#include "server/rollout/gates.h"

namespace edgefleet::server::rollout {
namespace {

// A window of `requests` answered in `seconds` each (minus `errors` that failed), all of whose
// answers fell in output bin `bin` of `bins`, binned by `profile`.
v1::TelemetryWindow Window(uint64_t requests, uint64_t errors, double seconds, size_t bin = 0,
                           size_t bins = 3, const std::string& profile = "", int64_t start = 100) {
  v1::TelemetryWindow w;
  w.set_request_count(requests);
  if (errors > 0) {
    v1::PredictErrorCount* e = w.add_errors();
    e->set_reason(v1::PREDICT_ERROR_REASON_INFERENCE_FAILED);
    e->set_count(errors);
  }
  telemetry::LatencySketch sketch;
  if (requests > errors) sketch.AddCount(seconds, requests - errors);
  *w.mutable_latency() = telemetry::ToProto(sketch);
  for (size_t i = 0; i < bins; ++i) w.mutable_outputs()->add_bins(i == bin ? requests - errors : 0);
  w.set_profile_sha256(profile);
  w.mutable_window_start()->set_seconds(start);
  return w;
}

// `devices` devices each sending one such window.
InferenceSide Side(uint64_t devices, uint64_t requests_each, uint64_t errors_each, double seconds,
                   size_t bin = 0, const std::string& profile = "") {
  InferenceSideBuilder b;
  for (uint64_t d = 0; d < devices; ++d) {
    EXPECT_TRUE(b.Add("dev-" + std::to_string(d),
                      Window(requests_each, errors_each, seconds, bin, 3, profile))
                    .ok());
  }
  return std::move(b).Finish();
}

InferenceComparison Live(InferenceSide canary, InferenceSide control) {
  InferenceComparison c;
  c.control = v1::INFERENCE_CONTROL_LIVE;
  c.control_version = "1";
  c.canary = std::move(canary);
  c.control_side = std::move(control);
  return c;
}

v1::GateResult Gate(const std::vector<v1::GateResult>& results, v1::Gate gate) {
  for (const v1::GateResult& r : results) {
    if (r.gate() == gate) return r;
  }
  ADD_FAILURE() << "no " << v1::Gate_Name(gate);
  return {};
}

TEST(InferenceSideBuilderTest, MergesCountsSketchesDevicesAndOutputsOfOneProfileOnly) {
  InferenceSideBuilder b;
  ASSERT_TRUE(b.Add("a", Window(10, 1, 0.001, 0, 3, "", 50)).ok());
  ASSERT_TRUE(b.Add("a", Window(5, 0, 0.002, 1, 3, "", 40)).ok());
  ASSERT_TRUE(b.Add("b", Window(7, 0, 0.003, 2, 3, "P", 60)).ok());
  ASSERT_TRUE(b.Add("c", Window(0, 0, 0.003, 2, 3, "", 70)).ok());  // quiet: not a device
  const InferenceSide side = std::move(b).Finish();
  EXPECT_EQ(side.inferences, 22u);
  EXPECT_EQ(side.errors, 1u);
  EXPECT_EQ(side.devices, 2u);
  EXPECT_EQ(side.latency.count(), 21u);
  EXPECT_EQ(side.first_window_start_unix, 40);
  ASSERT_EQ(side.outputs.size(), 2u);
  EXPECT_EQ(side.outputs.at({"", 3}), (std::vector<uint64_t>{9, 5, 0}));
  EXPECT_EQ(side.outputs.at({"P", 3}), (std::vector<uint64_t>{0, 0, 7}));

  InferenceSideBuilder bad;
  v1::TelemetryWindow corrupt = Window(1, 0, 0.001);
  corrupt.mutable_latency()->set_first_index(1 << 30);
  EXPECT_EQ(bad.Add("a", corrupt).code(), absl::StatusCode::kInvalidArgument);
}

TEST(InferenceGatesTest, UnderEitherMinimumOnEitherSideEveryGateIsInconclusive) {
  InferenceThresholds t;  // 1000 inferences on 10 devices per side
  // 10 devices x 100 = 1000 inferences each side: exactly the minimums, evaluated.
  auto at_minimum =
      EvaluateInferenceGates(t, Live(Side(10, 100, 0, 0.001), Side(10, 100, 0, 0.001)));
  ASSERT_EQ(at_minimum.size(), 4u);
  EXPECT_EQ(Overall(at_minimum), v1::GATE_OUTCOME_PASS);

  const std::vector<InferenceComparison> short_of = {
      Live(Side(10, 99, 0, 0.001), Side(10, 100, 0, 0.001)),  // canary inferences
      Live(Side(10, 100, 0, 0.001), Side(10, 99, 0, 0.001)),  // control inferences
      Live(Side(9, 200, 0, 0.001), Side(10, 100, 0, 0.001)),  // canary devices
      Live(Side(10, 100, 0, 0.001), Side(9, 200, 0, 0.001)),  // control devices
      Live(Side(10, 100, 0, 0.010), InferenceSide{}),         // a quiet control
  };
  for (const InferenceComparison& c : short_of) {
    auto results = EvaluateInferenceGates(t, c);
    ASSERT_EQ(results.size(), 4u);
    for (const v1::GateResult& r : results) {
      EXPECT_EQ(r.result(), v1::GATE_OUTCOME_INCONCLUSIVE) << r.ShortDebugString();
      EXPECT_EQ(r.min_inferences(), 1000u);
      EXPECT_EQ(r.min_devices(), 10u);
      EXPECT_EQ(r.canary_inferences(), c.canary.inferences);
      EXPECT_EQ(r.control_devices(), c.control_side.devices);
      EXPECT_EQ(r.control(), v1::INFERENCE_CONTROL_LIVE);
      EXPECT_EQ(r.control_version(), "1");
    }
    EXPECT_NE(results[0].detail().find("at least 1000 inferences on 10 devices needed per side"),
              std::string::npos)
        << results[0].detail();
    EXPECT_EQ(Overall(results), v1::GATE_OUTCOME_INCONCLUSIVE);
  }
}

TEST(InferenceGatesTest, LatencyRatiosEqualToTheirThresholdsPassAndAboveFail) {
  InferenceThresholds t;
  t.min_inferences = 1;
  t.min_devices = 1;
  const InferenceComparison slow = Live(Side(2, 100, 0, 0.012), Side(2, 100, 0, 0.001));
  auto first = EvaluateInferenceGates(t, slow);
  const v1::GateResult p99 = Gate(first, v1::GATE_LATENCY_P99_RATIO);
  const v1::GateResult p50 = Gate(first, v1::GATE_LATENCY_P50_RATIO);
  EXPECT_EQ(p99.result(), v1::GATE_OUTCOME_FAIL);
  EXPECT_EQ(p50.result(), v1::GATE_OUTCOME_FAIL);
  EXPECT_NEAR(p99.value(), 12.0, 12.0 * 0.03);  // the sketch is within 1% on each side
  EXPECT_NEAR(p99.canary_value(), 0.012, 0.012 * 0.01);
  EXPECT_NEAR(p99.control_value(), 0.001, 0.001 * 0.01);
  EXPECT_DOUBLE_EQ(p99.threshold(), 1.2);
  EXPECT_DOUBLE_EQ(p50.threshold(), 1.1);

  // The measured ratio as the threshold: equal passes.
  t.max_p99_ratio = p99.value();
  t.max_p50_ratio = p50.value();
  auto equal = EvaluateInferenceGates(t, slow);
  EXPECT_EQ(Gate(equal, v1::GATE_LATENCY_P99_RATIO).result(), v1::GATE_OUTCOME_PASS);
  EXPECT_EQ(Gate(equal, v1::GATE_LATENCY_P50_RATIO).result(), v1::GATE_OUTCOME_PASS);

  // Only failed requests on one side: no latency to compare, inconclusive.
  auto no_answers =
      EvaluateInferenceGates(t, Live(Side(2, 100, 100, 0.001), Side(2, 100, 0, 0.001)));
  EXPECT_EQ(Gate(no_answers, v1::GATE_LATENCY_P99_RATIO).result(), v1::GATE_OUTCOME_INCONCLUSIVE);
  EXPECT_EQ(Gate(no_answers, v1::GATE_ERROR_RATE_INCREASE).result(), v1::GATE_OUTCOME_FAIL);
}

TEST(InferenceGatesTest, AnErrorRateUpByExactlyTheThresholdPassesAndOneErrorMoreFails) {
  InferenceThresholds t;  // 0.5 points
  t.min_devices = 1;
  // Control 10 of 1000 (1.0%); canary 15 of 1000 (1.5%): +0.5 points exactly.
  auto equal = EvaluateInferenceGates(t, Live(Side(1, 1000, 15, 0.001), Side(1, 1000, 10, 0.001)));
  const v1::GateResult at = Gate(equal, v1::GATE_ERROR_RATE_INCREASE);
  EXPECT_EQ(at.result(), v1::GATE_OUTCOME_PASS) << at.detail();
  EXPECT_DOUBLE_EQ(at.canary_value(), 1.5);
  EXPECT_DOUBLE_EQ(at.control_value(), 1.0);
  EXPECT_NEAR(at.value(), 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(at.threshold(), 0.5);
  auto above = EvaluateInferenceGates(t, Live(Side(1, 1000, 16, 0.001), Side(1, 1000, 10, 0.001)));
  EXPECT_EQ(Gate(above, v1::GATE_ERROR_RATE_INCREASE).result(), v1::GATE_OUTCOME_FAIL);
  // Fewer errors than control is no increase.
  auto better = EvaluateInferenceGates(t, Live(Side(1, 1000, 0, 0.001), Side(1, 1000, 50, 0.001)));
  EXPECT_EQ(Gate(better, v1::GATE_ERROR_RATE_INCREASE).result(), v1::GATE_OUTCOME_PASS);
  // Different sample sizes compare exactly: 3 of 200 (1.5%) against 1 of 100 (1%).
  auto sizes = EvaluateInferenceGates(t, Live(Side(1, 200, 3, 0.001), Side(1, 100, 1, 0.001)));
  EXPECT_EQ(Gate(sizes, v1::GATE_ERROR_RATE_INCREASE).result(), v1::GATE_OUTCOME_INCONCLUSIVE)
      << "under 1000 inferences";
  t.min_inferences = 100;
  sizes = EvaluateInferenceGates(t, Live(Side(1, 200, 3, 0.001), Side(1, 100, 1, 0.001)));
  EXPECT_EQ(Gate(sizes, v1::GATE_ERROR_RATE_INCREASE).result(), v1::GATE_OUTCOME_PASS);
}

TEST(InferenceGatesTest, OutputPsiComparesOutputsOfTheSameProfile) {
  InferenceThresholds t;
  t.min_devices = 1;
  auto same =
      EvaluateInferenceGates(t, Live(Side(2, 1000, 0, 0.001, 1), Side(2, 1000, 0, 0.001, 1)));
  const v1::GateResult zero = Gate(same, v1::GATE_OUTPUT_PSI);
  EXPECT_EQ(zero.result(), v1::GATE_OUTCOME_PASS) << zero.detail();
  EXPECT_NEAR(zero.value(), 0, 1e-12);

  auto moved =
      EvaluateInferenceGates(t, Live(Side(2, 1000, 0, 0.001, 2), Side(2, 1000, 0, 0.001, 1)));
  const v1::GateResult far = Gate(moved, v1::GATE_OUTPUT_PSI);
  EXPECT_EQ(far.result(), v1::GATE_OUTCOME_FAIL) << far.detail();
  // Its own value as the threshold passes.
  t.max_output_psi = far.value();
  EXPECT_EQ(
      Gate(EvaluateInferenceGates(t, Live(Side(2, 1000, 0, 0.001, 2), Side(2, 1000, 0, 0.001, 1))),
           v1::GATE_OUTPUT_PSI)
          .result(),
      v1::GATE_OUTCOME_PASS);

  // Binned by different reference profiles: not comparable, and it neither holds nor fails.
  auto profiles = EvaluateInferenceGates(
      t, Live(Side(2, 1000, 0, 0.001, 1, "A"), Side(2, 1000, 0, 0.001, 1, "B")));
  EXPECT_EQ(Gate(profiles, v1::GATE_OUTPUT_PSI).result(), v1::GATE_OUTCOME_NOT_APPLICABLE);
  EXPECT_EQ(Overall(profiles), v1::GATE_OUTCOME_PASS);

  // Enough inferences but fewer binned outputs than the minimum (answers failed): inconclusive.
  auto few =
      EvaluateInferenceGates(t, Live(Side(2, 1000, 600, 0.001, 1), Side(2, 1000, 0, 0.001, 1)));
  EXPECT_EQ(Gate(few, v1::GATE_OUTPUT_PSI).result(), v1::GATE_OUTCOME_INCONCLUSIVE);
}

TEST(InferenceGatesTest, AFirstInstallHasNothingToCompareAndDoesNotHold) {
  InferenceComparison first;
  first.control = v1::INFERENCE_CONTROL_NONE;
  first.canary = Side(1, 5, 0, 0.001);
  auto results = EvaluateInferenceGates(InferenceThresholds{}, first);
  ASSERT_EQ(results.size(), 4u);
  for (const v1::GateResult& r : results) {
    EXPECT_EQ(r.result(), v1::GATE_OUTCOME_NOT_APPLICABLE);
    EXPECT_TRUE(IsInferenceGate(r.gate()));
  }
  EXPECT_EQ(Overall(results), v1::GATE_OUTCOME_PASS);
  EXPECT_FALSE(IsInferenceGate(v1::GATE_TIMEOUTS));
}

TEST(InferenceGatesTest, ThePreviousVersionIsTheCanariesMostCommonOne) {
  EXPECT_EQ(PreviousVersionOf({"1", "2", "2", ""}), "2");
  EXPECT_EQ(PreviousVersionOf({"b", "a", "", ""}), "a") << "a tie goes to the smallest name";
  EXPECT_EQ(PreviousVersionOf({"", ""}), std::nullopt);
  EXPECT_EQ(PreviousVersionOf({}), std::nullopt);
}

}  // namespace
}  // namespace edgefleet::server::rollout
