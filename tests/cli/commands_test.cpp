// Tests of edgefleetctl's commands: global options, rendering, error lines and exit codes, and
// the gRPC clients against in-process fake services (auth header, upload chunking, unix socket).
#include "cli/commands.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_join.h"
#include "common/crypto/sha256.h"
#include "edgefleet/v1/admin.grpc.pb.h"
#include "edgefleet/v1/inference.grpc.pb.h"

namespace edgefleet::cli {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

// Records requests and answers with canned responses.
class FakeAdmin : public AdminClient {
 public:
  struct Shared {
    AdminClientOptions options;
    v1::ListDevicesRequest list_devices;
    v1::LabelDeviceRequest label_device;
    v1::RekeyDeviceRequest rekey_device;
    v1::CreateEnrollmentTokenRequest create_token;
    v1::CreateApiTokenRequest create_api_token;
    v1::RevokeApiTokenRequest revoke_api_token;
    v1::RevokeEnrollmentTokenRequest revoke_token;
    v1::ListEnrollmentTokensResponse enrollment_tokens;
    v1::ListDevicesResponse devices;
    // When set, ListDevices answers by page_token instead of `devices`.
    std::map<std::string, v1::ListDevicesResponse> device_pages;
    std::vector<v1::ListDevicesRequest> list_devices_calls;
    // ListApiTokens answers by page_token; ListEnrollmentTokens too when set.
    std::map<std::string, v1::ListApiTokensResponse> api_token_pages;
    std::vector<v1::ListApiTokensRequest> list_api_tokens_calls;
    std::map<std::string, v1::ListEnrollmentTokensResponse> enrollment_token_pages;
    std::vector<v1::ListEnrollmentTokensRequest> list_enrollment_tokens_calls;
    // GetDeployment answers by target_page_token.
    std::map<std::string, v1::Deployment> deployment_pages;
    std::vector<v1::GetDeploymentRequest> get_deployment_calls;
    v1::ListDeploymentsResponse deployments;
    absl::Status status;
    // Rollouts: GetRollout answers each of `rollout_polls` in turn, then the last one again.
    std::vector<v1::Rollout> rollout_polls;
    size_t get_rollout_calls = 0;
    v1::CreateRolloutRequest create_rollout;
    std::map<std::string, v1::ListRolloutsResponse> rollout_pages;
    std::vector<v1::ListRolloutsRequest> list_rollouts_calls;
    // Every rollout action as "verb name reason".
    std::vector<std::string> rollout_actions;
    std::optional<v1::GetModelDriftRequest> get_model_drift;
    v1::ModelDrift model_drift;
    std::optional<v1::SetDriftThresholdsRequest> set_drift_thresholds;
    size_t waits = 0;  // how often a watch waited before polling again
  };
  explicit FakeAdmin(Shared* shared) : s_(shared) {}

