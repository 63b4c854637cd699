// The operator surface of a running server: admin authentication and validation over REST and
// gRPC, enrollment refusals, and the /metrics, /healthz and /readyz endpoints.
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <fstream>

#include "tests/integration/integration_fixture.h"

namespace edgefleet::test {
namespace {

using ::testing::HasSubstr;

// The JSON error body of a REST call.
v1::ErrorBody ParseError(const std::string& body) {
  v1::ErrorBody error;
  auto status = google::protobuf::util::JsonStringToMessage(body, &error);
  EXPECT_TRUE(status.ok()) << "error body is not ErrorBody JSON: " << body;
  return error;
}

class AdminEndToEndTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    server_->Start();
    http_ = server_->Http();
  }

  // Runs a REST call and checks its HTTP status and JSON error code.
  void ExpectError(const httplib::Result& result, int http_status, const std::string& code,
                   const std::string& what) {
    ASSERT_TRUE(result) << what << ": no response (" << httplib::to_string(result.error()) << ")";
    EXPECT_EQ(result->status, http_status) << what << ": " << result->body;
    EXPECT_THAT(result->get_header_value("Content-Type"), HasSubstr("application/json")) << what;
    v1::ErrorBody error = ParseError(result->body);
    EXPECT_EQ(error.code(), code) << what << ": " << result->body;
    EXPECT_FALSE(error.message().empty()) << what << ": an error needs a message";
  }

  static httplib::Headers Bearer(const std::string& token) {
    return {{"Authorization", "Bearer " + token}};
  }

  std::unique_ptr<httplib::Client> http_;
};

TEST_F(AdminEndToEndTest, RestRefusesMissingOrWrongTokens) {
  ExpectError(http_->Get("/v1/devices"), 401, "UNAUTHENTICATED", "no token");
  ExpectError(http_->Get("/v1/devices", {{"Authorization", "Bearer efa_wrong"}}), 401,
              "UNAUTHENTICATED", "wrong token");
  ExpectError(http_->Post("/v1/enrollment-tokens", {{"Authorization", "Basic abc"}}, "{}",
                          "application/json"),
              401, "UNAUTHENTICATED", "not a bearer token");
  ExpectError(http_->Post("/v1/models/classifier/versions/1", {{"Authorization", "Bearer nope"}},
                          "model-bytes", "application/octet-stream"),
              401, "UNAUTHENTICATED", "upload with a wrong token");

  auto ok = http_->Get("/v1/devices", server_->AuthHeaders());
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
}

