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
#include "server/metrics/server_metrics.h"
#include "server/artifacts/artifact_store.h"
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
};

// Yields the next chunk of an upload, std::nullopt at its end, or an error.
using ChunkSource = std::function<absl::StatusOr<std::optional<std::string>>()>;

class AdminApi {
 public:
  AdminApi(AdminRepos repos, ArtifactStore& artifacts, const Clock& clock, ServerMetrics& metrics,
           AdminApiOptions options);

  absl::StatusOr<v1::EnrollmentToken> CreateEnrollmentToken(
      const Principal& who, const v1::CreateEnrollmentTokenRequest& request);
  absl::StatusOr<v1::ListDevicesResponse> ListDevices(const v1::ListDevicesRequest& request);
  absl::StatusOr<v1::Device> GetDevice(const v1::GetDeviceRequest& request);
  absl::StatusOr<v1::Device> LabelDevice(const Principal& who, const v1::LabelDeviceRequest& request);
  absl::StatusOr<v1::Device> DecommissionDevice(const Principal& who,
                                                const v1::DecommissionDeviceRequest& request);
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

 private:
  void Audit(const Principal& who, const std::string& action, const google::protobuf::Message& detail);

  AdminRepos repos_;
  ArtifactStore& artifacts_;
  const Clock& clock_;
  ServerMetrics& metrics_;
  AdminApiOptions options_;
};

// Model names: 1-63 of [a-z0-9._-]; versions: 1-63 of [A-Za-z0-9._+-].
absl::Status ValidateModelName(std::string_view name);
absl::Status ValidateVersion(std::string_view version);

}  // namespace edgefleet::server