  absl::StatusOr<v1::EnrollmentToken> CreateEnrollmentToken(
      const v1::CreateEnrollmentTokenRequest& r) override {
    s_->create_token = r;
    v1::EnrollmentToken t;
    t.set_token_id("tok-1");
    t.set_token("SECRET-abc123");
    t.set_max_uses(r.max_uses());
    return t;
  }
  absl::StatusOr<v1::ListDevicesResponse> ListDevices(const v1::ListDevicesRequest& r) override {
    s_->list_devices = r;
    s_->list_devices_calls.push_back(r);
    if (!s_->status.ok()) return s_->status;
    if (!s_->device_pages.empty()) return s_->device_pages.at(r.page_token());
    return s_->devices;
  }
  absl::StatusOr<v1::Device> GetDevice(const v1::GetDeviceRequest&) override { return Unused(); }
  absl::StatusOr<v1::Device> LabelDevice(const v1::LabelDeviceRequest& r) override {
    s_->label_device = r;
    v1::Device d;
    d.set_device_id(r.device_id());
    return d;
  }
  absl::StatusOr<v1::Device> DecommissionDevice(const v1::DecommissionDeviceRequest&) override {
    return Unused();
  }
  absl::StatusOr<v1::RekeyDeviceResponse> RekeyDevice(const v1::RekeyDeviceRequest& r) override {
    s_->rekey_device = r;
    if (!s_->status.ok()) return s_->status;
    v1::RekeyDeviceResponse response;
    response.mutable_device()->set_device_id(r.device_id());
    response.mutable_enroll_before()->set_seconds(1'800'000'000);
    return response;
  }
  absl::StatusOr<v1::ModelVersion> PushModel(const v1::PushModelMetadata&, std::istream&) override {
    return Unused();
  }
  absl::StatusOr<v1::ListModelsResponse> ListModels(const v1::ListModelsRequest&) override {
    return Unused();
  }
  absl::StatusOr<v1::Model> GetModel(const v1::GetModelRequest&) override { return Unused(); }
  absl::StatusOr<v1::Deployment> CreateDeployment(const v1::CreateDeploymentRequest&) override {
    return Unused();
  }
  absl::StatusOr<v1::Deployment> GetDeployment(const v1::GetDeploymentRequest& r) override {
    s_->get_deployment_calls.push_back(r);
    return s_->deployment_pages.at(r.target_page_token());
  }
  absl::StatusOr<v1::ListDeploymentsResponse> ListDeployments(
      const v1::ListDeploymentsRequest&) override {
    return s_->deployments;
  }
  absl::StatusOr<v1::ApiToken> CreateApiToken(const v1::CreateApiTokenRequest& r) override {
    s_->create_api_token = r;
    v1::ApiToken t;
    t.set_name(r.name());
    t.set_role(r.role());
    t.set_token("efa_SECRET");
    return t;
  }
  absl::StatusOr<v1::ListApiTokensResponse> ListApiTokens(
      const v1::ListApiTokensRequest& r) override {
    s_->list_api_tokens_calls.push_back(r);
    if (s_->api_token_pages.empty()) return Unused();
    return s_->api_token_pages.at(r.page_token());
  }
  absl::StatusOr<v1::ApiToken> RevokeApiToken(const v1::RevokeApiTokenRequest& r) override {
    s_->revoke_api_token = r;
    v1::ApiToken t;
    t.set_name(r.name());
    t.mutable_revoked_at()->set_seconds(1'700'000'000);
    return t;
  }
  absl::StatusOr<v1::ListEnrollmentTokensResponse> ListEnrollmentTokens(
      const v1::ListEnrollmentTokensRequest& r) override {
    s_->list_enrollment_tokens_calls.push_back(r);
    if (!s_->enrollment_token_pages.empty()) return s_->enrollment_token_pages.at(r.page_token());
    return s_->enrollment_tokens;
  }
  absl::StatusOr<v1::EnrollmentToken> RevokeEnrollmentToken(
      const v1::RevokeEnrollmentTokenRequest& r) override {
    s_->revoke_token = r;
    v1::EnrollmentToken t;
    t.set_token_id(r.token_id());
    return t;
  }
  absl::StatusOr<v1::Rollout> CreateRollout(const v1::CreateRolloutRequest& r) override {
    s_->create_rollout = r;
    if (!s_->status.ok()) return s_->status;
    v1::Rollout rollout;
    rollout.set_name(r.name());
    rollout.set_state(v1::ROLLOUT_STATE_PENDING);
    return rollout;
  }
  absl::StatusOr<v1::Rollout> GetRollout(const v1::GetRolloutRequest& r) override {
    if (!s_->status.ok()) return s_->status;
    const size_t i = std::min(s_->get_rollout_calls++, s_->rollout_polls.size() - 1);
    EXPECT_EQ(r.name(), s_->rollout_polls[i].name());
    return s_->rollout_polls[i];
  }
  absl::StatusOr<v1::ListRolloutsResponse> ListRollouts(const v1::ListRolloutsRequest& r) override {
    s_->list_rollouts_calls.push_back(r);
    return s_->rollout_pages.at(r.page_token());
  }
  absl::StatusOr<v1::Rollout> PauseRollout(const v1::PauseRolloutRequest& r) override {
    return Acted("pause", r);
  }
  absl::StatusOr<v1::Rollout> ResumeRollout(const v1::ResumeRolloutRequest& r) override {
    return Acted("resume", r);
  }
  absl::StatusOr<v1::Rollout> PromoteRollout(const v1::PromoteRolloutRequest& r) override {
    return Acted("promote", r);
  }
  absl::StatusOr<v1::Rollout> AbortRollout(const v1::AbortRolloutRequest& r) override {
    return Acted("abort", r);
  }
  absl::StatusOr<v1::Rollout> RollbackRollout(const v1::RollbackRolloutRequest& r) override {
    return Acted("rollback", r);
  }
  absl::StatusOr<v1::ModelDrift> GetModelDrift(const v1::GetModelDriftRequest& r) override {
    s_->get_model_drift = r;
    if (!s_->status.ok()) return s_->status;
    return s_->model_drift;
  }
  absl::StatusOr<v1::DriftThresholds> SetDriftThresholds(
      const v1::SetDriftThresholdsRequest& r) override {
    s_->set_drift_thresholds = r;
    v1::DriftThresholds t;
    t.set_model_name(r.model_name());
    t.set_warn(r.warn());
    t.set_alert(r.alert());
    t.set_min_samples(r.min_samples() == 0 ? 1000 : r.min_samples());
    return t;
  }

 private:
  template <typename Request>
  absl::StatusOr<v1::Rollout> Acted(const std::string& verb, const Request& r) {
    s_->rollout_actions.push_back(verb + " " + r.name() + " " + r.reason());
    if (!s_->status.ok()) return s_->status;
    v1::Rollout rollout;
    rollout.set_name(r.name());
    rollout.set_state(v1::ROLLOUT_STATE_PAUSED);
    return rollout;
  }
  static absl::Status Unused() { return absl::UnimplementedError("not in this fake"); }
  Shared* s_;
};

struct RunResult {
  int code;
  std::string out;
  std::string err;
};

RunResult RunWith(const std::vector<std::string>& args, FakeAdmin::Shared* shared,
                  std::map<std::string, std::string> env = {}) {
  Clients clients;
  clients.admin = [shared](const AdminClientOptions& o) {
    shared->options = o;
    return std::make_unique<FakeAdmin>(shared);
  };
  clients.wait = [shared](std::chrono::milliseconds interval) {
    EXPECT_EQ(interval, std::chrono::seconds(2));
    ++shared->waits;
  };
  std::ostringstream out, err;
  int code = cli::Run(args, out, err, FakeEnv(std::move(env)), clients);
  return {code, out.str(), err.str()};
}

TEST(GlobalOptionsTest, FlagsOverrideEnvOverrideDefaults) {
  auto parsed = ParseArgs({"device", "list"});
  ASSERT_TRUE(parsed.ok());
  auto defaults = ResolveGlobalOptions(*parsed, FakeEnv({}));
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->server, "127.0.0.1:7444");
  EXPECT_EQ(defaults->token, "");
  EXPECT_EQ(defaults->output, OutputFormat::kTable);
  EXPECT_EQ(defaults->timeout, std::chrono::seconds(30));

  auto env = FakeEnv({{"EDGEFLEET_SERVER", "fleet:9000"}, {"EDGEFLEET_TOKEN", "envtok"}});
  auto from_env = ResolveGlobalOptions(*parsed, env);
  ASSERT_TRUE(from_env.ok());
  EXPECT_EQ(from_env->server, "fleet:9000");
  EXPECT_EQ(from_env->token, "envtok");

  parsed = ParseArgs(
      {"--server", "x:1", "device", "list", "--token=flagtok", "-o", "json", "--timeout", "2m"});
  ASSERT_TRUE(parsed.ok());
  auto from_flags = ResolveGlobalOptions(*parsed, env);
  ASSERT_TRUE(from_flags.ok());
  EXPECT_EQ(from_flags->server, "x:1");
  EXPECT_EQ(from_flags->token, "flagtok");
  EXPECT_EQ(from_flags->output, OutputFormat::kJson);
  EXPECT_EQ(from_flags->timeout, std::chrono::seconds(120));

  parsed = ParseArgs({"-o", "yaml"});
  EXPECT_FALSE(ResolveGlobalOptions(*parsed, env).ok());
}

// The token can come from a file (flag or EDGEFLEET_TOKEN_FILE), so it need not be on a command
// line where `ps` shows it.
TEST(GlobalOptionsTest, TokenIsReadFromAFile) {
  const fs::path dir = fs::temp_directory_path() / ("ctl-token-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string file = (dir / "token").string();
  std::ofstream(file) << "  filetok\n";
  const std::string empty = (dir / "empty").string();
  std::ofstream(empty) << "\n";

  auto parsed = ParseArgs({"device", "list"});
  ASSERT_TRUE(parsed.ok());
  auto from_env_file = ResolveGlobalOptions(*parsed, FakeEnv({{"EDGEFLEET_TOKEN_FILE", file}}));
  ASSERT_TRUE(from_env_file.ok()) << from_env_file.status();
  EXPECT_EQ(from_env_file->token, "filetok");

  parsed = ParseArgs({"device", "list", "--token-file", file});
  ASSERT_TRUE(parsed.ok());
  auto from_flag = ResolveGlobalOptions(*parsed, FakeEnv({{"EDGEFLEET_TOKEN", "envtok"}}));
  ASSERT_TRUE(from_flag.ok()) << from_flag.status();
  EXPECT_EQ(from_flag->token, "filetok") << "a flag beats the environment";

  for (const std::string& bad : {empty, (dir / "missing").string()}) {
    parsed = ParseArgs({"device", "list", "--token-file", bad});
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(ResolveGlobalOptions(*parsed, FakeEnv({})).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  fs::remove_all(dir);
}

TEST(OutputTest, TableColumnsAlign) {
  Table table({"ID", "STATUS", "LABELS"});
  table.AddRow({"device-long-id", "ACTIVE", "env=prod"});
  table.AddRow({"d2", "DECOMMISSIONED", ""});
  std::ostringstream out;
  table.Render(out);
  EXPECT_EQ(out.str(),
            "ID               STATUS           LABELS\n"
            "device-long-id   ACTIVE           env=prod\n"
            "d2               DECOMMISSIONED\n");
}

TEST(CommandsTest, DeviceListTableAndJson) {
  FakeAdmin::Shared shared;
  v1::Device* d = shared.devices.add_devices();
  d->set_device_id("dev-1");
  d->set_status(v1::DEVICE_STATUS_ACTIVE);
  (*d->mutable_labels())["env"] = "prod";
  d->mutable_last_seen()->set_seconds(1'700'000'000);
  auto* m = d->mutable_inventory()->add_models();
  m->set_model_name("detector");
  m->set_version("v2");
  m->set_state(v1::MODEL_STATE_SERVING);

  RunResult r = RunWith({"device", "list", "--selector", "env=prod", "--token", "t0"}, &shared,
                        {{"EDGEFLEET_SERVER", "fleet:7444"}});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(shared.list_devices.label_selector(), "env=prod");
  EXPECT_EQ(shared.options.server, "fleet:7444");
  EXPECT_EQ(shared.options.token, "t0");
  EXPECT_EQ(r.out,
            "ID      STATUS   LABELS     LAST-SEEN              MODELS\n"
            "dev-1   ACTIVE   env=prod   2023-11-14T22:13:20Z   detector@v2\n");

  r = RunWith({"-o", "json", "device", "list"}, &shared);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"deviceId\": \"dev-1\""));
  EXPECT_THAT(r.out, HasSubstr("\"DEVICE_STATUS_ACTIVE\""));
}

TEST(CommandsTest, ServerErrorIsOneLineWithCodeAndExitOne) {
  FakeAdmin::Shared shared;
  shared.status = absl::PermissionDeniedError("token lacks role viewer\nsecond line");
  RunResult r = RunWith({"device", "list"}, &shared);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err,
            "edgefleetctl: list devices: PERMISSION_DENIED: token lacks role viewer second line\n");
  EXPECT_EQ(r.out, "");
}

TEST(CommandsTest, UsageErrorsExitTwo) {
  FakeAdmin::Shared shared;
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {},
           {"device"},
           {"device", "fly"},
           {"device", "list", "--remove", "x"},  // a flag of another command
           {"device", "list", "--selectr", "x"},
           {"device", "get"},
           {"device", "get", "a", "b"},
           {"device", "label", "dev-1"},
           {"model", "push", "m", "f.onnx"},  // --version missing
           {"model", "push", "m", "f.onnx", "--version", "1", "--input", "x:1xq"},
           {"token", "create", "--ttl", "soon"},
           {"token", "revoke"},
           {"api-token", "create", "ci"},  // --role missing
           {"api-token", "create", "ci", "--role", "root"},
           {"api-token", "revoke"},
           {"device", "list", "--selector", "not a selector"},
           {"agent", "predict", "--socket", "/s", "--model", "m", "--input", "x=1x2:1"},
       }) {
    RunResult r = RunWith(args, &shared);
    EXPECT_EQ(r.code, 2) << ::testing::PrintToString(args);
    EXPECT_THAT(r.err, HasSubstr("usage: edgefleetctl")) << ::testing::PrintToString(args);
  }
  RunResult help = RunWith({"--help"}, &shared);
  EXPECT_EQ(help.code, 0);
  for (const char* cmd :
       {"token create", "token list", "token revoke", "api-token create", "api-token list",
        "api-token revoke", "device list", "device get", "device label", "device decommission",
        "model push", "model list", "model get", "deploy create", "deploy status", "deploy list",
        "agent predict", "agent models"}) {
    EXPECT_THAT(help.out, HasSubstr(std::string("edgefleetctl ") + cmd)) << cmd;
  }
  EXPECT_EQ(RunWith({"help"}, &shared).out, help.out);
}

TEST(CommandsTest, ApiAndEnrollmentTokenCommandsBuildRequests) {
  FakeAdmin::Shared shared;
  RunResult created = RunWith({"api-token", "create", "ci", "--role", "release-manager", "--ttl",
                               "30d", "--description", "pipeline"},
                              &shared);
  ASSERT_EQ(created.code, 0) << created.err;
  EXPECT_EQ(shared.create_api_token.name(), "ci");
  EXPECT_EQ(shared.create_api_token.role(), v1::ROLE_RELEASE_MANAGER);
  EXPECT_EQ(shared.create_api_token.ttl_seconds(), 30u * 24 * 3600);
  EXPECT_EQ(shared.create_api_token.description(), "pipeline");
  EXPECT_THAT(created.out, HasSubstr("efa_SECRET"));
  EXPECT_THAT(created.out, HasSubstr("release-manager"));
  EXPECT_THAT(created.out, HasSubstr("shown only once"));

  RunResult revoked = RunWith({"api-token", "revoke", "ci"}, &shared);
  ASSERT_EQ(revoked.code, 0) << revoked.err;
  EXPECT_EQ(shared.revoke_api_token.name(), "ci");
  EXPECT_THAT(revoked.out, HasSubstr("revoked"));

  v1::EnrollmentToken* listed = shared.enrollment_tokens.add_tokens();
  listed->set_token_id("a1b2c3");
  listed->set_max_uses(5);
  listed->set_uses(2);
  listed->mutable_revoked_at()->set_seconds(1'700'000'000);
  RunResult list = RunWith({"token", "list"}, &shared);
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("a1b2c3"));
  EXPECT_THAT(list.out, HasSubstr("2/5"));
  EXPECT_THAT(list.out, HasSubstr("revoked"));

  ASSERT_EQ(RunWith({"token", "revoke", "a1b2c3"}, &shared).code, 0);
  EXPECT_EQ(shared.revoke_token.token_id(), "a1b2c3");
}

TEST(CommandsTest, TokenCreateAndDeviceLabelBuildRequests) {
  FakeAdmin::Shared shared;
  RunResult r = RunWith({"token", "create", "--max-uses", "5", "--ttl", "7d", "--label", "site=a",
                         "--label=env=prod", "--description", "line 3"},
                        &shared);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(shared.create_token.max_uses(), 5u);
  EXPECT_EQ(shared.create_token.ttl_seconds(), 7u * 86400);
  EXPECT_EQ(shared.create_token.labels().at("site"), "a");
  EXPECT_EQ(shared.create_token.labels().at("env"), "prod");
  EXPECT_EQ(shared.create_token.description(), "line 3");
  EXPECT_THAT(r.out, HasSubstr("SECRET-abc123"));

  r = RunWith(
      {"device", "label", "dev-9", "env=dev", "tier=2", "--remove", "old", "--remove", "older"},
      &shared);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(shared.label_device.device_id(), "dev-9");
  EXPECT_EQ(shared.label_device.set_labels().size(), 2u);
  EXPECT_EQ(shared.label_device.set_labels().at("tier"), "2");
  EXPECT_THAT(shared.label_device.remove_labels(), ElementsAre("old", "older"));
}

TEST(CommandsTest, DeviceRekeySendsTheDeviceAndTtl) {
  FakeAdmin::Shared shared;
  RunResult r = RunWith({"device", "rekey", "dev-9", "--ttl", "2h"}, &shared);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(shared.rekey_device.device_id(), "dev-9");
  EXPECT_EQ(shared.rekey_device.ttl_seconds(), 7200u);
  EXPECT_THAT(r.out, HasSubstr("dev-9"));
  EXPECT_EQ(RunWith({"device", "rekey"}, &shared).code, 2);
}

// A port nothing listens on: bind to port 0, note the port, close.
int UnusedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST(CommandsTest, UnreachableServerIsUnavailable) {
  std::ostringstream out, err;
  const std::string server = "127.0.0.1:" + std::to_string(UnusedPort());
  int code =
      cli::Run({"--server", server, "--timeout", "5", "device", "list"}, out, err, FakeEnv({}));
  EXPECT_EQ(code, 1);
  const std::string e = err.str();
  EXPECT_THAT(e, HasSubstr("edgefleetctl: list devices: UNAVAILABLE: "));
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1) << e;
  EXPECT_EQ(out.str(), "");
}

