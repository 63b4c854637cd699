#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/client_unary_call.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/crypto/sha256.h"
#include "common/manifest/manifest.h"
#include "common/manifest/trust.h"
#include "server/api/admin_api.h"
#include "server/api/admin_calls.h"
#include "server/api/admin_grpc_service.h"
#include "server/api/auth.h"
#include "server/api/device_api.h"
#include "server/api/device_grpc_service.h"
#include "server/http/admin_http_server.h"
#include "server/store/api_token_repo.h"
#include "server/store/database.h"
#include "server/store/event_repo.h"
#include "server/store/last_seen_batcher.h"
#include "server/store/telemetry_repo.h"
#include "tests/support/onnx_bytes.h"
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
    telemetry_ = std::make_unique<TelemetryRepo>();
    // Flushed by the tests that read last_seen.
    last_seen_ = std::make_unique<LastSeenBatcher>(*database_, *devices_, std::chrono::hours(1));
    audit_ = std::make_unique<AuditRepo>();
    metrics_ = std::make_unique<ServerMetrics>(registry_);
    admin_ = std::make_unique<AdminApi>(
        AdminRepos{*database_, *tokens_, *devices_, *models_, *deployments_, *audit_, *api_tokens_},
        *artifacts_, clock_, *metrics_, AdminApiOptions{.max_artifact_bytes = 1024},
        AdminServices{.rollouts = rollouts_});
    auto keys = crypto::GenerateEd25519KeyPair();
    ASSERT_TRUE(keys.ok());
    signer_ = *crypto::LoadEd25519Signer(keys->private_key_pem);
    verifier_ = *crypto::LoadEd25519Verifier(keys->public_key_pem);
    device_api_ =
        std::make_unique<DeviceApi>(DeviceRepos{*database_, *devices_, *models_, *deployments_,
                                                *events_, *telemetry_, *last_seen_},
                                    *artifacts_, *signer_, clock_, *metrics_, DeviceApiOptions{});
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

  // Pushes detector 1 (the model "weights") and deploys it to `selector`.
  auto PushAndDeploy(const std::string& selector) {
    EXPECT_TRUE(admin_
                    ->PushModel(admin_principal_, Metadata("detector", "1"),
                                Chunks({test::OnnxModelWith("weights")}))
                    .ok());
    v1::CreateDeploymentRequest deploy;
    deploy.set_model_name("detector");
    deploy.set_version("1");
    deploy.set_label_selector(selector);
    return admin_->CreateDeployment(admin_principal_, deploy);
  }

  void EnrollDevice(const std::string& id, Labels labels) {
    ASSERT_TRUE(database_
                    ->Transact("test",
                               [&](Tx& tx) {
                                 return devices_->Enroll(tx, id, labels, v1::Inventory(),
                                                         "serial-" + id,
                                                         ToUnixSeconds(clock_.Now()));
                               })
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
  std::unique_ptr<LastSeenBatcher> last_seen_;
  std::unique_ptr<AuditRepo> audit_;
  metrics::Registry registry_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<AdminApi> admin_;
  std::unique_ptr<crypto::Signer> signer_;
  std::unique_ptr<crypto::Verifier> verifier_;
  std::unique_ptr<DeviceApi> device_api_;
  Principal admin_principal_{"admin", v1::ROLE_ADMIN};
  // The rollout service admin_ is built with (none unless a fixture sets it before SetUp).
  rollout::RolloutService* rollouts_ = nullptr;
};

TEST_F(ApiTest, BearerTokensAuthenticateAndViewersMayOnlyRead) {
  ASSERT_TRUE(database_
                  ->Transact("test",
                             [&](Tx& tx) {
                               return api_tokens_->Upsert(tx, "ops", "viewer",
                                                          crypto::Sha256Bytes("view-secret"));
                             })
                  .ok());
  Authenticator auth(*api_tokens_, clock_);
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

// An audit store that refuses every row, as a full disk or a broken audit table would.
class RefusingAudit final : public AuditStore {
 public:
  absl::Status Record(Tx&, const std::string&, const std::string&, const std::string&) override {
    return absl::UnavailableError("audit log unavailable");
  }
};

// An admin call and its audit row are one transaction: no change goes unaudited.
TEST_F(ApiTest, AnAdminCallWhoseAuditRowFailsChangesNothing) {
  EnrollDevice("cam-1", {{"site", "berlin"}});
  RefusingAudit audit;
  AdminApi admin(
      AdminRepos{*database_, *tokens_, *devices_, *models_, *deployments_, audit, *api_tokens_},
      *artifacts_, clock_, *metrics_, AdminApiOptions{.max_artifact_bytes = 1024});
  constexpr auto kUnavailable = absl::StatusCode::kUnavailable;

  v1::LabelDeviceRequest label;
  label.set_device_id("cam-1");
  (*label.mutable_set_labels())["ring"] = "canary";
  EXPECT_EQ(admin.LabelDevice(admin_principal_, label).status().code(), kUnavailable);
  EXPECT_EQ(devices_->Get("cam-1")->labels().count("ring"), 0u);

  v1::DecommissionDeviceRequest decommission;
  decommission.set_device_id("cam-1");
  EXPECT_EQ(admin.DecommissionDevice(admin_principal_, decommission).status().code(), kUnavailable);
  EXPECT_EQ(devices_->Get("cam-1")->status(), v1::DEVICE_STATUS_ACTIVE);

  v1::RekeyDeviceRequest rekey;
  rekey.set_device_id("cam-1");
  EXPECT_EQ(admin.RekeyDevice(admin_principal_, rekey).status().code(), kUnavailable);
  EXPECT_EQ(database_
                ->Transact("enroll again",
                           [&](Tx& tx) {
                             return devices_->Enroll(tx, "cam-1", {}, v1::Inventory(), "new",
                                                     ToUnixSeconds(clock_.Now()));
                           })
                .status()
                .code(),
            absl::StatusCode::kAlreadyExists)
      << "no rekey was allowed";

  EXPECT_EQ(admin.CreateEnrollmentToken(admin_principal_, {}).status().code(), kUnavailable);
  EXPECT_TRUE(tokens_->ListPage({"", kMaxPageSize})->items.empty());

  v1::CreateApiTokenRequest api_token;
  api_token.set_name("ci");
  api_token.set_role(v1::ROLE_VIEWER);
  EXPECT_EQ(admin.CreateApiToken(admin_principal_, api_token).status().code(), kUnavailable);
  EXPECT_TRUE(api_tokens_->ListPage({"", kMaxPageSize})->items.empty());

  const std::string model = test::OnnxModelWith("abcdefgh");
  EXPECT_EQ(
      admin.PushModel(admin_principal_, Metadata("detector", "1"), Chunks({model})).status().code(),
      kUnavailable);
  EXPECT_TRUE(models_->ListModels()->empty());

  // With a working audit store the same calls go through, each with its row.
  ASSERT_TRUE(admin_->PushModel(admin_principal_, Metadata("detector", "1"), Chunks({model})).ok());
  v1::CreateDeploymentRequest deploy;
  deploy.set_model_name("detector");
  deploy.set_version("1");
  EXPECT_EQ(admin.CreateDeployment(admin_principal_, deploy).status().code(), kUnavailable);
  EXPECT_TRUE(deployments_->ListPage({"", kMaxPageSize})->items.empty());
  EXPECT_TRUE(admin_->CreateDeployment(admin_principal_, deploy).ok());
  EXPECT_EQ(db_.QueryValue("SELECT string_agg(action, ',' ORDER BY id) FROM audit_log"),
            "model.push,deployment.create");
}

TEST_F(ApiTest, PushStoresTheArtifactByDigestAndRefusesBadInput) {
  const std::string model = test::OnnxModelWith("abcdefgh");
  auto version = admin_->PushModel(admin_principal_, Metadata("detector", "1"),
                                   Chunks({model.substr(0, 10), model.substr(10)}));
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(version->artifact_sha256(), crypto::Sha256Bytes(model));
  EXPECT_EQ(version->size_bytes(), model.size());
  EXPECT_GT(version->metadata_version(), 0u);
  auto reader = artifacts_->Open(version->artifact_sha256());
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ(*(*reader)->ReadAt(2, 1000), model.substr(2));

  EXPECT_EQ(admin_->PushModel(admin_principal_, Metadata("detector", "1"), Chunks({model}))
                .status()
                .code(),
            absl::StatusCode::kAlreadyExists);
  for (const char* bad : {"Bad Name", "..", ".hidden"}) {
    EXPECT_EQ(
        admin_->PushModel(admin_principal_, Metadata(bad, "1"), Chunks({model})).status().code(),
        absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_EQ(admin_->PushModel(admin_principal_, Metadata("detector", ".."), Chunks({model}))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      admin_->PushModel(admin_principal_, Metadata("detector", "2"), Chunks({})).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(admin_
                ->PushModel(admin_principal_, Metadata("detector", "3"),
                            Chunks({test::OnnxModelWith(std::string(2000, 'x'))}))
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);
  v1::PushModelMetadata wrong_digest = Metadata("detector", "4");
  wrong_digest.set_expected_sha256(crypto::Sha256Bytes("something else"));
  auto refused = admin_->PushModel(admin_principal_, wrong_digest, Chunks({model}));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("SHA-256"), std::string::npos);
  auto model_versions = admin_->GetModel([] {
    v1::GetModelRequest r;
    r.set_model_name("detector");
    return r;
  }());
  ASSERT_TRUE(model_versions.ok());
  EXPECT_EQ(model_versions->versions_size(), 1);
  EXPECT_TRUE(fs::is_empty(dir_ / "tmp")) << "refused uploads leave no temporary file";
}

// An upload that stops short of its declared size registers nothing, and the same version can
// then be pushed in full (no "already exists").
TEST_F(ApiTest, IncompleteUploadRegistersNothingAndTheFullFileCanBePushedAgain) {
  const std::string model = test::OnnxModelWith(std::string(400, 'w'));
  v1::PushModelMetadata metadata = Metadata("detector", "1");
  metadata.set_expected_size_bytes(model.size());
  metadata.set_expected_sha256(crypto::Sha256Bytes(model));
  auto cut = admin_->PushModel(admin_principal_, metadata, Chunks({model.substr(0, 100)}));
  EXPECT_EQ(cut.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(cut.status().message().find("incomplete"), std::string::npos) << cut.status();
  EXPECT_EQ(admin_->PushModel(admin_principal_, metadata, Chunks({model, "x"})).status().code(),
            absl::StatusCode::kInvalidArgument)
      << "more bytes than declared";
  EXPECT_EQ(db_.QueryValue("SELECT count(*) FROM model_versions"), "0");
  EXPECT_TRUE(fs::is_empty(dir_ / "tmp"));

  // The end marker's size and digest must agree with what arrived, too.
  auto upload = admin_->BeginPush(admin_principal_, Metadata("detector", "1"));
  ASSERT_TRUE(upload.ok()) << upload.status();
  ASSERT_TRUE((*upload)->Append(model).ok());
  ASSERT_TRUE((*upload)->DeclareEnd(model.size() + 1, "").ok());
  EXPECT_EQ(admin_->FinishPush(*std::move(upload)).status().code(),
            absl::StatusCode::kInvalidArgument);

  auto full = admin_->PushModel(admin_principal_, metadata, Chunks({model}));
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->size_bytes(), model.size());
}

TEST_F(ApiTest, DeclaredSizeOverTheLimitIsRefusedBeforeAnyByte) {
  v1::PushModelMetadata metadata = Metadata("detector", "1");
  metadata.set_expected_size_bytes(1025);  // the limit is 1024
  auto upload = admin_->BeginPush(admin_principal_, metadata);
  EXPECT_EQ(upload.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(fs::exists(dir_ / "tmp") && !fs::is_empty(dir_ / "tmp"));
}

TEST_F(ApiTest, PushedFilesMustBeOnnxWithTheDeclaredInputsAndOutputs) {
  auto not_onnx =
      admin_->PushModel(admin_principal_, Metadata("detector", "1"), Chunks({"abcdef"}));
  EXPECT_EQ(not_onnx.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(not_onnx.status().message().find("not an ONNX model"), std::string::npos)
      << not_onnx.status();

  // Metadata declares input [1,4]; these graphs disagree in name, shape or rank.
  for (const auto& inputs :
       std::vector<std::vector<test::OnnxTensorDecl>>{{{"image", {1, 4}}},
                                                      {{"input", {1, 3}}},
                                                      {{"input", {4}}},
                                                      {{"input", {1, 4}}, {"mask", {1, 4}}}}) {
    auto refused = admin_->PushModel(admin_principal_, Metadata("detector", "1"),
                                     Chunks({test::OnnxModelWith("wwww", inputs)}));
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  }
  v1::PushModelMetadata wrong_output = Metadata("detector", "1");
  auto* output = wrong_output.add_outputs();
  output->set_name("scores");
  EXPECT_EQ(admin_->PushModel(admin_principal_, wrong_output, Chunks({test::OnnxModelWith("w")}))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(db_.QueryValue("SELECT count(*) FROM model_versions"), "0");

  // A dynamic graph dimension accepts a fixed declared one; undeclared outputs come from the graph.
  auto accepted = admin_->PushModel(admin_principal_, Metadata("detector", "1"),
                                    Chunks({test::OnnxModelWith("wwww", {{"input", {-1, 4}}})}));
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  ASSERT_EQ(accepted->outputs_size(), 1);
  EXPECT_EQ(accepted->outputs(0).name(), "probs");
  EXPECT_EQ(accepted->outputs(0).shape_size(), 2);
}

TEST_F(ApiTest, AbandonedUploadsAreRemovedButLiveOnesKept) {
  auto live = artifacts_->BeginUpload(1024);
  ASSERT_TRUE(live.ok());
  ASSERT_TRUE((*live)->Append("partial").ok());
  {
    std::ofstream stale(dir_ / "tmp" / "upload-left-by-a-crash", std::ios::binary);
    stale << "half a model";
  }
  auto removed = artifacts_->RemoveAbandonedUploads();
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(*removed, 1u);
  EXPECT_FALSE(fs::exists(dir_ / "tmp" / "upload-left-by-a-crash"));
  EXPECT_TRUE((*live)->Commit().ok()) << "a live upload is not touched";
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
  auto deployment = PushAndDeploy("site=berlin");
  ASSERT_TRUE(deployment.ok()) << deployment.status();
  EXPECT_EQ(deployment->target_count(), 1u);
  EXPECT_EQ(deployment->target_counts().pending(), 1u);
  EXPECT_EQ(deployment->targets_size(), 0) << "targets are paged by GetDeployment";

  auto answer = device_api_->CheckIn("cam-1", "serial-cam-1", v1::CheckInRequest());
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->desired_size(), 1);
  auto manifest = manifest::Verify(answer->desired(0).manifest(), *verifier_, clock_.Now(), 0);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->model_name(), "detector");
  EXPECT_EQ(manifest->artifact_sha256(), crypto::Sha256Bytes(test::OnnxModelWith("weights")));
  EXPECT_EQ(manifest->artifact_size_bytes(), test::OnnxModelWith("weights").size());
  EXPECT_GT(manifest->expires_at().seconds(), ToUnixSeconds(clock_.Now()));

  auto other = device_api_->CheckIn("cam-2", "serial-cam-2", v1::CheckInRequest());
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->desired_size(), 0);
}

// Every row of every table by its physical version (ctid) and writing transaction (xmin): any
// insert, update or delete changes it.
std::string RowVersions(const test::TestDatabase& db) {
  std::string out;
  for (const std::string& table : std::vector<std::string>(absl::StrSplit(
           db.QueryValue("SELECT string_agg(quote_ident(tablename), ',' ORDER BY tablename) "
                         "FROM pg_tables WHERE schemaname = 'public'"),
           ','))) {
    absl::StrAppend(&out, table, ":",
                    db.QueryValue("SELECT coalesce(string_agg(ctid::text || '@' || xmin::text, "
                                  "',' ORDER BY ctid), '') FROM " +
                                  table),
                    "\n");
  }
  return out;
}

// Check-in is a read: one where nothing changed writes nothing, and its time reaches last_seen
// with the next flush of the batch (and at a clean stop).
TEST_F(ApiTest, ACheckInWhereNothingChangedWritesNothingButABatchedLastSeen) {
  EnrollDevice("cam-1", {{"site", "berlin"}});
  EnrollDevice("cam-2", {{"site", "berlin"}});
  auto deployment = PushAndDeploy("");
  ASSERT_TRUE(deployment.ok()) << deployment.status();
  v1::CheckInRequest request;
  v1::InstalledModel* serving = request.mutable_inventory()->add_models();
  serving->set_model_name("detector");
  serving->set_version("1");
  serving->set_state(v1::MODEL_STATE_SERVING);
  serving->set_artifact_sha256(crypto::Sha256Bytes(test::OnnxModelWith("weights")));
  ASSERT_TRUE(device_api_->CheckIn("cam-1", "serial-cam-1", request).ok());
  ASSERT_TRUE(last_seen_->Flush().ok());
  const int64_t enrolled = ToUnixSeconds(clock_.Now());
  EXPECT_EQ(devices_->Get("cam-1")->inventory().models_size(), 1) << "a new inventory is written";

  const std::string before = RowVersions(db_);
  clock_.Advance(std::chrono::seconds(30));
  auto answer = device_api_->CheckIn("cam-1", "serial-cam-1", request);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->desired_size(), 1);
  EXPECT_EQ(RowVersions(db_), before) << "a check-in where nothing changed wrote something";
  EXPECT_EQ(devices_->Get("cam-1")->last_seen().seconds(), enrolled);
  EXPECT_EQ(last_seen_->pending(), 1u);

  ASSERT_TRUE(last_seen_->Flush().ok());
  EXPECT_EQ(devices_->Get("cam-1")->last_seen().seconds(), enrolled + 30);
  EXPECT_EQ(last_seen_->pending(), 0u);
  const std::string flushed = RowVersions(db_);
  ASSERT_TRUE(last_seen_->Flush().ok());
  EXPECT_EQ(RowVersions(db_), flushed) << "an empty batch writes nothing";

  // A clean stop writes what is left; a crash would lose at most one flush interval of it.
  clock_.Advance(std::chrono::seconds(30));
  ASSERT_TRUE(device_api_->CheckIn("cam-2", "serial-cam-2", request).ok());
  last_seen_->Stop();
  EXPECT_EQ(devices_->Get("cam-2")->last_seen().seconds(), enrolled + 60);
  EXPECT_EQ(devices_->Get("cam-1")->last_seen().seconds(), enrolled + 30);
}

TEST_F(ApiTest, OversizedDeviceAndUploadInputIsRefusedBeforeAnythingIsStored) {
  EnrollDevice("cam-1", {});
  v1::CheckInRequest checkin;
  checkin.mutable_inventory()->set_os(std::string(1 << 20, 'o'));
  absl::Status refused = device_api_->CheckIn("cam-1", "serial-cam-1", checkin).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.message(), "inventory.os has 1048576 bytes; the limit is 256");
  v1::GetDeviceRequest get;
  get.set_device_id("cam-1");
  auto stored = admin_->GetDevice(get);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->inventory().os(), "") << "nothing stored";

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
  EXPECT_EQ(device_api_->UploadTelemetry("cam-1", telemetry).status().message(),
            "models has 1001 entries; the limit is 1000");

  v1::PushModelMetadata metadata = Metadata("detector", "1");
  for (int i = 0; i < 100; ++i) (*metadata.mutable_labels())[absl::StrCat("k", i)] = "v";
  EXPECT_EQ(admin_->PushModel(admin_principal_, metadata, Chunks({"weights"})).status().message(),
            "labels has 100 entries; the limit is 64");
}

// Deploying an older version again signs a manifest with a higher metadata version than the
// newer release the devices hold, pointing at the old artifact.
TEST_F(ApiTest, RedeployingAnOlderVersionSignsAHigherMetadataVersion) {
  EnrollDevice("cam-1", {});
  const std::string one = test::OnnxModelWith("one");
  ASSERT_TRUE(admin_->PushModel(admin_principal_, Metadata("detector", "1"), Chunks({one})).ok());
  ASSERT_TRUE(admin_
                  ->PushModel(admin_principal_, Metadata("detector", "2"),
                              Chunks({test::OnnxModelWith("two")}))
                  .ok());
  auto signed_at_check_in = [&]() -> v1::ReleaseManifest {
    auto answer = device_api_->CheckIn("cam-1", "serial-cam-1", v1::CheckInRequest());
    EXPECT_TRUE(answer.ok()) << answer.status();
    if (!answer.ok() || answer->desired_size() != 1) return v1::ReleaseManifest();
    auto manifest = manifest::Verify(answer->desired(0).manifest(), *verifier_, clock_.Now(), 0);
    EXPECT_TRUE(manifest.ok()) << manifest.status();
    EXPECT_EQ(answer->desired(0).metadata().metadata_version(), manifest->metadata_version());
    return manifest.ok() ? *manifest : v1::ReleaseManifest();
  };
  v1::CreateDeploymentRequest deploy;
  deploy.set_model_name("detector");
  deploy.set_version("2");
  auto newer = admin_->CreateDeployment(admin_principal_, deploy);
  ASSERT_TRUE(newer.ok()) << newer.status();
  const v1::ReleaseManifest held = signed_at_check_in();
  EXPECT_EQ(held.version(), "2");
  EXPECT_EQ(held.metadata_version(), newer->metadata_version());

  deploy.set_version("1");
  auto rollback = admin_->CreateDeployment(admin_principal_, deploy);
  ASSERT_TRUE(rollback.ok()) << rollback.status();
  const v1::ReleaseManifest again = signed_at_check_in();
  EXPECT_EQ(again.version(), "1");
  EXPECT_EQ(again.artifact_sha256(), crypto::Sha256Bytes(one));
  EXPECT_GT(again.metadata_version(), held.metadata_version());
  EXPECT_EQ(again.metadata_version(), rollback->metadata_version());
  EXPECT_EQ(signed_at_check_in().metadata_version(), again.metadata_version())
      << "stable across check-ins";
}

TEST_F(ApiTest, CheckInAnswersCarryTheDelegationAndATimestampBindingThem) {
  auto root_pem = crypto::GenerateEd25519KeyPair();
  ASSERT_TRUE(root_pem.ok());
  auto root = crypto::LoadEd25519Signer(root_pem->private_key_pem);
  auto delegation = manifest::NextDelegation(std::nullopt, signer_->PublicKeyPem(), clock_.Now(),
                                             std::chrono::hours(24), false);
  ASSERT_TRUE(delegation.ok()) << delegation.status();
  DeviceApi api(DeviceRepos{*database_, *devices_, *models_, *deployments_, *events_, *telemetry_,
                            *last_seen_},
                *artifacts_, *signer_, clock_, *metrics_,
                DeviceApiOptions{.delegation = *manifest::SignDelegation(*delegation, **root)});
  EnrollDevice("cam-1", {{"site", "berlin"}});
  ASSERT_TRUE(PushAndDeploy("").ok());

  auto answer = api.CheckIn("cam-1", "serial-cam-1", v1::CheckInRequest());
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->desired_size(), 1);
  // What an agent that pinned the root does with it.
  manifest::ReleaseKeyring keys(*crypto::LoadEd25519Verifier(root_pem->public_key_pem));
  ASSERT_TRUE(keys.Adopt(answer->delegation(), clock_.Now()).ok());
  EXPECT_TRUE(manifest::Verify(answer->desired(0).manifest(), keys, clock_.Now(), 0).ok());
  auto timestamp =
      manifest::VerifyTimestamp(answer->timestamp(), keys, "cam-1",
                                manifest::DesiredDigest(answer->desired()), clock_.Now(), {});
  ASSERT_TRUE(timestamp.ok()) << timestamp.status();
  EXPECT_EQ(timestamp->issued_at().seconds(), ToUnixSeconds(clock_.Now()));
  EXPECT_EQ(timestamp->delegation_version(), 1u);
  EXPECT_FALSE(manifest::VerifyTimestamp(answer->timestamp(), keys, "cam-2",
                                         manifest::DesiredDigest(answer->desired()), clock_.Now(),
                                         {})
                   .ok());
}

