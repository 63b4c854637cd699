#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/client_unary_call.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <regex>

#include "common/crypto/sha256.h"
#include "common/manifest/manifest.h"
#include "server/api/admin_api.h"
#include "server/api/admin_calls.h"
#include "server/api/admin_grpc_service.h"
#include "server/api/auth.h"
#include "server/api/device_api.h"
#include "server/http/admin_http_server.h"
#include "server/store/api_token_repo.h"
#include "server/store/database.h"
#include "server/store/event_repo.h"
#include "server/store/telemetry_repo.h"
#include "tests/support/test_database.h"

namespace edgefleet::server {
namespace {

namespace fs = std::filesystem;
using google::protobuf::Message;
using ::testing::HasSubstr;

// Real PostgreSQL and a real artifact store; the APIs as the gRPC and REST adapters call them.
class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto database = Database::Open({.url = db_.url()});
    ASSERT_TRUE(database.ok()) << database.status();
    database_ = *std::move(database);
    ASSERT_TRUE(database_->Migrate().ok());
    dir_ = fs::path(::testing::TempDir()) /
           ("api_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    artifacts_ = MakeFilesystemArtifactStore(dir_.string());
    api_tokens_ = std::make_unique<ApiTokenRepo>(*database_);
    tokens_ = std::make_unique<EnrollmentTokenRepo>(*database_);
    devices_ = std::make_unique<DeviceRepo>(*database_);
    models_ = std::make_unique<ModelRepo>(*database_);
    deployments_ = std::make_unique<DeploymentRepo>(*database_);
    events_ = std::make_unique<EventRepo>(*database_);
    telemetry_ = std::make_unique<TelemetryRepo>(*database_);
    audit_ = std::make_unique<AuditRepo>(*database_);
    metrics_ = std::make_unique<ServerMetrics>(registry_);
    admin_ = std::make_unique<AdminApi>(
        AdminRepos{*tokens_, *devices_, *models_, *deployments_, *audit_}, *artifacts_, clock_,
        *metrics_, AdminApiOptions{.max_artifact_bytes = 1024});
    auto keys = crypto::GenerateEd25519KeyPair();
    ASSERT_TRUE(keys.ok());
    signer_ = *crypto::LoadEd25519Signer(keys->private_key_pem);
    verifier_ = *crypto::LoadEd25519Verifier(keys->public_key_pem);
    device_api_ = std::make_unique<DeviceApi>(
        DeviceRepos{*devices_, *models_, *deployments_, *events_, *telemetry_}, *artifacts_,
        *signer_, clock_, *metrics_, DeviceApiOptions{});
  }

  static ChunkSource Chunks(std::vector<std::string> pieces) {
    auto shared = std::make_shared<std::vector<std::string>>(std::move(pieces));
    auto next = std::make_shared<size_t>(0);
    return [shared, next]() -> absl::StatusOr<std::optional<std::string>> {
      if (*next == shared->size()) return std::optional<std::string>();
      return std::optional<std::string>((*shared)[(*next)++]);
    };
  }

  v1::PushModelMetadata Metadata(const std::string& name, const std::string& version) {
    v1::PushModelMetadata m;
    m.set_model_name(name);
    m.set_version(version);
    auto* input = m.add_inputs();
    input->set_name("input");
    input->add_shape(1);
    input->add_shape(4);
    return m;
  }

  void EnrollDevice(const std::string& id, Labels labels) {
    ASSERT_TRUE(
        devices_->Enroll(id, labels, v1::Inventory(), "serial-" + id, ToUnixSeconds(clock_.Now()))
            .ok());
  }