// ---- real gRPC against in-process fake services ----

class RecordingAdmin final : public v1::AdminService::Service {
 public:
  grpc::Status PushModel(grpc::ServerContext* context,
                         grpc::ServerReader<v1::PushModelRequest>* reader,
                         v1::ModelVersion* response) override {
    auto auth = context->client_metadata().find("authorization");
    if (auth != context->client_metadata().end()) {
      authorization = std::string(auth->second.data(), auth->second.size());
    }
    v1::PushModelRequest req;
    while (reader->Read(&req)) {
      if (req.has_metadata()) {
        metadata = req.metadata();
        ++metadata_messages;
      } else if (req.has_finish()) {
        finish = req.finish();
        ++finish_messages;
      } else {
        chunk_sizes.push_back(req.chunk().size());
        body += req.chunk();
      }
    }
    response->set_model_name(metadata.model_name());
    response->set_version(metadata.version());
    response->set_size_bytes(body.size());
    response->set_metadata_version(4);
    return grpc::Status::OK;
  }

  std::string authorization;
  v1::PushModelMetadata metadata;
  int metadata_messages = 0;
  v1::PushModelFinish finish;
  int finish_messages = 0;
  std::vector<size_t> chunk_sizes;
  std::string body;
};

class FixedInference final : public v1::InferenceService::Service {
 public:
  grpc::Status Predict(grpc::ServerContext*, const v1::PredictRequest* request,
                       v1::PredictResponse* response) override {
    last = *request;
    response->set_model_name(request->model_name());
    response->set_version("v7");
    v1::Tensor* out = response->add_outputs();
    out->set_name("probs");
    out->add_shape(1);
    out->add_shape(3);
    for (float f : {0.25f, 0.5f, 0.25f}) out->add_data(f);
    return grpc::Status::OK;
  }
  v1::PredictRequest last;
};

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            ("edgefleetctl-" + std::string(info->name()) + "-" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(GrpcClientTest, PushModelStreamsMetadataThenChunksWithBearerToken) {
  RecordingAdmin service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  TempDir dir;
  const fs::path file = dir.path() / "model.onnx";
  std::string content(150 * 1024 + 7, '\0');
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i * 31 % 251);
  std::ofstream(file, std::ios::binary) << content;

  std::ostringstream out, err;
  const std::string sha = crypto::ToHex(crypto::Sha256Bytes(content));
  int code = cli::Run({"model", "push", "detector", file.string(), "--version", "1.2", "--input",
                       "x:1x4", "--output", "y:1x3", "--label", "task=cls", "--sha256", sha,
                       "--server", "127.0.0.1:" + std::to_string(port), "--token", "op-secret"},
                      out, err, FakeEnv({}));
  server->Shutdown();
  ASSERT_EQ(code, 0) << err.str();
  EXPECT_EQ(service.authorization, "Bearer op-secret");
  EXPECT_EQ(service.metadata_messages, 1);
  EXPECT_EQ(service.metadata.model_name(), "detector");
  EXPECT_EQ(service.metadata.version(), "1.2");
  EXPECT_EQ(service.metadata.format(), v1::MODEL_FORMAT_ONNX);
  // The CLI always states the digest and size, and ends the stream with a finish message.
  EXPECT_EQ(service.metadata.expected_sha256(), crypto::Sha256Bytes(content));
  EXPECT_EQ(service.metadata.expected_size_bytes(), content.size());
  EXPECT_EQ(service.finish_messages, 1);
  EXPECT_EQ(service.finish.size_bytes(), content.size());
  EXPECT_EQ(service.finish.sha256(), crypto::Sha256Bytes(content));
  ASSERT_EQ(service.metadata.inputs_size(), 1);
  EXPECT_EQ(service.metadata.inputs(0).name(), "x");
  EXPECT_EQ(service.metadata.outputs(0).shape(1), 3);
  EXPECT_EQ(service.metadata.labels().at("task"), "cls");
  EXPECT_EQ(service.body, content);
  EXPECT_THAT(service.chunk_sizes, ElementsAre(65536u, 65536u, 150u * 1024 + 7 - 131072));
  EXPECT_THAT(out.str(), HasSubstr("Metadata version:"));

  // Without --sha256 the CLI computes it; a --sha256 that is not the file's is refused locally.
  std::ostringstream out2, err2;
  code = cli::Run({"model", "push", "detector", file.string(), "--version", "1.3", "--sha256",
                   std::string(64, 'b'), "--server", "127.0.0.1:1"},
                  out2, err2, FakeEnv({}));
  EXPECT_NE(code, 0);
  EXPECT_THAT(err2.str(), HasSubstr("not the one given with --sha256"));
}

