// End to end through real processes: enrollment, push, deployment, hot swap under load, refused
// updates, restarts, resumed downloads and decommissioning.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "tests/integration/integration_fixture.h"

namespace edgefleet::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr double kTolerance = 1e-4;

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Flips one byte of a file in place.
void FlipByte(const std::string& path, std::streamoff at) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(file) << path;
  file.seekg(at);
  const char c = static_cast<char>(file.get());
  file.seekp(at);
  file.put(static_cast<char>(c ^ 0x01));
  ASSERT_TRUE(file) << path;
}

class FleetTest : public IntegrationTest {
 protected:
  // Starts the server and one agent `device_id` and has it serve classifier v1; check
  // HasFatalFailure() after it.
  AgentHarness& StartAgentServingV1(const std::string& device_id) {
    server_->Start();
    AgentHarness& agent = StartAgent(device_id, NewEnrollmentToken(1));
    [&] {
      ASSERT_TRUE(WaitForActiveDevices(1));
      PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx"));
      ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "1")) << device_id;
    }();
    return agent;
  }

  // Waits until the deployment's `count` targets are all in `state`, and checks them.
  void ExpectAllTargets(const std::string& deployment_id, int count,
                        v1::DeploymentTargetState state) {
    v1::Deployment status = WaitForTargets(deployment_id, state);
    ASSERT_EQ(status.targets_size(), count) << status.ShortDebugString();
    for (const auto& t : status.targets()) {
      EXPECT_EQ(t.state(), state) << t.ShortDebugString();
    }
  }

  // Sum of edgefleet_artifact_bytes_served_total over its labels (full and patch).
  double ArtifactBytesServed() {
    return MetricValue(server_->Metrics(), "edgefleet_artifact_bytes_served_total").value_or(0);
  }
  std::string CountEvents(const std::string& device, const std::string& version,
                          const std::string& where) {
    return db_->QueryValue("SELECT count(*) FROM device_events WHERE device_id = '" + device +
                           "' AND version = '" + version + "' AND " + where);
  }

  // Predicts the sample on `agent` and checks the answer is `version` with the numpy outputs of
  // `file`.
  void ExpectServes(const AgentHarness& agent, const std::string& model_name,
                    const std::string& version, const std::string& file,
                    double tolerance = kTolerance) {
    v1::PredictResponse response;
    grpc::Status status = PredictSample(agent, model_name, &response);
    ASSERT_TRUE(status.ok()) << agent.device_id() << ": " << status.error_message();
    EXPECT_EQ(response.version(), version) << agent.device_id();
    const auto& expected = Expected(file).outputs;
    ASSERT_EQ(response.outputs_size(), static_cast<int>(expected.size())) << agent.device_id();
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_LE(MaxAbsDifference(response.outputs(static_cast<int>(i)), expected[i]), tolerance)
          << agent.device_id() << " output " << expected[i].name() << " of " << file << " got "
          << response.outputs(static_cast<int>(i)).ShortDebugString();
    }
  }
};

// Counts what a client calling Predict back to back saw while the model was swapped.
struct LoadResult {
  std::atomic<int> calls{0};
  std::atomic<int> failures{0};
  std::atomic<int> v1{0};
  std::atomic<int> v2{0};
  std::atomic<int> other_versions{0};
  std::atomic<int> wrong_outputs{0};
  std::atomic<int> v1_after_v2{0};
  std::string first_error;  // written by the load thread only, read after join
};

