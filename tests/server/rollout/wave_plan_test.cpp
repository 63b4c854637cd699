// Wave plans: parsing "10%,50%,100%", defaults, validation messages and cumulative sizes.
#include "server/rollout/wave_plan.h"

#include <gtest/gtest.h>

#include "common/core/limits.h"

namespace edgefleet::server::rollout {
namespace {

using std::chrono::hours;
using std::chrono::seconds;

std::string Error(const absl::Status& s) { return std::string(s.message()); }

WavePlan Plan(std::string_view text, const WaveDefaults& defaults = {}) {
  auto specs = ParseWaveSizes(text);
  EXPECT_TRUE(specs.ok()) << specs.status();
  auto plan = NormalizeWaves(*specs, defaults);
  EXPECT_TRUE(plan.ok()) << plan.status();
  return plan.ok() ? *plan : WavePlan{};
}

absl::Status PlanError(std::string_view text) {
  auto specs = ParseWaveSizes(text);
  if (!specs.ok()) return specs.status();
  return NormalizeWaves(*specs).status();
}

TEST(WavePlanTest, ParsesPercentagesAndCounts) {
  WavePlan plan = Plan("5, 50%,100%");
  ASSERT_EQ(plan.waves.size(), 3u);
  EXPECT_EQ(plan.waves[0].device_count, 5u);
  EXPECT_EQ(plan.waves[0].percent_bp, 0);
  EXPECT_EQ(plan.waves[1].percent_bp, 5000);
  EXPECT_EQ(plan.waves[2].percent_bp, 10000);
  EXPECT_EQ(Plan("0.25%,100%").waves[0].percent_bp, 25);
}

TEST(WavePlanTest, NoWavesMeansOnePercentTenFiftyHundredWithAnHourOfSoakEach) {
  WavePlan plan = DefaultPlan();
  ASSERT_EQ(plan.waves.size(), 4u);
  EXPECT_EQ(plan.waves[0].percent_bp, 100);
  EXPECT_EQ(plan.waves[0].min_devices, 1u) << "1% of a small fleet is still one device";
  EXPECT_EQ(plan.waves[1].percent_bp, 1000);
  EXPECT_EQ(plan.waves[2].percent_bp, 5000);
  EXPECT_EQ(plan.waves[3].percent_bp, 10000);
  for (const Wave& w : plan.waves) {
    EXPECT_EQ(w.soak, hours(1));
    EXPECT_EQ(w.gates, GateThresholds{});
  }
  EXPECT_EQ(Plan(""), plan);
}

TEST(WavePlanTest, DeployCreateIsOneWaveOfEveryoneWithoutSoak) {
  WavePlan plan = SingleWavePlan();
  ASSERT_EQ(plan.waves.size(), 1u);
  EXPECT_EQ(plan.waves[0].percent_bp, 10000);
  EXPECT_EQ(plan.waves[0].soak, seconds(0));
}

TEST(WavePlanTest, WavesTakeTheRolloutDefaultsThenTheirOwnFields) {
  WaveDefaults defaults;
  defaults.soak = seconds(30);
  defaults.gates.set_max_install_failure_percent(2.5);
  auto specs = *ParseWaveSizes("10%,100%");
  specs[1].mutable_soak()->set_seconds(0);
  specs[1].mutable_gates()->set_max_install_failure_percent(0);
  specs[1].mutable_gates()->set_max_probation_failures(2);
  WavePlan plan = *NormalizeWaves(specs, defaults);
  EXPECT_EQ(plan.waves[0].soak, seconds(30));
  EXPECT_EQ(plan.waves[0].gates.max_install_failure_bp, 250);
  EXPECT_FALSE(plan.waves[0].gates.max_probation_failures.has_value());
  EXPECT_EQ(plan.waves[1].soak, seconds(0)) << "an explicit zero soak is kept";
  EXPECT_EQ(plan.waves[1].gates.max_install_failure_bp, 0) << "an explicit zero is kept";
  EXPECT_EQ(plan.waves[1].gates.max_probation_failures, 2u);
  EXPECT_EQ(plan.waves[1].gates.min_finished_devices, 3u) << "the built-in default";
}

TEST(WavePlanTest, TheStoredSpecNormalisesToTheSamePlan) {
  WaveDefaults defaults;
  defaults.gates.set_max_probation_failures(1);
  defaults.gates.set_serving_timeout_seconds(90);
  WavePlan plan = Plan("3,12.5%,100%", defaults);
  std::vector<v1::WaveSpec> stored;
  for (const Wave& w : plan.waves) stored.push_back(ToProto(w));
  auto again = NormalizeWaves(stored);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, plan);
}

TEST(WavePlanTest, BadListsAreRefusedWithClearMessages) {
  EXPECT_EQ(Error(PlanError("10%,,100%")),
            "waves item 2 '' is neither a percentage (10%) nor a device count (5)");
  EXPECT_EQ(Error(PlanError("ten%,100%")), "waves item 1 'ten%' is not a percentage");
  EXPECT_EQ(Error(PlanError("0,100%")),
            "waves item 1 '0' is neither a percentage (10%) nor a device count (5)");
  EXPECT_EQ(Error(PlanError("0%,100%")), "waves item 1 '0%' must be above 0%");
  EXPECT_EQ(Error(PlanError("10%,150%")), "waves[1].percent is 150; it must be in (0, 100]");
  EXPECT_EQ(Error(PlanError("-5%,100%")), "waves[0].percent is -5; it must be in (0, 100]");
  EXPECT_EQ(Error(PlanError("0.125%,100%")),
            "waves[0].percent is 0.125; it may have at most two decimals");
  EXPECT_EQ(Error(PlanError("50%,10%,100%")),
            "waves[1].percent is 10; wave sizes must not decrease (50% before it)");
  EXPECT_EQ(Error(PlanError("10,5,100%")),
            "waves[1].device_count is 5; wave sizes must not decrease (10 devices before it)");
  EXPECT_EQ(Error(PlanError("10%,50%")),
            "the last wave (waves[1]) is 50%; it must be 100% so that every matching device is "
            "covered");
  EXPECT_EQ(Error(PlanError("1%,1000")),
            "the last wave (waves[1]) is 1000 devices; it must be 100% so that every matching "
            "device is covered");
  EXPECT_TRUE(PlanError("10%,10%,100%").ok()) << "equal sizes do not decrease";
}

TEST(WavePlanTest, BadFieldsAreRefusedNamingThem) {
  v1::WaveSpec both;
  both.set_percent(10);
  both.set_device_count(3);
  EXPECT_EQ(Error(NormalizeWaves({both}).status()),
            "waves[0].percent and waves[0].device_count: set exactly one");
  EXPECT_EQ(Error(NormalizeWaves({v1::WaveSpec()}).status()),
            "waves[0].percent and waves[0].device_count: set exactly one");

  auto specs = *ParseWaveSizes("100%");
  specs[0].mutable_soak()->set_seconds(-1);
  EXPECT_EQ(Error(NormalizeWaves(specs).status()), "waves[0].soak must not be negative");
  specs[0].mutable_soak()->set_seconds(31 * 24 * 3600);
  EXPECT_EQ(Error(NormalizeWaves(specs).status()),
            "waves[0].soak is 2678400 s; the limit is 2592000 s");
  specs[0].mutable_soak()->set_seconds(1);
  specs[0].mutable_soak()->set_nanos(500);
  EXPECT_EQ(Error(NormalizeWaves(specs).status()), "waves[0].soak must be whole seconds");
  specs[0].clear_soak();

  specs[0].mutable_gates()->set_max_timeout_percent(101);
  EXPECT_EQ(Error(NormalizeWaves(specs).status()),
            "waves[0].gates.max_timeout_percent is 101; it must be in [0, 100]");
  specs[0].clear_gates();
  specs[0].mutable_gates()->set_serving_timeout_seconds(0);
  EXPECT_EQ(Error(NormalizeWaves(specs).status()),
            "waves[0].gates.serving_timeout_seconds is 0; it must be 1 to 604800");
  specs[0].clear_gates();

  WaveDefaults defaults;
  defaults.gates.set_max_install_failure_percent(-1);
  EXPECT_EQ(Error(NormalizeWaves(specs, defaults).status()),
            "gates.max_install_failure_percent is -1; it must be in [0, 100]");

  std::vector<v1::WaveSpec> many(RequestLimits::kRolloutWaves + 1, specs[0]);
  EXPECT_EQ(Error(NormalizeWaves(many).status()), "a rollout has at most 16 waves, not 17");
}

TEST(WavePlanTest, CumulativeTargetsRoundUpAndRespectMinimums) {
  WavePlan plan = DefaultPlan();
  // 1% of 30 is 0.3: at least 1; 10% is 3; 50% is 15; the last covers everyone.
  EXPECT_EQ(CumulativeTarget(plan, 0, 30), 1u);
  EXPECT_EQ(CumulativeTarget(plan, 1, 30), 3u);
  EXPECT_EQ(CumulativeTarget(plan, 2, 30), 15u);
  EXPECT_EQ(CumulativeTarget(plan, 3, 30), 30u);
  EXPECT_EQ(CumulativeTarget(plan, 0, 0), 0u) << "nothing matches";
  EXPECT_EQ(CumulativeTarget(plan, 1, 101), 11u) << "ceil(10.1)";
  EXPECT_EQ(CumulativeTarget(plan, 0, 1000), 10u);

  // A count wave, then a percentage smaller than it: never fewer than before.
  WavePlan counts = Plan("5,10%,100%");
  EXPECT_EQ(CumulativeTarget(counts, 0, 20), 5u);
  EXPECT_EQ(CumulativeTarget(counts, 1, 20), 5u);
  EXPECT_EQ(CumulativeTarget(counts, 0, 3), 3u) << "at most the matching devices";

  auto specs = *ParseWaveSizes("10%,100%");
  specs[0].set_min_devices(4);
  WavePlan minimum = *NormalizeWaves(specs);
  EXPECT_EQ(CumulativeTarget(minimum, 0, 10), 4u);
  EXPECT_EQ(CumulativeTarget(minimum, 0, 2), 2u) << "min_devices when that many match";

  // Exact for fleets where floating point would round 10% of 30 up to 4.
  EXPECT_EQ(CumulativeTarget(Plan("0.07%,100%"), 0, 100'000), 70u);
  EXPECT_EQ(CumulativeTarget(Plan("30%,100%"), 0, 10), 3u);
}

TEST(WavePlanTest, ACreateRequestIsValidatedWholly) {
  v1::CreateRolloutRequest request;
  request.set_name("detector-v7");
  request.set_model_name("detector");
  request.set_version("7");
  request.set_label_selector("site=a");
  auto def = ValidateCreateRollout(request);
  ASSERT_TRUE(def.ok()) << def.status();
  EXPECT_EQ(def->on_failure, v1::ROLLOUT_FAILURE_ACTION_PAUSE);
  EXPECT_EQ(def->selector, (Labels{{"site", "a"}}));
  EXPECT_EQ(def->plan, DefaultPlan());

  request.mutable_soak()->set_seconds(30);
  request.set_on_failure(v1::ROLLOUT_FAILURE_ACTION_ROLLBACK);
  def = ValidateCreateRollout(request);
  ASSERT_TRUE(def.ok()) << def.status();
  EXPECT_EQ(def->plan.waves[2].soak, seconds(30));
  EXPECT_EQ(def->on_failure, v1::ROLLOUT_FAILURE_ACTION_ROLLBACK);

  auto bad = request;
  bad.set_name("Bad Name");
  EXPECT_EQ(Error(ValidateCreateRollout(bad).status()), "name has a character outside [a-z0-9._-]");
  bad = request;
  bad.set_version("");
  EXPECT_EQ(Error(ValidateCreateRollout(bad).status()), "version must be 1 to 63 characters");
  bad = request;
  bad.set_label_selector("site");
  EXPECT_EQ(Error(ValidateCreateRollout(bad).status()),
            "label_selector: label 'site' is not of the form key=value");
  bad = request;
  bad.set_on_failure(static_cast<v1::RolloutFailureAction>(42));
  EXPECT_EQ(Error(ValidateCreateRollout(bad).status()), "on_failure 42 is not a failure action");
  bad = request;
  bad.mutable_soak()->set_seconds(-3);
  EXPECT_EQ(Error(ValidateCreateRollout(bad).status()), "soak must not be negative");
  bad = request;
  bad.add_waves()->set_percent(50);
  EXPECT_EQ(ValidateCreateRollout(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(WavePlanTest, InferenceGatesTakeTheRolloutsThenTheWavesSettingsAndAreChecked) {
  std::vector<v1::WaveSpec> specs = *ParseWaveSizes("10%,100%");
  WaveDefaults defaults;
  defaults.gates.set_min_inferences(50);
  defaults.gates.set_max_latency_p99_ratio(1.5);
  specs[1].mutable_gates()->set_inference_gates(false);
  specs[1].mutable_gates()->set_max_error_rate_increase_percent(0.25);
  const WavePlan plan = *NormalizeWaves(specs, defaults);
  const InferenceThresholds& first = plan.waves[0].gates.inference;
  EXPECT_TRUE(first.enabled);
  EXPECT_EQ(first.min_inferences, 50u);
  EXPECT_EQ(first.min_devices, 10u);
  EXPECT_DOUBLE_EQ(first.max_p99_ratio, 1.5);
  EXPECT_DOUBLE_EQ(first.max_p50_ratio, 1.1);
  EXPECT_EQ(first.max_error_increase_bp, 50);
  EXPECT_DOUBLE_EQ(first.max_output_psi, 0.1);
  EXPECT_FALSE(plan.waves[1].gates.inference.enabled);
  EXPECT_EQ(plan.waves[1].gates.inference.max_error_increase_bp, 25);
  // Stored and read back the same.
  std::vector<v1::WaveSpec> stored;
  for (const Wave& w : plan.waves) stored.push_back(ToProto(w));
  EXPECT_EQ(*NormalizeWaves(stored), plan);
  // deploy create's single wave has none (no canary to compare).
  EXPECT_FALSE(SingleWavePlan().waves[0].gates.inference.enabled);
  EXPECT_TRUE(DefaultPlan().waves[0].gates.inference.enabled);

  specs = *ParseWaveSizes("100%");
  specs[0].mutable_gates()->set_max_latency_p50_ratio(0);
  EXPECT_EQ(Error(NormalizeWaves(specs).status()),
            "waves[0].gates.max_latency_p50_ratio is 0; it must be a finite number > 0");
  specs[0].clear_gates();
  specs[0].mutable_gates()->set_max_output_psi(-0.1);
  EXPECT_EQ(Error(NormalizeWaves(specs).status()),
            "waves[0].gates.max_output_psi is -0.1; it must be a finite number >= 0");
  specs[0].clear_gates();
  specs[0].mutable_gates()->set_min_inference_devices(0);
  EXPECT_EQ(Error(NormalizeWaves(specs).status()),
            "waves[0].gates.min_inference_devices is 0; it must be at least 1");
  specs[0].clear_gates();
  specs[0].mutable_gates()->set_max_error_rate_increase_percent(100.5);
  EXPECT_EQ(Error(NormalizeWaves(specs).status()),
            "waves[0].gates.max_error_rate_increase_percent is 100.5; it must be in [0, 100]");
}

}  // namespace
}  // namespace edgefleet::server::rollout