TEST(GrpcClientTest, PushModelOfMissingFileFailsWithoutCallingServer) {
  std::ostringstream out, err;
  int code = cli::Run({"model", "push", "m", "/nonexistent/model.onnx", "--version", "1"}, out, err,
                      FakeEnv({}));
  EXPECT_EQ(code, 1);
  EXPECT_THAT(err.str(), HasSubstr("/nonexistent/model.onnx"));
  EXPECT_THAT(err.str(), HasSubstr("NOT_FOUND"));
}

TEST(GrpcClientTest, AgentPredictOverUnixSocket) {
  TempDir dir;
  const std::string socket = (dir.path() / "inference.sock").string();
  FixedInference service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket, grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  std::ostringstream out, err;
  int code = cli::Run({"agent", "predict", "--socket", socket, "--model", "clf", "--input",
                       "x=1x4:0.1,0.2,0.3,0.4", "--input", "mask=1x1:1"},
                      out, err, FakeEnv({}));
  server->Shutdown();
  ASSERT_EQ(code, 0) << err.str();
  EXPECT_EQ(service.last.model_name(), "clf");
  ASSERT_EQ(service.last.inputs_size(), 2);
  EXPECT_THAT(service.last.inputs(0).data(), ElementsAre(0.1f, 0.2f, 0.3f, 0.4f));
  EXPECT_EQ(service.last.inputs(1).name(), "mask");
  EXPECT_THAT(out.str(), HasSubstr("Version: v7"));
  EXPECT_THAT(out.str(), HasSubstr("probs    1x3     0.25,0.5,0.25"));
}

}  // namespace
}  // namespace edgefleet::cli

