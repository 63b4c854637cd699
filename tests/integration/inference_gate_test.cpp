// Inference gates end to end: real agents answer Predict traffic sent to their local API, cut
// telemetry windows every second and upload them; the server's rollout controller compares a
// wave's canaries with the devices still on the previous version and stops a slower version in
// its first wave, lets an equal one through, and holds (neither fails nor promotes) a fleet that
// sends no traffic. Rollouts are created with `edgefleetctl rollout create` and read with
// `rollout status`, as an operator does; the minimums are small so that each test takes seconds.
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <optional>
#include <thread>

#include "tests/integration/integration_fixture.h"

namespace edgefleet::test {
namespace {

using ::testing::HasSubstr;

constexpr int kAgents = 4;  // waves 50%,100%: 2 canaries against 2 control devices

class InferenceGateTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    server_->set_extra_args({"--rollout-interval-ms", "200"});
  }

  void TearDown() override {
    StopTraffic();
    IntegrationTest::TearDown();
  }

  // The server and kAgents agents, all serving classifier v1. Probation here only needs 1 s
  // without a failure: the fleet-level gates are what these tests are about.
  void StartFleetOnV1() {
    server_->Start();
    const std::string token = NewEnrollmentToken(kAgents);
    for (int i = 0; i < kAgents; ++i) {
      AgentHarness& agent = AddAgent("dev-" + std::to_string(i));
      agent.set_extra_args({"--probation-latency-limit-percent", "100000"});
      agent.Start(server_->device_address(), server_->ca_file(), token);
      fleet_.push_back(&agent);
    }
    ASSERT_TRUE(WaitForActiveDevices(kAgents));
    v1::Deployment d1 = PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx"));
    for (AgentHarness* agent : fleet_) {
      ASSERT_TRUE(WaitForServedVersion(*agent, "classifier", "1")) << agent->device_id();
    }
    WaitForTargets(d1.deployment_id(), v1::DEPLOYMENT_TARGET_STATE_SERVING);
  }

  // One thread sends Predict to every agent in turn, as fast as they answer, until StopTraffic:
  // canaries and control see the same load from the test.
  void StartTraffic() {
    traffic_ = std::thread([this] {
      std::vector<std::unique_ptr<v1::InferenceService::Stub>> stubs;
      for (AgentHarness* agent : fleet_) stubs.push_back(agent->NewInferenceStub());
      v1::PredictRequest request;
      request.set_model_name("classifier");
      for (const v1::Tensor& t : Expected("classifier_v1.onnx").inputs) *request.add_inputs() = t;
      while (!stop_traffic_.load()) {
        for (auto& stub : stubs) {
          grpc::ClientContext context;
          context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
          v1::PredictResponse response;
          // A request failing mid-swap is the agent's to count; the traffic goes on.
          (void)stub->Predict(&context, request, &response);
        }
      }
    });
  }

  void StopTraffic() {
    stop_traffic_ = true;
    if (traffic_.joinable()) traffic_.join();
  }

  CommandResult CtlOk(const std::vector<std::string>& args) {
    CommandResult r = server_->Ctl(args);
    EXPECT_EQ(r.exit_code, 0) << testing::PrintToString(args) << "\n" << r.err << r.out;
    return r;
  }

  void Push(const std::string& version, const std::string& file) {
    v1::ModelVersion pushed;
    grpc::Status push = server_->PushClassifier("classifier", version, TestModel(file), &pushed);
    ASSERT_TRUE(push.ok()) << push.error_message();
  }

  // `rollout create r1` of classifier `version` in waves 50%,100% that roll back on failure,
  // with inference gates deciding on 200 inferences on 2 devices per side, plus `extra` flags.
  void Create(const std::string& version, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"rollout",    "create",
                                     "r1",         "--model",
                                     "classifier", "--version",
                                     version,      "--waves",
                                     "50%,100%",   "--soak",
                                     "1s",         "--min-devices",
                                     "1",          "--on-failure",
                                     "rollback",   "--min-inferences",
                                     "200",        "--min-inference-devices",
                                     "2",          "-o",
                                     "json"};
    args.insert(args.end(), extra.begin(), extra.end());
    CtlOk(args);
  }

  std::optional<v1::Rollout> Status() {
    CommandResult r = server_->Ctl({"rollout", "status", "r1", "-o", "json"});
    if (r.exit_code != 0) return std::nullopt;
    v1::Rollout out;
    if (!google::protobuf::util::JsonStringToMessage(r.out, &out).ok()) return std::nullopt;
    return out;
  }

  v1::Rollout WaitForRollout(const std::function<bool(const v1::Rollout&)>& done,
                             std::chrono::seconds timeout = std::chrono::seconds(90)) {
    v1::Rollout last;
    WaitFor(
        [&] {
          std::optional<v1::Rollout> got = Status();
          if (got.has_value()) last = *std::move(got);
          return got.has_value() && done(last);
        },
        timeout, std::chrono::milliseconds(250));
    return last;
  }

  static const v1::GateResult* GateIn(
      const google::protobuf::RepeatedPtrField<v1::GateResult>& gates, v1::Gate gate) {
    for (const v1::GateResult& g : gates) {
      if (g.gate() == gate) return &g;
    }
    return nullptr;
  }

  std::vector<AgentHarness*> fleet_;
  std::thread traffic_;
  std::atomic<bool> stop_traffic_{false};
};