TEST_F(FleetTest, EnrollPushDeployServeThenHotSwapUnderLoad) {
  server_->Start();
  const std::string token = NewEnrollmentToken(2, {{"site", "it"}});
  AgentHarness& a = StartAgent("dev-a", token);
  AgentHarness& b = StartAgent("dev-b", token);

  ASSERT_TRUE(WaitForActiveDevices(2, "site=it")) << "both agents should enroll";
  v1::ListDevicesResponse devices;
  ASSERT_TRUE(server_->ListDevices("site=it", &devices).ok());
  std::vector<std::string> ids;
  for (const auto& d : devices.devices()) {
    ids.push_back(d.device_id());
    EXPECT_EQ(d.status(), v1::DEVICE_STATUS_ACTIVE);
    EXPECT_EQ(d.labels().at("site"), "it") << "the token's labels apply to its devices";
  }
  EXPECT_THAT(ids, ::testing::UnorderedElementsAre("dev-a", "dev-b"));

  v1::Deployment d1 = PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx"), "site=it");
  for (AgentHarness* agent : {&a, &b}) {
    ASSERT_TRUE(WaitForServedVersion(*agent, "classifier", "1")) << agent->device_id();
    ExpectServes(*agent, "classifier", "1", "classifier_v1.onnx");
  }

  // A client hammers agent a while v2 rolls out.
  LoadResult load;
  std::atomic<bool> stop{false};
  std::thread client([&] {
    auto stub = a.NewInferenceStub();
    const auto& input = Expected("classifier_v1.onnx").inputs;
    const auto& out_v1 = Expected("classifier_v1.onnx").outputs;
    const auto& out_v2 = Expected("classifier_v2.onnx").outputs;
    while (!stop) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + 5s);
      v1::PredictRequest request;
      request.set_model_name("classifier");
      for (const auto& t : input) *request.add_inputs() = t;
      v1::PredictResponse response;
      grpc::Status status = stub->Predict(&context, request, &response);
      ++load.calls;
      if (!status.ok()) {
        if (load.failures++ == 0) load.first_error = status.error_message();
        continue;
      }
      const auto* expected = &out_v1;
      if (response.version() == "1") {
        ++load.v1;
        if (load.v2 > 0) ++load.v1_after_v2;
      } else if (response.version() == "2") {
        ++load.v2;
        expected = &out_v2;
      } else {
        ++load.other_versions;
        continue;
      }
      if (response.outputs_size() != 1 ||
          MaxAbsDifference(response.outputs(0), (*expected)[0]) > kTolerance) {
        ++load.wrong_outputs;
      }
    }
  });
  EXPECT_TRUE(WaitFor([&] { return load.calls >= 20; }, kLongWait)) << "load client makes no calls";

  v1::Deployment d2 = PushAndDeploy("classifier", "2", TestModel("classifier_v2.onnx"), "site=it");
  EXPECT_TRUE(WaitFor([&] { return load.v2 >= 20 || load.failures > 0; }, kLongWait))
      << "agent a never answered with v2 under load";
  stop = true;
  client.join();

  std::cout << "hot swap under load: calls=" << load.calls << " v1=" << load.v1 << " v2=" << load.v2
            << " failures=" << load.failures << std::endl;
  EXPECT_EQ(load.failures, 0) << "first error: " << load.first_error;
  EXPECT_EQ(load.other_versions, 0);
  EXPECT_EQ(load.wrong_outputs, 0) << "an answer did not match its version's expected outputs";
  EXPECT_EQ(load.v1_after_v2, 0) << "the swap went back to v1 after answering with v2";
  EXPECT_GT(load.v1, 0);
  EXPECT_GE(load.v2, 20);

  ASSERT_TRUE(WaitForServedVersion(b, "classifier", "2"));
  ExpectServes(a, "classifier", "2", "classifier_v2.onnx");
  ExpectServes(b, "classifier", "2", "classifier_v2.onnx");

  ExpectAllTargets(d2.deployment_id(), 2, v1::DEPLOYMENT_TARGET_STATE_SERVING);
}

TEST_F(FleetTest, UnloadableModelIsRefusedAndPreviousVersionKeepsServing) {
  AgentHarness& agent = StartAgentServingV1("dev-broken");
  ASSERT_FALSE(HasFatalFailure());

  // The server checks that a pushed file is a well-formed ONNX model with the declared inputs
  // and outputs; this one is, but its operator does not exist, so only loading it fails.
  v1::Deployment broken = PushAndDeploy("classifier", "3", TestModel("unloadable.onnx"));
  v1::Deployment status =
      WaitForTargets(broken.deployment_id(), v1::DEPLOYMENT_TARGET_STATE_FAILED);
  ASSERT_EQ(status.targets_size(), 1) << status.ShortDebugString();
  EXPECT_EQ(status.targets(0).state(), v1::DEPLOYMENT_TARGET_STATE_FAILED)
      << status.ShortDebugString();
  EXPECT_THAT(Lower(status.targets(0).detail()), HasSubstr("load")) << status.ShortDebugString();

  // The device reports why: a load failure, not a download or signature problem.
  EXPECT_TRUE(WaitFor(
      [&] {
        v1::Device device;
        if (!server_->GetDevice("dev-broken", &device).ok()) return false;
        for (const auto& m : device.inventory().models()) {
          if (m.version() == "3" && m.state() == v1::MODEL_STATE_FAILED &&
              m.detail().find("FAILURE_REASON_LOAD") != std::string::npos) {
            return true;
          }
        }
        return false;
      },
      kLongWait, 100ms))
      << "the device inventory should list version 3 as FAILED with FAILURE_REASON_LOAD";
  EXPECT_EQ(
      db_->QueryValue("SELECT reason FROM device_events WHERE kind = 'failed' AND version = '3'"),
      "load");

  ExpectServes(agent, "classifier", "1", "classifier_v1.onnx");
  EXPECT_TRUE(agent.IsRunning());
}