namespace edgefleet::cli {
namespace {

TEST(CommandsTest, ListsFollowEveryPageOrStopAtTheLimit) {
  FakeAdmin::Shared shared;
  auto page = [](std::initializer_list<const char*> ids, const std::string& next) {
    v1::ListDevicesResponse response;
    for (const char* id : ids) response.add_devices()->set_device_id(id);
    response.set_next_page_token(next);
    return response;
  };
  shared.device_pages[""] = page({"dev-1", "dev-2"}, "t2");
  shared.device_pages["t2"] = page({"dev-3", "dev-4"}, "t3");
  shared.device_pages["t3"] = page({"dev-5"}, "");

  RunResult all = RunWith({"-o", "json", "device", "list", "--selector", "a=b"}, &shared);
  ASSERT_EQ(all.code, 0) << all.err;
  ASSERT_EQ(shared.list_devices_calls.size(), 3u);
  for (const auto& call : shared.list_devices_calls) {
    EXPECT_EQ(call.label_selector(), "a=b") << "every page keeps the selector";
  }
  for (const char* id : {"dev-1", "dev-2", "dev-3", "dev-4", "dev-5"}) {
    EXPECT_THAT(all.out, HasSubstr(id));
  }
  EXPECT_THAT(all.out, HasSubstr("\"nextPageToken\": \"\"")) << "nothing left to fetch";

  shared.list_devices_calls.clear();
  RunResult limited = RunWith({"device", "list", "--limit", "3"}, &shared);
  ASSERT_EQ(limited.code, 0) << limited.err;
  ASSERT_EQ(shared.list_devices_calls.size(), 2u);
  EXPECT_EQ(shared.list_devices_calls[0].page_size(), 3u);
  EXPECT_EQ(shared.list_devices_calls[1].page_size(), 1u) << "asks only for what is missing";
  EXPECT_EQ(shared.list_devices_calls[1].page_token(), "t2");

  EXPECT_EQ(RunWith({"device", "list", "--limit", "0"}, &shared).code, 2);
  EXPECT_EQ(RunWith({"device", "list", "--limit", "many"}, &shared).code, 2);
}

// FollowPages itself is covered by the device list above; here: both token lists use it.
TEST(CommandsTest, TokenListsFollowEveryPageOrStopAtTheLimit) {
  FakeAdmin::Shared shared;
  shared.api_token_pages[""].add_tokens()->set_name("api-1");
  shared.api_token_pages[""].set_next_page_token("a2");
  shared.api_token_pages["a2"].add_tokens()->set_name("api-2");
  shared.enrollment_token_pages[""].add_tokens()->set_token_id("tok-1");
  shared.enrollment_token_pages[""].add_tokens()->set_token_id("tok-2");
  shared.enrollment_token_pages[""].set_next_page_token("e2");
  shared.enrollment_token_pages["e2"].add_tokens()->set_token_id("tok-3");

  RunResult api = RunWith({"api-token", "list"}, &shared);
  ASSERT_EQ(api.code, 0) << api.err;
  ASSERT_EQ(shared.list_api_tokens_calls.size(), 2u);
  EXPECT_EQ(shared.list_api_tokens_calls[1].page_token(), "a2");
  EXPECT_THAT(api.out, HasSubstr("api-1"));
  EXPECT_THAT(api.out, HasSubstr("api-2"));

  RunResult enrollment = RunWith({"-o", "json", "token", "list"}, &shared);
  ASSERT_EQ(enrollment.code, 0) << enrollment.err;
  ASSERT_EQ(shared.list_enrollment_tokens_calls.size(), 2u);
  EXPECT_EQ(shared.list_enrollment_tokens_calls[1].page_token(), "e2");
  EXPECT_THAT(enrollment.out, HasSubstr("tok-1"));
  EXPECT_THAT(enrollment.out, HasSubstr("tok-3"));
  EXPECT_THAT(enrollment.out, HasSubstr("\"nextPageToken\": \"\""));

  RunResult limited_api = RunWith({"api-token", "list", "--limit", "1"}, &shared);
  ASSERT_EQ(limited_api.code, 0) << limited_api.err;
  ASSERT_EQ(shared.list_api_tokens_calls.size(), 3u) << "one page was enough";
  EXPECT_EQ(shared.list_api_tokens_calls[2].page_size(), 1u);
  RunResult limited = RunWith({"token", "list", "--limit", "2"}, &shared);
  ASSERT_EQ(limited.code, 0) << limited.err;
  ASSERT_EQ(shared.list_enrollment_tokens_calls.size(), 3u) << "one page was enough";
  EXPECT_EQ(shared.list_enrollment_tokens_calls[2].page_size(), 2u);

  EXPECT_EQ(RunWith({"token", "list", "--limit", "0"}, &shared).code, 2);
  EXPECT_EQ(RunWith({"api-token", "list", "--limit", "many"}, &shared).code, 2);
}

TEST(CommandsTest, DeployStatusFollowsEveryTargetPage) {
  FakeAdmin::Shared shared;
  const auto page = [](std::vector<const char*> ids, const std::string& next) {
    v1::Deployment d;
    d.set_deployment_id("7");
    d.set_model_name("detector");
    d.set_target_count(5);
    d.mutable_target_counts()->set_serving(5);
    for (const char* id : ids) {
      v1::DeploymentTarget* t = d.add_targets();
      t->set_device_id(id);
      t->set_state(v1::DEPLOYMENT_TARGET_STATE_SERVING);
    }
    d.set_next_target_page_token(next);
    return d;
  };
  shared.deployment_pages[""] = page({"dev-1", "dev-2"}, "t2");
  shared.deployment_pages["t2"] = page({"dev-3", "dev-4"}, "t3");
  shared.deployment_pages["t3"] = page({"dev-5"}, "");

  RunResult status = RunWith({"deploy", "status", "7"}, &shared);
  ASSERT_EQ(status.code, 0) << status.err;
  ASSERT_EQ(shared.get_deployment_calls.size(), 3u);
  for (const auto& call : shared.get_deployment_calls) {
    EXPECT_EQ(call.deployment_id(), "7") << "every page asks for the same deployment";
  }
  EXPECT_EQ(shared.get_deployment_calls[1].target_page_token(), "t2");
  EXPECT_EQ(shared.get_deployment_calls[2].target_page_token(), "t3");
  for (const char* id : {"dev-1", "dev-2", "dev-3", "dev-4", "dev-5"}) {
    EXPECT_EQ(status.out.find(id), status.out.rfind(id)) << id << " shown once";
    EXPECT_THAT(status.out, HasSubstr(id));
  }
  EXPECT_THAT(status.out, HasSubstr("5/5 serving"));
}

TEST(CommandsTest, DeployListShowsTheServersTargetCounts) {
  FakeAdmin::Shared shared;
  v1::Deployment* d = shared.deployments.add_deployments();
  d->set_deployment_id("3");
  d->set_target_count(100000);
  d->mutable_target_counts()->set_serving(99990);
  d->mutable_target_counts()->set_failed(10);

  RunResult list = RunWith({"deploy", "list"}, &shared);
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("99990/100000 serving, 10 failed")) << "listed without targets";
}

TEST(CommandsTest, EveryGroupHasItsOwnHelp) {
  FakeAdmin::Shared shared;
  for (const char* group : {"token", "device", "model", "deploy", "rollout", "agent"}) {
    SCOPED_TRACE(group);
    RunResult help = RunWith({group, "--help"}, &shared);
    EXPECT_EQ(help.code, 0) << help.err;
    EXPECT_THAT(help.out, HasSubstr(std::string("usage: edgefleetctl ") + group + " COMMAND"));
    EXPECT_EQ(RunWith({"help", group}, &shared).out, help.out);

    RunResult bare = RunWith({group}, &shared);
    EXPECT_EQ(bare.code, 2) << "a group without a command is a usage error";
    EXPECT_THAT(bare.err, HasSubstr(help.out));

    RunResult unknown = RunWith({group, "fly"}, &shared);
    EXPECT_EQ(unknown.code, 2);
    EXPECT_THAT(unknown.err, HasSubstr(std::string("unknown command '") + group + " fly'"));
  }
  RunResult deploy = RunWith({"deploy", "--help"}, &shared);
  EXPECT_THAT(deploy.out, HasSubstr("deploy create"));
  EXPECT_THAT(deploy.out, HasSubstr("deploy status"));
  EXPECT_THAT(deploy.out, HasSubstr("deploy list"));
  EXPECT_THAT(deploy.out, Not(HasSubstr("device list"))) << "only the group's commands";

  RunResult command = RunWith({"deploy", "create", "--help"}, &shared);
  EXPECT_EQ(command.code, 0);
  EXPECT_THAT(command.out,
              HasSubstr("usage: edgefleetctl deploy create NAME VERSION [--selector k=v,...]"));
  EXPECT_THAT(command.out, HasSubstr("deploy a model version to matching devices"));
}

// ---- rollout ----

TEST(RolloutCommandsTest, CreateTurnsEveryFlagIntoTheRequest) {
  FakeAdmin::Shared shared;
  RunResult r =
      RunWith({"rollout", "create", "r1", "--model", "detector", "--version", "2.0", "--selector",
               "hw=pi,env=prod", "--waves", "5,10%,50%,100%", "--soak", "30s", "--max-failure-pct",
               "2.5", "--min-devices", "4", "--on-failure", "rollback"},
              &shared);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("PENDING"));
  const v1::CreateRolloutRequest& req = shared.create_rollout;
  EXPECT_EQ(req.name(), "r1");
  EXPECT_EQ(req.model_name(), "detector");
  EXPECT_EQ(req.version(), "2.0");
  EXPECT_EQ(req.label_selector(), "hw=pi,env=prod");
  ASSERT_EQ(req.waves_size(), 4);
  EXPECT_EQ(req.waves(0).device_count(), 5u);
  EXPECT_EQ(req.waves(0).percent(), 0);
  EXPECT_EQ(req.waves(1).percent(), 10);
  EXPECT_EQ(req.waves(3).percent(), 100);
  EXPECT_EQ(req.soak().seconds(), 30);
  EXPECT_EQ(req.gates().max_install_failure_percent(), 2.5);
  EXPECT_EQ(req.gates().max_probation_failure_percent(), 2.5);
  EXPECT_EQ(req.gates().min_finished_devices(), 4u);
  EXPECT_EQ(req.on_failure(), v1::ROLLOUT_FAILURE_ACTION_ROLLBACK);