TEST_F(InferenceGateTest, ATenTimesSlowerVersionHaltsInTheFirstWaveAndIsRolledBack) {
  StartFleetOnV1();
  ASSERT_FALSE(HasFatalFailure());
  StartTraffic();
  Push("2", "classifier_slow.onnx");
  ASSERT_FALSE(HasFatalFailure());
  Create("2");  // the default thresholds: p99 1.2, p50 1.1, +0.5 points, PSI 0.1
  v1::Rollout r = WaitForRollout([](const v1::Rollout& got) {
    return got.state() != v1::ROLLOUT_STATE_PENDING && got.state() != v1::ROLLOUT_STATE_RUNNING;
  });
  ASSERT_EQ(r.state(), v1::ROLLOUT_STATE_ROLLED_BACK) << r.DebugString();
  EXPECT_EQ(r.current_wave(), 0u);
  EXPECT_EQ(r.waves(1).targeted(), 0u) << "the second wave never started";
  const v1::RolloutEvent& last = r.events(r.events_size() - 1);
  EXPECT_EQ(last.kind(), v1::ROLLOUT_EVENT_KIND_ROLLED_BACK);
  EXPECT_EQ(last.actor(), v1::ROLLOUT_ACTOR_CONTROLLER);
  const v1::GateResult* p50 = GateIn(last.gates(), v1::GATE_LATENCY_P50_RATIO);
  const v1::GateResult* p99 = GateIn(last.gates(), v1::GATE_LATENCY_P99_RATIO);
  ASSERT_NE(p50, nullptr) << last.DebugString();
  ASSERT_NE(p99, nullptr);
  EXPECT_EQ(p50->result(), v1::GATE_OUTCOME_FAIL) << p50->detail();
  EXPECT_EQ(p99->result(), v1::GATE_OUTCOME_FAIL) << p99->detail();
  EXPECT_EQ(p50->control(), v1::INFERENCE_CONTROL_LIVE);
  EXPECT_EQ(p50->control_version(), "1");
  EXPECT_GE(p50->canary_inferences(), 200u);
  EXPECT_GE(p50->control_inferences(), 200u);
  EXPECT_EQ(p50->canary_devices(), 2u);
  EXPECT_EQ(p50->control_devices(), 2u);
  // The slow model costs about ten times v1 in the agent's own latency measure on a quiet
  // machine (9.8x and 10.0x measured); a suite running in parallel inflates the control's
  // latency too, so only "several times slower" is asserted here.
  EXPECT_GE(p50->value(), 3.0) << p50->detail();
  std::cout << "slow version measured: " << p50->detail() << "; " << p99->detail() << "\n";
  // Same outputs: the other gates pass.
  EXPECT_EQ(GateIn(last.gates(), v1::GATE_OUTPUT_PSI)->result(), v1::GATE_OUTCOME_PASS);
  EXPECT_EQ(GateIn(last.gates(), v1::GATE_ERROR_RATE_INCREASE)->result(), v1::GATE_OUTCOME_PASS);
  // `rollout status` shows the values against their thresholds.
  CommandResult text = CtlOk({"rollout", "status", "r1"});
  EXPECT_THAT(text.out, HasSubstr("LATENCY_P50_RATIO"));
  EXPECT_THAT(text.out, HasSubstr("1.1x"));
  // Every device ends on v1: the canaries were sent back.
  for (AgentHarness* agent : fleet_) {
    EXPECT_TRUE(WaitForServedVersion(*agent, "classifier", "1")) << agent->device_id();
  }
}