TEST_F(ApiTest, EventsDriveDeploymentTargetStateAndAreValidated) {
  EnrollDevice("cam-1", {});
  auto deployment = PushAndDeploy("");
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
  EXPECT_EQ(status->targets(0).detail(), "FAILURE_REASON_DIGEST: artifact SHA-256 does not match");

  // A retry moves the target back to IN_PROGRESS, its success to SERVING; a stored model found
  // damaged later is FAILED again, until repaired.
  const auto report_kind = [&](v1::UpdateEventKind kind) {
    event->set_kind(kind);
    event->set_reason(kind == v1::UPDATE_EVENT_KIND_FAILED ? v1::FAILURE_REASON_DIGEST
                                                           : v1::FAILURE_REASON_UNSPECIFIED);
    EXPECT_TRUE(device_api_->ReportEvent("cam-1", report).ok());
    auto now = admin_->GetDeployment(get);
    EXPECT_TRUE(now.ok());
    return now.ok() ? now->targets(0).state() : v1::DEPLOYMENT_TARGET_STATE_UNSPECIFIED;
  };
  EXPECT_EQ(report_kind(v1::UPDATE_EVENT_KIND_DOWNLOAD_STARTED),
            v1::DEPLOYMENT_TARGET_STATE_IN_PROGRESS);
  EXPECT_EQ(report_kind(v1::UPDATE_EVENT_KIND_ACTIVATED), v1::DEPLOYMENT_TARGET_STATE_SERVING);
  EXPECT_EQ(report_kind(v1::UPDATE_EVENT_KIND_FAILED), v1::DEPLOYMENT_TARGET_STATE_FAILED);
  EXPECT_EQ(report_kind(v1::UPDATE_EVENT_KIND_DOWNLOADED), v1::DEPLOYMENT_TARGET_STATE_IN_PROGRESS);
  EXPECT_EQ(report_kind(v1::UPDATE_EVENT_KIND_ACTIVATED), v1::DEPLOYMENT_TARGET_STATE_SERVING);

  // Probation: a version watched after its swap is not serving yet; one that fails it is FAILED
  // with the agent's measured numbers, its reason leading the detail.
  EXPECT_EQ(report_kind(v1::UPDATE_EVENT_KIND_FAILED), v1::DEPLOYMENT_TARGET_STATE_FAILED);
  EXPECT_EQ(report_kind(v1::UPDATE_EVENT_KIND_PROBATION_STARTED),
            v1::DEPLOYMENT_TARGET_STATE_IN_PROGRESS);
  event->set_kind(v1::UPDATE_EVENT_KIND_FAILED);
  event->set_reason(v1::FAILURE_REASON_PROBATION_FAILED);
  event->set_detail("errors 7/50, non-finite 0, p95 41.0ms vs 9.0ms (limit 2x) after 60s");
  ASSERT_TRUE(device_api_->ReportEvent("cam-1", report).ok());
  auto failed = admin_->GetDeployment(get);
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->targets(0).state(), v1::DEPLOYMENT_TARGET_STATE_FAILED);
  EXPECT_EQ(failed->targets(0).detail(),
            "FAILURE_REASON_PROBATION_FAILED: errors 7/50, non-finite 0, p95 41.0ms vs 9.0ms "
            "(limit 2x) after 60s");

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
  EXPECT_EQ(device_api_->UploadTelemetry("cam-1", telemetry).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A check-in authorizes its caller from the identity its own statement reads: the same
// decisions as Authorize, and nothing written for a caller it refuses.
TEST_F(ApiTest, CheckInAdmitsOnlyTheCurrentOrRenewedCertificateOfAnActiveDevice) {
  v1::CheckInRequest request;
  request.mutable_inventory()->set_agent_version("9.9");
  absl::Status ghost = device_api_->CheckIn("ghost", "serial-ghost", request).status();
  EXPECT_EQ(ghost.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ghost.message(), "device ghost is not enrolled");

  EnrollDevice("cam-1", {});
  absl::Status replaced = device_api_->CheckIn("cam-1", "old-serial", request).status();
  EXPECT_EQ(replaced.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(replaced.message(), "certificate of device cam-1 has been replaced");
  EXPECT_EQ(devices_->Get("cam-1")->inventory().agent_version(), "") << "nothing written";

  // A renewed certificate's first check-in promotes it and is recorded; the one it renewed is
  // refused from then on.
  ASSERT_TRUE(database_
                  ->Transact("test",
                             [&](Tx& tx) {
                               return devices_->SetPendingCertificate(tx, "cam-1", "renewed");
                             })
                  .ok());
  ASSERT_TRUE(device_api_->CheckIn("cam-1", "renewed", request).ok());
  EXPECT_EQ(devices_->Get("cam-1")->inventory().agent_version(), "9.9");
  EXPECT_EQ(device_api_->CheckIn("cam-1", "serial-cam-1", request).status().code(),
            absl::StatusCode::kPermissionDenied);

  ASSERT_TRUE(
      database_->Transact("test", [&](Tx& tx) { return devices_->Decommission(tx, "cam-1"); })
          .ok());
  absl::Status gone = device_api_->CheckIn("cam-1", "renewed", request).status();
  EXPECT_EQ(gone.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(gone.message(), "device cam-1 is decommissioned");
}

TEST_F(ApiTest, DevicesOnlyReachRegisteredArtifactsAndOnlyWithTheirCurrentCertificate) {
  EnrollDevice("cam-1", {});
  EXPECT_TRUE(device_api_->Authorize("cam-1", "serial-cam-1").ok());
  EXPECT_EQ(device_api_->Authorize("cam-1", "old-serial").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(device_api_->Authorize("ghost", "x").code(), absl::StatusCode::kPermissionDenied);
  ASSERT_TRUE(
      database_->Transact("test", [&](Tx& tx) { return devices_->Decommission(tx, "cam-1"); })
          .ok());
  EXPECT_EQ(device_api_->Authorize("cam-1", "serial-cam-1").code(),
            absl::StatusCode::kPermissionDenied);

  EXPECT_EQ(device_api_->OpenArtifact("cam-1", crypto::Sha256Bytes("not pushed")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(device_api_->OpenArtifact("cam-1", "short").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ApiTest, ARenewedCertificateRetiresTheOldOneOnFirstUse) {
  EnrollDevice("cam-1", {});
  ASSERT_TRUE(database_
                  ->Transact("test",
                             [&](Tx& tx) {
                               return devices_->SetPendingCertificate(tx, "cam-1", "renewed");
                             })
                  .ok());
  EXPECT_TRUE(device_api_->Authorize("cam-1", "serial-cam-1").ok()) << "until the new one is used";
  EXPECT_TRUE(device_api_->Authorize("cam-1", "renewed").ok());
  EXPECT_EQ(device_api_->Authorize("cam-1", "serial-cam-1").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(device_api_->Authorize("cam-1", "renewed").ok());
  EXPECT_EQ(
      database_
          ->Transact("test",
                     [&](Tx& tx) { return devices_->SetPendingCertificate(tx, "ghost", "x"); })
          .code(),
      absl::StatusCode::kNotFound);
}

TEST_F(ApiTest, DevicesFetchOnlyArtifactsReleasedToThem) {
  EnrollDevice("cam-1", {{"site", "berlin"}});
  EnrollDevice("cam-2", {{"site", "paris"}});
  auto deploy = [&](const std::string& version, const std::string& bytes) {
    auto pushed = admin_->PushModel(admin_principal_, Metadata("detector", version),
                                    Chunks({test::OnnxModelWith(bytes)}));
    EXPECT_TRUE(pushed.ok()) << pushed.status();
    v1::CreateDeploymentRequest request;
    request.set_model_name("detector");
    request.set_version(version);
    request.set_label_selector("site=berlin");
    EXPECT_TRUE(admin_->CreateDeployment(admin_principal_, request).ok());
    return pushed->artifact_sha256();
  };
  const std::string v1_sha = deploy("1", "weights-1");
  EXPECT_TRUE(device_api_->OpenArtifact("cam-1", v1_sha).ok());
  auto refused = device_api_->OpenArtifact("cam-2", v1_sha);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(refused.status().message(),
            device_api_->OpenArtifact("cam-2", crypto::Sha256Bytes("nothing")).status().message())
      << "a refusal must not tell whether the digest exists";

  // v2 supersedes v1: v1 stays fetchable only for a device that holds it (a patch base or a
  // rollback copy), and claiming to hold it gives nothing to a device it was never released to.
  const std::string v2_sha = deploy("2", "weights-2");
  EXPECT_TRUE(device_api_->OpenArtifact("cam-1", v2_sha).ok());
  EXPECT_EQ(device_api_->OpenArtifact("cam-1", v1_sha).status().code(),
            absl::StatusCode::kNotFound);
  v1::Inventory holds_v1;
  auto* model = holds_v1.add_models();
  model->set_model_name("detector");
  model->set_version("1");
  model->set_state(v1::MODEL_STATE_SERVING);
  model->set_artifact_sha256(v1_sha);
  ASSERT_TRUE(deployments_->CheckIn("cam-1", "serial-cam-1", holds_v1, ToUnixSeconds(clock_.Now()))
                  ->recorded);
  ASSERT_TRUE(deployments_->CheckIn("cam-2", "serial-cam-2", holds_v1, ToUnixSeconds(clock_.Now()))
                  ->recorded);
  EXPECT_TRUE(device_api_->OpenArtifact("cam-1", v1_sha).ok());
  EXPECT_EQ(device_api_->OpenArtifact("cam-2", v1_sha).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ApiTest, DevicesGetGenericErrorsForDatabaseTrouble) {
  EnrollDevice("cam-1", {});
  // A database constraint quotes rows: the device is not told.
  v1::ReportEventRequest report;
  auto* event = report.add_events();
  event->set_model_name("detector");
  event->set_version("1");
  event->set_kind(v1::UPDATE_EVENT_KIND_DOWNLOADED);
  absl::Status constraint = device_api_->ReportEvent("ghost", report);
  ASSERT_FALSE(constraint.ok());
  EXPECT_TRUE(IsStoreError(constraint)) << constraint;
  absl::Status told = ForDevice(constraint, "ReportEvent");
  EXPECT_EQ(told.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(told.message(), "internal error");

  // The device's own business passes as it is.
  absl::Status bad = absl::InvalidArgumentError("each event needs model_name, version and kind");
  EXPECT_EQ(ForDevice(bad, "ReportEvent"), bad);
  EXPECT_EQ(ForDevice(absl::NotFoundError("no such artifact"), "FetchArtifact").message(),
            "no such artifact");

  // An outage: the database refuses connections.
  db_.ExecOnServer("ALTER DATABASE " + db_.name() + " ALLOW_CONNECTIONS false");
  db_.ExecOnServer("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" +
                   db_.name() + "'");
  auto outage = device_api_->CheckIn("cam-1", "serial-cam-1", v1::CheckInRequest());
  ASSERT_FALSE(outage.ok());
  EXPECT_NE(outage.status().ToString().find(db_.name()), std::string::npos)
      << "the server-side error names the database: " << outage.status();
  told = ForDevice(outage.status(), "CheckIn");
  EXPECT_EQ(told.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(told.message(), "server temporarily unavailable");
  db_.ExecOnServer("ALTER DATABASE " + db_.name() + " ALLOW_CONNECTIONS true");
}

TEST_F(ApiTest, ApiTokensCarryARoleExpireAndAreRevoked) {
  Authenticator auth(*api_tokens_, clock_);
  ASSERT_TRUE(database_
                  ->Transact("test",
                             [&](Tx& tx) {
                               return api_tokens_->Upsert(tx, "admin", "admin",
                                                          crypto::Sha256Bytes("admin-secret"));
                             })
                  .ok());
  v1::CreateApiTokenRequest request;
  request.set_name("ci");
  request.set_role(v1::ROLE_OPERATOR);
  request.set_ttl_seconds(3600);
  request.set_description("pipeline");
  auto created = admin_->CreateApiToken(admin_principal_, request);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->token().rfind("efa_", 0), 0u);
  EXPECT_EQ(created->created_by(), "admin");
  EXPECT_EQ(created->expires_at().seconds(), ToUnixSeconds(clock_.Now()) + 3600);
  // Stored hashed; the audit row names the token but not its secret.
  EXPECT_EQ(db_.QueryValue("SELECT count(*) FROM api_tokens WHERE token_hash = decode('" +
                           crypto::ToHex(crypto::Sha256Bytes(created->token())) + "', 'hex')"),
            "1");
  EXPECT_EQ(db_.QueryValue("SELECT count(*) FROM audit_log WHERE action = 'api_token.create' AND "
                           "actor = 'admin' AND detail::text LIKE '%ci%' AND detail::text NOT "
                           "LIKE '%efa_%'"),
            "1");
  EXPECT_EQ(admin_->CreateApiToken(admin_principal_, request).status().code(),
            absl::StatusCode::kAlreadyExists);

  auto ci = auth.Authenticate("Bearer " + created->token());
  ASSERT_TRUE(ci.ok()) << ci.status();
  EXPECT_EQ(ci->name, "ci");
  EXPECT_EQ(ci->role, v1::ROLE_OPERATOR);

  // Listed without secrets; the built-in admin token never expires.
  auto listed = admin_->ListApiTokens(v1::ListApiTokensRequest());
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->tokens_size(), 2);
  for (const v1::ApiToken& t : listed->tokens()) EXPECT_TRUE(t.token().empty()) << t.name();
  EXPECT_EQ(listed->tokens(0).name(), "admin");
  EXPECT_FALSE(listed->tokens(0).has_expires_at());
  EXPECT_TRUE(listed->next_page_token().empty()) << "one page";

  // Paged by name with the rule of every list call.
  v1::ListApiTokensRequest paged;
  paged.set_page_size(1);
  auto first = admin_->ListApiTokens(paged);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->tokens_size(), 1);
  EXPECT_EQ(first->tokens(0).name(), "admin");
  paged.set_page_token(first->next_page_token());
  auto second = admin_->ListApiTokens(paged);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->tokens_size(), 1);
  EXPECT_EQ(second->tokens(0).name(), "ci");
  EXPECT_TRUE(second->next_page_token().empty()) << "the last page";
  paged.set_page_size(1001);
  EXPECT_EQ(admin_->ListApiTokens(paged).status().code(), absl::StatusCode::kInvalidArgument);
  v1::ListEnrollmentTokensRequest other_call;
  other_call.set_page_token(first->next_page_token());
  EXPECT_EQ(admin_->ListEnrollmentTokens(other_call).status().code(),
            absl::StatusCode::kInvalidArgument)
      << "a token of another call";

  clock_.Advance(std::chrono::seconds(3600));
  auto expired = auth.Authenticate("Bearer " + created->token());
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(expired.status().message(), HasSubstr("'ci' expired at"));
  EXPECT_TRUE(auth.Authenticate("Bearer admin-secret").ok()) << "the admin token does not expire";

  request.set_name("ops");
  request.set_role(v1::ROLE_VIEWER);
  auto ops = admin_->CreateApiToken(admin_principal_, request);
  ASSERT_TRUE(ops.ok()) << ops.status();
  v1::RevokeApiTokenRequest revoke;
  revoke.set_name("ops");
  auto revoked = admin_->RevokeApiToken(admin_principal_, revoke);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(revoked->revoked_at().seconds(), ToUnixSeconds(clock_.Now()));
  auto refused = auth.Authenticate("Bearer " + ops->token());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(refused.status().message(), HasSubstr("'ops' was revoked at"));
  EXPECT_EQ(db_.QueryValue("SELECT count(*) FROM audit_log WHERE action = 'api_token.revoke'"),
            "1");

  // Neither the built-in admin token nor the caller's own token can be revoked; unknown is 404.
  revoke.set_name("admin");
  EXPECT_EQ(admin_->RevokeApiToken(Principal{"root-2", v1::ROLE_ADMIN}, revoke).status().code(),
            absl::StatusCode::kFailedPrecondition);
  revoke.set_name("ci");
  EXPECT_EQ(admin_->RevokeApiToken(Principal{"ci", v1::ROLE_ADMIN}, revoke).status().code(),
            absl::StatusCode::kFailedPrecondition);
  revoke.set_name("nobody");
  EXPECT_EQ(admin_->RevokeApiToken(admin_principal_, revoke).status().code(),
            absl::StatusCode::kNotFound);

  request.set_name("bad");
  request.set_role(v1::ROLE_UNSPECIFIED);
  EXPECT_EQ(admin_->CreateApiToken(admin_principal_, request).status().code(),
            absl::StatusCode::kInvalidArgument);
  request.set_role(static_cast<v1::Role>(42));
  EXPECT_EQ(admin_->CreateApiToken(admin_principal_, request).status().code(),
            absl::StatusCode::kInvalidArgument);
  request.set_role(v1::ROLE_VIEWER);
  request.set_name("Bad Name");
  EXPECT_EQ(admin_->CreateApiToken(admin_principal_, request).status().code(),
            absl::StatusCode::kInvalidArgument);
  request.set_name("long");
  request.set_ttl_seconds(400ull * 24 * 3600);
  EXPECT_EQ(admin_->CreateApiToken(admin_principal_, request).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ApiTest, EnrollmentTokensAreListedWithoutSecretsAndRevokedTokensCannotBeUsed) {
  v1::CreateEnrollmentTokenRequest request;
  request.set_max_uses(3);
  auto token = admin_->CreateEnrollmentToken(admin_principal_, request);
  ASSERT_TRUE(token.ok()) << token.status();
  auto listed = admin_->ListEnrollmentTokens(v1::ListEnrollmentTokensRequest());
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->tokens_size(), 1);
  EXPECT_EQ(listed->tokens(0).token_id(), token->token_id());
  EXPECT_TRUE(listed->tokens(0).token().empty());
  EXPECT_EQ(listed->tokens(0).max_uses(), 3u);
  EXPECT_FALSE(listed->tokens(0).has_revoked_at());

  v1::RevokeEnrollmentTokenRequest revoke;
  revoke.set_token_id(token->token_id());
  auto revoked = admin_->RevokeEnrollmentToken(admin_principal_, revoke);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(revoked->revoked_at().seconds(), ToUnixSeconds(clock_.Now()));
  EXPECT_TRUE(revoked->token().empty());
  EXPECT_EQ(
      db_.QueryValue("SELECT count(*) FROM audit_log WHERE action = 'enrollment_token.revoke'"),
      "1");
  auto used = database_->Transact("test", [&](Tx& tx) {
    return tokens_->Consume(tx, crypto::Sha256Bytes(token->token()), ToUnixSeconds(clock_.Now()));
  });
  EXPECT_EQ(used.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(used.status().message(), HasSubstr("revoked"));
  revoke.set_token_id("nope");
  EXPECT_EQ(admin_->RevokeEnrollmentToken(admin_principal_, revoke).status().code(),
            absl::StatusCode::kNotFound);
}

// Both faces of the admin call table (gRPC and REST) on loopback ports, over the same AdminApi.
class AdminFacesTest : public ApiTest {
 protected:
  void SetUp() override {
    ApiTest::SetUp();
    ASSERT_TRUE(database_
                    ->Transact("test",
                               [&](Tx& tx) {
                                 return api_tokens_->Upsert(tx, "watcher", "viewer",
                                                            crypto::Sha256Bytes("view-secret"));
                               })
                    .ok());
    auth_ = std::make_unique<Authenticator>(*api_tokens_, clock_);

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

// ---- rollouts: the admin API in front of a fake RolloutService ----

// Keeps rollouts in a map and records what the API asked of it. `refusal`, when set, is the
// answer to every action (as the real service refuses an action the state does not allow).
class FakeRolloutService final : public rollout::RolloutService {
 public:
  struct ActCall {
    std::string name;
    rollout::OperatorAction action;
    std::string reason;
    std::string actor;
  };

  absl::StatusOr<v1::Rollout> Create(const v1::CreateRolloutRequest& request,
                                     const std::string& actor) override {
    created.push_back(request);
    if (rollouts.contains(request.name())) {
      return absl::AlreadyExistsError("rollout " + request.name() + " already exists");
    }
    v1::Rollout r;
    r.set_name(request.name());
    r.set_model_name(request.model_name());
    r.set_version(request.version());
    r.set_label_selector(request.label_selector());
    r.set_state(v1::ROLLOUT_STATE_PENDING);
    r.set_created_by(actor);
    r.add_waves()->set_state(v1::WAVE_STATE_PENDING);
    auto* event = r.add_events();
    event->set_kind(v1::ROLLOUT_EVENT_KIND_CREATED);
    event->set_actor(v1::ROLLOUT_ACTOR_OPERATOR);
    event->set_operator_name(actor);
    rollouts[r.name()] = r;
    return r;
  }
  absl::StatusOr<v1::Rollout> Get(const std::string& name) override {
    auto it = rollouts.find(name);
    if (it == rollouts.end()) return absl::NotFoundError("rollout " + name + " not found");
    return it->second;
  }
  absl::StatusOr<Page<v1::Rollout>> List(const PageRequest& page) override {
    pages.push_back(page);
    std::vector<v1::Rollout> rows;
    for (auto it = rollouts.upper_bound(page.after); it != rollouts.end(); ++it) {
      rows.push_back(it->second);
    }
    return FinishPage(std::move(rows), page.size, [](const v1::Rollout& r) { return r.name(); });
  }
  absl::StatusOr<v1::Rollout> Act(const std::string& name, rollout::OperatorAction action,
                                  const std::string& reason, const std::string& actor) override {
    acts.push_back({name, action, reason, actor});
    if (!refusal.ok()) return refusal;
    auto it = rollouts.find(name);
    if (it == rollouts.end()) return absl::NotFoundError("rollout " + name + " not found");
    it->second.set_state(action == rollout::OperatorAction::kPause ? v1::ROLLOUT_STATE_PAUSED
                                                                   : v1::ROLLOUT_STATE_RUNNING);
    return it->second;
  }

  std::map<std::string, v1::Rollout> rollouts;
  std::vector<v1::CreateRolloutRequest> created;
  std::vector<PageRequest> pages;
  std::vector<ActCall> acts;
  absl::Status refusal;
};

v1::CreateRolloutRequest ValidCreate(const std::string& name) {
  v1::CreateRolloutRequest r;
  r.set_name(name);
  r.set_model_name("detector");
  r.set_version("2.0");
  r.set_label_selector("hw=pi");
  r.add_waves()->set_percent(10);
  r.add_waves()->set_percent(100);
  r.set_on_failure(v1::ROLLOUT_FAILURE_ACTION_ROLLBACK);
  return r;
}

TEST_F(ApiTest, RolloutCallsAnswerUnavailableWhenTheServerHasNoRolloutService) {
  const Principal& who = admin_principal_;
  v1::GetRolloutRequest get;
  get.set_name("r1");
  v1::PauseRolloutRequest pause;
  pause.set_name("r1");
  v1::ResumeRolloutRequest resume;
  resume.set_name("r1");
  v1::PromoteRolloutRequest promote;
  promote.set_name("r1");
  v1::AbortRolloutRequest abort;
  abort.set_name("r1");
  v1::RollbackRolloutRequest rollback;
  rollback.set_name("r1");
  for (const absl::Status& s :
       {admin_->CreateRollout(who, ValidCreate("r1")).status(), admin_->GetRollout(get).status(),
        admin_->ListRollouts(v1::ListRolloutsRequest()).status(),
        admin_->PauseRollout(who, pause).status(), admin_->ResumeRollout(who, resume).status(),
        admin_->PromoteRollout(who, promote).status(), admin_->AbortRollout(who, abort).status(),
        admin_->RollbackRollout(who, rollback).status()}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_EQ(s.message(), "rollouts are not configured");
  }
  // Bad input is bad input there too.
  v1::CreateRolloutRequest bad = ValidCreate("r1");
  bad.mutable_waves(1)->set_percent(50);
  EXPECT_EQ(admin_->CreateRollout(who, bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(admin_->AbortRollout(who, v1::AbortRolloutRequest()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

class RolloutApiTest : public ApiTest {
 protected:
  void SetUp() override {
    rollouts_ = &fake_;
    ApiTest::SetUp();
  }
  FakeRolloutService fake_;
};

TEST_F(RolloutApiTest, CreateValidatesThenHandsTheRequestAndTheCallerToTheService) {
  auto created = admin_->CreateRollout(admin_principal_, ValidCreate("r1"));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->state(), v1::ROLLOUT_STATE_PENDING);
  ASSERT_EQ(fake_.created.size(), 1u);
  EXPECT_EQ(fake_.created[0].SerializeAsString(), ValidCreate("r1").SerializeAsString());
  EXPECT_EQ(created->created_by(), "admin");
  // The service's own refusals pass through unchanged.
  EXPECT_EQ(admin_->CreateRollout(admin_principal_, ValidCreate("r1")).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(RolloutApiTest, BadCreateRequestsAreInvalidArgumentNamingTheFieldAndNeverReachTheService) {
  struct Case {
    std::function<void(v1::CreateRolloutRequest&)> spoil;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](auto& r) { r.set_name(""); }, "name"},
      {[](auto& r) { r.set_name("Bad Name!"); }, "name"},
      {[](auto& r) { r.set_model_name(""); }, "model"},
      {[](auto& r) { r.set_version(""); }, "version"},
      {[](auto& r) { r.set_label_selector("=x"); }, "label_selector"},
      {[](auto& r) { r.mutable_waves(1)->set_percent(50); }, "100%"},
      {[](auto& r) { r.mutable_waves(0)->set_percent(150); }, "waves[0]"},
      {[](auto& r) { r.mutable_soak()->set_seconds(-1); }, "soak"},
      {[](auto& r) { r.mutable_gates()->set_max_install_failure_percent(101); },
       "max_install_failure_percent"},
  };
  for (const Case& c : cases) {
    v1::CreateRolloutRequest request = ValidCreate("r1");
    c.spoil(request);
    SCOPED_TRACE(request.ShortDebugString());
    absl::Status s = admin_->CreateRollout(admin_principal_, request).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.field));
  }
  EXPECT_TRUE(fake_.created.empty());
}

TEST_F(RolloutApiTest, GetAndListReadTheServiceAndListsCarryNoEventsAndPageByName) {
  for (const char* name : {"a", "b", "c"}) {
    ASSERT_TRUE(admin_->CreateRollout(admin_principal_, ValidCreate(name)).ok());
  }
  v1::GetRolloutRequest get;
  get.set_name("b");
  auto b = admin_->GetRollout(get);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->name(), "b");
  EXPECT_EQ(b->events_size(), 1) << "a single rollout comes with its events";
  get.set_name("zz");
  EXPECT_EQ(admin_->GetRollout(get).status().code(), absl::StatusCode::kNotFound);
  get.set_name("");
  absl::Status empty = admin_->GetRollout(get).status();
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(empty.message()), HasSubstr("name"));

  v1::ListRolloutsRequest list;
  list.set_page_size(2);
  auto first = admin_->ListRollouts(list);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->rollouts_size(), 2);
  EXPECT_EQ(first->rollouts(0).name(), "a");
  EXPECT_EQ(first->rollouts(0).events_size(), 0);
  EXPECT_EQ(first->rollouts(0).waves_size(), 1) << "waves stay";
  ASSERT_FALSE(first->next_page_token().empty());
  list.set_page_token(first->next_page_token());
  auto second = admin_->ListRollouts(list);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->rollouts_size(), 1);
  EXPECT_EQ(second->rollouts(0).name(), "c");
  EXPECT_TRUE(second->next_page_token().empty());
  ASSERT_EQ(fake_.pages.size(), 2u);
  EXPECT_EQ(fake_.pages[1].after, "b");

  list.set_page_size(kMaxPageSize + 1);
  absl::Status big = admin_->ListRollouts(list).status();
  EXPECT_EQ(big.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(big.message()), HasSubstr("page_size"));
  // A token another list issued is not one of ours.
  v1::ListDevicesRequest devices;
  devices.set_page_size(1);
  EnrollDevice("d1", {});
  EnrollDevice("d2", {});
  auto device_page = admin_->ListDevices(devices);
  ASSERT_TRUE(device_page.ok());
  list.set_page_size(2);
  list.set_page_token(device_page->next_page_token());
  EXPECT_EQ(admin_->ListRollouts(list).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RolloutApiTest, EachActionReachesTheServiceWithItsReasonAndTheCaller) {
  ASSERT_TRUE(admin_->CreateRollout(admin_principal_, ValidCreate("r1")).ok());
  const Principal op{"night-shift", v1::ROLE_OPERATOR};
  v1::PauseRolloutRequest pause;
  pause.set_name("r1");
  pause.set_reason("error budget");
  auto paused = admin_->PauseRollout(op, pause);
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_EQ(paused->state(), v1::ROLLOUT_STATE_PAUSED);
  v1::ResumeRolloutRequest resume;
  resume.set_name("r1");
  ASSERT_TRUE(admin_->ResumeRollout(op, resume).ok());
  v1::PromoteRolloutRequest promote;
  promote.set_name("r1");
  ASSERT_TRUE(admin_->PromoteRollout(op, promote).ok());
  v1::AbortRolloutRequest abort;
  abort.set_name("r1");
  ASSERT_TRUE(admin_->AbortRollout(op, abort).ok());
  v1::RollbackRolloutRequest rollback;
  rollback.set_name("r1");
  rollback.set_reason("bad model");
  ASSERT_TRUE(admin_->RollbackRollout(op, rollback).ok());

  using A = rollout::OperatorAction;
  ASSERT_EQ(fake_.acts.size(), 5u);
  const A kWant[] = {A::kPause, A::kResume, A::kPromote, A::kAbort, A::kRollBack};
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(fake_.acts[i].action, kWant[i]) << i;
    EXPECT_EQ(fake_.acts[i].name, "r1");
    EXPECT_EQ(fake_.acts[i].actor, "night-shift");
  }
  EXPECT_EQ(fake_.acts[0].reason, "error budget");
  EXPECT_EQ(fake_.acts[4].reason, "bad model");

  // No name: refused before the service is asked.
  absl::Status unnamed = admin_->AbortRollout(op, v1::AbortRolloutRequest()).status();
  EXPECT_EQ(unnamed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unnamed.message()), HasSubstr("name"));
  EXPECT_EQ(fake_.acts.size(), 5u);
  // The service's refusal passes through unchanged.
  fake_.refusal = absl::FailedPreconditionError("rollout r1 is SUCCEEDED; cannot resume");
  EXPECT_EQ(admin_->ResumeRollout(op, resume).status(), fake_.refusal);
}

// Both faces with a fake rollout service behind them, and a token of every role.
class RolloutFacesTest : public AdminFacesTest {
 protected:
  void SetUp() override {
    rollouts_ = &fake_;
    AdminFacesTest::SetUp();
    // A pair, not a structured binding: clang 14 (Debian 12's) cannot capture bindings in lambdas.
    for (const std::pair<std::string, std::string>& token :
         std::vector<std::pair<std::string, std::string>>{
             {"operator", "operator"}, {"releaser", "release-manager"}, {"root", "admin"}}) {
      ASSERT_TRUE(database_
                      ->Transact("test",
                                 [&](Tx& tx) {
                                   return api_tokens_->Upsert(
                                       tx, token.first, token.second,
                                       crypto::Sha256Bytes(token.first + "-secret"));
                                 })
                      .ok());
    }
  }

  // The REST answer to `method` `path` with `body`, as `token`.
  httplib::Result Rest(HttpMethod method, const std::string& path, const std::string& body = "",
                       const std::string& token = "root-secret") {
    httplib::Headers headers{{"Authorization", "Bearer " + token}};
    if (method == HttpMethod::kGet) return http_client_->Get(path, headers);
    return http_client_->Post(path, headers, body, "application/json");
  }

  static v1::ErrorBody ErrorOf(const httplib::Result& result) {
    v1::ErrorBody error;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(result->body, &error).ok())
        << result->body;
    return error;
  }

  FakeRolloutService fake_;
};

TEST_F(RolloutFacesTest, ViewersReadRolloutsAndOperatorsAndAboveAlsoCreateAndAct) {
  const std::vector<std::string> kReads = {"GetRollout", "ListRollouts"};
  const std::vector<std::string> kWrites = {"CreateRollout",  "PauseRollout", "ResumeRollout",
                                            "PromoteRollout", "AbortRollout", "RollbackRollout"};
  for (const std::string& rpc : kReads) {
    EXPECT_EQ(FindAdminCall(rpc)->permission, permission::kReadRollouts) << rpc;
  }
  EXPECT_EQ(FindAdminCall("CreateRollout")->permission, permission::kCreateRollouts);
  for (size_t i = 1; i < kWrites.size(); ++i) {
    EXPECT_EQ(FindAdminCall(kWrites[i])->permission, permission::kActRollouts) << kWrites[i];
  }
  for (const auto& [token, may_write] :
       std::vector<std::pair<std::string, bool>>{{"view-secret", false},
                                                 {"operator-secret", true},
                                                 {"releaser-secret", true},
                                                 {"root-secret", true}}) {
    for (const std::string& rpc : kReads) {
      SCOPED_TRACE(rpc + " as " + token);
      EXPECT_NE(CallGrpc(*FindAdminCall(rpc), token).error_code(),
                grpc::StatusCode::PERMISSION_DENIED);
    }
    for (const std::string& rpc : kWrites) {
      SCOPED_TRACE(rpc + " as " + token);
      grpc::Status status = CallGrpc(*FindAdminCall(rpc), token);
      if (may_write) {
        // An empty request gets past authorization and fails validation.
        EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
            << status.error_message();
      } else {
        ExpectSameRefusal(*FindAdminCall(rpc), token, absl::StatusCode::kPermissionDenied);
      }
    }
  }
  EXPECT_TRUE(fake_.created.empty());
  EXPECT_TRUE(fake_.acts.empty());
}

TEST_F(RolloutFacesTest, RestRoutesCreateReadListAndActOnRollouts) {
  std::string body;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(ValidCreate("r1"), &body).ok());
  auto created = Rest(HttpMethod::kPost, "/v1/rollouts", body, "operator-secret");
  ASSERT_TRUE(created);
  EXPECT_EQ(created->status, 200) << created->body;
  v1::Rollout rollout;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(created->body, &rollout).ok());
  EXPECT_EQ(rollout.state(), v1::ROLLOUT_STATE_PENDING);
  EXPECT_EQ(rollout.created_by(), "operator");
  ASSERT_EQ(fake_.created.size(), 1u);
  EXPECT_EQ(fake_.created[0].waves_size(), 2);
  EXPECT_EQ(fake_.created[0].on_failure(), v1::ROLLOUT_FAILURE_ACTION_ROLLBACK);

  auto got = Rest(HttpMethod::kGet, "/v1/rollouts/r1", "", "view-secret");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200) << got->body;
  EXPECT_THAT(got->body, HasSubstr("\"state\":\"ROLLOUT_STATE_PENDING\""));
  EXPECT_THAT(got->body, HasSubstr("\"events\""));

  ASSERT_TRUE(fake_.Create(ValidCreate("r2"), "x").ok());
  auto page = Rest(HttpMethod::kGet, "/v1/rollouts?page_size=1", "", "view-secret");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200) << page->body;
  v1::ListRolloutsResponse list;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(page->body, &list).ok());
  ASSERT_EQ(list.rollouts_size(), 1);
  EXPECT_EQ(list.rollouts(0).name(), "r1");
  EXPECT_EQ(list.rollouts(0).events_size(), 0);
  EXPECT_FALSE(list.next_page_token().empty());

  using A = rollout::OperatorAction;
  const std::vector<std::pair<std::string, A>> kActions = {{"pause", A::kPause},
                                                           {"resume", A::kResume},
                                                           {"promote", A::kPromote},
                                                           {"abort", A::kAbort},
                                                           {"rollback", A::kRollBack}};
  for (const auto& [verb, action] : kActions) {
    SCOPED_TRACE(verb);
    auto answer =
        Rest(HttpMethod::kPost, "/v1/rollouts/r1/" + verb,
             verb == "pause" ? R"({"reason":"waiting for the night"})" : "", "operator-secret");
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->status, 200) << answer->body;
    EXPECT_EQ(fake_.acts.back().action, action);
    EXPECT_EQ(fake_.acts.back().name, "r1") << "the path's name wins";
    EXPECT_EQ(fake_.acts.back().actor, "operator");
  }
  EXPECT_EQ(fake_.acts[0].reason, "waiting for the night");
  EXPECT_EQ(fake_.acts[1].reason, "");
}