  test::TestDatabase db_;
  FakeClock clock_;
  fs::path dir_;
  std::unique_ptr<Database> database_;
  std::unique_ptr<ArtifactStore> artifacts_;
  std::unique_ptr<ApiTokenRepo> api_tokens_;
  std::unique_ptr<EnrollmentTokenRepo> tokens_;
  std::unique_ptr<DeviceRepo> devices_;
  std::unique_ptr<ModelRepo> models_;
  std::unique_ptr<DeploymentRepo> deployments_;
  std::unique_ptr<EventRepo> events_;
  std::unique_ptr<TelemetryRepo> telemetry_;
  std::unique_ptr<AuditRepo> audit_;
  metrics::Registry registry_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<AdminApi> admin_;
  std::unique_ptr<crypto::Signer> signer_;
  std::unique_ptr<crypto::Verifier> verifier_;
  std::unique_ptr<DeviceApi> device_api_;
  Principal admin_principal_{"admin", v1::ROLE_ADMIN};
};

TEST_F(ApiTest, BearerTokensAuthenticateAndViewersMayOnlyRead) {
  ASSERT_TRUE(api_tokens_->Upsert("ops", "viewer", crypto::Sha256Bytes("view-secret")).ok());
  Authenticator auth(*api_tokens_);
  EXPECT_EQ(auth.Authenticate("").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth.Authenticate("Basic abc").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth.Authenticate("Bearer wrong").status().code(), absl::StatusCode::kUnauthenticated);
  auto viewer = auth.Authenticate("Bearer view-secret");
  ASSERT_TRUE(viewer.ok()) << viewer.status();
  EXPECT_EQ(viewer->role, v1::ROLE_VIEWER);
  EXPECT_TRUE(Authenticator::Authorize(*viewer, permission::kReadDevices).ok());
  EXPECT_EQ(Authenticator::Authorize(*viewer, permission::kWriteDevices).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(ApiTest, EnrollmentTokenSecretIsShownOnceAndStoredHashed) {
  v1::CreateEnrollmentTokenRequest request;
  request.set_max_uses(5);
  (*request.mutable_labels())["site"] = "berlin";
  auto token = admin_->CreateEnrollmentToken(admin_principal_, request);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->max_uses(), 5u);
  EXPECT_EQ(token->token().rfind("eft_", 0), 0u);
  EXPECT_EQ(db_.QueryValue("SELECT count(*) FROM enrollment_tokens WHERE token_hash = decode('" +
                           crypto::ToHex(crypto::Sha256Bytes(token->token())) + "', 'hex')"),
            "1");
  EXPECT_EQ(
      db_.QueryValue("SELECT count(*) FROM audit_log WHERE action = 'enrollment_token.create' "
                     "AND detail::text NOT LIKE '%eft_%'"),
      "1");
  request.set_ttl_seconds(10ull * 365 * 24 * 3600);
  EXPECT_EQ(admin_->CreateEnrollmentToken(admin_principal_, request).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ApiTest, PushStoresTheArtifactByDigestAndRefusesBadInput) {
  auto version =
      admin_->PushModel(admin_principal_, Metadata("detector", "1"), Chunks({"abc", "def"}));
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(version->artifact_sha256(), crypto::Sha256Bytes("abcdef"));
  EXPECT_EQ(version->size_bytes(), 6u);
  EXPECT_GT(version->metadata_version(), 0u);
  auto reader = artifacts_->Open(version->artifact_sha256());
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ(*(*reader)->ReadAt(2, 100), "cdef");

  EXPECT_EQ(
      admin_->PushModel(admin_principal_, Metadata("detector", "1"), Chunks({"x"})).status().code(),
      absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(
      admin_->PushModel(admin_principal_, Metadata("Bad Name", "1"), Chunks({"x"})).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      admin_->PushModel(admin_principal_, Metadata("detector", "2"), Chunks({})).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      admin_
          ->PushModel(admin_principal_, Metadata("detector", "3"), Chunks({std::string(2000, 'x')}))
          .status()
          .code(),
      absl::StatusCode::kOutOfRange);
  v1::PushModelMetadata wrong_digest = Metadata("detector", "4");
  wrong_digest.set_expected_sha256(crypto::Sha256Bytes("something else"));
  auto refused = admin_->PushModel(admin_principal_, wrong_digest, Chunks({"abcdef"}));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("SHA-256"), std::string::npos);
  auto model = admin_->GetModel([] {
    v1::GetModelRequest r;
    r.set_model_name("detector");
    return r;
  }());
  ASSERT_TRUE(model.ok());
  EXPECT_EQ(model->versions_size(), 1);
}

TEST_F(ApiTest, DeploymentToAnUnknownVersionIsNotFoundAndBadSelectorIsInvalid) {
  v1::CreateDeploymentRequest request;
  request.set_model_name("detector");
  request.set_version("9");
  EXPECT_EQ(admin_->CreateDeployment(admin_principal_, request).status().code(),
            absl::StatusCode::kNotFound);
  request.set_label_selector("site");
  EXPECT_EQ(admin_->CreateDeployment(admin_principal_, request).status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::GetDeploymentRequest get;
  get.set_deployment_id("abc");
  EXPECT_EQ(admin_->GetDeployment(get).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ApiTest, CheckInAnswersWithAManifestTheDeviceCanVerify) {
  EnrollDevice("cam-1", {{"site", "berlin"}});
  EnrollDevice("cam-2", {{"site", "paris"}});
  ASSERT_TRUE(
      admin_->PushModel(admin_principal_, Metadata("detector", "1"), Chunks({"weights"})).ok());
  v1::CreateDeploymentRequest deploy;
  deploy.set_model_name("detector");
  deploy.set_version("1");
  deploy.set_label_selector("site=berlin");
  auto deployment = admin_->CreateDeployment(admin_principal_, deploy);
  ASSERT_TRUE(deployment.ok()) << deployment.status();
  ASSERT_EQ(deployment->targets_size(), 1);
  EXPECT_EQ(deployment->targets(0).device_id(), "cam-1");

  auto answer = device_api_->CheckIn("cam-1", v1::CheckInRequest());
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->desired_size(), 1);
  auto manifest = manifest::Verify(answer->desired(0).manifest(), *verifier_, clock_.Now(), 0);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->model_name(), "detector");
  EXPECT_EQ(manifest->artifact_sha256(), crypto::Sha256Bytes("weights"));
  EXPECT_EQ(manifest->artifact_size_bytes(), 7u);
  EXPECT_GT(manifest->expires_at().seconds(), ToUnixSeconds(clock_.Now()));

  auto other = device_api_->CheckIn("cam-2", v1::CheckInRequest());
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->desired_size(), 0);
}

TEST_F(ApiTest, OversizedDeviceAndUploadInputIsRefusedBeforeAnythingIsStored) {
  EnrollDevice("cam-1", {});
  v1::CheckInRequest checkin;
  checkin.mutable_inventory()->set_os(std::string(1 << 20, 'o'));
  absl::Status refused = device_api_->CheckIn("cam-1", checkin).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.message(), "inventory.os has 1048576 bytes; the limit is 256");
  v1::GetDeviceRequest get;
  get.set_device_id("cam-1");
  EXPECT_NE(admin_->GetDevice(get)->inventory().os().size(), 1u << 20) << "nothing stored";

  v1::ReportEventRequest report;
  auto* event = report.add_events();
  event->set_model_name("detector");
  event->set_version("1");
  event->set_kind(v1::UPDATE_EVENT_KIND_FAILED);
  event->set_detail(std::string("cut\0here", 8));
  EXPECT_EQ(device_api_->ReportEvent("cam-1", report).message(),
            "events[0].detail contains a NUL byte");

  v1::UploadTelemetryRequest telemetry;
  for (int i = 0; i < 1001; ++i) telemetry.add_models()->set_model_name("detector");
  EXPECT_EQ(device_api_->UploadTelemetry("cam-1", telemetry).message(),
            "models has 1001 entries; the limit is 1000");

  v1::PushModelMetadata metadata = Metadata("detector", "1");
  for (int i = 0; i < 100; ++i) (*metadata.mutable_labels())["k" + std::to_string(i)] = "v";
  EXPECT_EQ(admin_->PushModel(admin_principal_, metadata, Chunks({"weights"})).status().message(),
            "labels has 100 entries; the limit is 64");
}

TEST_F(ApiTest, EventsDriveDeploymentTargetStateAndAreValidated) {
  EnrollDevice("cam-1", {});
  ASSERT_TRUE(
      admin_->PushModel(admin_principal_, Metadata("detector", "1"), Chunks({"weights"})).ok());
  v1::CreateDeploymentRequest deploy;
  deploy.set_model_name("detector");
  deploy.set_version("1");
  auto deployment = admin_->CreateDeployment(admin_principal_, deploy);
  ASSERT_TRUE(deployment.ok());

  v1::ReportEventRequest report;
  auto* event = report.add_events();
  event->set_model_name("detector");
  event->set_version("1");
  event->set_kind(v1::UPDATE_EVENT_KIND_FAILED);
  event->set_reason(v1::FAILURE_REASON_DIGEST);
  event->set_detail("artifact SHA-256 does not match");
  ASSERT_TRUE(device_api_->ReportEvent("cam-1", report).ok());
  v1::GetDeploymentRequest get;
  get.set_deployment_id(deployment->deployment_id());
  auto status = admin_->GetDeployment(get);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->targets(0).state(), v1::DEPLOYMENT_TARGET_STATE_FAILED);
  EXPECT_NE(status->targets(0).detail().find("SHA-256"), std::string::npos);

