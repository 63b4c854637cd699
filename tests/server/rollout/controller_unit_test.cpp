// The rollout controller on in-memory stores (fake_rollout_stores.h) with a fake clock: promotion
// after the soak, holds while gates are inconclusive, each failure action, operator actions and
// idempotent evaluations. controller_test.cpp runs it on PostgreSQL.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "common/telemetry/telemetry_codec.h"
#include "server/rollout/controller.h"
#include "tests/server/rollout/fake_rollout_stores.h"

namespace edgefleet::server::rollout {
namespace {

using testing::FakeRolloutStores;
using testing::FakeTransactor;

constexpr int kDevices = 10;

class ControllerUnitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < kDevices; ++i) {
      stores_.data.devices["dev-" + std::to_string(i)] = {{"hw", i % 2 ? "a" : "b"}};
    }
  }

  v1::CreateRolloutRequest Request(const std::string& waves, v1::RolloutFailureAction on_failure,
                                   uint64_t min_finished = 1) {
    v1::CreateRolloutRequest r;
    r.set_name("r1");
    r.set_model_name("detector");
    r.set_version("2.0");
    auto sizes = ParseWaveSizes(waves);
    EXPECT_TRUE(sizes.ok()) << sizes.status();
    if (sizes.ok()) {
      for (const auto& w : *sizes) *r.add_waves() = w;
    }
    r.mutable_soak()->set_seconds(10);
    r.mutable_gates()->set_min_finished_devices(min_finished);
    r.mutable_gates()->set_max_install_failure_percent(10);
    // The install gates' tests; InferenceGate* tests switch them on.
    r.mutable_gates()->set_inference_gates(false);
    r.set_on_failure(on_failure);
    return r;
  }

  void Create(const std::string& waves, v1::RolloutFailureAction on_failure,
              uint64_t min_finished = 1) {
    auto created = controller_.Create(Request(waves, on_failure, min_finished), "alice");
    ASSERT_TRUE(created.ok()) << created.status();
  }

  // A rollout whose inference gates decide on 100 inferences on 2 devices per side.
  void CreateWithInferenceGates(const std::string& waves, v1::RolloutFailureAction on_failure) {
    v1::CreateRolloutRequest r = Request(waves, on_failure);
    r.mutable_gates()->set_inference_gates(true);
    r.mutable_gates()->set_min_inferences(100);
    r.mutable_gates()->set_min_inference_devices(2);
    auto created = controller_.Create(r, "alice");
    ASSERT_TRUE(created.ok()) << created.status();
  }

  // Every device runs `version` before the rollout.
  void Running(const std::string& version) {
    for (const auto& [id, labels] : stores_.data.devices) stores_.data.running[id] = version;
  }

  // `devices` each send a window of `version` starting `at`: 100 requests answered in
  // `seconds`, all in output class 1.
  void Send(const std::vector<std::string>& devices, const std::string& version, int64_t at,
            double seconds) {
    for (const std::string& id : devices) {
      testing::FakeWindow w{id, version, at, {}};
      w.window.set_request_count(100);
      telemetry::LatencySketch sketch;
      sketch.AddCount(seconds, 100);
      *w.window.mutable_latency() = telemetry::ToProto(sketch);
      for (uint64_t bin : {0, 100, 0}) w.window.mutable_outputs()->add_bins(bin);
      stores_.data.windows.push_back(std::move(w));
    }
  }

  std::vector<std::string> NotTargeted() {
    std::vector<std::string> out;
    const std::vector<std::string> targeted = Targeted();
    for (const auto& [id, labels] : stores_.data.devices) {
      if (std::find(targeted.begin(), targeted.end(), id) == targeted.end()) out.push_back(id);
    }
    return out;
  }

  int64_t Now() const { return ToUnixSeconds(clock_.Now()); }

  static const v1::GateResult* GateIn(
      const google::protobuf::RepeatedPtrField<v1::GateResult>& gates, v1::Gate gate) {
    for (const v1::GateResult& g : gates) {
      if (g.gate() == gate) return &g;
    }
    return nullptr;
  }

  // Devices with a live target of r1 (rolled back ones included when `rolled_back`).
  std::vector<std::string> Targeted(bool rolled_back = false) {
    std::vector<std::string> out;
    for (const auto& t : stores_.data.targets) {
      if (!t.superseded && t.rolled_back == rolled_back) out.push_back(t.device_id);
    }
    return out;
  }

  void ReportAll(v1::DeploymentTargetState state,
                 v1::FailureReason reason = v1::FAILURE_REASON_UNSPECIFIED) {
    for (const std::string& id : Targeted()) stores_.Report(id, state, reason);
  }

  void Tick() { ASSERT_TRUE(controller_.EvaluateAll().ok()); }

  v1::Rollout Get() {
    auto got = controller_.Get("r1");
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : v1::Rollout();
  }

  std::vector<v1::RolloutEventKind> Kinds() {
    std::vector<v1::RolloutEventKind> out;
    for (const auto& e : stores_.data.events["r1"]) out.push_back(e.kind());
    return out;
  }

  FakeClock clock_;
  FakeRolloutStores stores_;
  FakeTransactor db_{stores_};
  RolloutController controller_{db_, stores_, stores_, stores_, clock_, nullptr};
};