  // Left out, the server's defaults apply: nothing is set.
  ASSERT_EQ(RunWith({"rollout", "create", "r2", "--model", "m", "--version", "1"}, &shared).code,
            0);
  EXPECT_EQ(shared.create_rollout.waves_size(), 0);
  EXPECT_FALSE(shared.create_rollout.has_soak());
  EXPECT_FALSE(shared.create_rollout.has_gates());
  EXPECT_EQ(shared.create_rollout.on_failure(), v1::ROLLOUT_FAILURE_ACTION_UNSPECIFIED);
  // --soak 0 is no soak, not the default hour.
  ASSERT_EQ(
      RunWith({"rollout", "create", "r3", "--model", "m", "--version", "1", "--soak", "0"}, &shared)
          .code,
      0);
  EXPECT_TRUE(shared.create_rollout.has_soak());
  EXPECT_EQ(shared.create_rollout.soak().seconds(), 0);
  for (const char* action : {"pause", "abort"}) {
    ASSERT_EQ(RunWith({"rollout", "create", "r4", "--model", "m", "--version", "1", "--on-failure",
                       action},
                      &shared)
                  .code,
              0);
  }
  EXPECT_EQ(shared.create_rollout.on_failure(), v1::ROLLOUT_FAILURE_ACTION_ABORT);
}

TEST(RolloutCommandsTest, BadCreateFlagsAreUsageErrorsNamingTheFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> kCases = {
      {{"--version", "1"}, "--model is required"},
      {{"--model", "m"}, "--version is required"},
      {{"--model", "m", "--version", "1", "--waves", "10%,x"}, "--waves"},
      {{"--model", "m", "--version", "1", "--waves", "0%,100%"}, "--waves"},
      {{"--model", "m", "--version", "1", "--waves", ""}, "--waves"},
      {{"--model", "m", "--version", "1", "--soak", "soon"}, "--soak"},
      {{"--model", "m", "--version", "1", "--max-failure-pct", "101"}, "--max-failure-pct"},
      {{"--model", "m", "--version", "1", "--max-failure-pct", "x"}, "--max-failure-pct"},
      {{"--model", "m", "--version", "1", "--min-devices", "0"}, "--min-devices"},
      {{"--model", "m", "--version", "1", "--on-failure", "explode"}, "--on-failure"},
      {{"--model", "m", "--version", "1", "--selector", "=x"}, "--selector"},
      {{"--model", "m", "--version", "1", "--watch"}, "--watch"},
  };
  for (const auto& [flags, problem] : kCases) {
    FakeAdmin::Shared shared;
    std::vector<std::string> args = {"rollout", "create", "r1"};
    args.insert(args.end(), flags.begin(), flags.end());
    SCOPED_TRACE(testing::PrintToString(args));
    RunResult r = RunWith(args, &shared);
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.err, HasSubstr(problem));
    EXPECT_THAT(r.err, HasSubstr("usage: edgefleetctl rollout create NAME --model M"));
    EXPECT_EQ(shared.create_rollout.name(), "") << "nothing was sent";
  }
}

v1::Rollout SampleRollout(v1::RolloutState state) {
  v1::Rollout r;
  r.set_name("r1");
  r.set_model_name("detector");
  r.set_version("2.0");
  r.set_label_selector("hw=pi");
  r.set_on_failure(v1::ROLLOUT_FAILURE_ACTION_ROLLBACK);
  r.set_state(state);
  r.set_current_wave(1);
  r.set_matching_devices(40);
  r.set_created_by("alice");
  r.mutable_created_at()->set_seconds(1'700'000'000);
  v1::WaveStatus* first = r.add_waves();
  first->set_index(0);
  first->mutable_spec()->set_percent(10);
  first->mutable_spec()->mutable_soak()->set_seconds(1800);
  first->set_state(v1::WAVE_STATE_PASSED);
  first->set_targeted(4);
  first->set_serving(4);
  v1::GateResult* passed = first->add_gates();
  passed->set_gate(v1::GATE_INSTALL_FAILURES);
  passed->set_result(v1::GATE_OUTCOME_PASS);
  passed->set_value(0);
  passed->set_threshold(5);
  passed->set_devices(4);
  passed->set_min_devices(3);
  passed->set_detail("0 of 4 finished devices failed (0%)");
  v1::WaveStatus* second = r.add_waves();
  second->set_index(1);
  second->mutable_spec()->set_device_count(20);
  second->set_state(v1::WAVE_STATE_FAILED);
  second->set_targeted(16);
  second->set_serving(12);
  second->set_failed(3);
  second->set_in_progress(1);
  second->set_rolled_back(2);
  v1::GateResult* failed = second->add_gates();
  failed->set_gate(v1::GATE_PROBATION_FAILURES);
  failed->set_result(v1::GATE_OUTCOME_FAIL);
  failed->set_value(20);
  failed->set_threshold(5);
  failed->set_devices(15);
  failed->set_min_devices(3);
  failed->set_detail("3 of 15 finished devices failed probation (20%)");
  v1::RolloutEvent* created = r.add_events();
  created->mutable_at()->set_seconds(1'700'000'000);
  created->set_kind(v1::ROLLOUT_EVENT_KIND_CREATED);
  created->set_actor(v1::ROLLOUT_ACTOR_OPERATOR);
  created->set_operator_name("alice");
  created->set_message("created");
  v1::RolloutEvent* rolled = r.add_events();
  rolled->mutable_at()->set_seconds(1'700'003'600);
  rolled->set_kind(v1::ROLLOUT_EVENT_KIND_ROLLED_BACK);
  rolled->set_actor(v1::ROLLOUT_ACTOR_CONTROLLER);
  rolled->set_wave(1);
  rolled->set_message("probation failures 20% > 5%: rolling back");
  return r;
}

TEST(RolloutCommandsTest, StatusShowsWavesGatesAgainstThresholdsAndDecisions) {
  FakeAdmin::Shared shared;
  shared.rollout_polls = {SampleRollout(v1::ROLLOUT_STATE_ROLLED_BACK)};
  RunResult r = RunWith({"rollout", "status", "r1"}, &shared);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("State:"));
  EXPECT_THAT(r.out, HasSubstr("ROLLED_BACK"));
  EXPECT_THAT(r.out, HasSubstr("detector 2.0"));
  EXPECT_THAT(r.out, HasSubstr("On failure:    ROLLBACK"));
  EXPECT_THAT(r.out, HasSubstr("Current wave:  1 (of 0-1)"));
  EXPECT_THAT(r.out, HasSubstr("2023-11-14T22:13:20Z by alice"));
  // Waves: size, state and the counts; a count wave reads as devices.
  EXPECT_THAT(r.out, testing::ContainsRegex("0 +10% +PASSED +4 +4 +0 +0 +0 +0 +30m"));
  EXPECT_THAT(r.out, testing::ContainsRegex("1 +20 devices +FAILED +16 +12 +3 +1 +0 +2 +-"));
  // Gates: result, value against threshold, over how many devices.
  EXPECT_THAT(r.out,
              testing::ContainsRegex("0 +INSTALL_FAILURES +PASS +0% +5% +4 \\(min 3\\) +0 of 4"));
  EXPECT_THAT(r.out, testing::ContainsRegex(
                         "1 +PROBATION_FAILURES +FAIL +20% +5% +15 \\(min 3\\) +3 of 15"));
  // Decisions: time, actor, kind, message.
  EXPECT_THAT(r.out,
              testing::ContainsRegex("2023-11-14T22:13:20Z +operator alice +CREATED +0 +created"));
  EXPECT_THAT(r.out, testing::ContainsRegex("2023-11-14T23:13:20Z +controller +ROLLED_BACK +1 "
                                            "+probation failures 20% > 5%: rolling back"));
  EXPECT_EQ(shared.waits, 0u) << "no --watch, one look";

  RunResult json = RunWith({"rollout", "status", "r1", "-o", "json"}, &shared);
  ASSERT_EQ(json.code, 0) << json.err;
  v1::Rollout parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.out, &parsed).ok()) << json.out;
  EXPECT_EQ(parsed.SerializeAsString(),
            SampleRollout(v1::ROLLOUT_STATE_ROLLED_BACK).SerializeAsString());
  EXPECT_THAT(json.out, HasSubstr("\"state\": \"ROLLOUT_STATE_ROLLED_BACK\""));
  EXPECT_THAT(json.out, HasSubstr("\"waves\": ["));
  EXPECT_THAT(json.out, HasSubstr("\"events\": ["));
  EXPECT_THAT(json.out, HasSubstr("\"threshold\": 5"));
}

