// The data loop back end to end: a deployment asks for capture (edgefleetctl deploy create
// --capture-*), a real agent captures its local Predicts and uploads them while idle, the server
// stores them once each, and `edgefleetctl capture export` writes .npy files that numpy reads
// back equal to the inputs sent. Then bad input from a device: a capture over the server's size
// limit and captures beyond the day's cap are refused with a clear reason and counted.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "agent/state/identity_files.h"
#include "agent/update/device_transport.h"
#include "edgefleet/v1/capture.pb.h"
#include "tests/integration/integration_fixture.h"

namespace edgefleet::test {
namespace {

namespace fs = std::filesystem;

class CaptureTest : public IntegrationTest {
 protected:
  // Starts the server (`server_args` extra) and one agent that uploads captures as soon as it
  // has been idle a second, and waits for the agent to be active.
  AgentHarness& StartFleet(std::vector<std::string> server_args = {}) {
    server_->set_extra_args(std::move(server_args));
    server_->Start();
    AgentHarness& agent = AddAgent("cam-1");
    agent.set_extra_args({"--capture-idle-seconds", "1", "--capture-upload-interval-seconds", "1"});
    agent.Start(server_->device_address(), server_->ca_file(), NewEnrollmentToken(1));
    EXPECT_TRUE(WaitForActiveDevices(1));
    return agent;
  }

  std::string Query(const std::string& sql) { return db_->QueryValue(sql); }

  // Pushes classifier v1 and deploys it with `edgefleetctl deploy create ... capture_flags`.
  void DeployWithCapture(const std::vector<std::string>& capture_flags) {
    v1::ModelVersion pushed;
    grpc::Status push =
        server_->PushClassifier("classifier", "1", TestModel("classifier_v1.onnx"), &pushed);
    ASSERT_TRUE(push.ok()) << push.error_message();
    std::vector<std::string> args = {"deploy", "create", "classifier", "1"};
    args.insert(args.end(), capture_flags.begin(), capture_flags.end());
    CommandResult deployed = server_->Ctl(args);
    ASSERT_EQ(deployed.exit_code, 0) << deployed.err;
  }

  // The agent's own device API client (its certificate), for uploads no honest agent sends.
  std::unique_ptr<agent::DeviceTransport> DeviceClient(const AgentHarness& agent) {
    auto read = [&](const std::string& name) {
      return ReadFile(agent.state_dir() + "/" + name).value_or("");
    };
    return agent::MakeGrpcDeviceTransport(
        server_->device_address(),
        agent::TlsMaterial{read("ca.pem"), read(agent::kCertificateFile), read(agent::kKeyFile)});
  }

  // A CaptureUpload of classifier v1 with an input of `floats` values.
  static v1::CaptureUpload Upload(uint64_t sequence, size_t floats) {
    v1::CaptureRecord record;
    record.set_model_name("classifier");
    record.set_version("1");
    record.mutable_captured_at()->set_seconds(
        std::chrono::duration_cast<std::chrono::seconds>(
            std::chrono::system_clock::now().time_since_epoch())
            .count());
    record.set_trigger(v1::CAPTURE_TRIGGER_RANDOM);
    v1::Tensor* input = record.add_inputs();
    input->set_name("input");
    input->add_shape(1);
    input->add_shape(static_cast<int64_t>(floats));
    for (size_t i = 0; i < floats; ++i) input->add_data(static_cast<float>(i));
    v1::CaptureUpload upload;
    upload.set_sequence(sequence);
    upload.set_record(record.SerializeAsString());
    return upload;
  }
};

TEST_F(CaptureTest, CapturedPredictsAreExportedAsNpyFilesEqualToTheInputsSent) {
  AgentHarness& agent = StartFleet();
  ASSERT_FALSE(HasFatalFailure());
  DeployWithCapture({"--capture-random", "1", "--capture-max-bytes-per-day", "1000000",
                     "--capture-upload-window", "0-24"});
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "1"));
  v1::Deployment listed;
  ASSERT_TRUE(server_->GetDeployment("1", &listed).ok());
  EXPECT_TRUE(listed.capture().enabled()) << "the deployment shows what it asks";
  EXPECT_EQ(listed.capture().max_bytes_per_day(), 1000000u);

  // The capture request came with the check-in that delivered the version, so every Predict
  // answered by v1 is captured (random 1).
  const std::vector<std::vector<float>> sent = {
      {0.5f, -1.25f, 3.0f, 7.75f}, {1.5f, 2.5f, -3.5f, 0.125f}, {9.0f, 8.0f, 7.0f, 6.0f}};
  for (const auto& values : sent) {
    v1::Tensor input;
    input.set_name("input");
    input.add_shape(1);
    input.add_shape(4);
    for (float v : values) input.add_data(v);
    v1::PredictResponse r;
    ASSERT_TRUE(agent.Predict("classifier", {input}, &r).ok());
  }

