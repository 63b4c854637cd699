// TUF's key roles on real processes: an offline root the operator keeps (edgefleetctl keys), a
// release key rotated on a running fleet without re-enrolling devices, and a revoked key that
// can no longer move any device even with the server's host and its old delegation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/integration/integration_fixture.h"

namespace edgefleet::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class ReleaseKeysTest : public IntegrationTest {
 protected:
  // Runs edgefleetctl to completion; returns its exit code and appends its output to `output_`.
  int Ctl(const std::vector<std::string>& args) {
    Process ctl;
    const std::string log = tmp_.Sub("ctl.log");
    ctl.Spawn(BinDir() + "/edgefleetctl", args, {}, log);
    std::optional<int> code = ctl.Wait(std::chrono::seconds(30));
    output_ = ReadFile(log).value_or("");
    return code.value_or(-1);
  }

  std::string KeysDir() const { return server_->data_dir() + "/keys"; }

  static void Copy(const std::string& from, const std::string& to) {
    fs::copy_file(from, to, fs::copy_options::overwrite_existing);
  }

  // Copies a release key pair and its delegation from one key folder to another.
  static void CopyReleaseKeys(const std::string& from, const std::string& to) {
    fs::create_directories(to);
    for (const char* file : {"release.key", "release.pub", "delegation.bin"}) {
      Copy(from + "/" + file, to + "/" + file);
    }
  }

  void RestartWith(const std::string& keys_from) {
    const int device_port = server_->ports().device;
    server_->Stop();
    CopyReleaseKeys(keys_from, KeysDir());
    server_->Start(device_port);
  }

  static v1::AgentStatus Status(const AgentHarness& agent) {
    v1::AgentStatus status;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::Status s =
        agent.NewInferenceStub()->GetAgentStatus(&context, v1::GetAgentStatusRequest(), &status);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return status;
  }

  std::string output_;
};

TEST_F(ReleaseKeysTest, RotatingTheReleaseKeyKeepsTheFleetUpdatingAndTheRevokedKeyIsRefused) {
  // The operator makes the root where it is kept; the server gets only its public half.
  const std::string root_dir = tmp_.Sub("offline-root");
  ASSERT_EQ(Ctl({"keys", "init", "--out", root_dir}), 0) << output_;
  fs::create_directories(KeysDir());
  Copy(root_dir + "/root.pub", KeysDir() + "/root.pub");

  // Without a delegation of its release key the server refuses to start, and says what to run.
  ASSERT_FALSE(server_->TryStart(0, std::chrono::seconds(60)));
  EXPECT_THAT(server_->LogText(), HasSubstr("keys delegate"));
  ASSERT_EQ(Ctl({"keys", "delegate", "--root", root_dir + "/root.key", "--release-public-key",
                 KeysDir() + "/release.pub", "--expires-in", "30d", "--out",
                 KeysDir() + "/delegation.bin"}),
            0)
      << output_;
  server_->Start();
  EXPECT_THAT(server_->LogText(), ::testing::Not(HasSubstr("ONLINE")));
  const std::string first_keys = tmp_.Sub("first-release-key");
  CopyReleaseKeys(KeysDir(), first_keys);

  const std::string token = NewEnrollmentToken(2);
  AgentHarness& a = StartAgent("dev-rot-a", token);
  AgentHarness& b = StartAgent("dev-rot-b", token);
  ASSERT_TRUE(WaitForActiveDevices(2));
  PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx"));
  ASSERT_TRUE(WaitForServedVersion(a, "classifier", "1"));
  ASSERT_TRUE(WaitForServedVersion(b, "classifier", "1"));
  const v1::AgentStatus before = Status(a);
  EXPECT_EQ(before.trust().delegation_version(), 1u) << before.ShortDebugString();
  EXPECT_FALSE(before.trust().stale());
  const std::string old_key_id = before.trust().release_key_id();
  ASSERT_FALSE(old_key_id.empty());

  // Rotation: a new release key, delegated by the root, the old one revoked; server restarted.
  const std::string second_keys = tmp_.Sub("second-release-key");
  ASSERT_EQ(Ctl({"keys", "rotate", "--root", root_dir + "/root.key", "--previous",
                 KeysDir() + "/delegation.bin", "--new-key-dir", second_keys, "--out",
                 second_keys + "/delegation.bin"}),
            0)
      << output_;
  RestartWith(second_keys);
  v1::Deployment v2 = PushAndDeploy("classifier", "2", TestModel("classifier_v2.onnx"));
  ASSERT_TRUE(WaitForServedVersion(a, "classifier", "2"));
  ASSERT_TRUE(WaitForServedVersion(b, "classifier", "2"));
  WaitForTargets(v2.deployment_id(), v1::DEPLOYMENT_TARGET_STATE_SERVING);
  const v1::AgentStatus rotated = Status(b);
  EXPECT_EQ(rotated.trust().delegation_version(), 2u) << rotated.ShortDebugString();
  EXPECT_NE(rotated.trust().release_key_id(), old_key_id);
  EXPECT_THAT(rotated.trust().revoked_key_ids(), ::testing::Contains(old_key_id));

  // Whoever kept the old key and its old delegation runs the server: devices do not follow.
  RestartWith(first_keys);
  v1::Deployment forged = PushAndDeploy("classifier", "3", TestModel("classifier_v1.onnx"));
  v1::Deployment refused =
      WaitForTargets(forged.deployment_id(), v1::DEPLOYMENT_TARGET_STATE_FAILED);
  ASSERT_EQ(refused.targets_size(), 2) << refused.ShortDebugString();
  for (const auto& target : refused.targets()) {
    EXPECT_EQ(target.state(), v1::DEPLOYMENT_TARGET_STATE_FAILED) << refused.ShortDebugString();
    EXPECT_THAT(target.detail(), HasSubstr("SIGNATURE")) << refused.ShortDebugString();
    EXPECT_THAT(target.detail(), HasSubstr("revoked")) << refused.ShortDebugString();
  }
  for (AgentHarness* agent : {&a, &b}) {
    v1::PredictResponse response;
    ASSERT_TRUE(PredictSample(*agent, "classifier", &response).ok());
    EXPECT_EQ(response.version(), "2") << agent->device_id();
    const v1::AgentStatus status = Status(*agent);
    EXPECT_THAT(status.trust().last_refusal(), HasSubstr(old_key_id)) << status.ShortDebugString();
    EXPECT_EQ(status.trust().delegation_version(), 2u);
  }
}