TEST_F(AdminEndToEndTest, RestValidatesRequests) {
  const auto auth = server_->AuthHeaders();
  ExpectError(http_->Post("/v1/enrollment-tokens", auth, "{\"max_uses\": ", "application/json"),
              400, "INVALID_ARGUMENT", "malformed JSON");
  ExpectError(http_->Post("/v1/deployments", auth, "[1,2]", "application/json"), 400,
              "INVALID_ARGUMENT", "JSON of the wrong shape");
  ExpectError(http_->Get("/v1/devices?label_selector=%3Dnokey", auth), 400, "INVALID_ARGUMENT",
              "label selector with an empty key");
  ExpectError(http_->Get("/v1/devices?label_selector=site%3Dit%2Cbad%20key%3Dx", auth), 400,
              "INVALID_ARGUMENT", "label selector with a space in a key");
  ExpectError(http_->Get("/v1/devices/no-such-device", auth), 404, "NOT_FOUND", "unknown device");
  ExpectError(http_->Get("/v1/deployments/999999", auth), 404, "NOT_FOUND", "unknown deployment");

  const std::string model = ReadFile(TestModel("classifier_v1.onnx")).value();
  const std::string specs = "?input=input:1x4&output=probs:1x3";
  auto pushed = http_->Post("/v1/models/classifier/versions/1" + specs, auth, model,
                            "application/octet-stream");
  ASSERT_TRUE(pushed);
  ASSERT_EQ(pushed->status, 200) << pushed->body;
  v1::ModelVersion version;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(pushed->body, &version).ok())
      << pushed->body;
  EXPECT_EQ(version.version(), "1");
  EXPECT_EQ(version.size_bytes(), model.size());

  ExpectError(http_->Post("/v1/models/classifier/versions/1" + specs, auth, model,
                          "application/octet-stream"),
              409, "ALREADY_EXISTS", "duplicate model version");
  ExpectError(http_->Post("/v1/models/Bad_Name/versions/1" + specs, auth, model,
                          "application/octet-stream"),
              400, "INVALID_ARGUMENT", "upper-case model name");
  ExpectError(
      http_->Post("/v1/models/classifier/versions/2" + specs + "&sha256=" + std::string(64, '0'),
                  auth, model, "application/octet-stream"),
      400, "INVALID_ARGUMENT", "sha256 that does not match the upload");
  ExpectError(http_->Post("/v1/models/classifier/versions/2?input=input:1xZ", auth, model,
                          "application/octet-stream"),
              400, "INVALID_ARGUMENT", "bad tensor spec");

  // Refused uploads leave nothing behind: only version 1 exists.
  auto listed = http_->Get("/v1/models/classifier", auth);
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->status, 200) << listed->body;
  v1::Model stored;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(listed->body, &stored).ok())
      << listed->body;
  ASSERT_EQ(stored.versions_size(), 1) << listed->body;
  EXPECT_EQ(stored.versions(0).version(), "1");

  // A REST deployment of the stored version works with the same token.
  auto deployed =
      http_->Post("/v1/deployments", auth, R"({"model_name": "classifier", "version": "1"})",
                  "application/json");
  ASSERT_TRUE(deployed);
  EXPECT_EQ(deployed->status, 200) << deployed->body;
  ExpectError(http_->Post("/v1/deployments", auth,
                          R"({"model_name": "classifier", "version": "9"})", "application/json"),
              404, "NOT_FOUND", "deployment of an unknown version");
}