  // numpy reads every exported file back; each input sent is among the captured inputs, exactly.
  std::string expected;
  for (const auto& values : sent) {
    expected += "[";
    for (float v : values) expected += std::to_string(v) + ",";
    expected += "],";
  }
  const std::string script =
      "import json, sys, numpy as np\n"
      "d = sys.argv[1]\n"
      "rows = [json.loads(l) for l in open(d + '/index.jsonl')]\n"
      "inputs = []\n"
      "for r in rows:\n"
      "    for f, shape in zip(r['files'], r['shapes']):\n"
      "        a = np.load(d + '/' + f)\n"
      "        assert a.dtype == np.float32 and list(a.shape) == shape, (f, a.dtype, a.shape)\n"
      "    inputs.append(np.load(d + '/' + r['files'][0]))\n"
      "    assert r['trigger'] == 'random' and r['device'] == 'cam-1', r\n"
      "    assert r['output_summary'] is not None, r\n"
      "want = [np.array(v, dtype=np.float32).reshape(1, 4) for v in [" +
      expected +
      "]]\n"
      "for w in want:\n"
      "    assert any(a.shape == w.shape and np.array_equal(a, w) for a in inputs), w\n"
      "print('ok', len(rows))\n";
  const std::string check_dir = tmp_.Sub("check");
  fs::create_directories(check_dir);
  std::ofstream(check_dir + "/check.py") << script;
  const std::string dir = tmp_.Sub("export");
  auto export_and_check = [&] {
    CommandResult r =
        server_->Ctl({"capture", "export", "--model", "classifier", "--version", "1", dir});
    if (r.exit_code != 0) {
      ADD_FAILURE() << r.err;
      return false;
    }
    return std::system(("/usr/bin/python3 " + check_dir + "/check.py " + dir + " > " + check_dir +
                        "/out.txt 2>&1")
                           .c_str()) == 0;
  };
  // The agent uploads once it has been idle for a second; a re-export adds what arrived since.
  ASSERT_TRUE(WaitFor(export_and_check, kLongWait, 500ms))
      << ReadFile(check_dir + "/out.txt").value_or("");
  auto index_text = [&] { return ReadFile(dir + "/index.jsonl").value_or(""); };
  const std::string index = index_text();
  EXPECT_EQ(std::count(index.begin(), index.end(), '\n'),
            std::stoi(Query("SELECT count(*) FROM captures")))
      << "one index line per stored capture";

  // Again into the same directory: nothing new, nothing written twice.
  CommandResult again =
      server_->Ctl({"capture", "export", "--model", "classifier", "--version", "1", dir});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("exported 0 captures"), std::string::npos) << again.out;
  EXPECT_EQ(index_text(), index);

  EXPECT_GE(MetricValue(server_->Metrics(), "edgefleet_captures_total", {{"result", "stored"}})
                .value_or(0),
            3);
  // REST lists the same index.
  auto http = server_->Http();
  auto listed_rest =
      http->Get("/v1/captures?model_name=classifier&version=1", server_->AuthHeaders());
  ASSERT_TRUE(listed_rest);
  EXPECT_EQ(listed_rest->status, 200) << listed_rest->body;
  EXPECT_NE(listed_rest->body.find("CAPTURE_TRIGGER_RANDOM"), std::string::npos)
      << listed_rest->body;
  auto bad = http->Get("/v1/captures?version=1", server_->AuthHeaders());
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400) << "a list without a model is refused: " << bad->body;
}

TEST_F(CaptureTest, OversizedCapturesAndCapturesBeyondTheCapAreRefusedAndCounted) {
  AgentHarness& agent = StartFleet({"--max-capture-bytes", "4096"});
  ASSERT_FALSE(HasFatalFailure());
  // A trigger that never fires on a classifier (probabilities are never below 0): the agent
  // captures nothing itself, so the uploads below are the only ones.
  DeployWithCapture({"--capture-confidence-below", "-1", "--capture-max-bytes-per-day", "2048"});
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(WaitForServedVersion(agent, "classifier", "1"));
  auto device = DeviceClient(agent);

  v1::UploadCaptureRequest request;
  request.set_stream_id(77);
  *request.add_captures() = Upload(1, 2000);  // ~8 KB: over the server's 4096-byte limit
  auto answer = device->UploadCapture(request);
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->rejected_size(), 1);
  EXPECT_NE(answer->rejected(0).reason().find("over the server's limit of 4096 bytes"),
            std::string::npos)
      << answer->rejected(0).reason();

  // ~850 bytes each against a cap of 2048 a day: two fit, the third does not.
  std::vector<std::string> outcomes;
  for (uint64_t sequence = 2; sequence <= 4; ++sequence) {
    request.clear_captures();
    *request.add_captures() = Upload(sequence, 200);
    answer = device->UploadCapture(request);
    ASSERT_TRUE(answer.ok()) << answer.status();
    outcomes.push_back(answer->accepted_sequences_size() == 1 ? "stored"
                                                              : answer->rejected(0).reason());
  }
  EXPECT_EQ(outcomes[0], "stored");
  EXPECT_EQ(outcomes[1], "stored");
  EXPECT_NE(outcomes[2].find("over the daily cap of 2048 bytes"), std::string::npos) << outcomes[2];
  // A capture sent again is stored once (and not counted against the cap twice).
  request.clear_captures();
  *request.add_captures() = Upload(2, 200);
  answer = device->UploadCapture(request);
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(answer->accepted_sequences_size(), 1);

  EXPECT_EQ(Query("SELECT count(*) FROM captures"), "2") << "nothing half-stored";
  const std::string metrics = server_->Metrics();
  EXPECT_EQ(MetricValue(metrics, "edgefleet_captures_total", {{"result", "oversize"}}), 1);
  EXPECT_EQ(MetricValue(metrics, "edgefleet_captures_total", {{"result", "over_cap"}}), 1);
  EXPECT_EQ(MetricValue(metrics, "edgefleet_captures_total", {{"result", "duplicate"}}), 1);

  // A bad capture request on the admin side is refused with what is wrong.
  CommandResult refused =
      server_->Ctl({"rollout", "create", "r1", "--model", "classifier", "--version", "1",
                    "--capture-random", "0.5", "--capture-max-bytes-per-day", "10"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("capture.max_bytes_per_day"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("INVALID_ARGUMENT"), std::string::npos) << refused.err;
}

}  // namespace
}  // namespace edgefleet::test
