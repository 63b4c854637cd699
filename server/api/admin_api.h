// The operator API's behaviour, shared by the gRPC service and the REST gateway so both
// validate, audit and answer identically. Callers authenticate first and pass the principal.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/core/clock.h"
#include "common/crypto/signer.h"
#include "edgefleet/v1/admin.pb.h"
#include "server/api/auth.h"
#include "server/artifacts/artifact_store.h"
#include "server/metrics/server_metrics.h"
#include "server/patches/patch_service.h"
#include "server/store/api_token_repo.h"
#include "server/store/audit_repo.h"
#include "server/store/deployment_repo.h"
#include "server/store/device_repo.h"
#include "server/store/enrollment_token_repo.h"
#include "server/store/model_repo.h"

namespace edgefleet::server {

struct AdminApiOptions {
  uint64_t max_artifact_bytes = 2ull << 30;
};

struct AdminRepos {
  EnrollmentTokenRepo& tokens;
  DeviceRepo& devices;
  ModelRepo& models;
  DeploymentRepo& deployments;
  AuditRepo& audit;
  ApiTokenRepo& api_tokens;
};

// Yields the next chunk of an upload, std::nullopt at its end, or an error.
using ChunkSource = std::function<absl::StatusOr<std::optional<std::string>>()>;

// A model upload in progress: validated metadata and an artifact being written (streamed to
// the artifact store, hashed and size-capped as it arrives; discarded unless finished).
class ModelUpload {
 public:
  absl::Status Append(std::string_view data) { return writer_->Append(data); }

 private:
  friend class AdminApi;
  ModelUpload(Principal who, v1::PushModelMetadata metadata, std::unique_ptr<ArtifactWriter> writer)
      : who_(std::move(who)), metadata_(std::move(metadata)), writer_(std::move(writer)) {}
  Principal who_;
  v1::PushModelMetadata metadata_;
  std::unique_ptr<ArtifactWriter> writer_;
};

class AdminApi {
 public:
  // `patches` may be null: then no patches are precomputed.
  AdminApi(AdminRepos repos, ArtifactStore& artifacts, const Clock& clock, ServerMetrics& metrics,
           AdminApiOptions options, PatchService* patches = nullptr);

  absl::StatusOr<v1::EnrollmentToken> CreateEnrollmentToken(
      const Principal& who, const v1::CreateEnrollmentTokenRequest& request);
  absl::StatusOr<v1::ListDevicesResponse> ListDevices(const v1::ListDevicesRequest& request);
  absl::StatusOr<v1::Device> GetDevice(const v1::GetDeviceRequest& request);
  absl::StatusOr<v1::Device> LabelDevice(const Principal& who,
                                         const v1::LabelDeviceRequest& request);
  absl::StatusOr<v1::Device> DecommissionDevice(const Principal& who,
                                                const v1::DecommissionDeviceRequest& request);
  // Publishing a version: BeginPush validates and opens the upload, the caller appends the
  // artifact's bytes as they arrive, FinishPush verifies, records and signs off the version.
  absl::StatusOr<std::unique_ptr<ModelUpload>> BeginPush(const Principal& who,
                                                         const v1::PushModelMetadata& metadata);
  absl::StatusOr<v1::ModelVersion> FinishPush(std::unique_ptr<ModelUpload> upload);
  // BeginPush + Append every chunk + FinishPush.
  absl::StatusOr<v1::ModelVersion> PushModel(const Principal& who,
                                             const v1::PushModelMetadata& metadata,
                                             const ChunkSource& chunks);
  absl::StatusOr<v1::ListModelsResponse> ListModels(const v1::ListModelsRequest& request);
  absl::StatusOr<v1::Model> GetModel(const v1::GetModelRequest& request);
  absl::StatusOr<v1::Deployment> CreateDeployment(const Principal& who,
                                                  const v1::CreateDeploymentRequest& request);
  absl::StatusOr<v1::Deployment> GetDeployment(const v1::GetDeploymentRequest& request);
  absl::StatusOr<v1::ListDeploymentsResponse> ListDeployments(
      const v1::ListDeploymentsRequest& request);

  // Operator API tokens: the secret is in CreateApiToken's answer only. The built-in `admin`
  // token (server config) and the caller's own token cannot be revoked (FailedPrecondition).
  absl::StatusOr<v1::ApiToken> CreateApiToken(const Principal& who,
                                              const v1::CreateApiTokenRequest& request);
  absl::StatusOr<v1::ListApiTokensResponse> ListApiTokens(const v1::ListApiTokensRequest& request);
  absl::StatusOr<v1::ApiToken> RevokeApiToken(const Principal& who,
                                              const v1::RevokeApiTokenRequest& request);
  absl::StatusOr<v1::ListEnrollmentTokensResponse> ListEnrollmentTokens(
      const v1::ListEnrollmentTokensRequest& request);
  absl::StatusOr<v1::EnrollmentToken> RevokeEnrollmentToken(
      const Principal& who, const v1::RevokeEnrollmentTokenRequest& request);

 private:
  void Audit(const Principal& who, const std::string& action,
             const google::protobuf::Message& detail);
  // Queues patches to `to_sha256` from every artifact of `model_name` that `devices` serve now.
  void PrecomputePatches(const std::string& model_name, const std::string& to_sha256,
                         const std::vector<v1::Device>& devices);

  AdminRepos repos_;
  ArtifactStore& artifacts_;
  const Clock& clock_;
  ServerMetrics& metrics_;
  AdminApiOptions options_;
  PatchService* patches_;
};

// Model names: 1-63 of [a-z0-9._-]; versions: 1-63 of [A-Za-z0-9._+-].
absl::Status ValidateModelName(std::string_view name);
absl::Status ValidateVersion(std::string_view version);

}  // namespace edgefleet::server