TEST_F(ControllerUnitTest, AWavePromotesOnlyAfterItsSoakAndTheLastOneSucceeds) {
  Create("20%,100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE);
  Tick();
  EXPECT_EQ(Get().state(), v1::ROLLOUT_STATE_RUNNING);
  ASSERT_EQ(Targeted().size(), 2u);
  ReportAll(v1::DEPLOYMENT_TARGET_STATE_SERVING);
  Tick();  // every gate passes: the soak starts
  clock_.Advance(std::chrono::seconds(9));
  Tick();
  EXPECT_EQ(Get().current_wave(), 0u) << "one second of soak left";
  EXPECT_EQ(Targeted().size(), 2u);
  clock_.Advance(std::chrono::seconds(1));
  Tick();
  EXPECT_EQ(Get().current_wave(), 1u);
  EXPECT_EQ(Targeted().size(), static_cast<size_t>(kDevices));
  ReportAll(v1::DEPLOYMENT_TARGET_STATE_SERVING);
  Tick();
  clock_.Advance(std::chrono::seconds(10));
  Tick();
  v1::Rollout done = Get();
  EXPECT_EQ(done.state(), v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(done.waves(0).state(), v1::WAVE_STATE_PASSED);
  EXPECT_EQ(done.waves(1).state(), v1::WAVE_STATE_PASSED);
  EXPECT_EQ(Kinds(), (std::vector<v1::RolloutEventKind>{
                         v1::ROLLOUT_EVENT_KIND_CREATED, v1::ROLLOUT_EVENT_KIND_WAVE_STARTED,
                         v1::ROLLOUT_EVENT_KIND_SOAK_STARTED, v1::ROLLOUT_EVENT_KIND_HELD,
                         v1::ROLLOUT_EVENT_KIND_PROMOTED, v1::ROLLOUT_EVENT_KIND_SOAK_STARTED,
                         v1::ROLLOUT_EVENT_KIND_SUCCEEDED}));
}

// Too few finished devices: the rollout holds however long it waits (within the serving
// timeout) and whatever the finished ones say; it neither promotes nor stops.
TEST_F(ControllerUnitTest, InconclusiveGatesHoldWithoutPromotingOrStopping) {
  Create("50%,100%", v1::ROLLOUT_FAILURE_ACTION_ABORT, /*min_finished=*/3);
  Tick();
  const std::vector<std::string> wave0 = Targeted();
  ASSERT_EQ(wave0.size(), 5u);
  stores_.Report(wave0[0], v1::DEPLOYMENT_TARGET_STATE_FAILED, v1::FAILURE_REASON_LOAD);
  stores_.Report(wave0[1], v1::DEPLOYMENT_TARGET_STATE_FAILED, v1::FAILURE_REASON_LOAD);
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(std::chrono::minutes(10));
    Tick();
  }
  v1::Rollout held = Get();
  EXPECT_EQ(held.state(), v1::ROLLOUT_STATE_RUNNING);
  EXPECT_EQ(held.current_wave(), 0u);
  EXPECT_EQ(Targeted().size(), 5u);
  bool inconclusive = false;
  for (const auto& gate : held.waves(0).gates()) {
    inconclusive = inconclusive || gate.result() == v1::GATE_OUTCOME_INCONCLUSIVE;
    EXPECT_NE(gate.result(), v1::GATE_OUTCOME_FAIL) << v1::Gate_Name(gate.gate());
  }
  EXPECT_TRUE(inconclusive);
  EXPECT_EQ(Kinds().back(), v1::ROLLOUT_EVENT_KIND_HELD);
}

struct FailureCase {
  v1::RolloutFailureAction on_failure;
  v1::RolloutState ends;
  v1::RolloutEventKind event;
};

class FailureActionTest : public ControllerUnitTest,
                          public ::testing::WithParamInterface<FailureCase> {};

// A failing gate stops the rollout as configured; the devices outside the wave are never
// targeted, and a roll back sends the wave's devices back.
TEST_P(FailureActionTest, AFailingGateStopsTheRolloutAsConfigured) {
  Create("20%,100%", GetParam().on_failure);
  Tick();
  ReportAll(v1::DEPLOYMENT_TARGET_STATE_FAILED, v1::FAILURE_REASON_LOAD);
  Tick();
  EXPECT_EQ(Get().state(), GetParam().ends);
  EXPECT_EQ(Kinds().back(), GetParam().event);
  clock_.Advance(std::chrono::hours(3));
  Tick();
  Tick();
  EXPECT_EQ(Get().state(), GetParam().ends);
  const bool rolled_back = GetParam().ends == v1::ROLLOUT_STATE_ROLLED_BACK;
  EXPECT_EQ(Targeted(rolled_back).size(), 2u) << "only the first wave was ever targeted";
  EXPECT_EQ(Targeted(!rolled_back).size(), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Actions, FailureActionTest,
    ::testing::Values(FailureCase{v1::ROLLOUT_FAILURE_ACTION_PAUSE, v1::ROLLOUT_STATE_PAUSED,
                                  v1::ROLLOUT_EVENT_KIND_PAUSED},
                      FailureCase{v1::ROLLOUT_FAILURE_ACTION_ABORT, v1::ROLLOUT_STATE_ABORTED,
                                  v1::ROLLOUT_EVENT_KIND_ABORTED},
                      FailureCase{v1::ROLLOUT_FAILURE_ACTION_ROLLBACK,
                                  v1::ROLLOUT_STATE_ROLLED_BACK,
                                  v1::ROLLOUT_EVENT_KIND_ROLLED_BACK}));

TEST_F(ControllerUnitTest, OperatorActionsAreAuditedAndCheckedAgainstTheState) {
  Create("20%,50%,100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE);
  EXPECT_EQ(controller_.Act("r1", OperatorAction::kResume, "", "bob").status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(controller_.Act("r1", OperatorAction::kPause, "night", "bob").ok());
  Tick();
  EXPECT_TRUE(Targeted().empty()) << "a paused rollout assigns nothing";
  ASSERT_TRUE(controller_.Act("r1", OperatorAction::kResume, "", "bob").ok());
  Tick();
  ASSERT_EQ(Targeted().size(), 2u);

  // Promote skips the rest of the soak, not the gates.
  ASSERT_TRUE(controller_.Act("r1", OperatorAction::kPromote, "", "bob").ok());
  Tick();
  EXPECT_EQ(Get().current_wave(), 0u) << "the wave's gates have not passed yet";
  ReportAll(v1::DEPLOYMENT_TARGET_STATE_SERVING);
  Tick();
  EXPECT_EQ(Get().current_wave(), 1u) << "promoted without waiting out the 10 s soak";
  EXPECT_EQ(Targeted().size(), 5u);

  ASSERT_TRUE(controller_.Act("r1", OperatorAction::kRollBack, "bad", "bob").ok());
  EXPECT_EQ(Get().state(), v1::ROLLOUT_STATE_ROLLED_BACK);
  EXPECT_EQ(Targeted(/*rolled_back=*/true).size(), 5u);
  EXPECT_EQ(controller_.Act("r1", OperatorAction::kAbort, "", "bob").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(controller_.Act("nope", OperatorAction::kPause, "", "bob").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(
      stores_.data.audit,
      (std::vector<std::string>{"alice rollout.create", "bob rollout.pause", "bob rollout.resume",
                                "bob rollout.promote", "bob rollout.rollback"}))
      << "a refused action writes no audit row";
}

TEST_F(ControllerUnitTest, AbortStopsAssigningButLeavesTheWaveOnTheNewVersion) {
  Create("20%,100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE);
  Tick();
  ASSERT_TRUE(controller_.Act("r1", OperatorAction::kAbort, "enough", "bob").ok());
  ReportAll(v1::DEPLOYMENT_TARGET_STATE_SERVING);
  clock_.Advance(std::chrono::hours(1));
  Tick();
  EXPECT_EQ(Get().state(), v1::ROLLOUT_STATE_ABORTED);
  EXPECT_EQ(Targeted().size(), 2u);
  EXPECT_TRUE(Targeted(/*rolled_back=*/true).empty());
}

// Evaluating again at the same moment changes nothing, and an evaluation whose transaction the
// database retried leaves what one evaluation leaves.
TEST_F(ControllerUnitTest, ARerunTickIsIdempotent) {
  Create("20%,100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE);
  db_.retries = 2;
  Tick();
  db_.retries = 0;
  const auto after_first = stores_.data.targets.size();
  const auto events = Kinds();
  ASSERT_EQ(after_first, 2u);
  Tick();
  Tick();
  EXPECT_EQ(stores_.data.targets.size(), after_first);
  // One hold recorded for the repeated evaluations, not one per evaluation.
  EXPECT_EQ(Kinds().size(), events.size() + 1);
  const auto held = Kinds();
  Tick();
  EXPECT_EQ(Kinds(), held);

  ReportAll(v1::DEPLOYMENT_TARGET_STATE_SERVING);
  Tick();
  clock_.Advance(std::chrono::seconds(10));
  db_.retries = 1;
  Tick();  // the promotion, retried once
  db_.retries = 0;
  EXPECT_EQ(Get().current_wave(), 1u);
  EXPECT_EQ(stores_.data.targets.size(), static_cast<size_t>(kDevices));
  int promoted = 0;
  for (auto kind : Kinds()) promoted += kind == v1::ROLLOUT_EVENT_KIND_PROMOTED;
  EXPECT_EQ(promoted, 1);

  // A replica holding the lease: this controller skips the rollout and changes nothing.
  stores_.leased_elsewhere.insert("r1");
  const auto before = Kinds();
  clock_.Advance(std::chrono::hours(1));
  Tick();
  EXPECT_EQ(Kinds(), before);
}

// A version ten times slower than the one it replaces: its first wave's canaries against the
// devices still on 1.0 fail the latency gates and the rollout rolls back, reading one sample
// per side.
TEST_F(ControllerUnitTest, InferenceGateASlowVersionRollsBackInTheFirstWave) {
  Running("1.0");
  CreateWithInferenceGates("20%,100%", v1::ROLLOUT_FAILURE_ACTION_ROLLBACK);
  Tick();
  ASSERT_EQ(Targeted().size(), 2u);
  ReportAll(v1::DEPLOYMENT_TARGET_STATE_SERVING);
  clock_.Advance(std::chrono::seconds(5));
  Send(Targeted(), "2.0", Now(), 0.010);
  Send(NotTargeted(), "1.0", Now(), 0.001);
  Send(NotTargeted(), "1.0", Now() - 60, 0.001);  // before the canaries served: not compared
  clock_.Advance(std::chrono::seconds(5));
  stores_.sample_calls.clear();
  Tick();
  v1::Rollout r = Get();
  EXPECT_EQ(r.state(), v1::ROLLOUT_STATE_ROLLED_BACK);
  // One sample per side; Get reads none for a rollout that no longer runs.
  ASSERT_EQ(stores_.sample_calls.size(), 2u);
  EXPECT_EQ(stores_.sample_calls[0].version, "2.0");
  EXPECT_EQ(stores_.sample_calls[0].device_ids, Targeted(/*rolled_back=*/true));
  EXPECT_EQ(stores_.sample_calls[1].version, "1.0");
  EXPECT_EQ(stores_.sample_calls[1].device_ids.size(), 8u);
  EXPECT_EQ(stores_.sample_calls[1].from_unix, Now() - 5) << "from the canaries' first window";
  const v1::RolloutEvent& last = stores_.data.events["r1"].back();
  EXPECT_EQ(last.kind(), v1::ROLLOUT_EVENT_KIND_ROLLED_BACK);
  const v1::GateResult* p99 = GateIn(last.gates(), v1::GATE_LATENCY_P99_RATIO);
  ASSERT_NE(p99, nullptr);
  EXPECT_EQ(p99->result(), v1::GATE_OUTCOME_FAIL);
  EXPECT_EQ(p99->control(), v1::INFERENCE_CONTROL_LIVE);
  EXPECT_EQ(p99->control_version(), "1.0");
  EXPECT_EQ(p99->canary_inferences(), 200u);
  EXPECT_EQ(p99->control_inferences(), 800u);
  // The status shows the recorded inference gates of the wave that failed.
  EXPECT_EQ(r.waves(0).state(), v1::WAVE_STATE_FAILED);
  ASSERT_NE(GateIn(r.waves(0).gates(), v1::GATE_LATENCY_P99_RATIO), nullptr);
  EXPECT_EQ(GateIn(r.waves(0).gates(), v1::GATE_LATENCY_P99_RATIO)->result(),
            v1::GATE_OUTCOME_FAIL);
}

// No traffic: the inference gates stay inconclusive; the wave holds, neither fails nor promotes,
// and the status says how many inferences each side has against the minimums.
TEST_F(ControllerUnitTest, InferenceGateAQuietFleetHoldsInconclusive) {
  Running("1.0");
  CreateWithInferenceGates("20%,100%", v1::ROLLOUT_FAILURE_ACTION_ROLLBACK);
  Tick();
  ReportAll(v1::DEPLOYMENT_TARGET_STATE_SERVING);
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(std::chrono::minutes(10));
    Tick();
  }
  v1::Rollout r = Get();
  EXPECT_EQ(r.state(), v1::ROLLOUT_STATE_RUNNING);
  EXPECT_EQ(r.current_wave(), 0u);
  EXPECT_EQ(Targeted().size(), 2u);
  const v1::GateResult* p50 = GateIn(r.waves(0).gates(), v1::GATE_LATENCY_P50_RATIO);
  ASSERT_NE(p50, nullptr);
  EXPECT_EQ(p50->result(), v1::GATE_OUTCOME_INCONCLUSIVE);
  EXPECT_EQ(p50->canary_inferences(), 0u);
  EXPECT_EQ(p50->min_inferences(), 100u);
  EXPECT_EQ(p50->min_devices(), 2u);
  EXPECT_NE(p50->detail().find("at least 100 inferences on 2 devices needed per side"),
            std::string::npos)
      << p50->detail();
  EXPECT_EQ(Kinds().back(), v1::ROLLOUT_EVENT_KIND_HELD);
}

// An equal version goes through both waves. The last wave leaves no device on 1.0: its canaries
// are compared with themselves on 1.0 just before the wave started.
TEST_F(ControllerUnitTest, InferenceGateAnEqualVersionGoesThroughAndTheLastWaveComparesWithBefore) {
  Running("1.0");
  CreateWithInferenceGates("50%,100%", v1::ROLLOUT_FAILURE_ACTION_ROLLBACK);
  Tick();
  ReportAll(v1::DEPLOYMENT_TARGET_STATE_SERVING);
  clock_.Advance(std::chrono::seconds(1));
  Send(Targeted(), "2.0", Now(), 0.001);
  Send(NotTargeted(), "1.0", Now(), 0.001);
  clock_.Advance(std::chrono::seconds(1));
  Tick();  // the soak starts
  clock_.Advance(std::chrono::seconds(8));
  Send(NotTargeted(), "1.0", Now(), 0.001);
  clock_.Advance(std::chrono::seconds(2));
  Tick();  // promoted: wave 1 targets the 5 others
  ASSERT_EQ(Get().current_wave(), 1u);
  const int64_t wave1_started = Now();
  ReportAll(v1::DEPLOYMENT_TARGET_STATE_SERVING);
  clock_.Advance(std::chrono::seconds(1));
  std::vector<std::string> wave1;
  for (const auto& t : stores_.data.targets) {
    if (t.wave == 1) wave1.push_back(t.device_id);
  }
  Send(wave1, "2.0", Now(), 0.001);
  clock_.Advance(std::chrono::seconds(1));
  stores_.sample_calls.clear();
  Tick();
  ASSERT_EQ(stores_.sample_calls.size(), 2u);
  EXPECT_EQ(stores_.sample_calls[1].version, "1.0");
  EXPECT_EQ(stores_.sample_calls[1].device_ids, wave1);
  EXPECT_EQ(stores_.sample_calls[1].to_unix, wave1_started);
  EXPECT_EQ(stores_.sample_calls[1].from_unix, wave1_started - 2) << "as long as since then";
  clock_.Advance(std::chrono::seconds(10));
  Tick();
  v1::Rollout r = Get();
  EXPECT_EQ(r.state(), v1::ROLLOUT_STATE_SUCCEEDED);
  const v1::GateResult* p99 = GateIn(r.waves(1).gates(), v1::GATE_LATENCY_P99_RATIO);
  ASSERT_NE(p99, nullptr);
  EXPECT_EQ(p99->result(), v1::GATE_OUTCOME_PASS);
  EXPECT_EQ(p99->control(), v1::INFERENCE_CONTROL_BEFORE_WAVE);
  EXPECT_EQ(GateIn(r.waves(0).gates(), v1::GATE_LATENCY_P99_RATIO)->control(),
            v1::INFERENCE_CONTROL_LIVE);
}

// A first install of the model: nothing to compare; the inference gates do not hold the wave.
TEST_F(ControllerUnitTest, InferenceGateAFirstInstallIsNotApplicableAndGoesThrough) {
  CreateWithInferenceGates("20%,100%", v1::ROLLOUT_FAILURE_ACTION_ROLLBACK);
  Tick();
  ReportAll(v1::DEPLOYMENT_TARGET_STATE_SERVING);
  Tick();
  clock_.Advance(std::chrono::seconds(10));
  Tick();
  ReportAll(v1::DEPLOYMENT_TARGET_STATE_SERVING);
  Tick();
  clock_.Advance(std::chrono::seconds(10));
  Tick();
  v1::Rollout r = Get();
  EXPECT_EQ(r.state(), v1::ROLLOUT_STATE_SUCCEEDED);
  const v1::GateResult* psi = GateIn(r.waves(1).gates(), v1::GATE_OUTPUT_PSI);
  ASSERT_NE(psi, nullptr);
  EXPECT_EQ(psi->result(), v1::GATE_OUTCOME_NOT_APPLICABLE);
  EXPECT_EQ(psi->control(), v1::INFERENCE_CONTROL_NONE);
}

}  // namespace
}  // namespace edgefleet::server::rollout