TEST_F(AdminEndToEndTest, GrpcRefusesMissingOrWrongTokensAndValidates) {
  v1::ListDevicesResponse devices;
  {
    grpc::ClientContext context;
    grpc::Status s = server_->admin().ListDevices(&context, v1::ListDevicesRequest(), &devices);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer efa_wrong");
    grpc::Status s = server_->admin().ListDevices(&context, v1::ListDevicesRequest(), &devices);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  }
  {
    // An unauthenticated upload is refused before anything is stored.
    grpc::ClientContext context;
    v1::ModelVersion out;
    auto writer = server_->admin().PushModel(&context, &out);
    v1::PushModelRequest first;
    first.mutable_metadata()->set_model_name("classifier");
    first.mutable_metadata()->set_version("7");
    writer->Write(first);
    writer->WritesDone();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ(server_->ListDevices("=broken", &devices).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  v1::Device device;
  EXPECT_EQ(server_->GetDevice("no-such-device", &device).error_code(),
            grpc::StatusCode::NOT_FOUND);

  v1::ModelVersion version;
  const std::string v1_path = TestModel("classifier_v1.onnx");
  ASSERT_TRUE(server_->PushClassifier("classifier", "1", v1_path, &version).ok());
  EXPECT_EQ(server_->PushClassifier("classifier", "1", v1_path, &version).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(server_->PushClassifier("Classifier!", "1", v1_path, &version).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  v1::PushModelMetadata metadata;
  metadata.set_model_name("classifier");
  metadata.set_version("2");
  metadata.set_expected_sha256(std::string(32, '\x01'));
  grpc::Status wrong_digest = server_->PushModel(metadata, ReadFile(v1_path).value(), &version);
  EXPECT_EQ(wrong_digest.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(wrong_digest.error_message(), HasSubstr("SHA-256"));
  {
    grpc::ClientContext context;
    server_->Authorize(&context);
    v1::GetModelRequest request;
    request.set_model_name("classifier");
    v1::Model model;
    ASSERT_TRUE(server_->admin().GetModel(&context, request, &model).ok());
    EXPECT_EQ(model.versions_size(), 1) << "refused uploads must not create versions";
  }
}

TEST_F(AdminEndToEndTest, EnrollmentWithWrongOrUsedUpTokenIsRefused) {
  const std::string token = NewEnrollmentToken(1);
  AgentHarness& good = StartAgent("dev-good", token);
  ASSERT_TRUE(WaitFor([&] { return good.Enrolled(); }, kLongWait)) << "a valid token enrolls";
  ASSERT_TRUE(WaitForActiveDevices(1));

  AgentHarness& wrong = StartAgent("dev-wrong", "eft_000000000000_notarealtoken");
  EXPECT_TRUE(WaitFor(
      [&] {
        return MetricValue(server_->Metrics(), "edgefleet_enrollments_total",
                           {{"result", "UNAUTHENTICATED"}})
                   .value_or(0) >= 1;
      },
      kLongWait, 100ms))
      << "an unknown token should be refused as UNAUTHENTICATED";

  AgentHarness& late = StartAgent("dev-late", token);
  EXPECT_TRUE(WaitFor(
      [&] {
        return MetricValue(server_->Metrics(), "edgefleet_enrollments_total",
                           {{"result", "RESOURCE_EXHAUSTED"}})
                   .value_or(0) >= 1;
      },
      kLongWait, 100ms))
      << "a used-up token should be refused";

  EXPECT_FALSE(wrong.Enrolled());
  EXPECT_FALSE(late.Enrolled());
  EXPECT_TRUE(wrong.IsRunning()) << "a refused agent keeps retrying";
  EXPECT_TRUE(late.IsRunning()) << "a refused agent keeps retrying";
  EXPECT_THAT(late.LogText(), HasSubstr("enrollment failed"));

  v1::ListDevicesResponse devices;
  ASSERT_TRUE(server_->ListDevices("", &devices).ok());
  ASSERT_EQ(devices.devices_size(), 1) << devices.ShortDebugString();
  EXPECT_EQ(devices.devices(0).device_id(), "dev-good");
  EXPECT_EQ(MetricValue(server_->Metrics(), "edgefleet_enrollments_total", {{"result", "ok"}}), 1);
}

TEST_F(AdminEndToEndTest, MetricsAndHealthEndpointsDescribeTheFleet) {
  const std::string token = NewEnrollmentToken(2);
  AgentHarness& a = StartAgent("dev-m1", token);
  AgentHarness& b = StartAgent("dev-m2", token);
  ASSERT_TRUE(WaitForActiveDevices(2));
  PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx"));
  ASSERT_TRUE(WaitForServedVersion(a, "classifier", "1"));
  ASSERT_TRUE(WaitForServedVersion(b, "classifier", "1"));

  auto health = http_->Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto ready = http_->Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200) << ready->body;

  auto metrics = http_->Get("/metrics");
  ASSERT_TRUE(metrics);
  ASSERT_EQ(metrics->status, 200);
  const std::string body = metrics->body;

  const std::string metrics_file = tmp_.Sub("metrics.txt");
  std::ofstream(metrics_file) << body;
  const std::string promtool_out = tmp_.Sub("promtool.out");
  const std::string command =
      "/usr/bin/promtool check metrics < " + metrics_file + " > " + promtool_out + " 2>&1";
  int rc = std::system(command.c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << "promtool check metrics failed:\n"
                                                     << ReadFile(promtool_out).value_or("") << "\n"
                                                     << body;

  EXPECT_EQ(MetricValue(body, "edgefleet_devices", {{"status", "active"}}), 2) << body;
  EXPECT_EQ(MetricValue(body, "edgefleet_devices", {{"status", "decommissioned"}}), 0) << body;
  EXPECT_GE(MetricValue(body, "edgefleet_device_check_ins_total").value_or(0), 2) << body;
  const double model_bytes = static_cast<double>(ReadFile(TestModel("classifier_v1.onnx"))->size());
  EXPECT_GE(MetricValue(body, "edgefleet_artifact_bytes_served_total").value_or(0), 2 * model_bytes)
      << "each agent downloaded the model once\n"
      << body;
  EXPECT_EQ(MetricValue(body, "edgefleet_enrollments_total", {{"result", "ok"}}), 2) << body;
  EXPECT_GE(MetricValue(body, "edgefleet_grpc_requests_total",
                        {{"service", "AdminService"}, {"method", "PushModel"}, {"code", "OK"}})
                .value_or(0),
            1)
      << body;
}

// The gauges the stock alert rules need (deploy/prometheus/): devices that stopped checking in,
// by how long, and the patch queue.
TEST_F(AdminEndToEndTest, MetricsCountDevicesThatStoppedCheckingInAndThePatchQueue) {
  const std::string token = NewEnrollmentToken(2);
  StartAgent("dev-up", token);
  StartAgent("dev-up-2", token);
  ASSERT_TRUE(WaitForActiveDevices(2));
  const std::string body = server_->Metrics();
  for (const char* limit : {"5m", "15m", "1h", "6h", "1d", "7d"}) {
    EXPECT_EQ(MetricValue(body, "edgefleet_devices_unseen", {{"longer_than", limit}}), 0)
        << limit << "\n"
        << body;
  }
  for (const char* state : {"pending", "ready", "not_smaller", "failed"}) {
    EXPECT_EQ(MetricValue(body, "edgefleet_patches", {{"state", state}}), 0) << state << "\n"
                                                                             << body;
  }
  EXPECT_EQ(MetricValue(body, "edgefleet_patch_oldest_pending_age_seconds"), 0) << body;

  // A device that enrolled three hours ago and went dark two hours ago (written as its rows
  // would be: an agent's check-ins would keep moving last_seen forward).
  db_->Exec(
      "INSERT INTO devices (id, status, first_seen, last_seen) VALUES ('dev-dark', 'active', "
      "now() - interval '3 hours', now() - interval '2 hours')");
  const std::string later = server_->Metrics();
  EXPECT_EQ(MetricValue(later, "edgefleet_devices_unseen", {{"longer_than", "5m"}}), 1) << later;
  EXPECT_EQ(MetricValue(later, "edgefleet_devices_unseen", {{"longer_than", "1h"}}), 1) << later;
  EXPECT_EQ(MetricValue(later, "edgefleet_devices_unseen", {{"longer_than", "6h"}}), 0) << later;
  EXPECT_EQ(MetricValue(later, "edgefleet_devices", {{"status", "active"}}), 3) << later;
}

}  // namespace
}  // namespace edgefleet::test

namespace edgefleet::test {
namespace {

// The JSON answer of a successful REST call.
template <typename Message>
Message ParseAnswer(const httplib::Result& result) {
  Message answer;
  EXPECT_TRUE(result && result->status == 200) << (result ? result->body : "no response");
  if (result) {
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(result->body, &answer).ok());
  }
  return answer;
}

v1::ListDevicesResponse ParseDevices(const httplib::Result& result) {
  return ParseAnswer<v1::ListDevicesResponse>(result);
}

TEST_F(AdminEndToEndTest, DeviceListIsPagedOverRest) {
  const std::string token = NewEnrollmentToken(3);
  for (const char* name : {"dev-a", "dev-b", "dev-c"}) StartAgent(name, token);
  ASSERT_TRUE(WaitForActiveDevices(3));
  const auto auth = server_->AuthHeaders();

  v1::ListDevicesResponse first = ParseDevices(http_->Get("/v1/devices?page_size=2", auth));
  ASSERT_EQ(first.devices_size(), 2) << "at most the page size";
  EXPECT_EQ(first.devices(0).device_id(), "dev-a");
  EXPECT_EQ(first.devices(1).device_id(), "dev-b");
  ASSERT_FALSE(first.next_page_token().empty());

  v1::ListDevicesResponse second = ParseDevices(
      http_->Get("/v1/devices?page_size=2&page_token=" + first.next_page_token(), auth));
  ASSERT_EQ(second.devices_size(), 1);
  EXPECT_EQ(second.devices(0).device_id(), "dev-c");
  EXPECT_TRUE(second.next_page_token().empty()) << "the last page";

  ExpectError(http_->Get("/v1/devices?page_token=bm90LWEtdG9rZW4", auth), 400, "INVALID_ARGUMENT",
              "a token that is not ours");
  ExpectError(http_->Get("/v1/devices?page_size=1001", auth), 400, "INVALID_ARGUMENT",
              "over the page size limit");
  ExpectError(http_->Get("/v1/models?page_token=" + first.next_page_token(), auth), 400,
              "INVALID_ARGUMENT", "another call's token");
}

TEST_F(AdminEndToEndTest, DeploymentTargetsArePagedOverRestAndListsCarryOnlyCounts) {
  const std::string token = NewEnrollmentToken(3);
  for (const char* name : {"dev-a", "dev-b", "dev-c"}) StartAgent(name, token);
  ASSERT_TRUE(WaitForActiveDevices(3));
  const auto auth = server_->AuthHeaders();
  const std::string id =
      PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx")).deployment_id();
  const std::string path = "/v1/deployments/" + id;

  v1::Deployment first =
      ParseAnswer<v1::Deployment>(http_->Get(path + "?target_page_size=2", auth));
  ASSERT_EQ(first.targets_size(), 2) << "at most the page size";
  EXPECT_EQ(first.targets(0).device_id(), "dev-a");
  EXPECT_EQ(first.targets(1).device_id(), "dev-b");
  EXPECT_EQ(first.target_count(), 3u) << "counts cover every target";
  ASSERT_FALSE(first.next_target_page_token().empty());

  v1::Deployment second = ParseAnswer<v1::Deployment>(http_->Get(
      path + "?target_page_size=2&target_page_token=" + first.next_target_page_token(), auth));
  ASSERT_EQ(second.targets_size(), 1);
  EXPECT_EQ(second.targets(0).device_id(), "dev-c");
  EXPECT_TRUE(second.next_target_page_token().empty()) << "the last page";

  auto too_big = http_->Get(path + "?target_page_size=1001", auth);
  ExpectError(too_big, 400, "INVALID_ARGUMENT", "over the page size limit");
  EXPECT_THAT(ParseError(too_big->body).message(), HasSubstr("target_page_size 1001"));
  ExpectError(http_->Get("/v1/devices?page_token=" + first.next_target_page_token(), auth), 400,
              "INVALID_ARGUMENT", "another call's token");

  auto listed = ParseAnswer<v1::ListDeploymentsResponse>(http_->Get("/v1/deployments", auth));
  ASSERT_EQ(listed.deployments_size(), 1);
  EXPECT_EQ(listed.deployments(0).targets_size(), 0) << "a listed deployment has no targets";
  EXPECT_EQ(listed.deployments(0).target_count(), 3u);
}

TEST_F(AdminEndToEndTest, OversizedFieldsAndNulBytesAreRefusedNamingTheField) {
  const auto auth = server_->AuthHeaders();
  auto description = [&](const std::string& text) {
    v1::CreateEnrollmentTokenRequest request;
    request.set_description(text);
    std::string json;
    EXPECT_TRUE(google::protobuf::util::MessageToJsonString(request, &json).ok());
    return http_->Post("/v1/enrollment-tokens", auth, json, "application/json");
  };
  auto big = description(std::string(100'000, 'x'));
  ExpectError(big, 400, "INVALID_ARGUMENT", "a 100 kB description");
  EXPECT_EQ(ParseError(big->body).message(), "description has 100000 bytes; the limit is 1024");
  auto nul = description(std::string("before\0after", 12));
  ExpectError(nul, 400, "INVALID_ARGUMENT", "a NUL byte");
  EXPECT_EQ(ParseError(nul->body).message(), "description contains a NUL byte");

  std::string labels = "{\"labels\": {";
  for (int i = 0; i < 1000; ++i) labels += (i ? ",\"k" : "\"k") + std::to_string(i) + "\": \"v\"";
  labels += "}}";
  auto many = http_->Post("/v1/enrollment-tokens", auth, labels, "application/json");
  ExpectError(many, 400, "INVALID_ARGUMENT", "1000 labels");
  EXPECT_EQ(ParseError(many->body).message(), "labels has 1000 entries; the limit is 64");
  EXPECT_EQ(description("fine")->status, 200) << "within the limits";
}

// `edgefleetctl rollout ...` against a running server, and the REST route: bad input and roles
// are refused before any rollout is touched (whether or not this server runs the rollout
// controller; without it the valid calls answer UNAVAILABLE).
TEST_F(AdminEndToEndTest, RolloutCommandsRefuseBadInputAndMissingPermissions) {
  const std::string server = "127.0.0.1:" + std::to_string(server_->ports().admin_grpc);
  int runs = 0;
  // Runs edgefleetctl with `token`; its exit code and what it printed.
  auto ctl = [&](std::vector<std::string> args, const std::string& token) {
    args.insert(args.end(), {"--server", server});
    const std::string log = tmp_.Sub("ctl-" + std::to_string(++runs) + ".log");
    Process p;
    p.Spawn(BinDir() + "/edgefleetctl", args, {{"EDGEFLEET_TOKEN", token}}, log);
    const std::optional<int> code = p.Wait(std::chrono::seconds(60));
    return std::make_pair(code.value_or(-1), ReadFileTail(log));
  };

  // The CLI accepts these waves; the server refuses them (the last wave must be 100%).
  auto [code, out] = ctl(
      {"rollout", "create", "r1", "--model", "classifier", "--version", "1", "--waves", "10%,50%"},
      server_->admin_token());
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("edgefleetctl: create rollout 'r1': INVALID_ARGUMENT"));
  EXPECT_THAT(out, HasSubstr("waves[1]"));
  ExpectError(http_->Post("/v1/rollouts", server_->AuthHeaders(),
                          R"({"name": "r1", "modelName": "classifier", "version": "1",
                              "waves": [{"percent": 10}, {"percent": 50}]})",
                          "application/json"),
              400, "INVALID_ARGUMENT", "waves that do not end at 100%");

  auto created = http_->Post("/v1/api-tokens", server_->AuthHeaders(),
                             R"({"name": "watcher", "role": "ROLE_VIEWER"})", "application/json");
  ASSERT_TRUE(created);
  ASSERT_EQ(created->status, 200) << created->body;
  v1::ApiToken viewer;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(created->body, &viewer).ok());
  std::tie(code, out) =
      ctl({"rollout", "create", "r1", "--model", "classifier", "--version", "1"}, viewer.token());
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(out, HasSubstr("create:rollouts"));
  for (const char* verb : {"pause", "resume", "promote", "abort", "rollback"}) {
    std::tie(code, out) = ctl({"rollout", verb, "r1", "--reason", "test"}, viewer.token());
    EXPECT_EQ(code, 1) << verb << ": " << out;
    EXPECT_THAT(out, HasSubstr("PERMISSION_DENIED")) << verb;
    EXPECT_THAT(out, HasSubstr("act:rollouts")) << verb;
  }
  ExpectError(
      http_->Post("/v1/rollouts/r1/abort", Bearer(viewer.token()), "{}", "application/json"), 403,
      "PERMISSION_DENIED", "a viewer aborting a rollout");
}

}  // namespace
}  // namespace edgefleet::test
