// Differential updates end to end: a device holding v1 receives v2 as a patch computed by the
// server, and a device handed a damaged patch falls back to the full artifact.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/integration/integration_fixture.h"

namespace edgefleet::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class DeltaUpdateTest : public IntegrationTest {
 protected:
  // v1 is a ~4 MiB classifier; each later version is a light fine-tune of the one before.
  void MakeVersions(int count) {
    const std::string dir = tmp_.Sub("models");
    const std::string tools = std::string(EDGEFLEET_SOURCE_DIR) + "/tests/models/";
    Run("/usr/bin/python3 " + tools + "make_models.py " + dir + " --size-mb 4");
    versions_.push_back(dir + "/classifier_large.onnx");
    for (int v = 2; v <= count; ++v) {
      std::string next = dir + "/large_v" + std::to_string(v) + ".onnx";
      Run("/usr/bin/python3 " + tools + "finetune_model.py " + versions_.back() + " " + next +
          " --seed " + std::to_string(v));
      versions_.push_back(next);
    }
  }

  static void Run(const std::string& command) {
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }

  double Metric(const std::string& name, const std::map<std::string, std::string>& labels = {}) {
    return MetricValue(server_->Metrics(), name, labels).value_or(0);
  }

  // Pushes version `v` and waits until the server has a ready patch for it. Patches are
  // precomputed from what devices report running, so first the server must have heard (from a
  // check-in) that a device runs v - 1: the agent's local API says so a moment earlier.
  void PushAndWaitForPatch(int v) {
    const std::string reported =
        "[{\"model_name\": \"large\", \"version\": \"" + std::to_string(v - 1) + "\"}]";
    ASSERT_TRUE(WaitFor(
        [&] {
          return db_->QueryValue("SELECT count(*) FROM devices WHERE inventory->'models' @> '" +
                                 reported + "'::jsonb") != "0";
        },
        kLongWait, 100ms))
        << "no device reported running version " << v - 1;
    v1::ModelVersion pushed;
    grpc::Status push =
        server_->PushClassifier("large", std::to_string(v), versions_[v - 1], &pushed);
    ASSERT_TRUE(push.ok()) << push.error_message();
    const double ready_before = ready_patches_;
    ASSERT_TRUE(WaitFor(
        [&] {
          return Metric("edgefleet_patches_computed_total", {{"result", "ready"}}) > ready_before;
        },
        kLongWait, 100ms))
        << "pushing a version the fleet runs an older one of should compute a patch";
    ready_patches_ = Metric("edgefleet_patches_computed_total", {{"result", "ready"}});
  }

  void Deploy(int v) {
    v1::Deployment deployment;
    grpc::Status deploy = server_->CreateDeployment("large", std::to_string(v), "", &deployment);
    ASSERT_TRUE(deploy.ok()) << deploy.error_message();
  }

  std::vector<std::string> versions_;
  double ready_patches_ = 0;
};

TEST_F(DeltaUpdateTest, DeviceOnV1ReceivesV2AsAPatch) {
  MakeVersions(2);
  server_->set_extra_args({"--patch-time-budget-seconds", "5"});
  server_->Start();
  AgentHarness& agent = StartAgent("dev-delta", NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(1));
  PushAndDeploy("large", "1", versions_[0]);
  ASSERT_TRUE(WaitForServedVersion(agent, "large", "1"));
  const double full_bytes_v1 = Metric("edgefleet_artifact_bytes_served_total", {{"kind", "full"}});
  EXPECT_EQ(full_bytes_v1, static_cast<double>(fs::file_size(versions_[0])));

  PushAndWaitForPatch(2);
  Deploy(2);
  ASSERT_TRUE(WaitForServedVersion(agent, "large", "2"));

  const double patch_bytes = Metric("edgefleet_artifact_bytes_served_total", {{"kind", "patch"}});
  const double v2_size = static_cast<double>(fs::file_size(versions_[1]));
  EXPECT_GT(patch_bytes, 0) << "v2 should travel as a patch";
  EXPECT_LT(patch_bytes, 0.8 * v2_size) << "a light fine-tune should patch well below full size";
  EXPECT_EQ(Metric("edgefleet_artifact_bytes_served_total", {{"kind", "full"}}), full_bytes_v1)
      << "the full v2 artifact should not have been downloaded";
  EXPECT_EQ(Metric("edgefleet_patch_bytes_saved_total"), v2_size - patch_bytes);
  EXPECT_THAT(server_->LogText(), HasSubstr("served patch device=dev-delta"));
  EXPECT_THAT(agent.LogText(), HasSubstr("patched model=large version=2"));
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM device_events WHERE kind = 'patch_rejected'"),
            "0");
}