TEST_F(FleetTest, RestartsKeepServingAndReconnect) {
  AgentHarness& agent = StartAgentServingV1("dev-restart");
  ASSERT_FALSE(HasFatalFailure());
  const int device_port = server_->ports().device;

  // (a) With the server down, a restarted agent serves its committed model from disk.
  EXPECT_EQ(server_->Stop(), 0) << "the server should stop cleanly on SIGTERM";
  EXPECT_EQ(agent.Stop(), 0) << "the agent should stop cleanly on SIGTERM";
  agent.Restart();
  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "1", 20s))
      << "a restarted agent must serve its committed model without the server";
  ExpectServes(agent, "classifier", "1", "classifier_v1.onnx");

  // (b) The server comes back on the same address with the same data dir and database.
  server_->Start(device_port);
  v1::Device before;
  ASSERT_TRUE(server_->GetDevice("dev-restart", &before).ok()) << "devices survive a restart";
  EXPECT_EQ(before.status(), v1::DEVICE_STATUS_ACTIVE);
  {
    grpc::ClientContext context;
    server_->Authorize(&context);
    v1::GetModelRequest request;
    request.set_model_name("classifier");
    v1::Model model;
    grpc::Status s = server_->admin().GetModel(&context, request, &model);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(model.versions_size(), 1) << "models survive a restart";
    EXPECT_EQ(model.versions(0).version(), "1");
  }
  EXPECT_TRUE(WaitFor(
      [&] {
        v1::Device now;
        return server_->GetDevice("dev-restart", &now).ok() &&
               now.last_seen().seconds() > before.last_seen().seconds();
      },
      kLongWait, 200ms))
      << "the agent should check in again after the server restart";

  PushAndDeploy("classifier", "2", TestModel("classifier_v2.onnx"));
  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "2"))
      << "a deployment made after the restart should reach the agent";
  ExpectServes(agent, "classifier", "2", "classifier_v2.onnx");
}

TEST_F(FleetTest, AgentKilledMidDownloadResumesWhereItStopped) {
  const std::string models_dir = tmp_.Sub("large");
  const std::string command = "/usr/bin/python3 " + std::string(EDGEFLEET_SOURCE_DIR) +
                              "/tests/models/make_models.py " + models_dir + " --size-mb 40";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  const std::string large = models_dir + "/classifier_large.onnx";
  const uint64_t total = fs::file_size(large);
  const auto expected_large =
      LoadExpectedModels(models_dir + "/expected.txt").at("classifier_large.onnx");

  server_->Start();
  AgentHarness& agent = StartAgent("dev-resume", NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(1));
  PushAndDeploy("large", "1", large);

  // Kill the agent while its partial download holds some but not all of the artifact.
  const fs::path downloads = fs::path(agent.state_dir()) / "downloads";
  fs::path part;
  uint64_t part_size = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator(downloads, ec)) {
          uint64_t size = entry.file_size(ec);
          if (!ec && entry.path().extension() == ".part" && size > 0 && size < total) {
            part = entry.path();
            return true;
          }
        }
        return false;
      },
      kLongWait, 1ms))
      << "no partial download observed in " << downloads;
  agent.Kill();
  std::error_code ec;
  part_size = fs::file_size(part, ec);
  ASSERT_FALSE(ec) << "the partial download should survive the kill";
  ASSERT_LT(part_size, total);

  agent.Restart();
  ASSERT_TRUE(WaitFor(
      [&] {
        v1::PredictResponse response;
        return agent.Predict("large", expected_large.inputs, &response).ok() &&
               response.version() == "1";
      },
      60s, 100ms))
      << "the restarted agent should finish the download and serve the large model";
  v1::PredictResponse response;
  ASSERT_TRUE(agent.Predict("large", expected_large.inputs, &response).ok());
  ASSERT_EQ(response.outputs_size(), 1);
  // Over a million hidden units accumulate float32 rounding: a looser bound than the small models.
  EXPECT_LE(MaxAbsDifference(response.outputs(0), expected_large.outputs[0]), 1e-3)
      << response.outputs(0).ShortDebugString();

  // Resumed, not restarted: the download began once, and continued from a non-zero offset.
  const std::string events =
      "SELECT count(*) FROM device_events WHERE device_id = 'dev-resume' "
      "AND model_name = 'large' AND version = '1' AND kind = ";
  ASSERT_TRUE(
      WaitFor([&] { return db_->QueryValue(events + "'activated'") == "1"; }, kLongWait, 100ms))
      << "the activation should be reported";
  EXPECT_EQ(db_->QueryValue(events + "'download_started'"), "1");
  EXPECT_THAT(agent.LogText(), ::testing::ContainsRegex("from_offset=[1-9][0-9]*"))
      << "the second run should download from where the first stopped (" << part_size << " bytes)";
}

