// Probation end to end: a real agent watches a new version after its swap, swaps a bad one back
// in-process and reports PROBATION_FAILED, which marks the deployment target FAILED; an agent
// killed with SIGKILL while a version is on probation, twice, boots the previous version.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "tests/integration/integration_fixture.h"

namespace edgefleet::test {
namespace {

using ::testing::HasSubstr;

class ProbationTest : public IntegrationTest {
 protected:
  // An agent with a probation of `window_seconds` and 10 requests, whose failed releases are not
  // retried during the test.
  AgentHarness& StartWatchedAgent(const std::string& name, int window_seconds) {
    server_->Start();
    AgentHarness& agent = AddAgent(name);
    agent.set_extra_args({"--probation-window-seconds", std::to_string(window_seconds),
                          "--probation-min-requests", "10", "--update-retry-base-seconds", "3600"});
    agent.Start(server_->device_address(), server_->ca_file(), NewEnrollmentToken(1));
    EXPECT_TRUE(WaitForActiveDevices(1));
    return agent;
  }

  // Deploys version 1 and drives it through its probation (10 requests and the window).
  void ServeV1(AgentHarness& agent) {
    v1::Deployment d1 = PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx"));
    ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "1"));
    SendTraffic(agent, 10);
    v1::Deployment status = WaitForTargets(d1.deployment_id(), v1::DEPLOYMENT_TARGET_STATE_SERVING);
    ASSERT_EQ(status.targets(0).state(), v1::DEPLOYMENT_TARGET_STATE_SERVING)
        << "version 1 should pass its probation: " << status.ShortDebugString();
  }

  static void SendTraffic(const AgentHarness& agent, int n) {
    for (int i = 0; i < n; ++i) {
      v1::PredictResponse response;
      EXPECT_TRUE(PredictSample(agent, "classifier", &response).ok());
    }
  }

  static bool AnswersFinite(const v1::PredictResponse& response) {
    for (const auto& t : response.outputs()) {
      for (float v : t.data()) {
        if (!std::isfinite(v)) return false;
      }
    }
    return true;
  }

  std::string EventCount(const std::string& kind, const std::string& version) {
    return db_->QueryValue("SELECT count(*) FROM device_events WHERE kind = '" + kind +
                           "' AND version = '" + version + "'");
  }
};

// The model passes warm-up (zeros in, zeros out) but answers NaN for the inputs local traffic
// sends: probation swaps version 1 back without a download and the server records why.
TEST_F(ProbationTest, VersionAnsweringNonFiniteForLocalTrafficIsSwappedBackAndReported) {
  AgentHarness& agent = StartWatchedAgent("dev-nan", 3);
  ASSERT_FALSE(HasFatalFailure());
  ServeV1(agent);
  ASSERT_FALSE(HasFatalFailure());

  v1::Deployment d2 = PushAndDeploy("classifier", "2", TestModel("classifier_nan.onnx"));
  int nan_answers_from_2 = 0;
  v1::Deployment status;
  ASSERT_TRUE(WaitFor(
      [&] {
        v1::PredictResponse response;
        if (PredictSample(agent, "classifier", &response).ok() && response.version() == "2" &&
            !AnswersFinite(response)) {
          ++nan_answers_from_2;
        }
        status.Clear();
        return server_->GetDeployment(d2.deployment_id(), &status).ok() &&
               status.targets_size() == 1 &&
               status.targets(0).state() == v1::DEPLOYMENT_TARGET_STATE_FAILED;
      },
      kLongWait, 20ms))
      << status.ShortDebugString();
  EXPECT_GT(nan_answers_from_2, 0) << "version 2 served (and answered NaN) before it was judged";
  EXPECT_THAT(status.targets(0).detail(), HasSubstr("FAILURE_REASON_PROBATION_FAILED: "));
  EXPECT_THAT(status.targets(0).detail(), HasSubstr("non-finite"));
  EXPECT_EQ(EventCount("probation_started", "2"), "1");
  EXPECT_EQ(
      db_->QueryValue("SELECT reason FROM device_events WHERE kind = 'failed' AND version = '2'"),
      "probation_failed");

  // Version 1 serves again, swapped back in-process (no download, no restart).
  v1::PredictResponse response;
  ASSERT_TRUE(PredictSample(agent, "classifier", &response).ok());
  EXPECT_EQ(response.version(), "1");
  EXPECT_TRUE(AnswersFinite(response));
  EXPECT_LE(MaxAbsDifference(response.outputs(0), Expected("classifier_v1.onnx").outputs[0]), 1e-4);
  EXPECT_THAT(agent.LogText(), HasSubstr("rolled back model=classifier version=2; 1 serves"));
  EXPECT_TRUE(agent.IsRunning());
}

// Kill -9 while version 2 is on probation: the restart resumes its probation; killed again, the
// next start sees a crash loop and boots version 1 from its kept copy, reported PROBATION_FAILED.
TEST_F(ProbationTest, AgentKilledTwiceOnProbationBootsThePreviousVersion) {
  AgentHarness& agent = StartWatchedAgent("dev-crashloop", 5);
  ASSERT_FALSE(HasFatalFailure());
  ServeV1(agent);
  ASSERT_FALSE(HasFatalFailure());

  v1::Deployment d2 = PushAndDeploy("classifier", "2", TestModel("classifier_v2.onnx"));
  // The event follows the durable Probation state: killed from here on, the agent was on
  // probation. No traffic is sent, so only a crash can end this probation early.
  ASSERT_TRUE(
      WaitFor([&] { return EventCount("probation_started", "2") == "1"; }, kLongWait, 20ms));
  agent.Kill();
  agent.Restart();
  // Served again on probation (the local API opens after the saved state was acted on).
  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "2"));
  agent.Kill();
  agent.Restart();

  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "1"));
  v1::Deployment status = WaitForTargets(d2.deployment_id(), v1::DEPLOYMENT_TARGET_STATE_FAILED);
  ASSERT_EQ(status.targets_size(), 1);
  EXPECT_EQ(status.targets(0).state(), v1::DEPLOYMENT_TARGET_STATE_FAILED)
      << status.ShortDebugString();
  EXPECT_THAT(status.targets(0).detail(),
              HasSubstr("FAILURE_REASON_PROBATION_FAILED: the agent restarted 2 times while "
                        "version 2 was on probation"));
  v1::PredictResponse response;
  ASSERT_TRUE(PredictSample(agent, "classifier", &response).ok());
  EXPECT_EQ(response.version(), "1");
  EXPECT_LE(MaxAbsDifference(response.outputs(0), Expected("classifier_v1.onnx").outputs[0]), 1e-4);
}

}  // namespace
}  // namespace edgefleet::test