TEST_F(RolloutFacesTest, RefusalsKeepTheirCodeOnBothFaces) {
  // Bad input: 400 with a JSON body naming the field, INVALID_ARGUMENT over gRPC.
  v1::CreateRolloutRequest bad = ValidCreate("r1");
  bad.mutable_waves(1)->set_percent(50);
  std::string body;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(bad, &body).ok());
  auto rest = Rest(HttpMethod::kPost, "/v1/rollouts", body);
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->status, 400) << rest->body;
  EXPECT_EQ(ErrorOf(rest).code(), "INVALID_ARGUMENT");
  EXPECT_THAT(ErrorOf(rest).message(), HasSubstr("waves[1]"));
  auto malformed = Rest(HttpMethod::kPost, "/v1/rollouts", R"({"waves":"many"})");
  ASSERT_TRUE(malformed);
  EXPECT_EQ(malformed->status, 400) << malformed->body;
  EXPECT_EQ(ErrorOf(malformed).code(), "INVALID_ARGUMENT");
  auto stub = v1::AdminService::NewStub(channel_);
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer root-secret");
    v1::Rollout out;
    grpc::Status status = stub->CreateRollout(&context, bad, &out);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(status.error_message(), ErrorOf(rest).message());
  }
  // Oversized input is refused by the request limits.
  auto long_reason = Rest(HttpMethod::kPost, "/v1/rollouts/r1/pause",
                          R"({"reason":")" + std::string(2000, 'x') + R"("})");
  ASSERT_TRUE(long_reason);
  EXPECT_EQ(long_reason->status, 400) << long_reason->body;
  EXPECT_THAT(ErrorOf(long_reason).message(), HasSubstr("reason"));
  EXPECT_TRUE(fake_.created.empty());
  EXPECT_TRUE(fake_.acts.empty());

  // Unknown: 404 / NOT_FOUND.
  auto missing = Rest(HttpMethod::kGet, "/v1/rollouts/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404) << missing->body;
  EXPECT_EQ(ErrorOf(missing).message(), "rollout nope not found");

  // An action the state does not allow: FAILED_PRECONDITION with the service's message
  // (HTTP 400, as every FailedPrecondition of the admin API).
  ASSERT_TRUE(fake_.Create(ValidCreate("r1"), "x").ok());
  fake_.refusal = absl::FailedPreconditionError("rollout r1 is SUCCEEDED: resume needs PAUSED");
  auto refused = Rest(HttpMethod::kPost, "/v1/rollouts/r1/resume");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, HttpStatusFor(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(ErrorOf(refused).code(), "FAILED_PRECONDITION");
  EXPECT_EQ(ErrorOf(refused).message(), fake_.refusal.message());
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer root-secret");
    v1::ResumeRolloutRequest resume;
    resume.set_name("r1");
    v1::Rollout out;
    grpc::Status status = stub->ResumeRollout(&context, resume, &out);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_EQ(status.error_message(), fake_.refusal.message());
  }
}

TEST_F(AdminFacesTest, WithoutARolloutServiceRolloutCallsAreUnavailableOnBothFaces) {
  const AdminCall& list = *FindAdminCall("ListRollouts");
  grpc::Status status = CallGrpc(list, "view-secret");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(), "rollouts are not configured");
  auto rest = CallRest(list, "view-secret");
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->status, 503) << rest->body;
}

}  // namespace
}  // namespace edgefleet::server