TEST_F(InferenceGateTest, AVersionEqualToThePreviousOneGoesThrough) {
  StartFleetOnV1();
  ASSERT_FALSE(HasFatalFailure());
  StartTraffic();
  Push("2", "classifier_same.onnx");
  ASSERT_FALSE(HasFatalFailure());
  // Latency ratios of two equal versions on a shared 2-core test machine wander (the last
  // wave's control is measured earlier, under other load): the p50 bound here catches a 10x
  // version, not a 10% one (the unit tests pin the default thresholds' boundaries). The p99 of
  // sub-millisecond latencies wanders most: 0.82 ms against 0.17 ms (4.8x) in one CI run.
  Create("2", {"--max-p99-ratio", "10", "--max-p50-ratio", "2"});
  v1::Rollout r = WaitForRollout([](const v1::Rollout& got) {
    return got.state() != v1::ROLLOUT_STATE_PENDING && got.state() != v1::ROLLOUT_STATE_RUNNING;
  });
  ASSERT_EQ(r.state(), v1::ROLLOUT_STATE_SUCCEEDED) << r.DebugString();
  for (AgentHarness* agent : fleet_) {
    EXPECT_TRUE(WaitForServedVersion(*agent, "classifier", "2")) << agent->device_id();
  }
  // Wave 0 against the devices still on v1; the last wave (no device left on v1) against its
  // own devices on v1 before it started.
  const v1::InferenceControl controls[] = {v1::INFERENCE_CONTROL_LIVE,
                                           v1::INFERENCE_CONTROL_BEFORE_WAVE};
  for (int w = 0; w < 2; ++w) {
    for (v1::Gate gate : {v1::GATE_LATENCY_P99_RATIO, v1::GATE_LATENCY_P50_RATIO,
                          v1::GATE_ERROR_RATE_INCREASE, v1::GATE_OUTPUT_PSI}) {
      const v1::GateResult* g = GateIn(r.waves(w).gates(), gate);
      ASSERT_NE(g, nullptr) << "wave " << w << " " << v1::Gate_Name(gate);
      EXPECT_EQ(g->result(), v1::GATE_OUTCOME_PASS) << "wave " << w << ": " << g->detail();
      EXPECT_EQ(g->control(), controls[w]) << "wave " << w;
      EXPECT_GE(g->canary_inferences(), 200u);
      EXPECT_GE(g->control_inferences(), 200u);
    }
    std::cout << "equal version, wave " << w << ": "
              << GateIn(r.waves(w).gates(), v1::GATE_LATENCY_P50_RATIO)->detail() << "\n";
  }
}

TEST_F(InferenceGateTest, AQuietFleetStaysInconclusiveHeldNeitherFailedNorPromoted) {
  StartFleetOnV1();
  ASSERT_FALSE(HasFatalFailure());
  Push("2", "classifier_same.onnx");
  ASSERT_FALSE(HasFatalFailure());
  Create("2");
  // The canaries swap and pass probation (no traffic: the window decides), the install gates
  // pass, and the inference gates wait for traffic.
  v1::Rollout r = WaitForRollout([](const v1::Rollout& got) {
    if (got.waves_size() == 0 || got.waves(0).serving() < 2) return false;
    const v1::GateResult* p50 = GateIn(got.waves(0).gates(), v1::GATE_LATENCY_P50_RATIO);
    return p50 != nullptr && p50->result() == v1::GATE_OUTCOME_INCONCLUSIVE;
  });
  ASSERT_EQ(r.waves(0).serving(), 2u) << r.DebugString();
  // Long enough for a few uploaded windows of each agent and many controller passes (every
  // 200 ms): the time observed, not an ordering wait.
  std::this_thread::sleep_for(std::chrono::seconds(4));
  r = WaitForRollout([](const v1::Rollout&) { return true; });
  EXPECT_EQ(r.state(), v1::ROLLOUT_STATE_RUNNING);
  EXPECT_EQ(r.current_wave(), 0u);
  EXPECT_EQ(r.waves(1).targeted(), 0u);
  for (const v1::GateResult& g : r.waves(0).gates()) {
    EXPECT_NE(g.result(), v1::GATE_OUTCOME_FAIL) << g.ShortDebugString();
  }
  const v1::GateResult* psi = GateIn(r.waves(0).gates(), v1::GATE_OUTPUT_PSI);
  ASSERT_NE(psi, nullptr);
  EXPECT_EQ(psi->result(), v1::GATE_OUTCOME_INCONCLUSIVE);
  EXPECT_EQ(psi->canary_inferences(), 0u);
  EXPECT_EQ(psi->min_inferences(), 200u);
  EXPECT_EQ(psi->min_devices(), 2u);
  for (const v1::RolloutEvent& e : r.events()) {
    EXPECT_NE(e.kind(), v1::ROLLOUT_EVENT_KIND_ROLLED_BACK);
    EXPECT_NE(e.kind(), v1::ROLLOUT_EVENT_KIND_PAUSED);
    EXPECT_NE(e.kind(), v1::ROLLOUT_EVENT_KIND_PROMOTED);
  }
  EXPECT_EQ(r.events(r.events_size() - 1).kind(), v1::ROLLOUT_EVENT_KIND_HELD);
  // What an operator reads: why it holds, with the numbers and the minimums.
  CommandResult text = CtlOk({"rollout", "status", "r1"});
  EXPECT_THAT(text.out, HasSubstr("INCONCLUSIVE"));
  EXPECT_THAT(text.out, HasSubstr("at least 200 inferences on 2 devices needed per side"));
  EXPECT_THAT(text.out, HasSubstr("0/0 vs 0/0 (min 200/2)"));
}

}  // namespace
}  // namespace edgefleet::test
