// Staged rollouts end to end: real server processes run the rollout controller against the test
// database and real agents check in. The admin API does not serve rollouts yet, so the tests
// create and read rollouts through the rollout component on the same database (RolloutService
// without its loop); every transition is the server's.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>

#include "server/rollout/controller.h"
#include "server/store/audit_repo.h"
#include "server/store/rollout_repo.h"
#include "tests/integration/integration_fixture.h"

namespace edgefleet::test {
namespace {

using server::rollout::RolloutController;

class RolloutTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    auto db = server::Database::Open({.url = db_->url(), .pool_size = 2});
    ASSERT_TRUE(db.ok()) << db.status();
    store_db_ = *std::move(db);
    // Not started: only its RolloutService methods are used (each one transaction).
    service_ = std::make_unique<RolloutController>(*store_db_, rollouts_, audit_, clock_, nullptr);
    server_->set_extra_args({"--rollout-interval-ms", "100"});
  }

  void TearDown() override {
    service_.reset();
    store_db_.reset();
    IntegrationTest::TearDown();
  }

  // Starts the server and `n` agents all serving classifier v1.
  void StartFleetOnV1(int n) {
    server_->Start();
    const std::string token = NewEnrollmentToken(static_cast<uint32_t>(n));
    for (int i = 0; i < n; ++i)
      agents_on_.push_back(&StartAgent("dev-" + std::to_string(i), token));
    ASSERT_TRUE(WaitForActiveDevices(static_cast<size_t>(n)));
    PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx"));
    for (AgentHarness* agent : agents_on_) {
      ASSERT_TRUE(WaitForServedVersion(*agent, "classifier", "1")) << agent->device_id();
    }
  }

  void Push(const std::string& version, const std::string& file) {
    v1::ModelVersion pushed;
    grpc::Status push = server_->PushClassifier("classifier", version, file, &pushed);
    ASSERT_TRUE(push.ok()) << push.error_message();
  }

  void CreateRollout(const std::string& version, const std::string& waves,
                     v1::RolloutFailureAction on_failure) {
    v1::CreateRolloutRequest r;
    r.set_name("r1");
    r.set_model_name("classifier");
    r.set_version(version);
    auto sizes = server::rollout::ParseWaveSizes(waves);
    ASSERT_TRUE(sizes.ok()) << sizes.status();
    for (const auto& w : *sizes) *r.add_waves() = w;
    r.mutable_soak()->set_seconds(1);
    r.mutable_gates()->set_min_finished_devices(1);
    r.set_on_failure(on_failure);
    auto created = service_->Create(r, "test");
    ASSERT_TRUE(created.ok()) << created.status();
  }

  bool WaitForState(v1::RolloutState state) {
    return WaitFor(
        [&] {
          auto got = service_->Get("r1");
          return got.ok() && got->state() == state;
        },
        kLongWait, 100ms);
  }

  std::map<v1::RolloutEventKind, int> EventKinds() {
    std::map<v1::RolloutEventKind, int> kinds;
    auto got = service_->Get("r1");
    EXPECT_TRUE(got.ok()) << got.status();
    if (got.ok()) {
      for (const auto& e : got->events()) ++kinds[e.kind()];
    }
    return kinds;
  }

  double ArtifactBytesServed() {
    return MetricValue(server_->Metrics(), "edgefleet_artifact_bytes_served_total").value_or(0);
  }

  FakeClock clock_;
  server::RolloutRepo rollouts_;
  server::AuditRepo audit_;
  std::unique_ptr<server::Database> store_db_;
  std::unique_ptr<RolloutController> service_;
  std::vector<AgentHarness*> agents_on_;
};