  v1::ReportEventRequest malformed;
  malformed.add_events()->set_model_name("detector");
  EXPECT_EQ(device_api_->ReportEvent("cam-1", malformed).code(),
            absl::StatusCode::kInvalidArgument);
  v1::UploadTelemetryRequest telemetry;
  auto* entry = telemetry.add_models();
  entry->set_model_name("detector");
  entry->set_version("1");
  entry->set_inference_count(1);
  entry->set_error_count(2);
  EXPECT_EQ(device_api_->UploadTelemetry("cam-1", telemetry).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ApiTest, DevicesOnlyReachRegisteredArtifactsAndOnlyWithTheirCurrentCertificate) {
  EnrollDevice("cam-1", {});
  EXPECT_TRUE(device_api_->Authorize("cam-1", "serial-cam-1").ok());
  EXPECT_EQ(device_api_->Authorize("cam-1", "old-serial").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(device_api_->Authorize("ghost", "x").code(), absl::StatusCode::kPermissionDenied);
  ASSERT_TRUE(devices_->Decommission("cam-1").ok());
  EXPECT_EQ(device_api_->Authorize("cam-1", "serial-cam-1").code(),
            absl::StatusCode::kPermissionDenied);

  EXPECT_EQ(device_api_->OpenArtifact(crypto::Sha256Bytes("not pushed")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(device_api_->OpenArtifact("short").status().code(), absl::StatusCode::kInvalidArgument);
}

// Both faces of the admin call table (gRPC and REST) on loopback ports, over the same AdminApi.
class AdminFacesTest : public ApiTest {
 protected:
  void SetUp() override {
    ApiTest::SetUp();
    ASSERT_TRUE(api_tokens_->Upsert("watcher", "viewer", crypto::Sha256Bytes("view-secret")).ok());
    auth_ = std::make_unique<Authenticator>(*api_tokens_);

    grpc_service_ = std::make_unique<AdminGrpcService>(*admin_, *auth_, *metrics_);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(grpc_service_.get());
    grpc_server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());

    http_ = std::make_unique<AdminHttpServer>(*admin_, *auth_, registry_, *metrics_,
                                              [] { return absl::OkStatus(); });
    auto http_port = http_->Start("127.0.0.1", 0);
    ASSERT_TRUE(http_port.ok()) << http_port.status();
    http_client_ = std::make_unique<httplib::Client>("127.0.0.1", *http_port);
  }

  void TearDown() override {
    if (http_) http_->Stop();
    if (grpc_server_) grpc_server_->Shutdown();
  }

  // Calls `call` over gRPC with `token` (none when empty) and an empty request.
  grpc::Status CallGrpc(const AdminCall& call, const std::string& token) {
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    const std::string path = "/edgefleet.v1.AdminService/" + std::string(call.rpc);
    if (call.handler == nullptr) {
      auto stub = v1::AdminService::NewStub(channel_);
      v1::ModelVersion out;
      auto writer = stub->PushModel(&context, &out);
      v1::PushModelRequest first;
      first.mutable_metadata()->set_model_name("m");
      first.mutable_metadata()->set_version("1");
      writer->Write(first);
      writer->WritesDone();
      return writer->Finish();
    }
    std::unique_ptr<Message> request(call.request_prototype->New());
    std::unique_ptr<Message> response(call.response_prototype->New());
    return grpc::internal::BlockingUnaryCall<Message, Message>(
        channel_.get(),
        grpc::internal::RpcMethod(path.c_str(), grpc::internal::RpcMethod::NORMAL_RPC), &context,
        *request, response.get());
  }

  // Calls `call`'s REST route with `token` (none when empty); path fields are "x".
  httplib::Result CallRest(const AdminCall& call, const std::string& token) {
    std::string path =
        std::regex_replace(std::string(call.rest->path), std::regex("\\{[^}]+\\}"), "x");
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    if (call.rest->method == HttpMethod::kGet) return http_client_->Get(path, headers);
    if (call.rest->method == HttpMethod::kDelete) return http_client_->Delete(path, headers);
    return http_client_->Post(
        path, headers, "",
        call.rest->body == RestBody::kRawUpload ? "application/octet-stream" : "application/json");
  }

  // The call is refused the same way on both faces: same code, same message.
  void ExpectSameRefusal(const AdminCall& call, const std::string& token, absl::StatusCode code) {
    SCOPED_TRACE(std::string(call.rpc) + " with token '" + token + "'");
    grpc::Status over_grpc = CallGrpc(call, token);
    EXPECT_EQ(static_cast<int>(over_grpc.error_code()), static_cast<int>(code))
        << over_grpc.error_message();
    httplib::Result over_rest = CallRest(call, token);
    ASSERT_TRUE(over_rest);
    EXPECT_EQ(over_rest->status, HttpStatusFor(code)) << over_rest->body;
    v1::ErrorBody error;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(over_rest->body, &error).ok())
        << over_rest->body;
    EXPECT_EQ(error.code(), absl::StatusCodeToString(code));
    EXPECT_EQ(error.message(), over_grpc.error_message());
  }

  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<AdminGrpcService> grpc_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<AdminHttpServer> http_;
  std::unique_ptr<httplib::Client> http_client_;
};

TEST_F(AdminFacesTest, RestAndGrpcRefuseEveryCallIdentically) {
  int denied = 0;
  for (const AdminCall& call : AdminCalls()) {
    ExpectSameRefusal(call, "", absl::StatusCode::kUnauthenticated);
    ExpectSameRefusal(call, "wrong-secret", absl::StatusCode::kUnauthenticated);
    if (!RoleAllows(v1::ROLE_VIEWER, call.permission)) {
      ExpectSameRefusal(call, "view-secret", absl::StatusCode::kPermissionDenied);
      ++denied;
    }
  }
  EXPECT_GE(denied, 5) << "a viewer may not change anything";
  EXPECT_EQ(db_.QueryValue("SELECT count(*) FROM audit_log"), "0") << "nothing refused ran";
}

TEST_F(AdminFacesTest, ADeniedCallNamesTheMissingPermission) {
  grpc::Status status = CallGrpc(*FindAdminCall("CreateDeployment"), "view-secret");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("create:deployments"));
  EXPECT_THAT(status.error_message(), HasSubstr("viewer"));
}

TEST_F(AdminFacesTest, AViewerReadsOverBothFaces) {
  const AdminCall& list = *FindAdminCall("ListDevices");
  EXPECT_TRUE(CallGrpc(list, "view-secret").ok());
  auto rest = CallRest(list, "view-secret");
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->status, 200) << rest->body;
  EXPECT_THAT(rest->body, HasSubstr("devices"));
}

}  // namespace
}  // namespace edgefleet::server