TEST_F(ReleaseKeysTest, WithoutAConfiguredRootTheServerHoldsOneOnlineAndSaysSo) {
  server_->Start();
  EXPECT_THAT(server_->LogText(), HasSubstr("release root key is held ONLINE"));
  AgentHarness& agent = StartAgent("dev-demo", NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(1));
  PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx"));
  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "1"));
  // The agent pinned the root, not the release key, and holds the server's delegation.
  auto pinned = ReadFile(agent.state_dir() + "/release-root.pub");
  ASSERT_TRUE(pinned.has_value());
  EXPECT_EQ(*pinned, ReadFile(KeysDir() + "/root.pub").value_or(""));
  EXPECT_NE(*pinned, ReadFile(KeysDir() + "/release.pub").value_or(""));
  const v1::AgentStatus status = Status(agent);
  EXPECT_EQ(status.trust().delegation_version(), 1u) << status.ShortDebugString();
  EXPECT_TRUE(status.trust().has_newest_timestamp());
  EXPECT_FALSE(status.trust().stale());
  EXPECT_THAT(status.metrics_text(), HasSubstr("edgefleet_agent_release_metadata_stale 0"));
  ASSERT_EQ(Ctl({"agent", "status", "--socket", agent.socket_path()}), 0) << output_;
  EXPECT_THAT(output_, HasSubstr("delegation version 1"));
  EXPECT_THAT(output_, HasSubstr("Freshness: fresh"));
}

TEST_F(ReleaseKeysTest, AgentWithoutFreshTimestampsRaisesTheFreezeAlarmAndClearsIt) {
  server_->Start();
  AgentHarness& agent = AddAgent("dev-freeze");
  agent.set_extra_args({"--freshness-limit-seconds", "3"});
  agent.Start(server_->device_address(), server_->ca_file(), NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(1));
  ASSERT_TRUE(
      WaitFor([&] { return Status(agent).trust().has_newest_timestamp(); }, kLongWait, 100ms));
  EXPECT_FALSE(Status(agent).trust().stale());

  // No fresh signed timestamp reaches the agent (here: the server is gone).
  const int device_port = server_->ports().device;
  server_->Stop();
  ASSERT_TRUE(WaitFor([&] { return Status(agent).trust().stale(); }, kLongWait, 200ms))
      << Status(agent).ShortDebugString();
  const v1::AgentStatus stale = Status(agent);
  EXPECT_GE(stale.trust().timestamp_age_seconds(), 3u);
  EXPECT_THAT(stale.metrics_text(), HasSubstr("edgefleet_agent_release_metadata_stale 1"));
  EXPECT_TRUE(WaitFor(
      [&] { return agent.LogText().find("release metadata is stale") != std::string::npos; },
      kLongWait, 100ms));

  server_->Start(device_port);
  EXPECT_TRUE(WaitFor([&] { return !Status(agent).trust().stale(); }, kLongWait, 200ms));
  EXPECT_THAT(agent.LogText(), HasSubstr("release metadata is fresh again"));
}

}  // namespace
}  // namespace edgefleet::test