TEST(RolloutCommandsTest, InferenceGateFlagsGoIntoTheRequestAndBadOnesAreUsageErrors) {
  FakeAdmin::Shared shared;
  RunResult r = RunWith({"rollout", "create",
                         "r1",      "--model",
                         "m",       "--version",
                         "2",       "--max-p99-ratio",
                         "1.5",     "--max-p50-ratio",
                         "1.25",    "--max-error-increase-pct",
                         "0.25",    "--max-output-psi",
                         "0",       "--min-inferences",
                         "200",     "--min-inference-devices",
                         "2",       "--inference-gates",
                         "off"},
                        &shared);
  ASSERT_EQ(r.code, 0) << r.err;
  const v1::GateSpec& gates = shared.create_rollout.gates();
  EXPECT_EQ(gates.max_latency_p99_ratio(), 1.5);
  EXPECT_EQ(gates.max_latency_p50_ratio(), 1.25);
  EXPECT_EQ(gates.max_error_rate_increase_percent(), 0.25);
  EXPECT_TRUE(gates.has_max_output_psi());
  EXPECT_EQ(gates.max_output_psi(), 0);
  EXPECT_EQ(gates.min_inferences(), 200u);
  EXPECT_EQ(gates.min_inference_devices(), 2u);
  EXPECT_TRUE(gates.has_inference_gates());
  EXPECT_FALSE(gates.inference_gates());

  for (const auto& [flag, value] :
       std::vector<std::pair<std::string, std::string>>{{"--max-p99-ratio", "0"},
                                                        {"--max-p50-ratio", "-1"},
                                                        {"--max-output-psi", "x"},
                                                        {"--max-error-increase-pct", "101"},
                                                        {"--min-inferences", "0"},
                                                        {"--min-inference-devices", "many"},
                                                        {"--inference-gates", "maybe"}}) {
    FakeAdmin::Shared bad;
    RunResult refused =
        RunWith({"rollout", "create", "r1", "--model", "m", "--version", "2", flag, value}, &bad);
    EXPECT_EQ(refused.code, 2) << flag << " " << value;
    EXPECT_THAT(refused.err, HasSubstr(flag));
    EXPECT_EQ(bad.create_rollout.name(), "") << "nothing was sent";
  }
}

TEST(RolloutCommandsTest, StatusShowsInferenceGatesWithBothSidesAgainstTheirMinimums) {
  FakeAdmin::Shared shared;
  v1::Rollout rollout = SampleRollout(v1::ROLLOUT_STATE_RUNNING);
  v1::GateResult* p50 = rollout.mutable_waves(0)->add_gates();
  p50->set_gate(v1::GATE_LATENCY_P50_RATIO);
  p50->set_result(v1::GATE_OUTCOME_FAIL);
  p50->set_value(9.78);
  p50->set_threshold(1.1);
  p50->set_canary_inferences(480);
  p50->set_canary_devices(2);
  p50->set_control_inferences(510);
  p50->set_control_devices(2);
  p50->set_min_inferences(200);
  p50->set_min_devices(2);
  p50->set_detail("p50 0.360 ms canary / 0.037 ms control = 9.780 > 1.100");
  v1::GateResult* psi = rollout.mutable_waves(0)->add_gates();
  psi->set_gate(v1::GATE_OUTPUT_PSI);
  psi->set_result(v1::GATE_OUTCOME_INCONCLUSIVE);
  psi->set_threshold(0.1);
  psi->set_min_inferences(200);
  psi->set_min_devices(2);
  psi->set_detail("held");
  shared.rollout_polls = {rollout};
  RunResult r = RunWith({"rollout", "status", "r1"}, &shared);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, testing::ContainsRegex("0 +LATENCY_P50_RATIO +FAIL +9.78x +1.1x +480/2 vs "
                                            "510/2 \\(min 200/2\\) +p50 0.360 ms"));
  // Not measured yet: no value, the threshold and what is missing.
  EXPECT_THAT(r.out,
              testing::ContainsRegex(
                  "0 +OUTPUT_PSI +INCONCLUSIVE +- +0.1000 +0/0 vs 0/0 \\(min 200/2\\) +held"));
}

TEST(RolloutCommandsTest, WatchPollsEveryTwoSecondsUntilTheRolloutIsFinished) {
  FakeAdmin::Shared shared;
  v1::Rollout running = SampleRollout(v1::ROLLOUT_STATE_RUNNING);
  v1::Rollout paused = SampleRollout(v1::ROLLOUT_STATE_PAUSED);
  v1::Rollout touched = running;  // evaluated again, nothing else changed
  touched.mutable_updated_at()->set_seconds(1'700'000'005);
  shared.rollout_polls = {running, touched, paused, running,
                          SampleRollout(v1::ROLLOUT_STATE_SUCCEEDED)};
  RunResult r = RunWith({"rollout", "status", "r1", "--watch"}, &shared);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(shared.get_rollout_calls, 5u) << "a pause is not the end";
  EXPECT_EQ(shared.waits, 4u);
  // Printed when it changed: running, paused, running, succeeded (not the poll where only
  // updated_at moved).
  std::vector<std::string> states;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("State:", 0) == 0) states.push_back(line.substr(line.find_last_of(' ') + 1));
  }
  EXPECT_THAT(states, ElementsAre("RUNNING", "PAUSED", "RUNNING", "SUCCEEDED"));

  // A failed poll ends the watch with the error.
  FakeAdmin::Shared failing;
  failing.status = absl::UnavailableError("connection refused");
  RunResult down = RunWith({"rollout", "status", "r1", "--watch"}, &failing);
  EXPECT_EQ(down.code, 1);
  EXPECT_EQ(down.err, "edgefleetctl: get rollout 'r1': UNAVAILABLE: connection refused\n");
}