// Finding 3: one flipped bit in the device's stored model. After a restart the agent serves the
// previous version, reports the damage (the target goes FAILED with DIGEST), fetches the release
// again and the target is SERVING again.
TEST_F(FleetTest, DamagedStoredModelFallsBackToPreviousAndIsFetchedAgain) {
  AgentHarness& agent = StartAgentServingV1("dev-bitrot");
  ASSERT_FALSE(HasFatalFailure());
  v1::Deployment d2 = PushAndDeploy("classifier", "2", TestModel("classifier_v2.onnx"));
  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "2"));
  ExpectAllTargets(d2.deployment_id(), 1, v1::DEPLOYMENT_TARGET_STATE_SERVING);
  ASSERT_FALSE(HasFatalFailure());
  // Committed: its probation is over.
  ASSERT_TRUE(WaitFor([&] { return CountEvents("dev-bitrot", "2", "kind = 'activated'") == "1"; },
                      kLongWait, 100ms));
  const int device_port = server_->ports().device;

  // With the server down, so that the fallback is observed before any repair.
  EXPECT_EQ(server_->Stop(), 0);
  EXPECT_EQ(agent.Stop(), 0);
  const std::string stored = agent.state_dir() + "/models/classifier/2/model.onnx";
  FlipByte(stored, static_cast<std::streamoff>(fs::file_size(stored) / 2));
  agent.Restart();
  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "1", 20s))
      << "the previous version should serve while the damaged one is fetched again";
  ExpectServes(agent, "classifier", "1", "classifier_v1.onnx");

  server_->Start(device_port);
  EXPECT_TRUE(WaitFor(
      [&] {
        return CountEvents("dev-bitrot", "2", "kind = 'failed' AND reason = 'digest'") == "1";
      },
      kLongWait, 100ms))
      << "the damage should be reported as a DIGEST failure";
  EXPECT_EQ(CountEvents("dev-bitrot", "2",
                        "kind = 'failed' AND detail LIKE '%version 1 serves meanwhile%'"),
            "1");
  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "2")) << "the release is fetched again";
  ExpectServes(agent, "classifier", "2", "classifier_v2.onnx");
  ExpectAllTargets(d2.deployment_id(), 1, v1::DEPLOYMENT_TARGET_STATE_SERVING);
  EXPECT_TRUE(WaitFor([&] { return CountEvents("dev-bitrot", "2", "kind = 'activated'") == "2"; },
                      kLongWait, 100ms));
}

// Finding 6: deploying an older version again is a new release with a higher metadata version;
// the devices serve it from the copy they kept, downloading nothing.
TEST_F(FleetTest, RollbackToAnOlderVersionServesTheKeptCopy) {
  server_->Start();
  const std::string token = NewEnrollmentToken(2);
  AgentHarness& a = StartAgent("dev-rb-a", token);
  AgentHarness& b = StartAgent("dev-rb-b", token);
  ASSERT_TRUE(WaitForActiveDevices(2));
  PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx"));
  for (AgentHarness* agent : {&a, &b}) {
    ASSERT_TRUE(WaitForServedVersion(*agent, "classifier", "1")) << agent->device_id();
  }
  v1::Deployment d2 = PushAndDeploy("classifier", "2", TestModel("classifier_v2.onnx"));
  for (AgentHarness* agent : {&a, &b}) {
    ASSERT_TRUE(WaitForServedVersion(*agent, "classifier", "2")) << agent->device_id();
  }
  ExpectAllTargets(d2.deployment_id(), 2, v1::DEPLOYMENT_TARGET_STATE_SERVING);
  ASSERT_FALSE(HasFatalFailure());
  const double served_before = ArtifactBytesServed();
  EXPECT_GT(served_before, 0);

  v1::Deployment rollback;
  grpc::Status deploy = server_->CreateDeployment("classifier", "1", "", &rollback);
  ASSERT_TRUE(deploy.ok()) << deploy.error_message();
  EXPECT_GT(rollback.metadata_version(), d2.metadata_version());
  for (AgentHarness* agent : {&a, &b}) {
    ASSERT_TRUE(WaitForServedVersion(*agent, "classifier", "1")) << agent->device_id();
    ExpectServes(*agent, "classifier", "1", "classifier_v1.onnx");
    // Logged right after the swap: the answer above can come first.
    EXPECT_TRUE(WaitFor(
        [&] { return agent->LogText().find("served from the kept copy") != std::string::npos; },
        kLongWait, 50ms))
        << agent->LogText();
  }
  ExpectAllTargets(rollback.deployment_id(), 2, v1::DEPLOYMENT_TARGET_STATE_SERVING);
  EXPECT_EQ(ArtifactBytesServed(), served_before) << "no artifact or patch bytes were served";
  EXPECT_EQ(db_->QueryValue("SELECT count(*) FROM device_events WHERE kind = 'failed'"), "0");
}