TEST_F(RolloutTest, GoodVersionGoesThroughThreeWaves) {
  StartFleetOnV1(4);
  ASSERT_FALSE(HasFatalFailure());
  Push("2", TestModel("classifier_v2.onnx"));
  CreateRollout("2", "1,2,100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(WaitForState(v1::ROLLOUT_STATE_SUCCEEDED));
  for (AgentHarness* agent : agents_on_) {
    EXPECT_TRUE(WaitForServedVersion(*agent, "classifier", "2")) << agent->device_id();
  }
  auto kinds = EventKinds();
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_WAVE_STARTED], 1);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_PROMOTED], 2);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_SUCCEEDED], 1);
  auto got = service_->Get("r1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->waves(0).targeted(), 1u);
  EXPECT_EQ(got->waves(1).targeted(), 1u);
  EXPECT_EQ(got->waves(2).targeted(), 2u);
  EXPECT_EQ(MetricValue(server_->Metrics(), "edgefleet_rollouts", {{"state", "succeeded"}}),
            std::optional<double>(2))
      << "r1 and the deployment of v1 (a one-wave rollout)";
}

TEST_F(RolloutTest, VersionThatFailsToInstallIsRolledBackInTheFirstWaveAndNeverFetchedElsewhere) {
  StartFleetOnV1(4);
  ASSERT_FALSE(HasFatalFailure());
  Push("3", TestModel("unloadable.onnx"));
  const double before = ArtifactBytesServed();
  CreateRollout("3", "1,100%", v1::ROLLOUT_FAILURE_ACTION_ROLLBACK);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(WaitForState(v1::ROLLOUT_STATE_ROLLED_BACK));
  auto got = service_->Get("r1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->waves(0).targeted(), 1u);
  EXPECT_EQ(got->waves(0).install_failed(), 1u);
  EXPECT_EQ(got->waves(1).targeted(), 0u) << "the second wave never started";
  // Only the first wave's device downloaded the broken version.
  const double size = static_cast<double>(std::filesystem::file_size(TestModel("unloadable.onnx")));
  EXPECT_EQ(ArtifactBytesServed() - before, size);
  // Every device serves v1; the first wave's device is told to run v1 again (a newer release).
  for (AgentHarness* agent : agents_on_) {
    EXPECT_TRUE(WaitForServedVersion(*agent, "classifier", "1")) << agent->device_id();
  }
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM deployment_targets "
                            "WHERE rollback_metadata_version IS NOT NULL"),
            "1");
}

TEST_F(RolloutTest, ServerRestartMidRolloutContinuesWhereItWas) {
  StartFleetOnV1(3);
  ASSERT_FALSE(HasFatalFailure());
  Push("2", TestModel("classifier_v2.onnx"));
  CreateRollout("2", "1,100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(WaitForState(v1::ROLLOUT_STATE_RUNNING));
  server_->Restart();
  ASSERT_TRUE(WaitForState(v1::ROLLOUT_STATE_SUCCEEDED));
  for (AgentHarness* agent : agents_on_) {
    EXPECT_TRUE(WaitForServedVersion(*agent, "classifier", "2")) << agent->device_id();
  }
  auto kinds = EventKinds();
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_WAVE_STARTED], 1);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_PROMOTED], 1);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_SUCCEEDED], 1);
}

TEST_F(RolloutTest, TwoServersOnOneDatabaseMakeEachTransitionOnce) {
  StartFleetOnV1(3);
  ASSERT_FALSE(HasFatalFailure());
  Push("2", TestModel("classifier_v2.onnx"));
  ServerHarness replica(BinDir(), tmp_.Sub("replica"), db_->url());
  replica.set_extra_args({"--rollout-interval-ms", "100"});
  replica.Start();
  CreateRollout("2", "1,2,100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(WaitForState(v1::ROLLOUT_STATE_SUCCEEDED));
  auto kinds = EventKinds();
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_WAVE_STARTED], 1);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_SOAK_STARTED], 3);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_PROMOTED], 2);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_SUCCEEDED], 1);
  for (AgentHarness* agent : agents_on_) {
    EXPECT_TRUE(WaitForServedVersion(*agent, "classifier", "2")) << agent->device_id();
  }
  replica.Stop();
}

}  // namespace
}  // namespace edgefleet::test