TEST_F(DeltaUpdateTest, CorruptPatchFallsBackToTheFullArtifact) {
  MakeVersions(2);
  server_->set_extra_args({"--patch-time-budget-seconds", "5"});
  server_->Start();
  AgentHarness& agent = StartAgent("dev-corrupt", NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(1));
  PushAndDeploy("large", "1", versions_[0]);
  ASSERT_TRUE(WaitForServedVersion(agent, "large", "1"));
  PushAndWaitForPatch(2);

  // Damage the stored patch the way a bad disk or a tampering mirror would.
  const std::string patch_hex = db_->QueryValue(
      "SELECT encode(patch_sha256, 'hex') FROM patches WHERE state = 'ready' LIMIT 1");
  ASSERT_EQ(patch_hex.size(), 64u);
  const fs::path blob =
      fs::path(server_->data_dir()) / "artifacts" / "sha256" / patch_hex.substr(0, 2) / patch_hex;
  ASSERT_TRUE(fs::exists(blob)) << blob;
  {
    std::fstream file(blob, std::ios::in | std::ios::out | std::ios::binary);
    const auto middle = static_cast<std::streamoff>(fs::file_size(blob) / 2);
    for (std::streamoff i = 0; i < 64; ++i) {
      file.seekg(middle + i);
      char c = static_cast<char>(file.get());
      file.seekp(middle + i);
      file.put(static_cast<char>(c ^ 0x5a));
    }
  }

  Deploy(2);
  ASSERT_TRUE(WaitForServedVersion(agent, "large", "2"))
      << "the device should end on v2 through the full artifact";
  // The report travels after the swap (the agent's outbox): wait for it, under load too.
  const auto rejected_reason = [&] {
    return db_->QueryValue(
        "SELECT reason FROM device_events WHERE kind = 'patch_rejected' AND version = '2'");
  };
  EXPECT_TRUE(WaitFor([&] { return !rejected_reason().empty(); }, kLongWait));
  EXPECT_EQ(rejected_reason(), "patch");
  EXPECT_GE(Metric("edgefleet_artifact_bytes_served_total", {{"kind", "full"}}),
            static_cast<double>(fs::file_size(versions_[0]) + fs::file_size(versions_[1])))
      << "v2 should have been downloaded in full after the patch was refused";
  EXPECT_THAT(agent.LogText(), HasSubstr("falling back to full"));
  // The bad patch is gone from the device; nothing half-written is left.
  for (const auto& entry : fs::directory_iterator(fs::path(agent.state_dir()) / "downloads")) {
    ADD_FAILURE() << "left over in downloads: " << entry.path();
  }
}

// Two replicas start at once on a database holding two pending pairs (their servers stopped
// before computing them), one of them still leased by a replica that died mid-computation. The
// replicas race to claim both; each pair is computed once, the dead replica's only after its
// lease ran out.
TEST_F(DeltaUpdateTest, ReplicasRacingForPendingPatchesComputeEachOnce) {
  server_->Start();
  for (const char* v : {"1", "2"}) {
    v1::ModelVersion pushed;
    grpc::Status push = server_->PushClassifier(
        "classifier", v, TestModel(std::string("classifier_v") + v + ".onnx"), &pushed);
    ASSERT_TRUE(push.ok()) << push.error_message();
  }
  ASSERT_TRUE(server_->Stop().has_value());
  const std::string pair =
      "SELECT a.artifact_sha256, b.artifact_sha256, 'pending' FROM model_versions a, "
      "model_versions b "
      "WHERE a.model_name = 'classifier' AND b.model_name = 'classifier' ";
  db_->Exec("INSERT INTO patches (from_sha256, to_sha256, state) " + pair +
            "AND a.version = '1' AND b.version = '2' UNION ALL " + pair +
            "AND a.version = '2' AND b.version = '1'");
  db_->Exec(
      "UPDATE patches p SET lease_owner = 'dead-replica', attempts = 1, "
      "lease_expires_at = now() + interval '2 seconds' FROM model_versions v "
      "WHERE v.version = '2' AND p.from_sha256 = v.artifact_sha256");

  const std::vector<std::string> args = {"--patch-lease-seconds", "2"};
  server_->set_extra_args(args);
  ServerHarness& replica = AddReplica(args);
  bool replica_up = false;
  std::thread other([&] { replica_up = replica.TryStart(); });
  server_->Start();
  other.join();
  ASSERT_TRUE(replica_up) << ReadFileTail(replica.log_path());
  ASSERT_TRUE(WaitFor(
      [&] {
        return db_->QueryValue("SELECT count(*) FROM patches WHERE state = 'pending'") == "0";
      },
      kLongWait, 100ms))
      << db_->QueryValue("SELECT string_agg(state || ' ' || attempts, ', ') FROM patches");
  EXPECT_EQ(db_->QueryValue("SELECT string_agg(attempts::text, ',' ORDER BY attempts) FROM patches "
                            "WHERE state IN ('ready', 'not_smaller')"),
            "1,2")
      << "one computation each (the dead replica's attempt counted)";
  auto computed = [](ServerHarness& s) {
    return MetricValue(s.Metrics(), "edgefleet_patches_computed_total").value_or(0);
  };
  EXPECT_EQ(computed(*server_) + computed(replica), 2);
  replica.Stop();
}

}  // namespace
}  // namespace edgefleet::test