TEST(RolloutCommandsTest, ListFollowsEveryPage) {
  FakeAdmin::Shared shared;
  v1::Rollout a = SampleRollout(v1::ROLLOUT_STATE_RUNNING);
  a.set_name("a");
  a.clear_events();
  v1::Rollout b = a;
  b.set_name("b");
  b.set_state(v1::ROLLOUT_STATE_SUCCEEDED);
  b.clear_label_selector();
  *shared.rollout_pages[""].add_rollouts() = a;
  shared.rollout_pages[""].set_next_page_token("t1");
  *shared.rollout_pages["t1"].add_rollouts() = b;
  RunResult r = RunWith({"rollout", "list"}, &shared);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(shared.list_rollouts_calls.size(), 2u);
  EXPECT_THAT(r.out, testing::ContainsRegex("NAME +MODEL +VERSION +STATE +WAVE +SELECTOR"));
  EXPECT_THAT(r.out, testing::ContainsRegex("a +detector +2.0 +RUNNING +1/1 +hw=pi"));
  EXPECT_THAT(r.out, testing::ContainsRegex("b +detector +2.0 +SUCCEEDED +1/1 +-"));
  RunResult json = RunWith({"rollout", "list", "-o", "json"}, &shared);
  ASSERT_EQ(json.code, 0) << json.err;
  v1::ListRolloutsResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json.out, &parsed).ok()) << json.out;
  EXPECT_EQ(parsed.rollouts_size(), 2);
}

TEST(RolloutCommandsTest, ActionsSendTheNameAndReason) {
  FakeAdmin::Shared shared;
  for (const char* verb : {"pause", "resume", "promote", "abort", "rollback"}) {
    RunResult r = RunWith({"rollout", verb, "r1", "--reason", "night shift"}, &shared);
    ASSERT_EQ(r.code, 0) << verb << ": " << r.err;
    EXPECT_THAT(r.out, HasSubstr("PAUSED"));
  }
  ASSERT_EQ(RunWith({"rollout", "abort", "r2"}, &shared).code, 0);
  EXPECT_THAT(shared.rollout_actions,
              ElementsAre("pause r1 night shift", "resume r1 night shift", "promote r1 night shift",
                          "abort r1 night shift", "rollback r1 night shift", "abort r2 "));

  shared.status = absl::FailedPreconditionError("rollout r1 is SUCCEEDED: resume needs PAUSED");
  RunResult refused = RunWith({"rollout", "resume", "r1"}, &shared);
  EXPECT_EQ(refused.code, 1);
  EXPECT_EQ(refused.err,
            "edgefleetctl: resume rollout 'r1': FAILED_PRECONDITION: rollout r1 is SUCCEEDED: "
            "resume needs PAUSED\n");
  RunResult unnamed = RunWith({"rollout", "pause"}, &shared);
  EXPECT_EQ(unnamed.code, 2);
  EXPECT_THAT(unnamed.err, HasSubstr("usage: edgefleetctl rollout pause NAME [--reason TEXT]"));
}

// ---- drift ----

TEST(DriftCommandsTest, DriftPassesTheRangeAndShowsEveryFeatureAgainstTheThresholds) {
  FakeAdmin::Shared shared;
  v1::ModelDrift& d = shared.model_drift;
  d.set_model_name("detector");
  d.set_version("2.0");
  d.set_reference_source(v1::REFERENCE_SOURCE_UPLOADED);
  d.set_reference_samples(5000);
  d.mutable_thresholds()->set_warn(0.1);
  d.mutable_thresholds()->set_alert(0.25);
  d.mutable_thresholds()->set_min_samples(1000);
  d.mutable_thresholds()->set_is_default(true);
  v1::DriftPoint* p = d.add_points();
  p->set_windows(12);
  p->set_level(v1::DRIFT_LEVEL_ALERT);
  v1::FeatureDrift* f0 = p->add_features();
  f0->set_feature(0);
  f0->mutable_score()->set_level(v1::DRIFT_LEVEL_ALERT);
  f0->mutable_score()->set_psi(1.5);
  f0->mutable_score()->set_js_distance(0.61);
  f0->mutable_score()->set_reference_samples(5000);
  f0->mutable_score()->set_current_samples(2400);
  v1::FeatureDrift* f1 = p->add_features();
  f1->set_feature(1);
  f1->mutable_score()->set_level(v1::DRIFT_LEVEL_INSUFFICIENT_DATA);
  f1->mutable_score()->set_reference_samples(5000);
  f1->mutable_score()->set_current_samples(40);

  RunResult r = RunWith({"model", "drift", "detector", "2.0", "--from", "-2h", "--to", "now",
                         "--step", "1h", "--hw", "jetson"},
                        &shared);
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(shared.get_model_drift.has_value());
  EXPECT_EQ(shared.get_model_drift->model_name(), "detector");
  EXPECT_EQ(shared.get_model_drift->version(), "2.0");
  EXPECT_EQ(shared.get_model_drift->from(), "-2h");
  EXPECT_EQ(shared.get_model_drift->to(), "now");
  EXPECT_EQ(shared.get_model_drift->step(), "1h");
  EXPECT_EQ(shared.get_model_drift->hw(), "jetson");
  EXPECT_THAT(r.out, HasSubstr("uploaded (5000 samples)"));
  EXPECT_THAT(r.out, HasSubstr("warn > 0.1, alert > 0.25, at least 1000 samples (defaults)"));
  EXPECT_THAT(r.out, testing::ContainsRegex("0 +1.5000 +0.6100 +alert +5000/2400"));
  EXPECT_THAT(r.out, testing::ContainsRegex("1 +- +- +insufficient_data +5000/40"));
  EXPECT_THAT(r.out, HasSubstr("Overall: alert over 12 windows"));

  RunResult json = RunWith({"model", "drift", "detector", "2.0", "-o", "json"}, &shared);
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"psi\": 1.5"));
  EXPECT_EQ(shared.get_model_drift->from(), "") << "no --from: the server's default range";
}

TEST(DriftCommandsTest, ThresholdsNeedWarnBelowAlert) {
  FakeAdmin::Shared shared;
  RunResult ok = RunWith({"model", "drift-thresholds", "detector", "--warn", "0.2", "--alert",
                          "0.5", "--min-samples", "500"},
                         &shared);
  ASSERT_EQ(ok.code, 0) << ok.err;
  ASSERT_TRUE(shared.set_drift_thresholds.has_value());
  EXPECT_EQ(shared.set_drift_thresholds->warn(), 0.2);
  EXPECT_EQ(shared.set_drift_thresholds->alert(), 0.5);
  EXPECT_EQ(shared.set_drift_thresholds->min_samples(), 500u);
  EXPECT_THAT(ok.out, testing::ContainsRegex("Alert above: +0.5"));

  for (const auto& [args, flag] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--alert", "0.5"}, "--warn"},
           {{"--warn", "0.5", "--alert", "0.2"}, "--alert"},
           {{"--warn", "-1", "--alert", "0.2"}, "--warn"},
           {{"--warn", "0.1", "--alert", "0.2", "--min-samples", "0"}, "--min-samples"}}) {
    std::vector<std::string> line = {"model", "drift-thresholds", "detector"};
    line.insert(line.end(), args.begin(), args.end());
    RunResult bad = RunWith(line, &shared);
    EXPECT_EQ(bad.code, 2) << absl::StrJoin(line, " ");
    EXPECT_THAT(bad.err, HasSubstr(flag));
  }
}

}  // namespace
}  // namespace edgefleet::cli