// Finding 4: a server that serves a corrupted artifact once does not get the release skipped for
// good: the device reports DIGEST, retries after its backoff and serves once the bytes are good.
TEST_F(FleetTest, CorruptedDownloadIsRetriedAndSucceedsOnceTheServerIsFixed) {
  server_->Start();
  AgentHarness& agent = StartAgent("dev-retry", NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(1));
  v1::ModelVersion pushed;
  grpc::Status push =
      server_->PushClassifier("classifier", "1", TestModel("classifier_v1.onnx"), &pushed);
  ASSERT_TRUE(push.ok()) << push.error_message();
  const std::string stored = server_->ArtifactPath(pushed.artifact_sha256());
  const auto size = static_cast<std::streamoff>(fs::file_size(stored));
  FlipByte(stored, size / 3);  // the server's copy is damaged, its digest record is not

  v1::Deployment d;
  grpc::Status deploy = server_->CreateDeployment("classifier", "1", "", &d);
  ASSERT_TRUE(deploy.ok()) << deploy.error_message();
  ASSERT_TRUE(WaitFor(
      [&] { return CountEvents("dev-retry", "1", "kind = 'failed' AND reason = 'digest'") != "0"; },
      kLongWait, 50ms))
      << "the corrupted download should be refused with DIGEST";
  EXPECT_EQ(CountEvents("dev-retry", "1", "kind = 'failed' AND detail LIKE '%attempt 1 of 5%'"),
            "1");
  FlipByte(stored, size / 3);  // repaired

  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "1"))
      << "the release should be retried after the backoff, not skipped for good";
  ExpectServes(agent, "classifier", "1", "classifier_v1.onnx");
  v1::Deployment status = WaitForTargets(d.deployment_id(), v1::DEPLOYMENT_TARGET_STATE_SERVING);
  ASSERT_EQ(status.targets_size(), 1);
  EXPECT_EQ(status.targets(0).state(), v1::DEPLOYMENT_TARGET_STATE_SERVING)
      << status.ShortDebugString();
  EXPECT_EQ(status.targets(0).detail(), "") << "success replaces the failure's detail";
  // The refused download was deleted, so the retry started again from zero.
  EXPECT_GE(std::stoi(CountEvents("dev-retry", "1", "kind = 'download_started'")), 2);
}

TEST_F(FleetTest, DecommissionedDeviceIsRefusedButKeepsServing) {
  AgentHarness& agent = StartAgentServingV1("dev-retired");
  ASSERT_FALSE(HasFatalFailure());

  v1::Device device;
  grpc::Status s = server_->DecommissionDevice("dev-retired", &device);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(device.status(), v1::DEVICE_STATUS_DECOMMISSIONED);

  const std::map<std::string, std::string> denied = {
      {"service", "DeviceService"}, {"method", "CheckIn"}, {"code", "PERMISSION_DENIED"}};
  EXPECT_TRUE(WaitFor(
      [&] {
        return MetricValue(server_->Metrics(), "edgefleet_grpc_requests_total", denied)
                   .value_or(0) >= 2;
      },
      kLongWait, 200ms))
      << "the decommissioned agent's check-ins should be refused with PERMISSION_DENIED";
  EXPECT_THAT(agent.LogText(), HasSubstr("decommissioned"));

  EXPECT_TRUE(agent.IsRunning());
  ExpectServes(agent, "classifier", "1", "classifier_v1.onnx");
}

}  // namespace
}  // namespace edgefleet::test
