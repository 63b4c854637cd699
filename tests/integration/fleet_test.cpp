// End to end through real processes: enrollment, push, deployment, hot swap under load, refused
// updates, restarts, resumed downloads and decommissioning.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>
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

class FleetTest : public IntegrationTest {
 protected:
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

  v1::Deployment status = WaitForTargets(d2.deployment_id(), v1::DEPLOYMENT_TARGET_STATE_SERVING);
  ASSERT_EQ(status.targets_size(), 2) << status.ShortDebugString();
  for (const auto& t : status.targets()) {
    EXPECT_EQ(t.state(), v1::DEPLOYMENT_TARGET_STATE_SERVING) << t.ShortDebugString();
  }
}

TEST_F(FleetTest, UnloadableModelIsRefusedAndPreviousVersionKeepsServing) {
  server_->Start();
  AgentHarness& agent = StartAgent("dev-broken", NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(1));
  PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx"));
  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "1"));

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
  server_->Start();
  AgentHarness& agent = StartAgent("dev-restart", NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(1));
  PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx"));
  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "1"));
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

TEST_F(FleetTest, DecommissionedDeviceIsRefusedButKeepsServing) {
  server_->Start();
  AgentHarness& agent = StartAgent("dev-retired", NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(1));
  PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx"));
  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "1"));

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
