// Shared fixture of the end-to-end tests: one fresh PostgreSQL database, one temp directory and
// one edgefleet-server per test, plus agents on demand; prints the process logs when a test fails.
#pragma once

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/fleet_harness.h"
#include "tests/support/process.h"
#include "tests/support/test_database.h"

namespace edgefleet::test {

using namespace std::chrono_literals;

// Generous bounds for loaded CI machines; the happy path takes a few seconds.
inline constexpr auto kLongWait = std::chrono::seconds(45);

class IntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::make_unique<TestDatabase>();
    server_ = std::make_unique<ServerHarness>(BinDir(), tmp_.Sub("server"), db_->url());
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "---- server log (" << server_->log_path() << ") ----\n"
                << ReadFileTail(server_->log_path(), 6000) << "\n";
      for (const auto& replica : replicas_) {
        std::cerr << "---- replica log (" << replica->log_path() << ") ----\n"
                  << ReadFileTail(replica->log_path(), 6000) << "\n";
      }
      for (const auto& agent : agents_) {
        std::cerr << "---- agent " << agent->device_id() << " log ----\n"
                  << ReadFileTail(agent->log_path(), 4000) << "\n";
      }
    }
    // Processes go before the database they use is dropped.
    agents_.clear();
    replicas_.clear();
    server_.reset();
    db_.reset();
  }

  // A new agent (not started) with its own directory; device ids are unique per test.
  AgentHarness& AddAgent(const std::string& name) {
    agents_.push_back(std::make_unique<AgentHarness>(BinDir(), tmp_.Sub("agent-" + name), name));
    return *agents_.back();
  }

  // Another server (not started) on this test's database, sharing the first one's data directory
  // (keys, artifacts) and admin token, as replicas do.
  ServerHarness& AddReplica(const std::vector<std::string>& extra_args) {
    replicas_.push_back(std::make_unique<ServerHarness>(
        BinDir(), tmp_.Sub("replica-" + std::to_string(replicas_.size())), db_->url()));
    ServerHarness& replica = *replicas_.back();
    replica.set_admin_token(server_->admin_token());
    replica.set_data_dir(server_->data_dir());
    replica.set_extra_args(extra_args);
    return replica;
  }

  // Adds an agent and starts it against this test's server with `token`.
  AgentHarness& StartAgent(const std::string& name, const std::string& token) {
    AgentHarness& agent = AddAgent(name);
    agent.Start(server_->device_address(), server_->ca_file(), token);
    return agent;
  }

  // The binaries under test: this build's, or EDGEFLEET_TEST_BIN_DIR (e.g. installed ones).
  static std::string BinDir() {
    const char* dir = std::getenv("EDGEFLEET_TEST_BIN_DIR");
    return dir != nullptr && *dir != '\0' ? dir : EDGEFLEET_BIN_DIR;
  }

  static std::string TestModel(const std::string& file) {
    return std::string(EDGEFLEET_TEST_DATA_DIR) + "/" + file;
  }

  static const ExpectedModel& Expected(const std::string& file) {
    static const auto* models =
        new std::map<std::string, ExpectedModel>(LoadExpectedModels(TestModel("expected.txt")));
    return models->at(file);
  }

  // Predict with the classifier's sample input (the same for every classifier file).
  static grpc::Status PredictSample(const AgentHarness& agent, const std::string& model_name,
                                    v1::PredictResponse* out) {
    return agent.Predict(model_name, Expected("classifier_v1.onnx").inputs, out);
  }

  // A protobuf message from its JSON form (a REST answer, `edgefleetctl -o json`); nullopt when
  // it does not parse.
  template <typename Message>
  static std::optional<Message> ParseJson(const std::string& json) {
    Message m;
    if (!google::protobuf::util::JsonStringToMessage(json, &m).ok()) return std::nullopt;
    return m;
  }

  // `edgefleetctl ARGS...` against this test's server; a test failure when it exits non-zero.
  CommandResult CtlOk(const std::vector<std::string>& args) {
    CommandResult r = server_->Ctl(args);
    EXPECT_EQ(r.exit_code, 0) << "edgefleetctl " << testing::PrintToString(args) << "\n"
                              << r.err << r.out;
    return r;
  }

  // Waits until `agent` answers `model_name` with `version`; false on timeout.
  static bool WaitForServedVersion(const AgentHarness& agent, const std::string& model_name,
                                   const std::string& version,
                                   std::chrono::milliseconds timeout = kLongWait) {
    return WaitFor(
        [&] {
          v1::PredictResponse response;
          return PredictSample(agent, model_name, &response).ok() && response.version() == version;
        },
        timeout, 50ms);
  }

  // Creates an enrollment token (max_uses, labels) and returns its secret.
  std::string NewEnrollmentToken(uint32_t max_uses,
                                 const std::map<std::string, std::string>& labels = {}) {
    v1::EnrollmentToken token;
    grpc::Status status = server_->CreateEnrollmentToken(max_uses, labels, &token);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return token.token();
  }

  // Waits until `count` devices matching `selector` are ACTIVE.
  bool WaitForActiveDevices(size_t count, const std::string& selector = "") {
    return WaitFor(
        [&] {
          v1::ListDevicesResponse devices;
          if (!server_->ListDevices(selector, &devices).ok()) return false;
          size_t active = 0;
          for (const auto& d : devices.devices()) active += d.status() == v1::DEVICE_STATUS_ACTIVE;
          return active == count;
        },
        kLongWait, 100ms);
  }

  // Waits until every target of the deployment is in `state`; returns the last answer.
  v1::Deployment WaitForTargets(const std::string& deployment_id, v1::DeploymentTargetState state) {
    v1::Deployment deployment;
    WaitFor(
        [&] {
          deployment.Clear();
          if (!server_->GetDeployment(deployment_id, &deployment).ok()) return false;
          if (deployment.targets().empty()) return false;
          for (const auto& t : deployment.targets()) {
            if (t.state() != state) return false;
          }
          return true;
        },
        kLongWait, 100ms);
    return deployment;
  }

  // Pushes a classifier file and deploys it to `selector`; fails the test on error.
  v1::Deployment PushAndDeploy(const std::string& model_name, const std::string& version,
                               const std::string& file, const std::string& selector = "") {
    v1::ModelVersion pushed;
    grpc::Status push = server_->PushClassifier(model_name, version, file, &pushed);
    EXPECT_TRUE(push.ok()) << "push " << version << ": " << push.error_message();
    v1::Deployment deployment;
    grpc::Status deploy = server_->CreateDeployment(model_name, version, selector, &deployment);
    EXPECT_TRUE(deploy.ok()) << "deploy " << version << ": " << deploy.error_message();
    return deployment;
  }

  // Declared first so it is removed last, after every process using it has stopped.
  TempDir tmp_;
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<ServerHarness> server_;
  std::vector<std::unique_ptr<ServerHarness>> replicas_;
  std::vector<std::unique_ptr<AgentHarness>> agents_;
};

}  // namespace edgefleet::test
